"""The networks (LNet, ANet) and the preprocessing that feeds them."""

from __future__ import annotations

from faceattr_ray.models.anet import ANet, ANetConfig
from faceattr_ray.models.layers import LocallySharedConv2d
from faceattr_ray.models.lnet import LNet, LNetConfig, c5_size, load_alexnet_weights, response_maps
from faceattr_ray.models.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocess,
    normalize,
    resize,
    to_tensor,
)

__all__ = [
    "ANet", "ANetConfig", "IMAGENET_MEAN", "IMAGENET_STD", "LNet", "LNetConfig",
    "LocallySharedConv2d", "Preprocess", "c5_size", "load_alexnet_weights", "normalize", "resize",
    "response_maps", "to_tensor",
]
