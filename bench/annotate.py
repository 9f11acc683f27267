"""Annotate throughput: the Ray pipeline vs a bare single-process loop, and peak memory.

Both run the same `Predictor` over the same generated images, side by side in one run, so the
ratio measures Ray's overhead (and its decode/model overlap) and nothing else. The pipeline runs
twice on the small input, with one actor pool holding every network (`--stages one`) and with
LNets and ANet in separate pools (`--stages split`), to choose the default. Peak memory is the
resident set of the whole process tree (driver + raylet + workers), sampled every 0.2 s from
/proc (Linux), for a small and a large input: flat means streaming works.

    python bench/annotate.py                      # 2,000 vs 10,000 images (about 10 minutes)
    python bench/annotate.py --small 200 --large 1000 --bare 200    # quick look
    python bench/annotate.py --smoke-test         # 8 small images, the tiny preset
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss_mb(root_pid: int) -> float:
    """Resident memory of ``root_pid`` and all its descendants, in MiB."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, stack = 0, [root_pid]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
        stack.extend(children.get(pid, []))
    return total / 2**20


class PeakSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_mb(self.pid))
            time.sleep(0.2)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_pipeline(images_dir: str, model: str, out: str, batch_size: int,
                 stages: str = "one") -> tuple[float, float]:
    """Run annotate in a fresh process (a clean Ray each time); returns (images/s, peak MiB)."""
    cmd = [sys.executable, "-m", "faceattr_ray.cli", "annotate", images_dir, "--model", model,
           "--output", out, "--batch-size", str(batch_size), "--stages", stages]  # fmt: skip
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    with PeakSampler(proc.pid) as sampler:
        output, _ = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"annotate failed:\n{output[-3000:]}")
    with open(os.path.join(out, "_SUMMARY.json")) as f:
        summary = json.load(f)
    return summary["images_per_s"], sampler.peak


def run_bare_loop(paths: list[str], model: str, batch_size: int) -> float:
    """The same decode and Predictor in one plain loop, no Ray; returns images/s."""
    import torch

    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.pipeline.annotate import batch_images, decode_batch
    from faceattr_ray.predictor import Predictor

    torch.set_num_threads(os.cpu_count() or 1)
    predictor = Predictor(load_bundle(model), localizer="lnet")
    start = time.time()
    for i in range(0, len(paths), batch_size):
        batch = decode_batch({"path": paths[i : i + batch_size]}, None)
        ok = [k for k, s in enumerate(batch["status"]) if s == "ok"]
        predictor.predict(batch_images(batch, ok))
    return len(paths) / (time.time() - start)


def make_unique_images(out: str, count: int, size: tuple[int, int]) -> list[str]:
    from faceattr_ray.data.synthetic import write_wild

    write_wild(out, count=count, size=size, seed=0)
    img_dir = os.path.join(out, "img_celeba")
    return sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir))


def link_images(out: str, unique: list[str], count: int) -> str:
    """``count`` files named apart, content cycling through ``unique`` (hard links: no copies)."""
    os.makedirs(out, exist_ok=True)
    for i in range(count):
        os.link(unique[i % len(unique)], os.path.join(out, f"{i:07d}.jpg"))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", type=int, default=2000)
    p.add_argument("--large", type=int, default=10000)
    p.add_argument("--bare", type=int, default=None, help="images for the ratio (default: small)")
    p.add_argument("--model", default=None, help="bundle (default: the 'cpu' preset, random)")
    p.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--unique", type=int, default=500,
                   help="distinct generated images; larger inputs hard-link them under new names")
    p.add_argument("--smoke-test", action="store_true",
                   help="8 small images, the tiny preset: the plumbing, not the figures")
    args = p.parse_args()
    preset = "cpu"
    if args.smoke_test:
        args.small, args.large, args.bare, args.unique = 8, 8, 8, 8
        args.size, args.batch_size, preset = (96, 80), 4, "tiny"

    from faceattr_ray.bundle import save_bundle
    from faceattr_ray.presets import build_bundle

    work = tempfile.mkdtemp(prefix="bench-annotate-")
    try:
        model = args.model
        if model is None:
            model = os.path.join(work, "model")
            save_bundle(model, build_bundle(preset, seed=0))
        unique = make_unique_images(os.path.join(work, "unique"), args.unique, tuple(args.size))
        dirs = {n: link_images(os.path.join(work, f"images-{n}"), unique, n)
                for n in sorted({args.small, args.large})}  # fmt: skip
        n_bare = args.bare or args.small
        bare_paths = sorted(os.path.join(dirs[args.small], f)
                            for f in os.listdir(dirs[args.small]))[:n_bare]  # fmt: skip
        print(f"setting: {os.cpu_count()} CPUs, images {args.size[0]}x{args.size[1]} generated, "
              f"batch {args.batch_size}, model "
              f"{f'{preset} preset' if args.model is None else model}")
        # Side by side: bare loop, then the pipeline on the same images, then the large run.
        bare = run_bare_loop(bare_paths, model, args.batch_size)
        pipe, peak_small = run_pipeline(dirs[args.small], model, os.path.join(work, "out-s"),
                                        args.batch_size)  # fmt: skip
        split, _ = run_pipeline(dirs[args.small], model, os.path.join(work, "out-split"),
                                args.batch_size, stages="split")  # fmt: skip
        if args.large == args.small:  # one size asked for: the small run is the large one
            pipe_large, peak_large = pipe, peak_small
        else:
            pipe_large, peak_large = run_pipeline(dirs[args.large], model,
                                                  os.path.join(work, "out-l"), args.batch_size)
        print(f"bare loop: {bare:.1f} images/s over {n_bare} images")
        print(f"pipeline:  {pipe:.1f} images/s over {args.small} images, {pipe_large:.1f} over "
              f"{args.large} (each includes actor start-up and model loading)")
        print(f"split pools (LNets | ANet + heads): {split:.1f} images/s over {args.small} "
              f"images, {split / pipe:.2f}x the one-pool pipeline")
        print(f"peak RSS:  {peak_small:.0f} MiB for {args.small}, {peak_large:.0f} MiB for "
              f"{args.large} images (driver + Ray processes)")
        # The ratio uses the large run, where start-up is a small part of the time.
        print(json.dumps({
            "images": args.large, "pipeline_images_per_s": round(pipe_large, 2),
            "bare_loop_images_per_s": round(bare, 2), "ratio": round(pipe_large / bare, 3),
            "pipeline_images_per_s_small": round(pipe, 2),
            "split_pools_images_per_s_small": round(split, 2),
            "split_over_one_pool": round(split / pipe, 3),
            "peak_rss_mb_small": round(peak_small), "peak_rss_mb_large": round(peak_large),
        }))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
