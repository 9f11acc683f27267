"""Annotate at the machine's limit: networks vs the machine's matmul rate, the Ray pipeline vs
a bare loop (whole run and steady state), draft decoding, and a streamed manifest's driver RSS.

All in one run, side by side, on a mixed corpus of real-sized photos made on the fly
(`bench/_corpus.py`: 640x480, 1600x1200 and 4000x3000 JPEGs, some PNG, some EXIF-rotated, some
with no one):

- machine: fp32 matmul GFLOP/s (2048^2 products, the thread count the loops use; the faster of
  torch's matmul and the same product as a 1x1 convolution, `machine_gflops`), measured
  beside every figure it divides, since it moves up to 2x within a minute on shared machines:
  before, between and after the network rounds, and around the pipeline; the networks' share
  of it (network_flop_efficiency) is the median of 8 short turns that alternate a batch of the
  best setting with as long a stretch of matmuls;
- FLOPs per image of the cascade on the corpus (torch's FlopCounterMode, as bench/flops.py);
- network loop: `Predictor.predict` on decoded images, per setting tried (batch norm left
  unfolded, channels-last kernels, batch 8 and twice the batch; alternated over two rounds,
  best of each; the batch norm setting matters for models that have it, such as the bundled
  one, not for the `cpu` preset, which has none); the best
  one's GFLOP/s over the machine's = network_flop_efficiency, and its torch.profiler
  breakdown (share of the time by operator: what the matmul rate does not explain), and the
  convolutions alone (their FLOPs over their profiled time, against the machine's rate beside
  them: `convolution_flop_efficiency`; with nothing else taking time the network figure would
  be `convolution_bound_flop_efficiency`, which no change around the kernels can pass);
- bf16 autocast (`--precision bf16`) where the CPU computes bf16 natively (AVX-512 BF16, AMX):
  alternated with the best fp32 setting, read against the fp32 and the bf16 matmul rates
  (`network_bf16`; network_flop_efficiency stays fp32 against fp32);
- bare loop: decode + predict, no Ray; the pipeline (the annotate job on one Ray that this
  bench starts; one actor pool, and split pools for comparison), each as a whole run and at
  steady state: images/s after the first batch, from the times the batches end (the bare loop)
  or leave the model actor (`pipeline.annotate.BatchClock`), not from output files (Ray Data
  writes them in a burst at the end);
- decode of the 12 MP JPEGs: a full decode shrunk to the working size vs `decode_reduced`;
- where the cores go during the pipeline run (`pipeline_core_use`, Linux): CPU seconds of the
  model actor, Ray's task workers, Ray's own services, this driver, anything else, and idle;
- the pipeline's bound: decode time of the corpus (one thread, per image) and the best network
  rate give the images/s that decoding and the networks sharing the cores losslessly would
  reach (`pipeline_bound_flop_efficiency`: what `pipeline_flop_efficiency` is read against);
- driver peak RSS (VmHWM of a `faceattr-ray annotate` process that joins the bench's Ray) over
  a streamed 1,000,000-row and a 100,000-row Parquet manifest, stopping after --rss-images.

    python bench/annotate.py                      # the bundled model (15-20 minutes, 2 idle cores)
    python bench/annotate.py --preset cpu         # the first rounds' random `cpu` preset
    python bench/annotate.py --device cuda        # on a GPU node: images/s and GPU utilisation
    python bench/annotate.py --smoke-test         # small images, the tiny preset: plumbing only
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

import _corpus

# torch.profiler (the network loop's profile) otherwise prints an ERROR line about GPUs on a CPU
# machine; it must be set before torch loads.
os.environ.setdefault("KINETO_LOG_LEVEL", "5")


def machine_gflops(device: str, seconds: float = 2.0, n: int = 2048, dtype=None) -> float:
    """This machine's rate for an n x n x n matrix product (torch's current thread count), fp32
    unless ``dtype`` says otherwise: the faster of the two ways torch computes it, its matmul
    (MKL on CPUs) and a 1x1 convolution (oneDNN, the library the networks' convolutions run
    in), each timed for half of ``seconds``: the limit then rests on no single library (on
    an AMD EPYC the networks' convolutions ran at 1.05x the matmul beside them)."""
    import torch
    import torch.nn.functional as F

    dtype = dtype or torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    # the same product as a convolution: n input channels at n positions, n filters of 1x1
    x = a.t().reshape(1, n, 32, n // 32).contiguous()
    w = b.t().reshape(n, n, 1, 1).contiguous()
    return max(_product_rate(lambda: a @ b, 2 * n**3, seconds / 2, device),
               _product_rate(lambda: F.conv2d(x, w), 2 * n**3, seconds / 2, device))


def _product_rate(product, flops: float, seconds: float, device: str) -> float:
    """GFLOP/s of ``product`` (``flops`` each call) over about ``seconds``, after two calls."""
    done, start = 0, None
    for i in range(10**6):
        if i == 2:  # two warm-up products
            _sync(device)
            start, done = time.perf_counter(), 0
        product()
        done += 1
        if start is not None and time.perf_counter() - start > seconds:
            break
    _sync(device)
    return flops * done / (time.perf_counter() - start) / 1e9


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


class GpuUtilisation:
    """Mean GPU utilisation (percent, nvidia-smi's) sampled every 0.2 s while in the block."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        import torch

        while not self._stop.is_set():
            try:
                self.samples.append(float(torch.cuda.utilization()))
            except Exception:  # no pynvml: ask nvidia-smi
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                      "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True).stdout.split()
                self.samples.extend(float(v) for v in out[:1])
            time.sleep(0.2)

    def __enter__(self) -> GpuUtilisation:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mean(self) -> float | None:
        return round(sum(self.samples) / len(self.samples), 1) if self.samples else None


# --- decoding ---------------------------------------------------------------------------------


def decode_work(paths: list[str]) -> list:
    from faceattr_ray.pipeline.annotate import batch_images, decode_batch

    batch = decode_batch({"path": paths}, None)
    return batch_images(batch, [k for k, s in enumerate(batch["status"]) if s == "ok"])


def decode_speedup(paths: list[str], rounds: int = 3) -> dict:
    """Full decode shrunk to the working size (annotate before draft mode) vs `decode_reduced`
    on the same files, alternated; best of ``rounds`` each."""
    import numpy as np
    from PIL import Image

    from faceattr_ray.data.decode import decode_image, decode_reduced
    from faceattr_ray.pipeline.annotate import WORK_MAX_SIDE, WORK_MIN_SIDE

    blobs = []
    for p in paths:
        with open(p, "rb") as f:
            blobs.append(f.read())

    def full(data: bytes) -> np.ndarray:
        image = decode_image(data)
        h, w = image.shape[:2]
        s = min(1.0, WORK_MAX_SIDE / max(h, w))
        return np.asarray(Image.fromarray(image).resize((round(w * s), round(h * s)),
                                                        Image.Resampling.BILINEAR))

    times = {"full": [], "draft": []}
    for _ in range(rounds):
        for name, fn in (("full", full),
                         ("draft", lambda d: decode_reduced(d, WORK_MAX_SIDE, WORK_MIN_SIDE))):
            start = time.perf_counter()
            for data in blobs:
                fn(data)
            times[name].append((time.perf_counter() - start) / len(blobs))
    full_ms, draft_ms = min(times["full"]) * 1e3, min(times["draft"]) * 1e3
    return {"full_ms": round(full_ms, 1), "draft_ms": round(draft_ms, 1),
            "speedup": round(full_ms / draft_ms, 2),
            "mean_mb": round(sum(map(len, blobs)) / len(blobs) / 2**20, 2)}


# --- the networks and the bare loop -----------------------------------------------------------


def cascade_flops(predictor, images: list) -> float:
    """Mean FLOPs per image of `Predictor.predict` on these images (convolutions, matmuls)."""
    from faceattr_ray.models.flops import count_flops

    return count_flops(predictor.predict, images) / len(images)


def network_rate(predictor, images: list, batch: int, count: int, device: str) -> float:
    """images/s of `Predictor.predict` alone on decoded images, after one warm-up batch."""
    predictor.predict(images[:batch])
    _sync(device)
    start, done = time.perf_counter(), 0
    while done < count:
        chunk = [images[(done + i) % len(images)] for i in range(batch)]
        predictor.predict(chunk)
        done += batch
    _sync(device)
    return done / (time.perf_counter() - start)


def profile_top(predictor, images: list, rows: int = 8) -> list[tuple[str, float]]:
    """Where the network loop's time goes: the share of each operator's self time in one
    `Predictor.predict` (torch.profiler, after a warm-up call), the ``rows`` largest."""
    from torch.profiler import ProfilerActivity, profile

    predictor.predict(images)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        predictor.predict(images)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return [(e.key, round(e.self_cpu_time_total / total, 3)) for e in top]


# the operators whose FLOPs torch.profiler counts that the cascade runs (a linear layer is
# counted under aten::addmm, its child)
FLOP_OPS = ("aten::conv2d", "aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def convolution_rate(predictor, images: list) -> dict:
    """The convolutions' own share of one `Predictor.predict` (torch.profiler, after a warm-up
    call): their FLOPs over their time (GFLOP/s, ``aten::conv2d`` inclusive of oneDNN's
    kernel), their share of the call's wall time and of the FLOPs it counts (``flops``, all
    it counts: what FlopCounterMode counts, `cascade_flops`). What bounds the
    network figure: with no time at all outside the convolutions, the loop would reach their
    rate divided by their FLOP share."""
    from torch.profiler import ProfilerActivity, profile

    predictor.predict(images)
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        start = time.perf_counter()
        predictor.predict(images)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    conv = [e for e in events if e.key == "aten::conv2d"]
    conv_flops = sum(e.flops for e in conv)
    conv_s = sum(e.cpu_time_total for e in conv) / 1e6
    all_flops = sum(e.flops for e in events if e.key in FLOP_OPS)
    return {"gflops": conv_flops / conv_s / 1e9 if conv_s else 0.0,
            "time_share": conv_s / wall, "flop_share": conv_flops / all_flops if all_flops else 0.0,
            "flops": all_flops}


def bare_loop(paths: list[str], predictor, batch: int, device: str) -> dict:
    """Decode + predict in one plain loop, no Ray: images/s whole and at steady state (after
    the first batch, `steady_rate` of the batches' end times, as the pipeline's actor logs)."""
    start = time.perf_counter()
    ticks = []
    for i in range(0, len(paths), batch):
        chunk = paths[i : i + batch]
        predictor.predict(decode_work(chunk))
        _sync(device)
        ticks.append((time.perf_counter(), len(chunk)))
    return {"whole": len(paths) / (ticks[-1][0] - start), "steady": steady_rate(ticks)}


def steady_rate(ticks: list[tuple[float, int]]) -> float | None:
    """images/s after the first batch: the images of every later batch over the time from the
    first batch's end to the last's. ``ticks``: (end time, images) per batch, in time order.
    None with fewer than two batches."""
    if len(ticks) < 2 or ticks[-1][0] <= ticks[0][0]:
        return None
    return sum(n for _, n in ticks[1:]) / (ticks[-1][0] - ticks[0][0])


# --- the pipeline -----------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    """VmHWM (the kernel's peak resident set) of one process, in MiB; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start_ray() -> str:
    """Start the one Ray of this bench (all CPUs, as `faceattr-ray annotate` does by default);
    its address, for the annotate processes that join it. Tried up to 4 times: Ray gives up
    after 30 s (fixed in Ray) when its raylet starts slowly on an overloaded machine."""
    import ray

    for attempt in range(1, 5):
        try:
            ray.init(include_dashboard=False, log_to_driver=False)
            return ray.get_runtime_context().gcs_address
        except Exception as e:  # noqa: BLE001 (Ray's start-up errors have no common type)
            ray.shutdown()
            print(f"bench: Ray did not start (attempt {attempt} of 4): {e}", flush=True)
    sys.exit("bench/annotate.py: Ray did not start in 4 attempts")


# Ray's own processes on a node, by the name they give themselves (15 characters of it)
RAY_SERVICES = ("gcs_server", "raylet", "ray::_", "ray::ActorLoc", "ray::Dashboard",
                "ray::RuntimeEnv", "ray::JobSuperv")


class CoreUse:
    """CPU seconds of every process on this machine while the block runs, by role: the model
    actor(s), Ray's task workers (decode and write tasks; idle workers too), Ray's own
    services (GCS, raylet, Ray Data's stats, autoscaling and locality actors, the dashboard
    agent), this driver, and anything else. Read from /proc every ``interval`` s; each
    interval's CPU goes to the name a process had at its end (Ray's workers rename themselves
    by task; a process that ends loses its last interval). ``result`` stays None where /proc
    is missing (not Linux)."""

    def __init__(self, interval: float = 0.25) -> None:
        self.interval, self.result = interval, None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _role(pid: int, name: str, me: int) -> str:
        if pid == me:
            return "driver"
        if name.startswith("ray::MapWorker"):
            return "model_actor"
        if name.startswith(RAY_SERVICES):
            return "ray_services"
        if name.startswith("ray::"):
            return "ray_tasks"
        return "other"

    @staticmethod
    def _sample() -> dict[int, tuple[str, float]]:
        tick, out = os.sysconf("SC_CLK_TCK"), {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        stat = f.read()
                except OSError:  # the process ended between listing and reading
                    continue
                fields = stat[stat.rindex(")") + 2:].split()  # utime, stime: fields 14, 15
                out[int(entry)] = (stat[stat.index("(") + 1:stat.rindex(")")],
                                   (int(fields[11]) + int(fields[12])) / tick)
        return out

    def _watch(self) -> None:
        me, last = os.getpid(), self._sample()
        roles = dict.fromkeys(("model_actor", "ray_tasks", "ray_services", "driver", "other"), 0.0)
        while not self._stop.wait(self.interval):
            now = self._sample()
            for pid, (name, cpu) in now.items():
                # a process new since the last sample spent all its CPU in this interval
                roles[self._role(pid, name, me)] += cpu - last.get(pid, (name, 0.0))[1]
            last = now
        self._roles = roles

    def __enter__(self) -> CoreUse:
        if os.path.isdir("/proc/self"):
            self._start = time.perf_counter()
            self._thread = threading.Thread(target=self._watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            wall = time.perf_counter() - self._start
            cores = os.cpu_count() or 1
            busy = sum(self._roles.values())
            self.result = {"wall_s": round(wall, 1), "cores": cores,
                           **{k: round(v, 1) for k, v in self._roles.items()},
                           "idle": round(max(0.0, cores * wall - busy), 1)}


def run_pipeline(inputs: str, model: str, out: str, batch: int, **options) -> dict:
    """The annotate job in this process, on the bench's Ray: its summary (images/s whole: from
    planning to the summary, the actors' start-up included) and its steady state, from the
    times the batches left the model actor(s) (`BatchClock`)."""
    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate, read_batch_clock

    clock = out + ".batches"
    summary = annotate([inputs], model, out, AnnotateOptions(batch_size=batch,
                                                             timing_log=clock, **options))
    ticks = read_batch_clock(clock)
    summary["batches"] = len(ticks)
    summary["steady_images_per_s"] = steady_rate(ticks)
    return summary


def driver_rss(inputs: str, model: str, out: str, batch: int, address: str,
               *extra: str) -> dict:
    """`faceattr-ray annotate` in a fresh process that joins the bench's Ray: its summary and
    that process's peak RSS (the driver alone, sampled every 0.1 s and read as VmHWM)."""
    cmd = [sys.executable, "-m", "faceattr_ray.cli", "annotate", inputs, "--model", model,
           "--output", out, "--batch-size", str(batch), "--address", address, *extra]
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    peak = [0.0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], peak_rss_mb(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"annotate failed:\n{output[-3000:]}")
    with open(os.path.join(out, "_SUMMARY.json")) as f:
        summary = json.load(f)
    summary["driver_peak_rss_mb"] = round(peak[0], 1)
    return summary


def write_manifest(path: str, rows: int, real: list[str]) -> None:
    """A Parquet manifest of ``rows`` distinct entries: the ``real`` files first, then names
    that are never reached (the run stops after len(real) images)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    fake = (f"/nonexistent/never-read/{i:08d}.jpg" for i in range(len(real), rows))
    pq.write_table(pa.table({"path": pa.array([*real, *fake], pa.string())}), path,
                   row_group_size=65536)


# --- main -------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=240, help="corpus size of the loops and runs")
    p.add_argument("--unique", type=int, default=24,
                   help="distinct generated photos; the corpus hard-links them under new names")
    p.add_argument("--model", default=None,
                   help="bundle, or a bundled model's name (default: the bundled model, "
                        "what `faceattr-ray annotate` runs when no --model is given)")
    p.add_argument("--preset", default=None,
                   help="random weights of this architecture preset instead of --model (the "
                        "'cpu' preset: the first rounds' figures)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--manifest-rows", type=int, nargs=2, default=(1_000_000, 100_000),
                   metavar=("LARGE", "SMALL"))
    p.add_argument("--rss-images", type=int, default=64,
                   help="images annotated from each manifest before it stops (--limit)")
    p.add_argument("--smoke-test", action="store_true",
                   help="small images, the tiny preset: the plumbing, not the figures")
    args = p.parse_args()
    if args.preset is not None:
        from faceattr_ray.presets import PRESETS

        if args.preset not in PRESETS:
            p.error(f"--preset: unknown preset {args.preset!r}; choose one of {PRESETS}")

    import numpy as np
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench/annotate.py: --device cuda: no CUDA GPU here "
                 "(torch.cuda.is_available() is False)")
    preset, sizes = args.preset, _corpus.SIZES
    sample_s = 2.0  # seconds of each matmul-rate sample
    if args.smoke_test:
        # batch 2: 6 batches leave the actor, so the steady state has 5 to time
        args.images, args.unique, args.batch_size, args.rss_images = 12, 6, 2, 4
        args.manifest_rows, preset = (10_000, 1_000), "tiny"
        sizes = ((64, 48), (160, 120), (400, 300))
        sample_s = 0.2

    from faceattr_ray.bundle import load_bundle, save_bundle
    from faceattr_ray.bundled import resolve_model
    from faceattr_ray.predictor import Predictor
    from faceattr_ray.presets import build_bundle
    from faceattr_ray.runtime import cpu_has_native_bf16

    work = tempfile.mkdtemp(prefix="bench-annotate-")
    try:
        if preset is not None:
            model = os.path.join(work, "model")
            save_bundle(model, build_bundle(preset, seed=0))
        else:
            model = resolve_model(args.model)
        unique = _corpus.make_mixed_corpus(os.path.join(work, "unique"), args.unique,
                                           sizes=sizes)
        paths = _corpus.link_images(os.path.join(work, "images"), unique, args.images)
        threads = torch.get_num_threads()
        device = args.device
        print(f"setting: {os.cpu_count()} CPUs, torch {threads} threads, device {device}, "
              f"{args.images} images cycling {args.unique} generated photos "
              f"({', '.join(f'{w}x{h}' for w, h in sizes)}; PNG, EXIF-rotated, no-face ones "
              f"among them), batch {args.batch_size}, model "
              f"{f'{preset} preset (random weights)' if preset is not None else model}")

        # The matmul rate of these machines moves up to 2x within minutes (other tenants), so
        # it is measured next to every figure it divides: before, between and after the
        # network rounds, and around the pipeline; each ratio uses the rates beside it.
        machine = [machine_gflops(device, sample_s)]
        print(f"machine: {machine[0]:.1f} GFLOP/s fp32, 2048^3 products: the faster of matmul and "
              f"a 1x1 convolution ({threads} threads)", flush=True)
        twelve = [u for u in unique if f"{sizes[2][0]}x{sizes[2][1]}" in u]
        decode = decode_speedup(twelve)
        print(f"decode of {len(twelve)} {sizes[2][0]}x{sizes[2][1]} JPEGs "
              f"({decode['mean_mb']} MiB each): full + shrink {decode['full_ms']} ms, draft "
              f"{decode['draft_ms']} ms: {decode['speedup']}x", flush=True)
        start = time.perf_counter()
        images = decode_work(unique)
        decode_s = (time.perf_counter() - start) / len(unique)  # one thread, the corpus' mix
        b = args.batch_size
        settings = {"fp32": ({"channels_last": False}, b),
                    "fp32 batch norm unfolded": ({"channels_last": False, "fold": False}, b),
                    "fp32 channels-last": ({"channels_last": True}, b),
                    "fp32 batch 8": ({}, 8), f"fp32 batch {2 * b}": ({}, 2 * b)}
        # A fresh bundle each: unfolded, the predictor runs the bundle's own networks, and
        # channels-last converts them in place.
        predictors = {name: Predictor(load_bundle(model, device=device), device, "lnet", **kw)
                      for name, (kw, _) in settings.items()}
        flops = cascade_flops(predictors["fp32"], images)
        print(f"cascade: {flops / 1e9:.3f} GFLOPs per image of this corpus (mean)", flush=True)
        # Settings alternate over two rounds, best of each kept: a shared machine's load
        # drifts, and one long turn each would hand the drift to one setting.
        rates: dict[str, list[float]] = {name: [] for name in settings}
        for _ in range(2):
            for name, (_, batch) in settings.items():
                count = max(2 * batch, len(images) // 2)
                rates[name].append(network_rate(predictors[name], images, batch, count, device))
            machine.append(machine_gflops(device, sample_s))
        variants = {name: {"images_per_s": round(max(r), 2),
                           "gflops": round(max(r) * flops / 1e9, 2)}
                    for name, r in rates.items()}
        for name, v in variants.items():
            print(f"network loop, {name}: {json.dumps(v)}", flush=True)
        best = max(variants, key=lambda k: variants[k]["images_per_s"])
        # The best setting against the matmul rate in short alternating turns (a batch, then
        # about as long of matmuls, 8 times): the rate moved 145 -> 79 GFLOP/s within a minute
        # on these machines, and alternating hands any drift to both sides alike.
        turns = []
        for _ in range(8):
            rate = network_rate(predictors[best], images, settings[best][1], settings[best][1],
                                device)
            turns.append(rate * flops / 1e9 / machine_gflops(device, settings[best][1] / rate))
        turn_efficiency = sorted(turns)
        print("machine around the network rounds: "
              + ", ".join(f"{g:.1f}" for g in machine) + " GFLOP/s; network over matmul in 8 "
              "alternating turns: " + ", ".join(f"{e:.3f}" for e in turns), flush=True)
        top = profile_top(predictors[best], images[: settings[best][1]])
        # The convolutions alone against the machine's rate, in alternating turns as above: how
        # close the kernels themselves come, which no change around them can pass (CPU only:
        # a GPU's profile times the launches, not the kernels).
        conv = None
        if device == "cpu":
            samples = []
            for _ in range(3):
                one = convolution_rate(predictors[best], images[: settings[best][1]])
                one["efficiency"] = one["gflops"] / machine_gflops(device, sample_s)
                samples.append(one)
            conv = {k: round(float(np.median([one[k] for one in samples])), 3)
                    for k in ("gflops", "efficiency", "time_share", "flop_share")}
            print(f"network loop, the convolutions alone ({best}): {conv['gflops']:.1f} GFLOP/s "
                  f"= {conv['efficiency']:.3f} of the machine's rate beside them, "
                  f"{conv['time_share']:.0%} of the loop's time, {conv['flop_share']:.0%} of "
                  f"its FLOPs (3 turns, medians)", flush=True)
        # bf16 autocast (`--precision bf16`), where the chip computes in bf16: alternated with
        # the best fp32 setting; read against both matmul rates, since its own is far higher.
        bf16 = None
        if device == "cpu" and cpu_has_native_bf16():
            kw, batch = settings[best]
            low = Predictor(load_bundle(model, device=device), device, "lnet", precision="bf16",
                            **kw)
            pair: dict[str, list[float]] = {"fp32": [], "bf16": []}
            for _ in range(2):
                for name, pred in (("fp32", predictors[best]), ("bf16", low)):
                    pair[name].append(network_rate(pred, images, batch,
                                                   max(2 * batch, len(images) // 2), device))
            around = [machine_gflops(device, sample_s),
                      machine_gflops(device, sample_s, dtype=torch.bfloat16)]
            rate = max(pair["bf16"])
            bf16 = {"images_per_s": round(rate, 2), "speedup": round(rate / max(pair["fp32"]), 3),
                    "over_fp32_matmul": round(rate * flops / 1e9 / around[0], 3),
                    "over_bf16_matmul": round(rate * flops / 1e9 / around[1], 3),
                    "machine_bf16_gflops": round(around[1], 1)}
            print(f"network loop, bf16 autocast ({best}): {json.dumps(bf16)}", flush=True)
        print("network loop profile, share of its time by operator (torch.profiler, self "
              "time): " + ", ".join(f"{name} {share:.0%}" for name, share in top), flush=True)
        if device == "cuda":
            with GpuUtilisation() as util:
                variants["auto precision"] = {"images_per_s": round(network_rate(
                    Predictor(load_bundle(model, device=device), device, "lnet"), images,
                    args.batch_size, 4 * args.batch_size, device), 2)}
            variants["auto precision"]["gpu_utilisation"] = util.mean
        predictor = Predictor(load_bundle(model, device=device), device, "lnet")
        bare = bare_loop(paths, predictor, args.batch_size, device)
        print(f"bare loop: {bare['whole']:.2f} images/s whole, {bare['steady'] or 0:.2f} steady",
              flush=True)
        # One Ray for every run, started after the loops so they have the cores to themselves.
        address = start_ray()
        gpu = {"num_gpus": 1.0} if device == "cuda" else {}
        images_dir = os.path.join(work, "images")
        before = machine_gflops(device, sample_s)
        with CoreUse() as use:
            pipe = run_pipeline(images_dir, model, os.path.join(work, "out"), args.batch_size,
                                **gpu)
        pipe_gflops = (before + machine_gflops(device, sample_s)) / 2
        print(f"machine around the pipeline: {pipe_gflops:.1f} GFLOP/s", flush=True)
        print(f"pipeline:  {pipe['images_per_s']:.2f} images/s whole, "
              f"{pipe['steady_images_per_s'] or 0:.2f} steady ({pipe['batches']} batches "
              "timed as they left the actor)", flush=True)
        if use.result:
            print("pipeline, where the cores went (CPU seconds over the run): "
                  + json.dumps(use.result), flush=True)
        split = run_pipeline(images_dir, model, os.path.join(work, "split"), args.batch_size,
                             stages="split", **gpu)
        large, small = args.manifest_rows
        rss = {}
        extra = ["--num-gpus", "1"] if device == "cuda" else []
        for rows in (large, small):
            manifest = os.path.join(work, f"manifest-{rows}.parquet")
            write_manifest(manifest, rows, paths[: args.rss_images])
            run = driver_rss(manifest, model, os.path.join(work, f"out-{rows}"),
                             args.batch_size, address, "--limit", str(args.rss_images), *extra)
            assert run["images"] == args.rss_images, run
            rss[rows] = run["driver_peak_rss_mb"]

        net = variants[best]["gflops"]
        pipe_whole, pipe_steady = pipe["images_per_s"], pipe["steady_images_per_s"]
        # What the pipeline could reach if decoding (d s of one core per image, spread over
        # the cores) and the networks (1/R s of all cores per image) shared the cores with no
        # loss at all: 1 / (d / cores + 1 / R). The pipeline's figure is read against it.
        cores = os.cpu_count() or 1
        bound = 1.0 / (decode_s / cores + 1.0 / variants[best]["images_per_s"])
        print(f"decode of the corpus: {decode_s * 1e3:.1f} ms per image (one thread); "
              f"pipeline bound on {cores} cores: {bound:.2f} images/s = "
              f"{bound * flops / 1e9 / pipe_gflops:.3f} of the matmul rate", flush=True)
        if device == "cuda":
            print(f"network loop, auto precision: {json.dumps(variants['auto precision'])}")
        print(f"pipeline:  {pipe_whole:.2f} images/s whole (actor start-up included), "
              f"{pipe_steady or 0:.2f} steady (after the first batch left the actor)")
        print(f"split pools (LNets | ANet + heads): {split['images_per_s']:.2f} images/s whole, "
              f"{split['steady_images_per_s'] or 0:.2f} steady; "
              f"{split['images_per_s'] / pipe_whole:.2f}x the one-pool pipeline whole")
        print(f"driver peak RSS, streamed manifest: {rss[large]:.0f} MiB for {large:,} rows, "
              f"{rss[small]:.0f} MiB for {small:,} rows (stopping after {args.rss_images})")
        result = {
            "machine_gflops": round(float(np.median(machine + [pipe_gflops])), 2),
            "machine_gflops_samples": [round(g, 1) for g in machine] + [round(pipe_gflops, 1)],
            "cascade_gflops_per_image": round(flops / 1e9, 4),
            "network_setting": best,
            "network_images_per_s": variants[best]["images_per_s"],
            "network_gflops": net,
            "network_flop_efficiency": round(float(np.median(turn_efficiency)), 3),
            "network_turn_efficiency": [round(e, 3) for e in turn_efficiency],
            "network_profile_top": top,
            # the convolutions' own rate over the machine's rate, and what the network figure
            # would be with nothing else taking time (None on a GPU)
            "convolution_flop_efficiency": conv and conv["efficiency"],
            "convolution_time_share": conv and conv["time_share"],
            "convolution_bound_flop_efficiency": conv and (
                round(conv["efficiency"] / conv["flop_share"], 3) if conv["flop_share"] else None),
            "network_bf16": bf16,
            "bare_images_per_s": round(bare["whole"], 2),
            "bare_steady_images_per_s": round(bare["steady"] or 0, 2),
            "pipeline_images_per_s": pipe_whole,
            "pipeline_steady_images_per_s": round(pipe_steady or 0, 2),
            "pipeline_flop_efficiency": round((pipe_steady or 0) * flops / 1e9 / pipe_gflops, 3),
            "decode_ms_per_image": round(decode_s * 1e3, 1),
            "pipeline_bound_images_per_s": round(bound, 2),
            "pipeline_bound_flop_efficiency": round(bound * flops / 1e9 / pipe_gflops, 3),
            "whole_run_ratio": round(pipe_whole / bare["whole"], 3),
            "split_pools_images_per_s": split["images_per_s"],
            "split_over_one_pool": round(split["images_per_s"] / pipe_whole, 3),
            "split_pools_steady_images_per_s": round(split["steady_images_per_s"] or 0, 2),
            "steady_ratio": round((pipe_steady or 0) / bare["steady"], 3) if bare["steady"]
            else None,
            "pipeline_timed_batches": pipe["batches"],
            "pipeline_core_use": use.result,
            "decode_12mp_speedup": decode["speedup"],
            "decode_12mp_ms": [decode["full_ms"], decode["draft_ms"]],
            "driver_rss_mb": [rss[large], rss[small]],
            "driver_rss_1m_over_100k": round(rss[large] / rss[small], 3),
            "device": device, "images": args.images, "threads": threads,
        }  # fmt: skip
        if device == "cuda":
            result["gpu_utilisation"] = variants["auto precision"]["gpu_utilisation"]
            result["gpu_auto_precision_images_per_s"] = variants["auto precision"]["images_per_s"]
        print(json.dumps(result))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
