"""`faceattr-ray evaluate`: per-attribute accuracy of a bundle on a CelebA-layout root, or on a
folder of photos with face boxes and labels."""

from __future__ import annotations

import json

from faceattr_ray.errors import FaceAttrError


def _check_flags(args) -> None:
    """Flag combinations argparse cannot express, refused in one line before any work."""
    if args.photos is not None and args.labels is None:
        raise FaceAttrError("--photos needs --labels (the JSON of face boxes and labels)")
    if args.photos is None and args.labels is not None:
        raise FaceAttrError("--labels goes with --photos, not --celeba-root")
    if args.photos is not None and getattr(args, "operating_point", None):
        raise FaceAttrError("--operating-point goes with --celeba-root")
    if args.photos is None and args.localizer == "boxes":
        raise FaceAttrError("--localizer boxes needs --photos and --labels (the given boxes "
                            "are the faces)")


def run(args) -> int:
    _check_flags(args)
    if args.photos is not None:
        return _run_photos(args)
    from faceattr_ray.attributes import paper_reference
    from faceattr_ray.evaluation.evaluate import evaluate_celeba
    from faceattr_ray.metrics import format_table

    metrics = evaluate_celeba(args.model, args.celeba_root, args.split, args.localizer or "full",
                              args.limit, operating_point=args.operating_point)
    print(format_table(metrics, reference=paper_reference(metrics["attributes"])))
    print(f"{metrics['images']} images of split {metrics['split']}, faces found in "
          f"{metrics['faces_found']}, {metrics['images_per_s']} images/s")
    _print_points(metrics)
    _write_json(args.json, metrics)
    return 0


def _run_photos(args) -> int:
    from faceattr_ray.evaluation.evaluate import evaluate_photos
    from faceattr_ray.metrics import format_table

    metrics = evaluate_photos(args.model, args.photos, args.labels, args.localizer or "lnet",
                              args.iou, args.limit)
    # The table's "n" column counts matched faces with a known label; the paper's CelebA
    # figures are no reference for someone else's photos, so none is shown.
    print(format_table(metrics))
    rate = "-" if metrics["match_rate"] is None else f"{100 * metrics['match_rate']:.1f}%"
    print(f"{metrics['photos']} photos, localizer {metrics['localizer']}: matched "
          f"{metrics['matched']} of {metrics['faces']} faces ({rate}) at IoU >= "
          f"{metrics['iou']}, {metrics['false_detections']} false detections")
    if metrics["missing_attributes"]:
        print(f"labels the model does not predict (ignored): "
              f"{', '.join(metrics['missing_attributes'])}")
    _write_json(args.json, metrics)
    return 0


def _print_points(metrics: dict) -> None:
    """The operating point used (and any note), then the means at every stored point."""
    used = metrics["operating_point"]
    print(f"operating point: {used['point']} ({used['rule']})"
          + (f"; note: {used['note']}" if used.get("note") else ""))
    for point, m in metrics["points"].items():
        mean = m["mean"]
        ap = mean["average_precision"]
        print(f"  {point:16s} accuracy {100 * mean['accuracy']:.1f}%  balanced "
              f"{100 * mean['balanced_accuracy']:.1f}%  AP "
              f"{'-' if ap is None else f'{100 * ap:.1f}%'}"
              + (f"  ({len(mean['unreachable'])} unreachable)" if mean["unreachable"] else ""))


def _write_json(path: str | None, metrics: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(metrics, f, indent=2)
        print(f"metrics written to {path}")
