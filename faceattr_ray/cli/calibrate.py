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


def run_scenes(args) -> int:
    """`faceattr-ray calibrate-scenes`: the bundle's scene calibration (`reproduce.
    calibrate_scene_localizer`) on an existing bundle, in place or into ``--out``."""
    import shutil

    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data.sources import list_inputs
    from faceattr_ray.errors import BundleError, DataError
    from faceattr_ray.reproduce import calibrate_scene_localizer, resolve_recipe, scene_backgrounds

    recipe = resolve_recipe(False, args.recipe)
    lnet_o = load_bundle(args.model).lnet_o
    if lnet_o is None or not getattr(lnet_o.config, "face_tag", False):
        raise BundleError(f"{args.model}: scene calibration needs face-tag LNets (the 'wild' "
                          "preset, as reproduce trains them)")
    backgrounds = list_inputs(args.backgrounds)
    if not backgrounds:
        raise DataError(f"no background images found in {' '.join(args.backgrounds)}")
    model = args.model
    if args.out:
        shutil.copytree(args.model, args.out, dirs_exist_ok=True)
        model = args.out
    train, held, _ = scene_backgrounds(backgrounds, model, recipe, args.seed)
    # read as the bundle says (its stored localizer options), so only the calibration changes
    chosen = calibrate_scene_localizer(model, args.celeba_root, held, recipe, args.seed,
                                       train_backgrounds=train, reading={})
    bundle = load_bundle(model)
    card = bundle.config.get("card") or {}
    if card:
        # a bundled model's card follows the calibration it now has: its localization figures
        # (test scenes, as reproduce measures them) and its record of predictions on the
        # sample photos (tests/test_bundled.py compares against it)
        from faceattr_ray.bundle import save_bundle
        from faceattr_ray.bundled import regression_values, scene_figures
        from faceattr_ray.reproduce import scene_localization_check

        if "scene_recall_iou50" in card.get("figures", {}):
            check = scene_localization_check(model, args.celeba_root, held, recipe, args.seed)
            card["figures"].update(scene_figures(check), scene_figures_by="calibrate-scenes")
        if "regression" in card:
            card["regression"] = regression_values(bundle)
        save_bundle(model, bundle)
    floor = chosen.get("confidence_floor") or {}
    print(f"threshold {chosen['threshold']:.4g}, floor {floor.get('min_confidence')} on the "
          f"{floor.get('reads', 'attribute confidence')}: recall {chosen['recall']:.3f} at IoU "
          f"0.5, {chosen['false_per_image']:.2f} false detections per val scene; saved to {model}")
    print(json.dumps({k: chosen[k] for k in ("threshold", "recall", "false_per_image")}))
    return 0
