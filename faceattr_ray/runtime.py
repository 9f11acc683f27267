"""Where work runs: the one Ray start-up and the one device choice of the package.

Every command starts (or joins) Ray through `init_ray` and picks its torch device through
`pick_device`, its arithmetic through `amp_dtype` and its memory layout through
`to_channels_last`; torch and Ray are imported only when these are called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# The networks' arithmetic. "auto": autocast on a GPU (bf16 where it has it, else fp16), float32
# on a CPU; the others force one (bf16 on a CPU: where it computes bf16, or to test the GPU path)
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
DECODE_CPUS = 0.5  # CPUs of one decode task (annotate and training): two run beside a 1-CPU actor


def passive_thread_waits() -> bool:
    """Let torch's OpenMP threads sleep while they wait for work (``OMP_WAIT_POLICY=PASSIVE``)
    unless the environment already sets a policy. A spinning thread keeps its core from what
    shares the machine with it, such as the child process that makes training batches
    (`bench/prefetch.py --wait-policies unset PASSIVE`; README, speed). OpenMP reads the policy
    once, when torch loads, so `faceattr-ray`'s training commands call this before anything
    imports torch; the processes they start inherit it. Once torch is loaded it changes
    nothing (not even for child processes) and returns False."""
    import sys

    if "torch" in sys.modules:
        return False
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return True


def init_ray(address: str | None = None, num_cpus: int | None = None,
             log_to_driver: bool = True) -> None:
    """Join the cluster at ``address`` (or ``RAY_ADDRESS``), else start an embedded Ray with
    ``num_cpus`` logical CPUs (default: all) and no dashboard. A no-op when Ray is up.

    On a 2-core machine give ``num_cpus`` above the work asked for (e.g. 4): a read task of 1 CPU
    and two 1-CPU actors otherwise wait for each other forever.
    """
    import ray

    if ray.is_initialized():
        return
    if address or os.environ.get("RAY_ADDRESS"):
        ray.init(address=address, log_to_driver=log_to_driver)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=log_to_driver)


def pick_device(device=None, use_gpu: bool = True):
    """``device`` when given; else the current GPU when there is one and ``use_gpu``; else the
    CPU. Returns a ``torch.device``."""
    import torch

    if device is not None and str(device):
        return torch.device(device)
    if use_gpu and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX-512 BF16 or AMX, which oneDNN uses);
    elsewhere bf16 is emulated and only slower."""
    import torch

    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume emulation
        return False


def check_precision(precision: str) -> str:
    """``precision`` if it is one of `PRECISIONS`, else a one-line ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
    return precision


def amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``precision`` (`PRECISIONS`) on ``device``; None: float32."""
    import torch

    if check_precision(precision) == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` with its convolution kernels (rank-4 parameters) in channels-last (NHWC)
    memory, in place. Not ``module.to(memory_format=...)``: that fails on ANet's locally shared
    filter banks, whose weights have rank 5."""
    import torch

    for param in module.parameters():
        if param.dim() == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)
    return module
