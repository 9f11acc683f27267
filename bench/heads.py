"""SVM heads: scikit-learn's LinearSVC (liblinear) vs the Ray Newton solver, side by side.

Both fit the same problem (squared hinge, L2, the same C grid chosen on the same validation
images, then refit) on the same synthetic per-patch features, in one run; the test accuracy of
each and their wall-clock times are printed. Features: a shared latent vector per image, P noisy
patch views of it, A attributes that are noisy linear functions of the latent (imbalanced
biases, like CelebA).

    python bench/heads.py                                   # 4000 images x 4 patches x 128
    python bench/heads.py --images 20000 --dim 256 --attributes 40 --num-cpus 2
    python bench/heads.py --smoke-test                      # seconds: 200 images x 16

Last line: JSON {"rows", "dim", "attributes", "C", "liblinear_s", "ray_s", "speed_ratio",
"liblinear_accuracy", "ray_accuracy", "accuracy_diff_points", "ray_passes"}.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def make_data(n, p, f, a, seed):
    rng = np.random.default_rng(seed)
    w = np.random.default_rng(1234).normal(size=(a, f)) / np.sqrt(f)
    bias = np.linspace(-1.5, 1.5, a)
    z = rng.normal(size=(n, f)).astype(np.float32)
    y = (z @ w.T + bias + rng.normal(scale=0.5, size=(n, a)) > 0).astype(np.float32)
    x = z[:, None, :] + rng.normal(scale=0.5, size=(n, p, f)).astype(np.float32)
    return x, y


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=4000)
    p.add_argument("--patches", type=int, default=4)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--attributes", type=int, default=10)
    p.add_argument("--C", type=float, nargs="+", default=[0.01, 0.1, 1.0])
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the embedded Ray")
    p.add_argument("--rows-per-block", type=int, default=1000, help="images per Ray block")
    p.add_argument("--test-images", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke-test", action="store_true",
                   help="200 images x 16 features, 3 attributes, one C: the plumbing in seconds")
    args = p.parse_args()
    if args.smoke_test:
        args.images, args.dim, args.attributes, args.C = 200, 16, 3, [1.0]
        args.rows_per_block, args.test_images = 100, 200
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import ray

    from faceattr_ray.heads import fit_heads
    from faceattr_ray.runtime import init_ray

    names = [f"attr_{i}" for i in range(args.attributes)]
    x, y = make_data(args.images, args.patches, args.dim, args.attributes, args.seed)
    xt, yt = make_data(args.test_images, args.patches, args.dim, args.attributes, args.seed + 1)
    kw = {"C": tuple(args.C), "seed": args.seed}
    init_ray(num_cpus=args.num_cpus, log_to_driver=False)

    results = {}
    passes: list[int] = []
    for solver in ("liblinear", "ray"):
        start = time.perf_counter()
        heads = fit_heads(x, y, names, solver=solver, rows_per_block=args.rows_per_block, **kw)
        seconds = time.perf_counter() - start
        acc = float(((heads.decision_function(xt) > 0) == (yt > 0.5)).mean())
        results[solver] = (seconds, acc)
        if solver == "ray":
            passes = heads.info["passes"]
        print(f"{solver:9s}: {seconds:7.2f} s, test mean accuracy {100 * acc:.2f}%")
    ray.shutdown()
    rows = args.images * args.patches
    print(f"setting: {args.images} images x {args.patches} patches = {rows} rows, dim {args.dim}, "
          f"{args.attributes} attributes, C {args.C}, Ray with {args.num_cpus} CPUs; "
          f"Ray solver passes per fit: {passes}")
    (ls, la), (rs, ra) = results["liblinear"], results["ray"]
    print(json.dumps({"rows": rows, "dim": args.dim, "attributes": args.attributes, "C": args.C,
                      "liblinear_s": round(ls, 2), "ray_s": round(rs, 2),
                      "speed_ratio": round(ls / rs, 2), "liblinear_accuracy": round(la, 4),
                      "ray_accuracy": round(ra, 4),
                      "accuracy_diff_points": round(100 * (ra - la), 3), "ray_passes": passes}))


if __name__ == "__main__":
    main()
