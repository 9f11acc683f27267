"""The training machinery the three jobs share: one step logic, run either by Ray Train or locally.

A job (see `Job`) says how to build its network, which rows (paths + labels) make each split,
how a batch of rows becomes pixels (decode + augment, on CPU: in Ray Data `map_batches` tasks,
or in-process for the local path) and what its loss is. `train_epoch` and `validate` are the only
step loops; `ray_worker_loop` (Ray Train, DDP, checkpoints, resume) and `fit_local` (plain Python,
no Ray) both call them.
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import math
import os
import queue
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from faceattr_ray.errors import RecipeError
from faceattr_ray.runtime import DECODE_CPUS, amp_dtype, init_ray, pick_device, to_channels_last

# Job name -> "module:attribute" of its `Job`; imported lazily so Ray workers load only theirs.
JOBS = {
    "lnet-pretrain": "faceattr_ray.train.lnet_pretrain:JOB",
    "anet-pretrain": "faceattr_ray.train.anet_pretrain:JOB",
    "finetune-lnet_o": "faceattr_ray.train.finetune:LNET_O_JOB",
    "finetune-lnet_s": "faceattr_ray.train.finetune:LNET_S_JOB",
    "finetune-anet": "faceattr_ray.train.finetune:ANET_JOB",
    "parsing": "faceattr_ray.train.ssp_ssg:PARSING_JOB",
    "finetune-ssp-ssg": "faceattr_ray.train.ssp_ssg:JOINT_JOB",
}

Batch = dict[str, np.ndarray]
Rows = list[dict[str, Any]]


@dataclass
class Job:
    """What one training job provides. Every function is module-level, so Ray can ship it."""

    name: str
    # config -> a fresh model; `.net` is the network itself, the wrapper routes DDP's forward
    build: Callable[[dict], nn.Module]
    # (config, "train" | "val") -> rows of paths + labels (metadata only; runs on the driver)
    rows: Callable[[dict, str], Rows]
    # (rows as columns, config, augment?, rng) -> {"image": (N, H, W, 3) uint8, "label": ...}
    transform: Callable[[Batch, dict, bool, np.random.Generator], Batch]
    # (model, batch on device, config) -> (loss, {"correct": .., "count": ..} for accuracy)
    loss: Callable[[nn.Module, dict[str, torch.Tensor], dict], tuple[torch.Tensor, dict]]


def get_job(name: str) -> Job:
    module, attr = JOBS[name].split(":")
    return getattr(importlib.import_module(module), attr)


# --- device, precision ------------------------------------------------------------------------


def autocast(device: torch.device, cfg: dict):
    """Autocast at the job's ``precision`` (`runtime.PRECISIONS`; "auto": bf16, or fp16 on older
    GPUs, on a GPU and float32 on a CPU); a no-op at float32."""
    dtype = amp_dtype(cfg.get("precision", "auto"), device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def make_scaler(device: torch.device, cfg: dict) -> torch.amp.GradScaler:
    # Only fp16 needs loss scaling; bf16 has float32's exponent range.
    fp16 = amp_dtype(cfg.get("precision", "auto"), device) == torch.float16
    return torch.amp.GradScaler(device.type, enabled=fp16)


def channels_last(device: torch.device, cfg: dict) -> bool:
    """Whether the job runs its convolutions channels-last (NHWC): cfg["channels_last"], by
    default on a GPU only (cuDNN's fast layout)."""
    choice = cfg.get("channels_last")
    return device.type == "cuda" if choice is None else bool(choice)


def preprocess_of(cfg: dict):
    """The job's `models.Preprocess` (the one the bundle will carry)."""
    from faceattr_ray.models import Preprocess

    return Preprocess.from_dict(cfg.get("preprocess"))


def batch_to_device(batch: dict, device: torch.device, cfg: dict) -> dict[str, torch.Tensor]:
    """Tensors on the training device. Images cross the object store as uint8 (4x smaller than
    float32) and are normalised here, by the job's preprocessing; on GPU they are channels-last
    (the convs' fast layout)."""
    out = {}
    for key, value in batch.items():
        if key == "image":
            x = preprocess_of(cfg).normalize(value, device)
            if channels_last(device, cfg):
                x = x.contiguous(memory_format=torch.channels_last)
            out[key] = x
        else:
            out[key] = torch.as_tensor(value).to(device, non_blocking=True)
    return out


class Route(nn.Module):
    """Sends `forward` to one method of a network.

    DDP synchronises gradients only for computations that go through its own forward, so a job
    that needs `LNet.classify` (not `LNet.forward`) trains `Route(lnet, "classify")`.
    """

    def __init__(self, net: nn.Module, method: str):
        super().__init__()
        self.net = net
        self.method = method

    def forward(self, x: torch.Tensor):
        return getattr(self.net, self.method)(x)


def load_matching(net: nn.Module, state: dict) -> list[str]:
    """Copy the tensors whose name and shape match (heads of another task are left out).
    Returns the names left at their fresh initialisation."""
    own = net.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(kept, strict=False)
    return sorted(set(own) - set(kept))


def unwrap(model: nn.Module) -> nn.Module:
    """The network inside a DDP wrapper (or the network itself)."""
    return getattr(model, "module", model)


def check_ema_decay(decay: float | None) -> float | None:
    """`decay` itself where it is unset or strictly between 0 and 1; else a one-line error."""
    if decay is not None and not (isinstance(decay, int | float) and 0.0 < decay < 1.0):
        raise RecipeError(f"ema_decay must lie strictly between 0 and 1 (or be null), "
                          f"got {decay!r}")
    return decay


def weight_average(model: nn.Module, decay: float | None) -> AveragedModel | None:
    """An exponential moving average of `model`'s weights and batch-norm statistics, updated by
    `.update_parameters(model)` after each step (torch's own; None when `decay` is unset)."""
    if check_ema_decay(decay) is None:
        return None
    return AveragedModel(unwrap(model), multi_avg_fn=get_ema_multi_avg_fn(decay),
                         use_buffers=True)


def kept(model: nn.Module, average: AveragedModel | None) -> nn.Module:
    """The network a run validates and returns: the weight average where one is kept."""
    return unwrap(model) if average is None else average.module


def make_optimizer(model: nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """SGD with momentum (`optimizer` "sgd", the paper's) or AdamW ("adamw")."""
    params = [p for p in model.parameters() if p.requires_grad]
    kind = cfg.get("optimizer", "sgd")
    if kind == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg.get("momentum", 0.9),
                               weight_decay=cfg.get("weight_decay", 5e-4))
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg.get("weight_decay", 5e-4))
    raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {kind!r}")


SCHEDULES = ("constant", "cosine")


def lr_factor(cfg: dict, progress: float) -> float:
    """Multiplier of cfg["lr"] at `progress` (0 = start, 1 = end of the last epoch).

    "constant": 1 (after warm-up). "cosine": linear warm-up over `warmup_epochs`, then cosine
    decay to 0 at the end (a decaying rate settles a small training set; figures in the README).
    """
    schedule = cfg.get("schedule", "constant")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    warm = cfg.get("warmup_epochs", 0) / max(cfg["epochs"], 1)
    if warm > 0 and progress < warm:
        return max(progress / warm, 1e-3)
    if schedule == "constant":
        return 1.0
    rest = (progress - warm) / max(1.0 - warm, 1e-9)
    return 0.5 * (1.0 + math.cos(math.pi * min(max(rest, 0.0), 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, cfg: dict, epoch: int, step: int,
           steps_per_epoch: int) -> None:
    progress = (epoch + min(step / max(steps_per_epoch, 1), 1.0)) / max(cfg["epochs"], 1)
    for group in optimizer.param_groups:
        group["lr"] = cfg["lr"] * lr_factor(cfg, progress)


def count_images(rows: Rows) -> int:
    """Images in `rows` (an identity-group row holds several in "paths")."""
    return sum(len(r["paths"]) if "paths" in r else 1 for r in rows)


# --- the step logic (both paths) --------------------------------------------------------------


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                batches: Iterable[dict], job: Job, cfg: dict, device: torch.device,
                max_steps: int | None = None, epoch: int = 0,
                epoch_steps: int | None = None,
                average: AveragedModel | None = None) -> dict[str, float]:
    """One pass over `batches`: forward, loss, backward, step. Returns sums for the epoch.

    With `epoch_steps` (steps in an epoch), the learning rate follows cfg["schedule"] per step;
    `average` (`weight_average`) follows the weights after every step.
    """
    model.train()
    loss_sum, images, steps, correct, count = 0.0, 0, 0, 0.0, 0.0
    start = time.perf_counter()
    for batch in batches:
        if epoch_steps:
            set_lr(optimizer, cfg, epoch, steps, epoch_steps)
        tensors = batch_to_device(batch, device, cfg)
        n = len(tensors["image"])
        with autocast(device, cfg):
            loss, stats = job.loss(model, tensors, cfg)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if average is not None:
            average.update_parameters(unwrap(model))
        # Tensors stay on the device until the epoch ends (no GPU sync per step).
        loss_sum = loss_sum + loss.detach().float() * n
        images += n
        correct = correct + stats.get("correct", 0.0)
        count = count + stats.get("count", 0.0)
        steps += 1
        if max_steps is not None and steps >= max_steps:
            break
    loss_sum, correct, count = float(loss_sum), float(correct), float(count)
    return {"loss_sum": loss_sum, "images": images, "correct": correct, "count": count,
            "seconds": time.perf_counter() - start, "steps": steps}


@torch.no_grad()
def validate(model: nn.Module, batches: Iterable[dict], job: Job, cfg: dict,
             device: torch.device) -> dict[str, float]:
    """Loss and accuracy sums over `batches` (the validation split), no gradients."""
    model.eval()
    loss_sum, images, correct, count = 0.0, 0, 0.0, 0.0
    for batch in batches:
        tensors = batch_to_device(batch, device, cfg)
        n = len(tensors["image"])
        with autocast(device, cfg):
            loss, stats = job.loss(model, tensors, cfg)
        loss_sum += float(loss) * n
        images += n
        correct += float(stats.get("correct", 0.0))
        count += float(stats.get("count", 0.0))
    return {"loss_sum": loss_sum, "images": images, "correct": correct, "count": count}


def epoch_metrics(epoch: int, train: dict, val: dict | None, world_size: int) -> dict:
    """Turn summed statistics (over all workers) into the per-epoch metrics we report."""
    m = {
        "epoch": epoch,
        "loss": train["loss_sum"] / max(train["images"], 1),
        "train_accuracy": train["correct"] / train["count"] if train["count"] else math.nan,
        "images": int(train["images"]),
        # Throughput of one worker: its images over its own wall time, averaged over workers.
        "images_per_s_per_worker": train["images_per_s"] / world_size,
        "images_per_s": train["images_per_s"],
    }
    if val is not None and val["images"]:
        m["val_loss"] = val["loss_sum"] / val["images"]
        m["val_accuracy"] = val["correct"] / val["count"] if val["count"] else math.nan
    return m


# --- rows -> batches ----------------------------------------------------------------------------


def rows_to_batch(rows: Rows) -> Batch:
    """Column-wise numpy arrays from a list of row dicts (the format Ray Data hands to tasks)."""
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        try:
            out[key] = np.asarray(values)
        except ValueError:  # ragged lists (identity groups): an object array, as Ray Data gives
            out[key] = np.empty(len(values), dtype=object)
            out[key][:] = [np.asarray(v) for v in values]
    return out


def local_batches(job: Job, cfg: dict, rows: Rows, batch_size: int, train: bool,
                  rng: np.random.Generator) -> Iterator[Batch]:
    """The local path's loader: the same `job.transform` as the Ray Data tasks, in-process."""
    order = rng.permutation(len(rows)) if train and cfg.get("shuffle", True) else range(len(rows))
    order = list(order)
    for i in range(0, len(order), batch_size):
        chunk = [rows[j] for j in order[i:i + batch_size]]
        yield job.transform(rows_to_batch(chunk), cfg, train and cfg.get("augment", True), rng)


def prefetched(batches: Iterable[Batch], depth: int = 2) -> Iterator[Batch]:
    """``batches``, made by a background thread up to ``depth`` ahead, so that making them
    (decoding, augmenting, pasting scenes: PIL and numpy, which release the GIL) can overlap
    the step on the batch before (the LNet scene loop; for the jobs' ``prefetch`` it measured
    neutral on 2 cores, bench/prefetch.py).
    The same batches in the same order, so every random draw is the one a plain loop makes;
    an error in making a batch is raised here; stopping early waits for the ``depth`` batches
    in hand and ends the thread."""
    end = object()
    it = iter(batches)
    with ThreadPoolExecutor(1, thread_name_prefix="batch-prefetch") as pool:
        pending = deque(pool.submit(next, it, end) for _ in range(depth))
        while True:
            item = pending.popleft().result()
            if item is end:
                return
            pending.append(pool.submit(next, it, end))
            yield item


def _batch_process(job_name: str, cfg: dict, rows: Rows, tasks, out) -> None:
    """`BatchProcess`'s child: makes each asked-for epoch of batches, then hands back the rng."""
    torch.set_num_threads(1)  # it decodes and augments; the parent's threads run the network
    job = get_job(job_name)
    while (task := tasks.get()) is not None:
        batch_size, train, state, limit = task
        rng = np.random.default_rng()
        rng.bit_generator.state = state
        try:
            for batch in itertools.islice(local_batches(job, cfg, rows, batch_size, train, rng),
                                          limit):
                out.put(("batch", batch))
        except Exception as e:  # noqa: BLE001 -- raised again in the parent, by type and text
            out.put(("error", (type(e).__name__, str(e))))
            continue
        out.put(("end", rng.bit_generator.state))


class BatchProcess:
    """A job's batches made by a child process while this one runs the step
    (``prefetch: "process"``). A thread cannot overlap them on a small machine: making a batch
    is mostly Python that holds the GIL (bench/prefetch.py, ANet on 2 cores: a thread 0.98x
    in an earlier stop; a process 1.21x and 0.99x in two runs: noisy). The child makes exactly the batches `local_batches` makes
    with the caller's rng, and hands the rng's state back at the end of each epoch, so the
    weights equal the plain loop's (tests/test_train.py)."""

    def __init__(self, job: Job, cfg: dict, rows: Rows, depth: int = 2) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # no fork of a process with torch threads
        self._tasks, self._out = ctx.Queue(), ctx.Queue(maxsize=depth)
        self._child = ctx.Process(target=_batch_process, name="batch-process", daemon=True,
                                  args=(job.name, cfg, rows, self._tasks, self._out))
        self._child.start()

    def batches(self, batch_size: int, train: bool, rng: np.random.Generator,
                limit: int | None = None) -> Iterator[Batch]:
        """One epoch of batches (at most ``limit``); ``rng`` continues where the child's
        draws ended once the last one is taken. Take them all (``max_steps`` batches are
        all: the child makes no more)."""
        self._tasks.put((batch_size, train, rng.bit_generator.state, limit))
        while True:
            kind, item = self._receive()
            if kind == "batch":
                yield item
            elif kind == "end":
                rng.bit_generator.state = item
                return
            else:
                name, text = item
                raise RuntimeError(f"making a batch failed: {name}: {text}")

    def _receive(self) -> tuple[str, object]:
        """The child's next message; an error, not a hang, if the child has died."""
        while True:
            try:
                return self._out.get(timeout=5.0)
            except queue.Empty:
                if not self._child.is_alive():
                    raise RuntimeError(
                        f"the batch process died (exit code {self._child.exitcode}; out of "
                        "memory? or a script that starts training without an "
                        "`if __name__ == \"__main__\":` guard)") from None

    def close(self) -> None:
        if self._child.is_alive():
            self._tasks.put(None)
            self._child.join(timeout=10)
        if self._child.is_alive():
            self._child.terminate()
        for q in (self._tasks, self._out):  # a dead child's queues must not hold up exit
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> BatchProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def transform_task(batch: Batch, job_name: str, cfg: dict, train: bool) -> Batch:
    """Ray Data `map_batches` body: decode + augment rows on a CPU task."""
    # Fresh entropy per task: augmentation differs each epoch; eval transforms ignore the rng.
    augment = train and cfg.get("augment", True)
    return get_job(job_name).transform(batch, cfg, augment, np.random.default_rng())


def ray_dataset(job: Job, cfg: dict, split: str, train: bool):
    """A Ray Dataset of this split's rows (paths + labels only), decoded lazily by CPU tasks."""
    import ray.data

    rows = job.rows(cfg, split)
    if not rows:
        return None
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows) // 64, 200)))
    if train and cfg.get("shuffle", True):
        # Metadata only, so the global shuffle is cheap; unseeded = a new order every epoch.
        ds = ds.random_shuffle()
    return ds.map_batches(transform_task, fn_kwargs={"job_name": job.name, "cfg": cfg,
                                                     "train": train},
                          batch_format="numpy", batch_size=cfg.get("decode_batch", 32),
                          num_cpus=cfg.get("decode_cpus", DECODE_CPUS))


# --- checkpoints --------------------------------------------------------------------------------

STATE_FILE = "state.pt"


def save_state(directory: str, model: nn.Module, optimizer: torch.optim.Optimizer | None,
               epoch: int, cfg: dict, metrics: dict | None = None,
               average: AveragedModel | None = None) -> None:
    """Model + optimizer + epoch (+ the weight average), loadable with
    `torch.load(weights_only=True)`."""
    state = {"model": unwrap(model).state_dict(), "epoch": epoch}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if average is not None:
        state["average"] = average.state_dict()
    torch.save(state, os.path.join(directory, STATE_FILE))
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({"config": cfg, "metrics": metrics or {}}, f, indent=1, default=str)


def averaged_weights(average_state: dict) -> dict:
    """The network's own state dict inside a saved `AveragedModel` state."""
    return {k.removeprefix("module."): v for k, v in average_state.items()
            if k.startswith("module.")}


def load_state(directory: str) -> dict:
    return torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=True)


# --- Ray Train ----------------------------------------------------------------------------------


def _all_reduce_sums(stats: dict, keys: list[str], device: torch.device) -> dict:
    """Sum the given statistics over all workers (no-op with one worker)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return dict(stats)
    t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    out = dict(stats)
    out.update({k: float(v) for k, v in zip(keys, t.tolist(), strict=True)})
    return out


_SUM_KEYS = ["loss_sum", "images", "correct", "count", "images_per_s"]


def ray_worker_loop(cfg: dict) -> None:
    """The Ray Train worker function (every rank runs it)."""
    import ray.train
    import ray.train.torch

    job = get_job(cfg["job"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.manual_seed(cfg["seed"])  # same initial weights on every rank (DDP also broadcasts)
    device = ray.train.torch.get_device() if cfg.get("use_gpu") else torch.device("cpu")

    model = job.build(cfg)
    if cfg.get("init_state_ref") is not None:
        import ray

        load_matching(model.net, ray.get(cfg["init_state_ref"]))
    start_epoch, opt_state, average_state = 0, None, None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_state(d)
        model.load_state_dict(state["model"])
        opt_state, average_state = state.get("optimizer"), state.get("average")
        start_epoch = state["epoch"] + 1
        if rank == 0:
            print(f"[{cfg['job']}] resuming from the checkpoint of epoch {state['epoch']}")
    model = model.to(device)
    if channels_last(device, cfg):
        to_channels_last(model)
    optimizer = make_optimizer(model, cfg)
    if opt_state is not None:
        optimizer.load_state_dict(opt_state)
    average = weight_average(model, cfg.get("ema_decay"))
    if average is not None and average_state is not None:
        average.load_state_dict(average_state)
    model = ray.train.torch.prepare_model(model)
    scaler = make_scaler(device, cfg)
    per_worker = max(1, cfg["batch_size"] // world)
    epoch_steps = math.ceil(cfg.get("train_images", 0) / world / per_worker) or None

    for epoch in range(start_epoch, cfg["epochs"]):
        _maybe_crash(cfg, epoch)
        shard = ray.train.get_dataset_shard("train")
        batches = shard.iter_torch_batches(batch_size=per_worker, drop_last=False)
        stats = train_epoch(model, optimizer, scaler, batches, job, cfg, device,
                            max_steps=cfg.get("max_steps"), epoch=epoch,
                            epoch_steps=epoch_steps, average=average)
        stats["images_per_s"] = stats["images"] / max(stats["seconds"], 1e-9)
        stats = _all_reduce_sums(stats, _SUM_KEYS, device)
        val = None
        if cfg.get("has_val"):
            val_batches = ray.train.get_dataset_shard("val").iter_torch_batches(
                batch_size=per_worker)
            val = validate(kept(model, average), val_batches, job, cfg, device)
            val = _all_reduce_sums(val, _SUM_KEYS[:4], device)
        metrics = epoch_metrics(epoch, stats, val, world)
        metrics["start_epoch"] = start_epoch  # > 0 when this attempt resumed from a checkpoint
        with tempfile.TemporaryDirectory() as d:
            ckpt = None
            if rank == 0:
                save_state(d, model, optimizer, epoch, cfg, metrics, average)
                ckpt = ray.train.Checkpoint.from_directory(d)
                print(format_progress(cfg["job"], metrics, cfg["epochs"]), flush=True)
            ray.train.report(metrics, checkpoint=ckpt)


def _maybe_crash(cfg: dict, epoch: int) -> None:
    """Test hook: exit the worker process once, at `crash_epoch`, to exercise FailureConfig."""
    marker = cfg.get("crash_marker")
    if marker and epoch == cfg.get("crash_epoch", 1) and not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("crashed once\n")
        time.sleep(cfg.get("crash_delay_s", 3.0))  # let the controller register the last report
        os._exit(1)


def format_progress(job: str, m: dict, epochs: int) -> str:
    parts = [f"[{job}] epoch {m['epoch'] + 1}/{epochs}", f"loss {m['loss']:.4f}"]
    if not math.isnan(m.get("train_accuracy", math.nan)):
        parts.append(f"train acc {m['train_accuracy']:.3f}")
    if "val_accuracy" in m:
        parts.append(f"val loss {m['val_loss']:.4f} val acc {m['val_accuracy']:.3f}")
    parts.append(f"{m['images_per_s_per_worker']:.1f} img/s/worker")
    return "  ".join(parts)


def _worker_cpus(num_workers: int, use_gpu: bool) -> float:
    """CPUs per training worker, leaving room for the decode tasks (see the 2-core trap)."""
    import ray

    total = ray.cluster_resources().get("CPU", 1.0)
    if use_gpu:
        return 1.0
    return max(0.25, min(1.0, total / (num_workers + 1)))


def fit_ray(cfg: dict, init_state: dict | None = None) -> tuple[nn.Module, dict]:
    """Run one job on Ray Train; return the trained model (on CPU) and the last metrics.

    `cfg` needs job, epochs, batch_size, lr, seed, num_workers, use_gpu, storage_path, run_name,
    max_failures plus the job's own keys. The same run_name + storage_path resumes.
    `init_state`: weights to start from (matching names/shapes), shipped through the object
    store so workers on other nodes get them too.
    """
    import ray
    import ray.train
    from ray.train.torch import TorchTrainer

    job = get_job(cfg["job"])
    init_ray()  # joins RAY_ADDRESS or the caller's Ray; else an embedded one
    train_ds = ray_dataset(job, cfg, "train", train=True)
    if train_ds is None:
        from faceattr_ray.errors import DataError

        raise DataError(f"{cfg.get('data')}: no training images for {cfg['job']}")
    val_ds = ray_dataset(job, cfg, "val", train=False)
    # Ray workers batch images, not rows: the LR schedule counts its steps from this.
    cfg = dict(cfg, has_val=val_ds is not None, train_images=count_images(job.rows(cfg, "train")))
    if init_state is not None:
        cfg["init_state_ref"] = ray.put(init_state)
    datasets = {"train": train_ds} | ({"val": val_ds} if val_ds is not None else {})
    storage = cfg["storage_path"]
    if "://" not in storage:
        storage = os.path.abspath(storage)
    trainer = TorchTrainer(
        ray_worker_loop,
        train_loop_config=cfg,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg["num_workers"], use_gpu=cfg["use_gpu"],
            resources_per_worker={"CPU": _worker_cpus(cfg["num_workers"], cfg["use_gpu"])}
            | ({"GPU": 1} if cfg["use_gpu"] else {})),
        run_config=ray.train.RunConfig(
            name=cfg["run_name"], storage_path=storage,
            failure_config=ray.train.FailureConfig(max_failures=cfg["max_failures"]),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.get("keep", 2))),
        datasets=datasets,
    )
    result = trainer.fit()
    if result.checkpoint is None:
        raise RuntimeError(f"{cfg['job']}: the run ended without a checkpoint")
    with result.checkpoint.as_directory() as d:
        state = load_state(d)
        with open(os.path.join(d, "config.json")) as f:
            metrics = json.load(f)["metrics"]
    model = job.build(cfg)
    model.load_state_dict(averaged_weights(state["average"]) if "average" in state
                          else state["model"])
    return model.eval(), metrics


# --- the local path (no Ray) ----------------------------------------------------------------------


def epochs_within(seconds_left: float, done: int, epoch_seconds: list[float],
                  epochs: int) -> int:
    """The epochs a run can have in all when ``done`` are behind it, ``seconds_left`` remain,
    and its epochs so far took ``epoch_seconds``: the median of them after the first (the
    first also starts the batch maker and fills the image cache), the first alone when no
    other is timed yet. Never more than ``epochs``, never fewer than ``done + 1`` (so a run
    ends at most one epoch past its budget, with the last epoch validated)."""
    later = epoch_seconds[1:] or epoch_seconds
    per_epoch = float(np.median(later))
    fit = done + int(max(seconds_left, 0.0) // max(per_epoch, 1e-9))
    return max(done + 1, min(epochs, fit))


def fit_local(cfg: dict, init_state: dict | None = None,
              verbose: bool = True) -> tuple[nn.Module, dict]:
    """The same job and step logic as `fit_ray`, in this process: for quick CPU runs.

    ``cfg["minutes"]``: a wall-clock budget for the loop. Before each epoch after the first,
    the epochs are cut to what the time left holds at the pace so far (`epochs_within`); the
    learning-rate schedule follows the new count from there on (cosine: it still ends at 0).
    Runs that fit their budget train exactly as without one."""
    job = get_job(cfg["job"])
    cfg = dict(cfg)  # the budget may lower cfg["epochs"]: never the caller's dict
    budget = cfg.get("minutes")
    deadline = None if budget is None else time.perf_counter() + 60.0 * float(budget)
    planned, epoch_seconds = cfg["epochs"], []
    torch.manual_seed(cfg["seed"])
    rng = np.random.default_rng(cfg["seed"])
    device = pick_device(use_gpu=cfg.get("use_gpu", False))
    model = job.build(cfg)
    if init_state is not None:
        load_matching(model.net, init_state)
    model = model.to(device)
    if channels_last(device, cfg):
        to_channels_last(model)
    optimizer = make_optimizer(model, cfg)
    scaler = make_scaler(device, cfg)
    average = weight_average(model, cfg.get("ema_decay"))
    train_rows, val_rows = job.rows(cfg, "train"), job.rows(cfg, "val")
    epoch_steps = math.ceil(len(train_rows) / cfg["batch_size"])  # local batches are of rows
    metrics: dict = {}
    # cfg["prefetch"]: training batches made ahead of the step by a thread (`prefetched`) or a
    # child process (`BatchProcess`); False: between the steps
    mode = {True: "thread"}.get(cfg.get("prefetch", False), cfg.get("prefetch", False))
    if mode not in (False, None, "thread", "process"):
        raise ValueError(f"prefetch: {mode!r} is not one of False, 'thread', 'process'")
    ahead = prefetched if mode == "thread" else iter
    with contextlib.ExitStack() as stack:
        maker = stack.enter_context(BatchProcess(job, cfg, train_rows)) if mode == "process" \
            else None
        # val_every: val is scored every that many epochs and after the last (it only reports;
        # a pass costs about 4% of an ANet epoch)
        every = max(1, int(cfg.get("val_every") or 1))
        epoch = 0
        while epoch < cfg["epochs"]:
            if deadline is not None and epoch_seconds:
                fit = epochs_within(deadline - time.perf_counter(), epoch, epoch_seconds,
                                    cfg["epochs"])
                if fit < cfg["epochs"] and verbose:
                    print(f"[{cfg['job']}] time budget: {fit} of {planned} epochs fit in "
                          f"{budget:.1f} min", flush=True)
                cfg["epochs"] = fit
            start = time.perf_counter()
            # at most max_steps batches are made, as the plain loop makes (the rng's draws)
            if maker is not None:
                train = maker.batches(cfg["batch_size"], True, rng, cfg.get("max_steps"))
            else:
                train = ahead(itertools.islice(
                    local_batches(job, cfg, train_rows, cfg["batch_size"], True, rng),
                    cfg.get("max_steps")))
            stats = train_epoch(model, optimizer, scaler, train, job, cfg, device,
                                max_steps=cfg.get("max_steps"), epoch=epoch,
                                epoch_steps=epoch_steps, average=average)
            deque(train, maxlen=0)  # the epoch's end: a child hands the rng back
            stats["images_per_s"] = stats["images"] / max(stats["seconds"], 1e-9)
            val = None
            if val_rows and ((epoch + 1) % every == 0 or epoch + 1 == cfg["epochs"]):
                val = validate(kept(model, average), local_batches(
                    job, cfg, val_rows, cfg["batch_size"], False, rng), job, cfg, device)
            metrics = epoch_metrics(epoch, stats, val, 1)
            metrics["epoch_s"] = time.perf_counter() - start  # training + validation, wall clock
            epoch_seconds.append(metrics["epoch_s"])
            if verbose:
                print(format_progress(cfg["job"], metrics, cfg["epochs"]), flush=True)
            epoch += 1
    if deadline is not None:
        metrics["epochs_planned"], metrics["epochs_run"] = planned, epoch
    return kept(model, average).cpu().eval(), metrics
