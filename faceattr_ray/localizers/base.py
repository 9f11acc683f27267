"""What every localizer shares: the `Detection` it returns, and RGB input of any kind.

A localizer offers ``localize(images) -> list[list[Detection]]``: for each image its faces, boxes
in the image's pixels, dominant first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the original image's pixels
    score: float  # LNet: the LNet_s window score, the number the threshold is compared with



def as_rgb(image) -> np.ndarray:
    """(H, W, 3) uint8 from grayscale (H, W) / (H, W, 1), RGBA, or another integer/float dtype."""
    a = np.asarray(image)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"an image is (H, W) or (H, W, C), got shape {a.shape}")
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    elif a.shape[2] >= 4:
        a = a[:, :, :3]
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(a)


def resize_rgb(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (height, width, 3) uint8: bilinear, antialiased when shrinking.

    torch's uint8 kernel reads the pixels in place (channels last) and runs on torch's threads:
    3-4x faster than Pillow's resize of an image pyramid's levels (within one grey level of
    Pillow's exact filter; Pillow's ``reducing_gap`` shortcut differs more at large shrinks).
    """
    if image.shape[1] == width and image.shape[0] == height:
        return image
    # torch wraps only writable, contiguous memory (nothing is written): at most one copy
    x = torch.from_numpy(np.require(image, requirements=["C", "W"])).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                      antialias=True)
    return y[0].permute(1, 2, 0).contiguous().numpy()  # the kernel writes planes (NCHW)


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
