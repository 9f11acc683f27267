"""`faceattr-ray calibrate`: set a bundle's face/no-face threshold from face and background
images (`faceattr_ray.calibrate`), store it with a histogram plot."""

from __future__ import annotations

import json
import os


def run(args) -> int:
    """`faceattr-ray calibrate`: score the images, set ``Bundle.threshold``, save, plot."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.calibrate import calibrate_bundle
    from faceattr_ray.data.sources import list_inputs
    from faceattr_ray.errors import DataError
    from faceattr_ray.runtime import pick_device

    faces, backgrounds = list_inputs(args.faces), list_inputs(args.backgrounds)
    for name, found, given in (("face", faces, args.faces),
                               ("background", backgrounds, args.backgrounds)):
        if not found:
            raise DataError(f"no {name} images found in {' '.join(given)}")
    device = pick_device(args.device)
    bundle = load_bundle(args.model, device=device)
    plot = args.plot or os.path.join(args.model, "threshold.png")
    stats = calibrate_bundle(bundle, faces, backgrounds, plot, args.batch_size, device)
    threshold = stats["threshold"]
    print(f"threshold {threshold:.4g}: face recall {stats['face_recall']:.3f}, background "
          f"rejection {stats['background_rejection']:.3f} on {stats['faces']} faces and "
          f"{stats['backgrounds']} backgrounds ({'separable' if stats['separable'] else 'overlapping'}); "
          f"saved to {args.model}, histogram {plot}")
    print(json.dumps(stats))
    return 0
