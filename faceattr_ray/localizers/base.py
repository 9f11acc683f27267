"""What every localizer shares: the `Detection` it returns, and RGB input of any kind.

A localizer offers ``localize(images) -> list[list[Detection]]``: for each image its faces, boxes
in the image's pixels, dominant first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image


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
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(
        Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    )


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
