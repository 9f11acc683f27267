"""`faceattr-ray calibrate`: set a bundle's face/no-face threshold from face and background
images (`faceattr_ray.calibrate`), store it with a histogram plot. `faceattr-ray
calibrate-points`: the attribute operating points and calibration of an existing bundle
(`reproduce.calibrate_points`)."""

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


def run_points(args) -> int:
    """`faceattr-ray calibrate-points`: refit the heads on val (or keep them), choose the
    operating points on the held-out val identities, store both."""
    from faceattr_ray.reproduce import calibrate_points, merge, resolve_recipe

    recipe = resolve_recipe(False, args.recipe)
    if args.precision:
        recipe = merge(recipe, {"heads": {"precisions": sorted(set(args.precision))}})
    if recipe["heads"]["solver"] == "ray" and not args.keep_heads:
        from faceattr_ray.runtime import init_ray

        init_ray(args.address, args.num_cpus)
    stored = calibrate_points(args.model, args.celeba_root, recipe, args.seed,
                              keep_heads=args.keep_heads, out=args.out)
    print(f"operating points on {stored['images']} images ({stored['chosen_on']}), method "
          f"{stored['method']}: {', '.join(['zero', *stored['thresholds']])}; saved to "
          f"{args.out or args.model}")
    for point, values in stored["thresholds"].items():
        missing = [n for n, v in zip(stored["attributes"], values, strict=True) if v is None]
        if missing:
            print(f"  {point}: unreachable for {len(missing)} attribute(s) ({', '.join(missing)}):"
                  " their decision is always false")
    return 0
