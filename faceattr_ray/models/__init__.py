"""The networks (LNet, ANet) and the preprocessing that feeds them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from faceattr_ray.models.anet import ANet, ANetConfig
from faceattr_ray.models.layers import LocallySharedConv2d
from faceattr_ray.models.lnet import LNet, LNetConfig, c5_size, load_alexnet_weights, response_maps

# torchvision's ImageNet statistics, which the AlexNet weights expect.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

__all__ = [
    "ANet", "ANetConfig", "IMAGENET_MEAN", "IMAGENET_STD", "LNet", "LNetConfig",
    "LocallySharedConv2d", "c5_size", "load_alexnet_weights", "resize", "response_maps",
    "to_tensor",
]


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) or (C, H, W) float images to ``size`` = (height, width),
    antialiased when shrinking."""
    squeeze = x.dim() == 3
    if squeeze:
        x = x.unsqueeze(0)
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                          antialias=True)
    return x.squeeze(0) if squeeze else x


def to_tensor(images: Sequence[np.ndarray] | np.ndarray, size: tuple[int, int] | None = None,
              mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
              ) -> torch.Tensor:
    """uint8 RGB images (H, W, 3) -> (N, 3, H, W) float32, scaled to [0, 1] and normalised.

    ``images`` is one (H, W, 3) array, an (N, H, W, 3) array or a list of (H, W, 3) arrays.
    ``size`` = (height, width) resizes each image (bilinear, antialiased); without it all
    images must already share one size.
    """
    if isinstance(images, np.ndarray):
        images = [images] if images.ndim == 3 else list(images)
    if len(images) == 0:
        h, w = size if size is not None else (0, 0)
        return torch.zeros(0, 3, h, w)
    out = []
    for i, im in enumerate(images):
        if im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"to_tensor: image {i} has shape {im.shape}, expected (H, W, 3)")
        t = torch.from_numpy(np.require(im, requirements=["C", "W"])).permute(2, 0, 1).float().div_(255.0)
        if size is not None:
            t = resize(t, size)
        out.append(t)
    shapes = {tuple(t.shape) for t in out}
    if len(shapes) > 1:
        raise ValueError(f"to_tensor: images have different sizes {sorted(shapes)[:3]}; "
                         "pass size=(height, width)")
    batch = torch.stack(out)
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (batch - m) / s
