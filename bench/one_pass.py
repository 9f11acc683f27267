"""ANet features of a 5x5 lattice of patches: one pass (interweaved) vs patch by patch.

Both run the same randomly initialised ANet (default config) on the same face windows, side by
side in one run (interleaved repeats, median), on CPU under torch.inference_mode. The paper
reports a 6x speed-up for its one-pass scheme (Liu et al. 2015, Sec. 2.2).

    python bench/one_pass.py                    # batch of 8 windows, 1 thread, 9 repeats
    python bench/one_pass.py --batch 1 --threads 2
    python bench/one_pass.py --smoke-test       # seconds: one window, one repeat

Last line: JSON {"patches", "patch_by_patch_ms", "one_pass_ms", "speedup", "max_abs_diff"}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from faceattr_ray.models import ANet, ANetConfig


def timed(fn, x) -> float:
    start = time.perf_counter()
    fn(x)
    return (time.perf_counter() - start) * 1000.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8, help="face windows per call")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke-test", action="store_true",
                   help="one window, one repeat, no warm-up: the plumbing in seconds")
    args = p.parse_args()
    if args.smoke_test:
        args.batch, args.repeats, args.warmup = 1, 1, 0

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = ANetConfig()
    net = ANet(cfg).eval()
    windows = torch.randn(args.batch, 3, cfg.window_size, cfg.window_size)
    patches = cfg.grid * cfg.grid
    print(f"setting: CPU, {args.threads} thread(s), torch {torch.__version__}, batch "
          f"{args.batch} windows of {cfg.window_size}x{cfg.window_size}, {cfg.grid}x{cfg.grid} "
          f"patches of {cfg.patch_size}x{cfg.patch_size} every {cfg.patch_stride} px, "
          f"channels {tuple(cfg.channels)}, kernels {tuple(cfg.kernels)}, cells "
          f"{tuple(cfg.cells)}, {args.warmup} warm-up + {args.repeats} repeats, median")

    # The same patches cropped and run as one big batch: a non-interweaved peer without the loop.
    crops = torch.cat([windows[:, :, y:y + cfg.patch_size, x:x + cfg.patch_size]
                       for y, x in net.patch_offsets()])
    runs = {"naive": [], "batched": [], "one_pass": []}
    calls = [("naive", net.patch_features_naive, windows), ("batched", net, crops),
             ("one_pass", net.patch_features, windows)]
    with torch.inference_mode():
        slow = net.patch_features_naive(windows)
        fast = net.patch_features(windows)
        max_abs_diff = (fast - slow).abs().max().item()
        for i in range(args.warmup + args.repeats):
            # Rotate the order so drifting machine load hits every side alike.
            for name, fn, x in calls[i % 3:] + calls[:i % 3]:
                t = timed(fn, x)
                if i >= args.warmup:
                    runs[name].append(t)
    naive_ms, fast_ms = runs["naive"], runs["one_pass"]
    batched_ms = statistics.median(runs["batched"])

    naive, one = statistics.median(naive_ms), statistics.median(fast_ms)
    print(f"patch by patch (a loop of {patches} ANet calls): {naive:.1f} ms per batch")
    print(f"all {patches * args.batch} crops in one ANet call: {batched_ms:.1f} ms per batch "
          f"(one pass is {batched_ms / one:.2f}x faster)")
    print(f"one pass (interweaved): {one:.1f} ms per batch")
    print(json.dumps({"patches": patches, "patch_by_patch_ms": round(naive, 2),
                      "one_pass_ms": round(one, 2), "speedup": round(naive / one, 2),
                      "max_abs_diff": max_abs_diff}))


if __name__ == "__main__":
    main()
