"""`faceattr-ray demo`: the README's first command, on a fresh machine, offline, in minutes.

1. Generated faces in CelebA layout (`data.synthetic.write_aligned`).
2. A small model: `reproduce.build_model` with `DEMO_RECIPE` (the paper's protocol at toy
   scale: ANet identity pre-training, LNets and ANet fine-tuned with tags on pasted scenes and
   face crops, SVM heads on val identities, a calibrated face threshold).
3. A folder to annotate: scenes of held-out generated people pasted on backgrounds, plus the
   real photos scikit-image ships (an astronaut, a cameraman, a cat, a coffee cup).
4. The annotate job on a local Ray (Ray Data: decode tasks -> the cascade actor -> Parquet).
5. A readable summary (per image: faces found, the most confident attributes), and an overlay
   picture of the cascade on the astronaut (LNet_o's response map, head-shoulder and face boxes).
"""

from __future__ import annotations

import os
import shutil
import time

import numpy as np

from faceattr_ray.presets import architecture
from faceattr_ray.reproduce import Timer, build_model, merge, resolve_recipe

# The protocol of `reproduce` at toy scale on generated faces: about a minute on 2 cores.
SGD = {"optimizer": "sgd", "schedule": "constant", "weight_decay": 5e-4}
DEMO_RECIPE: dict = merge(resolve_recipe(smoke_test=True, overrides=None), {
    "trainer": "local",
    "wild": {"count": 240, "size": [192, 144], "max_people": 2, "min_face": 30.0,
             "backgrounds": 40},
    "anet_arch": architecture("toy")["anet"],
    "lnet_arch": architecture("toy")["lnet"],
    # Plain SGD at a constant rate: tuned for this toy scale (RECIPE's AdamW is for celeba-mini).
    "anet_pretrain": {"epochs": 2, "max_steps": None, "batch_size": 32, "lr": 0.02, **SGD},
    "lnet_finetune": {"epochs": 3, "max_steps": None, "batch_size": 16, "lr": 0.02,
                      "headshoulder": "boxes"},
    "anet_finetune": {"epochs": 8, "max_steps": None, "batch_size": 32, "lr": 0.05, **SGD},
    "heads": {"C": [0.01, 0.1, 1.0], "solver": "ray"},
    "calibrate": {"faces": 40, "backgrounds": 40},
})
FACES = 500  # generated aligned faces the demo model learns from
IDENTITIES = 50
PHOTOS = ("astronaut", "camera", "chelsea", "coffee")  # scikit-image's bundled photos
TOP = 3  # attributes shown per face


def write_photos(folder: str) -> list[str]:
    """scikit-image's real photos as files (no download: they ship with the package)."""
    import skimage.data
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    paths = []
    for name in PHOTOS:
        image = getattr(skimage.data, name)()
        path = os.path.join(folder, f"{name}.{'png' if image.ndim == 2 else 'jpg'}")
        Image.fromarray(image).save(path)
        paths.append(path)
    return paths


def write_scenes(root: str, folder: str, count: int, seed: int) -> list[str]:
    """``count`` scenes of generated people from the test split (never trained on)."""
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.paste import paste_faces

    scratch = os.path.join(folder, "_scenes")
    paste_faces(root, scratch, count * 8, seed=seed + 1, size=(320, 240), max_people=3,
                min_face=40.0)
    scenes = read_celeba(scratch, split="test").paths[:count]
    paths = []
    for k, src in enumerate(scenes):
        dst = os.path.join(folder, f"people_{k + 1:03d}.jpg")
        shutil.copyfile(src, dst)
        paths.append(dst)
    shutil.rmtree(scratch)
    return paths


def summarize_table(output: str, top: int = TOP) -> list[str]:
    """One line per image: status, faces found, the most confident attributes of each face."""
    import pyarrow.dataset as pads

    table = pads.dataset(output, format="parquet").to_table().to_pandas()
    meta_cols = {"path", "image_width", "image_height", "status", "error", "face_index", "box",
                 "face_score", "features", "model_version"}
    attributes = [c for c in table.columns if c not in meta_cols]
    lines = []
    for path, rows in table.sort_values(["path", "face_index"]).groupby("path", sort=True):
        name = os.path.basename(path)
        status = rows["status"].iloc[0]
        if status != "ok":
            why = f" ({rows['error'].iloc[0]})" if status == "error" else ""
            lines.append(f"{name:<18} {status}{why}")
            continue
        faces = []
        for _, r in rows.iterrows():
            scores = np.array([r[a] for a in attributes], dtype=float)
            best = [attributes[i] for i in np.argsort(-scores)[:top] if scores[i] > 0]
            faces.append(f"[{', '.join(best) or 'no attribute above 0'}]")
        lines.append(f"{name:<18} {len(rows)} face(s): {' '.join(faces)}")
    return lines


def draw_overlay(model: str, image_path: str, out_png: str) -> int:
    """The cascade on one image, drawn (response map, head-shoulder and face boxes).
    Returns the number of faces above the threshold."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.predictor import Predictor

    localizer = Predictor(load_bundle(model), localizer="lnet").localizer
    return len(localizer.draw(load_image(image_path), out_png).detections)


def demo(out: str, images: int = 24, seed: int = 0, address: str | None = None,
         num_cpus: int | None = None) -> dict:
    """Steps 1-5 of the module notes into ``out``; returns what the summary prints."""
    from faceattr_ray.data.synthetic import write_aligned
    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate
    from faceattr_ray.runtime import init_ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    start = time.perf_counter()
    timer = Timer()
    with timer.stage("generate faces"):
        root = write_aligned(os.path.join(out, "work", "faces"), FACES, IDENTITIES, seed=seed)
    # 4 logical CPUs on a small machine: the decode tasks and the model actor never wait on
    # each other (a 2-core Ray with 1-CPU tasks and actors can deadlock).
    init_ray(address, num_cpus or max(4, os.cpu_count() or 1))
    built = build_model(root, out, DEMO_RECIPE, seed=seed, address=address, timer=timer)
    model = built["model"]
    folder = os.path.join(out, "images")
    shutil.rmtree(folder, ignore_errors=True)
    with timer.stage("write images"):
        photos = write_photos(folder)
        write_scenes(root, folder, max(0, images - len(photos)), seed)
    output = os.path.join(out, "annotations")
    shutil.rmtree(output, ignore_errors=True)  # a fresh table for a fresh model
    with timer.stage("annotate (Ray Data)"):
        summary = annotate([folder], model, output,
                           AnnotateOptions(localizer="lnet", all_faces=True, batch_size=16))
    overlay = os.path.join(out, "overlay.png")
    with timer.stage("overlay"):
        draw_overlay(model, photos[0], overlay)
    return {"summary": summary, "model": model, "output": output, "overlay": overlay,
            "heads": built["heads"], "stage_seconds": timer.seconds,
            "seconds": time.perf_counter() - start}
