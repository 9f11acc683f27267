"""Ray Train throughput: images/s with 1 and 2 CPU workers (DDP over gloo), side by side.

Both settings fine-tune the same network on the same generated aligned faces (CelebA layout,
written to a temporary folder) with the same global batch, through the full path: Ray Data
decode/augment tasks -> `iter_torch_batches` -> DDP step -> per-epoch checkpoint. The figure is
the last epoch's (the first warms up): images/s summed over workers, and per worker.

    python bench/train_throughput.py                       # ANet fine-tuning, 256 images
    python bench/train_throughput.py --net lnet_o --images 128 --epochs 2
    python bench/train_throughput.py --smoke-test         # one small Ray Train fit, 1 worker

Last line: JSON {"net", "images", "batch_size", "workers": {"1": {...}, "2": {...}}, "speedup"}.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--net", choices=["anet", "lnet_o"], default="anet")
    p.add_argument("--images", type=int, default=256, help="generated training images")
    p.add_argument("--batch-size", type=int, default=32, help="global batch")
    p.add_argument("--epochs", type=int, default=3, help="the last one is measured")
    p.add_argument("--num-cpus", type=int, default=4, help="CPUs of the local Ray")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke-test", action="store_true",
                   help="16 images, 1 epoch, 1 worker, the smoke preset's networks")
    args = p.parse_args()
    preset = "cpu"
    if args.smoke_test:
        args.images, args.epochs, args.batch_size, args.workers = 16, 1, 8, [1]
        preset = "smoke"

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    import ray

    from faceattr_ray.data.synthetic import write_aligned
    from faceattr_ray.presets import architecture
    from faceattr_ray.runtime import init_ray
    from faceattr_ray.train import api

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = write_aligned(os.path.join(tmp, "faces"), count=args.images, seed=args.seed)
        init_ray(num_cpus=args.num_cpus, log_to_driver=False)
        try:
            for workers in args.workers:
                start = time.perf_counter()
                _, metrics, cfg = api.finetune(
                    root, nets=(args.net,), epochs=args.epochs, batch_size=args.batch_size,
                    num_workers=workers, seed=args.seed, storage_path=os.path.join(tmp, "runs"),
                    lnet=architecture(preset)["lnet"],
                    anet=architecture(preset)["anet"] if args.smoke_test else None)
                m = metrics[args.net]
                results[str(workers)] = {
                    "images_per_s": round(m["images_per_s"], 2),
                    "images_per_s_per_worker": round(m["images_per_s_per_worker"], 2),
                    "epoch_images": m["images"], "wall_s": round(time.perf_counter() - start, 1),
                }
                print(f"{workers} worker(s): {m['images_per_s']:.1f} images/s "
                      f"({m['images_per_s_per_worker']:.1f} per worker), last epoch of "
                      f"{args.epochs}, {m['images']} images, global batch {args.batch_size}",
                      flush=True)
        finally:
            ray.shutdown()
    print(f"setting: {args.net} fine-tuning on {args.images} generated faces, CPU, "
          f"{os.cpu_count()} cores on this machine, local Ray with {args.num_cpus} CPUs")
    base = results.get(str(args.workers[0]), {}).get("images_per_s")
    last = results.get(str(args.workers[-1]), {}).get("images_per_s")
    print(json.dumps({"net": args.net, "images": args.images, "batch_size": args.batch_size,
                      "workers": results,
                      "speedup": round(last / base, 3) if base and last else None}))


if __name__ == "__main__":
    main()
