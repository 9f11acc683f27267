"""`faceattr-ray evaluate`: per-attribute accuracy of a bundle on a CelebA-layout root."""

from __future__ import annotations

import json


def run(args) -> int:
    from faceattr_ray.attributes import paper_reference
    from faceattr_ray.evaluation.evaluate import evaluate_celeba
    from faceattr_ray.metrics import format_table

    metrics = evaluate_celeba(args.model, args.celeba_root, args.split, args.localizer,
                              args.limit)
    print(format_table(metrics, reference=paper_reference(metrics["attributes"])))
    print(f"{metrics['images']} images of split {metrics['split']}, faces found in "
          f"{metrics['faces_found']}, {metrics['images_per_s']} images/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(metrics, f, indent=2)
        print(f"metrics written to {args.json}")
    return 0
