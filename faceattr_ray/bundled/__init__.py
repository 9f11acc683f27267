"""Models that ship inside the package: `--model` defaults to one, so annotate works at once.

Each is a bundle folder (safetensors + config.json with sha256 of every file) under this
package, trained by this project's own `reproduce` command; its config holds a ``card``: what
it was trained on, the command that rebuilds it, its licence and its measured figures.

    python -m faceattr_ray.bundled RUN_DIR [--name NAME]

copies the bundle of a finished `reproduce` run (RUN_DIR/model, figures from
RUN_DIR/report/report.json) into this package with its card.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT = "celeba-mini-wild"
TRAINED_ON = ("celeba-mini (6,370 train / 805 val aligned CelebA faces, identity-disjoint "
              "splits) and 28 real face-free photos (Debian wallpapers: CC-BY-4.0, "
              "CC-BY-SA-4.0, CC0-1.0, GPL-2+, LGPL-3); 9 more held apart for calibration")
LICENCE = ("CelebA is for non-commercial research use only: so is this model. The "
           "background photos' licences are in ../shared/data/backgrounds/LICENSES.")
COMMAND = ("faceattr-ray reproduce --celeba-root ../shared/data/celeba-mini "
           "--backgrounds ../shared/data/backgrounds --out runs/bundled --seed 0 && "
           "python -m faceattr_ray.bundled runs/bundled")


def model_path(name: str = DEFAULT) -> str:
    """The folder of a bundled model; a one-line error when it is not installed."""
    from faceattr_ray.errors import BundleError

    path = os.path.join(HERE, name)
    if not os.path.isfile(os.path.join(path, "config.json")):
        known = ", ".join(bundled_models()) or "none"
        raise BundleError(f"no bundled model {name!r} (bundled: {known})")
    return path


def bundled_models() -> list[str]:
    """Names of the models that ship in this package."""
    return sorted(n for n in os.listdir(HERE)
                  if os.path.isfile(os.path.join(HERE, n, "config.json")))


def resolve_model(model: str | None) -> str:
    """A ``--model`` value: a bundle folder as given, a bundled model's name, or None for the
    default bundled model."""
    if model is None:
        return model_path(DEFAULT)
    if not os.path.exists(model) and model in bundled_models():
        return model_path(model)
    return model


def card(model: str | None = None) -> dict:
    """The model card in a bundle's config (a bundled model's name, a folder, or None for the
    default), read without loading its networks; {} when it has none."""
    with open(os.path.join(resolve_model(model), "config.json")) as f:
        return json.load(f).get("card") or {}


def figures_of(report: dict) -> dict:
    """The card's figures from a `reproduce` run's report.json."""
    test = report["test"]["mean"]
    loc = report.get("localization_test") or {}
    points = report["test"].get("points") or {}  # at the stored operating points (if any)
    at = {f"test_mean_{key}_at_{point}_point": points[point]["mean"][key]
          for point, key in (("accuracy", "accuracy"), ("balanced", "balanced_accuracy"))
          if point in points}
    return {
        **at,
        "test_mean_average_precision": test.get("average_precision"),
        "test_mean_accuracy": test.get("accuracy"),
        "test_mean_balanced_accuracy": test.get("balanced_accuracy"),
        "test_majority_baseline": test.get("majority_baseline"),
        "test_images": report["test"].get("images"),
        **scene_figures(loc),
        "reproduce_minutes": round(report["total_seconds"] / 60, 1),
    }


def scene_figures(localization: dict) -> dict:
    """The card's localization figures from a scene check (`reproduce.
    scene_localization_check`): recall at IoU 0.5, false detections per image, TPR at 0.1."""
    return {"scene_recall_iou50": localization.get("recall_iou50"),
            "scene_false_per_image": localization.get("false_per_image"),
            "scene_tpr_fppi01": localization.get("tpr_fppi01"),
            "scenes": localization.get("scenes")}


def install(run_dir: str, name: str = DEFAULT) -> str:
    """Copy RUN_DIR/model into this package as ``name`` with its card; returns the folder."""
    from faceattr_ray.bundle import load_bundle, save_bundle

    with open(os.path.join(run_dir, "report", "report.json")) as f:
        report = json.load(f)
    dst = os.path.join(HERE, name)
    shutil.rmtree(dst, ignore_errors=True)
    bundle = load_bundle(os.path.join(run_dir, "model"))
    bundle.extra_files = {}  # train_config.json and the like stay with the run
    bundle.config = {**bundle.config, "card": {
        "name": name, "trained_on": TRAINED_ON, "licence": LICENCE, "command": COMMAND,
        "seed": report.get("seed"), "figures": figures_of(report),
        "good_for": "demos, small jobs, a starting point for heads on a new attribute set",
        "not_for": "production accuracy: train on full CelebA with `reproduce` on GPUs"}}
    save_bundle(dst, bundle)
    bundle.config["card"]["regression"] = regression_values(load_bundle(dst))
    save_bundle(dst, bundle)
    for extra in os.listdir(dst):  # only what the bundle needs ships
        if extra not in ("config.json",) and not extra.endswith(".safetensors"):
            path = os.path.join(dst, extra)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    return dst


REGRESSION_PHOTOS = ("astronaut.png", "camera.png", "grace_hopper.jpg")


def regression_values(bundle) -> dict:
    """What the model predicts on the sample photos with people (every face: box, face score,
    attribute scores), recorded when it is installed; the tests recompute and compare."""
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.data.sample_photos import sample_photo_paths
    from faceattr_ray.predictor import Predictor

    predictor = Predictor(bundle, device="cpu", localizer="lnet", all_faces=True)
    paths = sample_photo_paths(no_people=False)
    out = {}
    for name in REGRESSION_PHOTOS:
        if name not in paths:
            continue
        result = predictor.predict([load_image(paths[name])])[0]
        out[name] = [{"box": [round(float(v), 3) for v in f.box], "score": round(f.score, 5),
                      "attributes": [round(float(v), 4) for v in f.attributes]}
                     for f in result.faces]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m faceattr_ray.bundled", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="a finished `faceattr-ray reproduce --out` folder")
    p.add_argument("--name", default=DEFAULT)
    args = p.parse_args(argv)
    dst = install(args.run_dir, args.name)
    size = sum(os.path.getsize(os.path.join(dst, f)) for f in os.listdir(dst))
    print(f"installed {args.name}: {dst} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
