"""`faceattr-ray annotate` and `faceattr-ray extract-features`: flags -> the annotate job.

Every check that needs no Ray (options, the output folder, the inputs, the model) runs first,
so a typo costs no Ray start-up.
"""

from __future__ import annotations


def run(args) -> int:
    from faceattr_ray.pipeline.annotate import AnnotateOptions

    return _annotate(args, AnnotateOptions(
        features=args.features, all_faces=args.all_faces, localizer=args.localizer,
        batch_size=args.batch_size, num_gpus=args.num_gpus, actors=args.actors,
        decode_cpus=args.decode_cpus, max_pixels=args.max_pixels, resume=args.resume,
        stages=args.stages, operating_point=args.operating_point,
        probabilities=args.probabilities, limit=args.limit, precision=args.precision))


def run_extract_features(args) -> int:
    """The annotate job with features on, dominant face only."""
    from faceattr_ray.pipeline.annotate import AnnotateOptions

    return _annotate(args, AnnotateOptions(features=True, all_faces=False,
                                           localizer=args.localizer, batch_size=args.batch_size))


def _annotate(args, options) -> int:
    from faceattr_ray.pipeline.annotate import plan_annotate, run_plan
    from faceattr_ray.runtime import init_ray

    plan = plan_annotate(args.inputs, args.model, args.output, options)
    init_ray(args.address, args.num_cpus)
    s = run_plan(plan)
    print(f"annotate: {s['images']} images ({s['faces']} faces, {s['no_face']} with no face, "
          f"{s['errors']} errors) in {s['seconds']} s, {s['images_per_s']} images/s "
          f"-> {s['output']}")
    return 0
