"""Attributes in the wild: ANet on the faces the LNets find in scenes vs the same faces aligned.

Issue 16's measure. It
1. makes scenes of the TEST identities (``--split val``: the val ones, to choose between
   recipes without reading test) of a CelebA-layout root pasted on held-apart real
   backgrounds (`reproduce.scene_backgrounds` splits the folder by a hash of the file name, so
   these are the photos `reproduce` kept out of LNet training; `reproduce.validation_scenes`
   pastes the faces 30-120 px wide, turned, recoloured, on a degraded photo: the same scenes
   `reproduce`'s localization check scores, for the same seed);
2. runs the full cascade of --model on each scene (`Predictor`, localizer lnet, every face above
   the bundle's threshold) and matches the faces found to the true boxes at IoU >= 0.5, one to
   one by face score (`match_detections`);
3. scores each matched face three ways: the crop of the box the LNets found ("wild"), the crop of
   its true box in the same scene ("given box": description apart from localization), and the
   face's own aligned CelebA image with localizer full ("aligned");
4. prints per attribute and in the mean the accuracy of the matched faces each way, the gap
   (aligned - wild, in accuracy points as a fraction) and the match rate; and, over every face
   in the scenes, found or not, the aligned and given-box means.

    python bench/wild_attributes.py --model runs/repro/model          # 150 scenes
    python bench/wild_attributes.py --model MODEL --scenes 300 --seed 1 --iou 0.5
    python bench/wild_attributes.py --model MODEL --split val   # to choose between recipes
    python bench/wild_attributes.py --smoke-test    # seconds: a random tiny bundle, 4 scenes;
                                                    # generated data when ../shared is absent

Last line: JSON {"aligned_mean", "wild_mean", "gap", "boxes_mean", "matched", "faces",
"match_rate", "false_detections", "scenes", "all_faces": {"aligned_mean", "boxes_mean"},
"attributes": {name: {"n", "aligned", "boxes", "wild"}}}. Means are None when no face matched.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model bundle (required unless --smoke-test)")
    p.add_argument("--celeba-root", default=os.path.join(SHARED, "celeba-mini"),
                   help="CelebA-layout root whose test split is pasted (default: "
                        "../shared/data/celeba-mini)")
    p.add_argument("--backgrounds", default=os.path.join(SHARED, "backgrounds"),
                   help="folder of face-free photos; the held-apart share is used (default: "
                        "../shared/data/backgrounds)")
    p.add_argument("--scenes", type=int, default=None,
                   help="scenes to make (default: the recipe's test_count, 150)")
    p.add_argument("--iou", type=float, default=0.5, help="overlap a found face needs to match")
    p.add_argument("--seed", type=int, default=0, help="scene seed (reproduce's --seed)")
    p.add_argument("--split", choices=["val", "test"], default="test",
                   help="whose faces the scenes paste: val to choose a recipe, test to report")
    p.add_argument("--batch-size", type=int, default=8, help="scenes per model call")
    p.add_argument("--frame-zooms", type=float, nargs="*", default=None, metavar="Z",
                   help="found boxes framed by ANet at these zooms (localizers/framing.py); "
                        "default: as the bundle says; the flag alone: not framed")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.add_argument("--smoke-test", action="store_true",
                   help="a random tiny bundle and a few scenes: the plumbing in seconds")
    return p


def _smoke_data(work: str, args: argparse.Namespace) -> tuple[str, list[str]]:
    """celeba-mini and the shared backgrounds when present, else a tiny generated stand-in of
    each, so that the smoke test needs nothing outside the repository."""
    from faceattr_ray.data.synthetic import write_aligned, write_backgrounds

    root = args.celeba_root
    if not os.path.exists(os.path.join(root, "list_attr_celeba.txt")):
        # 30 identities: enough that the identity split gives the test split a few faces.
        root = write_aligned(os.path.join(work, "celeba"), 60, identities=30, seed=args.seed)
    if os.path.isdir(args.backgrounds):
        return root, _image_files(args.backgrounds)
    return root, write_backgrounds(os.path.join(work, "backgrounds"), 4, seed=args.seed,
                                   size=(200, 150))


def _image_files(folder: str) -> list[str]:
    from faceattr_ray.errors import DataError

    if not os.path.isdir(folder):
        raise DataError(f"--backgrounds {folder}: not a folder")
    return [os.path.join(folder, n) for n in sorted(os.listdir(folder))
            if n.lower().endswith(IMAGE_SUFFIXES)]


def _accuracy(metrics: dict, name: str) -> float | None:
    return metrics["attributes"][name]["accuracy"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def measure(bundle, root: str, scenes: list, iou: float, batch_size: int,
            device: str | None, split: str = "test", frame_zooms=None) -> dict:
    """Scores of ``scenes`` (`reproduce.validation_scenes` of ``root``'s ``split``) found by
    the bundle's LNets, on given boxes, and aligned; figures as in the module docstring."""
    from faceattr_ray.data import read_celeba
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.evaluation.localization_metrics import match_detections
    from faceattr_ray.localizers import Detection
    from faceattr_ray.metrics import attribute_metrics
    from faceattr_ray.predictor import Predictor

    data = read_celeba(root, split=split)  # scene.face_index indexes this order
    wild = Predictor(bundle, device=device, localizer="lnet", all_faces=True,
                     frame_zooms=frame_zooms)
    aligned = Predictor(bundle, device=device, localizer="full")
    shared = [n for n in wild.attributes if n in data.names]
    model_cols = [wild.attributes.index(n) for n in shared]
    label_cols = [list(data.names).index(n) for n in shared]

    truth, wild_s, boxes_s, index, hit = [], [], [], [], []
    false = 0
    for start in range(0, len(scenes), batch_size):
        batch = scenes[start : start + batch_size]
        images = [s.image for s in batch]
        found = wild.localize(images)
        found_scores, _ = wild.describe(wild.face_crops(images, found))
        # The true boxes framed by the same rule as found ones: what ANet makes of a face
        # when localization is perfect.
        given = [[Detection(tuple(float(v) for v in b), 1.0) for b in s.boxes] for s in batch]
        given_scores, _ = wild.describe(wild.face_crops(images, given))
        k = g = 0
        for scene, dets in zip(batch, found, strict=True):
            boxes = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
            match = match_detections(boxes, [d.score for d in dets], scene.boxes, iou)
            false += int((match < 0).sum())
            n = len(scene.boxes)
            # Per true face: the found face that matched it (its row in found_scores), or -1.
            row = np.full(n, -1)
            row[match[match >= 0]] = k + np.flatnonzero(match >= 0)
            wild_rows = np.zeros((n, len(shared)), np.float32)
            wild_rows[row >= 0] = found_scores[row[row >= 0]][:, model_cols]
            truth.append(scene.labels[:, label_cols])
            wild_s.append(wild_rows)
            boxes_s.append(given_scores[g : g + n][:, model_cols])
            index.append(scene.face_index)
            hit.append(row >= 0)
            k += len(dets)
            g += n
    a = len(shared)
    truth_all = np.concatenate(truth) if truth else np.zeros((0, a), np.float32)
    wild_all = np.concatenate(wild_s) if wild_s else np.zeros((0, a), np.float32)
    boxes_all = np.concatenate(boxes_s) if boxes_s else np.zeros((0, a), np.float32)
    index_all = np.concatenate(index) if index else np.zeros(0, np.int64)
    hit_all = np.concatenate(hit) if hit else np.zeros(0, bool)

    # Each distinct face once through the aligned path (a face may be pasted in several scenes).
    unique = np.unique(index_all)
    aligned_by_face = {}
    for start in range(0, len(unique), 64):
        chunk = unique[start : start + 64]
        results = aligned.predict([load_image(data.paths[int(i)]) for i in chunk])
        for i, r in zip(chunk, results, strict=True):
            aligned_by_face[int(i)] = r.faces[0].attributes[model_cols]
    aligned_all = (np.stack([aligned_by_face[int(i)] for i in index_all])
                   if len(index_all) else np.zeros((0, a), np.float32))

    on = {"aligned": aligned_all[hit_all], "boxes": boxes_all[hit_all], "wild": wild_all[hit_all]}
    matched = {k: attribute_metrics(truth_all[hit_all], v, shared) for k, v in on.items()}
    every = {k: attribute_metrics(truth_all, v, shared)
             for k, v in (("aligned", aligned_all), ("boxes", boxes_all))}
    faces = len(truth_all)
    aligned_mean = matched["aligned"]["mean"]["accuracy"]
    wild_mean = matched["wild"]["mean"]["accuracy"]
    return {
        "aligned_mean": aligned_mean, "wild_mean": wild_mean,
        "gap": None if wild_mean is None else aligned_mean - wild_mean,
        "boxes_mean": matched["boxes"]["mean"]["accuracy"],
        "matched": int(hit_all.sum()), "faces": faces,
        "match_rate": hit_all.sum() / faces if faces else None,
        "false_detections": false, "scenes": len(scenes),
        "all_faces": {"aligned_mean": every["aligned"]["mean"]["accuracy"],
                      "boxes_mean": every["boxes"]["mean"]["accuracy"]},
        "attributes": {n: {"n": matched["wild"]["attributes"][n]["count"],
                           **{k: _accuracy(matched[k], n) for k in on}} for n in shared},
    }  # fmt: skip


def main(args: argparse.Namespace) -> dict:
    from faceattr_ray.reproduce import RECIPE, SMOKE, merge, scene_backgrounds, validation_scenes

    if not args.smoke_test and not args.model:
        get_args_parser().error("--model is required (or --smoke-test)")
    recipe = merge(RECIPE, SMOKE) if args.smoke_test else RECIPE
    count = args.scenes or recipe["scenes"]["test_count"]
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wild_attributes_") as work:
        if args.smoke_test:
            from faceattr_ray.presets import build_bundle

            root, backgrounds = _smoke_data(work, args)
            bundle, model = build_bundle("wild-smoke", seed=args.seed), "random wild-smoke"
        else:
            from faceattr_ray.bundle import load_bundle

            root, backgrounds = args.celeba_root, _image_files(args.backgrounds)
            bundle, model = load_bundle(args.model), args.model
        _, held_apart, _ = scene_backgrounds(backgrounds, work, recipe, args.seed)
        scenes = validation_scenes(root, args.split, held_apart, recipe, count, args.seed,
                                   max_hidden=recipe["scenes"].get("test_max_hidden"))
        print(f"setting: {len(scenes)} scenes {tuple(recipe['scenes']['size'])} of the {args.split} "
              f"faces of {os.path.abspath(root)} on {len(held_apart)} held-apart backgrounds; "
              f"model {model}, threshold {bundle.threshold}, IoU >= {args.iou}, found boxes "
              f"framed at zooms {args.frame_zooms if args.frame_zooms is not None else 'as the bundle says'}",
              flush=True)
        result = measure(bundle, root, scenes, args.iou, args.batch_size, args.device,
                         args.split, args.frame_zooms)
    result["seconds"] = round(time.perf_counter() - start, 1)

    print(f"{'attribute':<20} {'n':>5} {'aligned':>8} {'box':>6} {'wild':>6} {'gap':>6}")
    for name, row in result["attributes"].items():
        gap = None if row["wild"] is None else row["aligned"] - row["wild"]
        print(f"{name:<20} {row['n']:>5} {_pct(row['aligned']):>8} {_pct(row['boxes']):>6} "
              f"{_pct(row['wild']):>6} {_pct(gap):>6}")
    print(f"{'mean':<20} {result['matched']:>5} {_pct(result['aligned_mean']):>8} "
          f"{_pct(result['boxes_mean']):>6} {_pct(result['wild_mean']):>6} "
          f"{_pct(result['gap']):>6}")
    rate = _pct(result["match_rate"])
    print(f"matched {result['matched']} of {result['faces']} faces ({rate}%) in "
          f"{result['scenes']} scenes, {result['false_detections']} false detections; every "
          f"face: aligned {_pct(result['all_faces']['aligned_mean'])}, given box "
          f"{_pct(result['all_faces']['boxes_mean'])}; {result['seconds']} s")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args(sys.argv[1:]))
