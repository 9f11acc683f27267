"""`faceattr-ray reproduce`: the paper's protocol end to end on a CelebA-layout root."""

from __future__ import annotations

import os


def run(args) -> int:
    from faceattr_ray.data.sources import list_inputs
    from faceattr_ray.errors import DataError
    from faceattr_ray.reproduce import percent, reproduce, resolve_recipe
    from faceattr_ray.runtime import init_ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    recipe = resolve_recipe(args.smoke_test, args.recipe)
    if args.trainer:
        recipe["trainer"] = args.trainer
    if getattr(args, "family", None):
        recipe["family"] = args.family
    backgrounds = list_inputs(args.backgrounds) if args.backgrounds else None
    if args.backgrounds and not backgrounds:
        raise DataError(f"no background images found in {' '.join(args.backgrounds)}")
    limit = args.limit or (64 if args.smoke_test else None)
    init_ray(args.address, args.num_cpus)
    results = reproduce(args.celeba_root, args.out, recipe, backgrounds, args.seed, limit,
                       args.address)
    print(f"test mean accuracy {percent(results['mean_accuracy'])} on {results['test']['images']} "
          f"images (majority baseline {percent(results['majority_baseline'])}, paper "
          f"{percent(results['paper_mean_accuracy'])} on full CelebA); "
          f"{results['total_seconds'] / 60:.1f} min")
    print(f"model: {results['model']}  results: {os.path.join(args.out, 'report')}")
    return 0
