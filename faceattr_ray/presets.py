"""Named model sizes: the one home of the small-model settings that tests, `--smoke-test`,
`reproduce`, the demo and the benchmarks use.

Each preset is the keys of `LNetConfig` and `ANetConfig` that differ from their defaults:

- ``tiny``: a few channels, for unit tests (a forward pass in milliseconds).
- ``smoke``: ``train ... --smoke-test`` and ``reproduce --smoke-test`` (2 steps in seconds).
- ``toy``: the demo's model: learns generated faces in about a minute on 2 cores.
- ``cpu``: narrow LNets (about 1/8 of AlexNet's C1-C5 FLOPs) and the default ANet: what
  `reproduce` trains on a CPU and what the annotate benchmark runs.
- ``wild``: what `reproduce` trains on a CPU: LNets that learn to find faces in real photos
  from image-level tags (a stride-8 fully convolutional net, batch norm, one score map per tag
  with the face tag first, max-pooled) and the default ANet with batch norm.
- ``wild-smoke``: the same shapes, a few channels (tests, ``--smoke-test``).
- ``paper``: AlexNet-sized LNets (torchvision's ImageNet weights load into them) and ANet.
- ``ssp-ssg``, ``ssp-ssg-smoke``: not LNet/ANet sizes but the parsing-guided attribute network
  (``{"ssp_ssg": SSPSSGConfig keys}``); `architecture` returns them like the others.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

ARCHITECTURES: dict[str, dict[str, dict]] = {
    "tiny": {
        "lnet": {"channels": [8, 16, 16, 16, 8], "head_hidden": 16, "num_classes": 0},
        "anet": {"patch_size": 32, "grid": 3, "channels": [4, 6, 8, 8], "feature_dim": 16,
                 "kernels": [5, 3, 3, 3]},
    },
    "smoke": {
        "lnet": {"channels": [8, 16, 16, 16, 16], "head_hidden": 16, "classifier_hidden": 16,
                 "input_size": 99},
        "anet": {"patch_size": 32, "grid": 2, "patch_stride": 4, "channels": [4, 8, 8, 8],
                 "kernels": [5, 3, 3, 3], "feature_dim": 16},
    },
    "toy": {
        "lnet": {"channels": [16, 32, 48, 32, 32], "head_hidden": 32, "num_classes": 0,
                 "input_size": 131},
        "anet": {"patch_size": 32, "grid": 3, "patch_stride": 4, "channels": [8, 16, 24, 32],
                 "kernels": [5, 3, 3, 3], "feature_dim": 32, "batch_norm": False},
    },
    "cpu": {
        "lnet": {"channels": [32, 96, 160, 128, 128], "head_hidden": 256, "num_classes": 0},
        "anet": {},
    },
    "wild": {
        "lnet": {"arch": "fcn", "channels": [16, 32, 64, 64, 96], "head_pool": "map_max",
                 "face_tag": True, "num_classes": 0, "input_size": 128},
        "anet": {"batch_norm": True},
    },
    "wild-smoke": {
        "lnet": {"arch": "fcn", "channels": [8, 8, 16, 16, 16], "head_pool": "map_max",
                 "face_tag": True, "num_classes": 0, "input_size": 64},
        "anet": {"patch_size": 32, "grid": 2, "patch_stride": 4, "channels": [4, 8, 8, 8],
                 "kernels": [5, 3, 3, 3], "feature_dim": 16, "batch_norm": True},
    },
    "paper": {"lnet": {}, "anet": {}},
    # The SSP+SSG family (models/ssp_ssg.py): its attribute network and parsing network, sized
    # for a CPU (64x64 crops); "-smoke" a few channels for tests.
    "ssp-ssg": {
        "ssp_ssg": {"input_size": 64, "channels": [16, 32, 64, 96],
                    "parsing": {"channels": [16, 32, 48]}},
    },
    "ssp-ssg-smoke": {
        "ssp_ssg": {"input_size": 32, "channels": [4, 8, 8, 8],
                    "parsing": {"channels": [4, 8, 8]}},
    },
}
PRESETS = tuple(ARCHITECTURES)


def architecture(name: str) -> dict[str, dict]:
    """{"lnet": LNetConfig keys, "anet": ANetConfig keys} of a preset (a copy to change);
    {"ssp_ssg": SSPSSGConfig keys} for the ssp-ssg presets."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown preset {name!r}; choose one of {PRESETS}")
    return copy.deepcopy(ARCHITECTURES[name])


def preset_configs(name: str, num_attributes: int):
    """(LNetConfig, ANetConfig) of a preset, with heads for ``num_attributes`` attributes."""
    from faceattr_ray.models import ANetConfig, LNetConfig

    arch = architecture(name)
    lnet = LNetConfig.from_dict({**arch["lnet"], "num_attributes": num_attributes})
    anet = ANetConfig.from_dict({**arch["anet"], "num_attributes": num_attributes})
    return lnet, anet


def build_bundle(preset: str = "cpu", attributes: Sequence[str] | None = None, seed: int = 0,
                 threshold: float | None = None):
    """A bundle of freshly initialised networks (no heads: ANet's attribute layer scores)."""
    import torch

    from faceattr_ray.attributes import CELEBA_40
    from faceattr_ray.bundle import Bundle, default_preprocess
    from faceattr_ray.models import ANet, LNet

    attributes = list(CELEBA_40 if attributes is None else attributes)
    torch.manual_seed(seed)
    lnet_cfg, anet_cfg = preset_configs(preset, len(attributes))
    return Bundle(
        path=None,
        config={"preset": preset, "preprocess": default_preprocess()},
        attributes=attributes,
        lnet_o=LNet(lnet_cfg).eval(),
        lnet_s=LNet(lnet_cfg).eval(),
        anet=ANet(anet_cfg).eval(),
        threshold=threshold,
    )
