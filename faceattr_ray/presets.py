"""Named model sizes, and a bundle with fresh weights for each.

- ``tiny``: a few channels, for tests (a forward pass in milliseconds).
- ``cpu``: narrow LNets and the default ANet, what the demo and `reproduce` train on a CPU.
- ``paper``: AlexNet-sized LNets (torchvision's ImageNet weights load into them) and ANet.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from faceattr_ray.attributes import CELEBA_40
from faceattr_ray.bundle import Bundle, default_preprocess
from faceattr_ray.models import ANet, ANetConfig, LNet, LNetConfig

PRESETS = ("tiny", "cpu", "paper")


def preset_configs(name: str, num_attributes: int) -> tuple[LNetConfig, ANetConfig]:
    if name == "tiny":
        lnet = LNetConfig(channels=(8, 16, 16, 16, 8), head_hidden=16, num_classes=0)
        anet = ANetConfig(patch_size=32, grid=3, channels=(4, 6, 8, 8), feature_dim=16,
                          kernels=(5, 3, 3, 3))
    elif name == "cpu":
        lnet, anet = LNetConfig.small(), ANetConfig()
    elif name == "paper":
        lnet, anet = LNetConfig(), ANetConfig()
    else:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
    lnet.num_attributes = anet.num_attributes = num_attributes
    return lnet, anet


def build_bundle(
    preset: str = "cpu", attributes: Sequence[str] = CELEBA_40, seed: int = 0,
    threshold: float | None = None,
) -> Bundle:
    """A bundle of freshly initialised networks (no heads: ANet's attribute layer scores)."""
    torch.manual_seed(seed)
    lnet_cfg, anet_cfg = preset_configs(preset, len(attributes))
    return Bundle(
        path=None,
        config={"preset": preset, "preprocess": default_preprocess()},
        attributes=list(attributes),
        lnet_o=LNet(lnet_cfg).eval(),
        lnet_s=LNet(lnet_cfg).eval(),
        anet=ANet(anet_cfg).eval(),
        threshold=threshold,
    )
