"""`faceattr-ray demo`: the README's first command, on a fresh machine, offline, in a minute.

1. The model: the bundled one (`faceattr_ray.bundled`, trained by `reproduce` on real faces and
   real backgrounds), or with ``--train`` a toy trained here on generated faces
   (`reproduce.build_model` with `DEMO_RECIPE`: a fully offline smoke run, no real data).
2. A folder to annotate: real photos that ship in the installed packages (people: an astronaut,
   a cameraman, Grace Hopper; no one: a cat, a cup, a rocket, a temple, a flower), and scenes of
   generated people pasted on real background photos (../shared/data/backgrounds when present,
   else generated clutter).
3. The annotate job on a local Ray (Ray Data: decode tasks -> the cascade actor -> Parquet).
4. A readable summary (per image: faces found, the most confident attributes), and an overlay
   grid: every image with its face boxes and their top attributes drawn.
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
    # the toy trains alike on every CPU (no bf16 block: float32, its own epochs)
    "anet_finetune": {"epochs": 8, "max_steps": None, "batch_size": 32, "lr": 0.05, **SGD,
                      "native_bf16": None},
    "heads": {"C": [0.01, 0.1, 1.0], "solver": "ray"},
    "calibrate": {"faces": 40, "backgrounds": 40},
})
FACES = 500  # generated aligned faces (the toy model learns from them; scenes show them)
IDENTITIES = 50
TOP = 3  # attributes shown per face
SHARED_BACKGROUNDS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "..", "shared", "data", "backgrounds")


def write_photos(folder: str) -> list[str]:
    """The real photos that ship in installed packages (`data.sample_photos`), as files."""
    from faceattr_ray.data.sample_photos import sample_photo_paths, write_sample_photos

    write_sample_photos(folder)
    for extra in ("boxes.json", "labels.json"):  # the demo annotates images only
        os.remove(os.path.join(folder, extra))
    return [os.path.join(folder, n) for n in sample_photo_paths()]


def write_scenes(root: str, folder: str, count: int, seed: int,
                 backgrounds: str | None = SHARED_BACKGROUNDS) -> list[str]:
    """``count`` scenes of generated test-split people pasted (soft mask) on real background
    photos when ``backgrounds`` is a folder, else on generated clutter."""
    from PIL import Image

    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.scenes import SceneMaker, list_backgrounds, load_background
    from faceattr_ray.data.synthetic import make_background
    from faceattr_ray.train.lnet_scenes import load_faces

    data = read_celeba(root, split="test")
    rng = np.random.default_rng([seed, 5])
    if backgrounds and os.path.isdir(backgrounds):
        bgs = [load_background(p) for p in list_backgrounds(backgrounds)[0]]
    else:
        bgs = [np.asarray(make_background((480, 360), rng)) for _ in range(8)]
    maker = SceneMaker(load_faces(list(data.paths)), data.labels, bgs, size=(480, 360),
                       face_px=(50, 110), max_faces=3, max_rotation=10, degrade=0.3)
    paths = []
    for k in range(count):
        path = os.path.join(folder, f"people_{k + 1:03d}.jpg")
        Image.fromarray(maker(rng, num_faces=int(rng.integers(1, 4))).image).save(path, quality=92)
        paths.append(path)
    return paths


def summarize_table(output: str, top: int = TOP) -> list[str]:
    """One line per image: status, faces found, the most confident attributes of each face."""
    import pyarrow.dataset as pads

    table = pads.dataset(output, format="parquet").to_table().to_pandas()
    attributes = _attribute_columns(table)
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


def draw_overlay(output: str, out_png: str, top: int = TOP, width: int = 400) -> int:
    """A grid of every annotated image with its face boxes and their ``top`` attributes, read
    from the Parquet table (what a user would see). Returns the number of faces drawn."""
    import pyarrow.dataset as pads
    from PIL import Image, ImageDraw

    from faceattr_ray.data.decode import load_image

    table = pads.dataset(output, format="parquet").to_table().to_pandas()
    attributes = _attribute_columns(table)
    tiles, faces = [], 0
    for path, rows in table.sort_values(["path", "face_index"]).groupby("path", sort=True):
        if rows["status"].iloc[0] == "error":
            continue
        im = Image.fromarray(load_image(path))
        scale = width / im.width
        im = im.resize((width, max(1, round(im.height * scale))))
        d = ImageDraw.Draw(im)
        for _, r in rows[rows["status"] == "ok"].iterrows():
            x1, y1, x2, y2 = (float(v) * scale for v in r["box"])
            d.rectangle([x1, y1, x2, y2], outline=(255, 40, 40), width=3)
            scores = np.array([r[a] for a in attributes], dtype=float)
            best = [attributes[i] for i in np.argsort(-scores)[:top] if scores[i] > 0]
            d.multiline_text((x1 + 2, y2 + 2), "\n".join(best) or "-", fill=(255, 255, 0),
                             stroke_width=2, stroke_fill=(0, 0, 0))
            faces += 1
        d.text((4, 4), os.path.basename(path), fill=(255, 255, 255), stroke_width=2,
               stroke_fill=(0, 0, 0))
        tiles.append(im)
    if not tiles:
        raise ValueError(f"{output}: no readable image to draw")
    cols = min(4, len(tiles))
    h = max(t.height for t in tiles)
    grid = Image.new("RGB", (cols * width, ((len(tiles) + cols - 1) // cols) * h), (25, 25, 25))
    for k, t in enumerate(tiles):
        grid.paste(t, ((k % cols) * width, (k // cols) * h))
    grid.save(out_png)
    return faces


def _attribute_columns(table) -> list[str]:
    from faceattr_ray.pipeline.schema import FIXED_COLUMNS

    meta = {*FIXED_COLUMNS, "features"}
    return [c for c in table.columns if c not in meta]


def demo(out: str, images: int = 6, seed: int = 0, address: str | None = None,
         num_cpus: int | None = None, train: bool = False, model: str | None = None) -> dict:
    """Steps 1-4 of the module notes into ``out``; returns what the summary prints."""
    from faceattr_ray.bundled import card, resolve_model
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
    if train:
        built = build_model(root, out, DEMO_RECIPE, seed=seed, address=address, timer=timer)
        model, about = built["model"], (
            f"a toy trained here in about a minute on generated faces; held-out val accuracy "
            f"of its heads {100 * (built['heads']['held_out_accuracy']['chosen'] or 0):.1f}%")
    else:
        model = resolve_model(model)
        acc = (card(model).get("figures") or {}).get("test_mean_accuracy")
        about = ("bundled: trained by `reproduce` on celeba-mini and real backgrounds"
                 + (f"; test mean accuracy {100 * acc:.1f}%" if acc else ""))
    folder = os.path.join(out, "images")
    shutil.rmtree(folder, ignore_errors=True)
    with timer.stage("write images"):
        write_photos(folder)
        write_scenes(root, folder, images, seed)
    output = os.path.join(out, "annotations")
    shutil.rmtree(output, ignore_errors=True)  # a fresh table for a fresh model
    with timer.stage("annotate (Ray Data)"):
        summary = annotate([folder], model, output,
                           AnnotateOptions(localizer="lnet", all_faces=True, batch_size=16))
    overlay = os.path.join(out, "overlay.png")
    with timer.stage("overlay"):
        draw_overlay(output, overlay)
    return {"summary": summary, "model": model, "about": about, "output": output,
            "overlay": overlay, "stage_seconds": timer.seconds,
            "seconds": time.perf_counter() - start}
