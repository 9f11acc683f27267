"""Crops: enlarge a box a little, cut it out of the image, resize it for a network.

The paper enlarges the localized face region by a small factor before ANet sees it (section 2.2),
so the crop may run past the image border; those pixels repeat the border (edge padding)
rather than turning black, which would look like a frame the network never saw in training.
Names used across the package: a *window* is a rectangle scored on a response map (in map
cells, `localizers.windows`); a *head-shoulder box* is LNet_o's choice in image pixels; a *face
crop* is the pixels ANet reads (a face box enlarged by the context factor, resized).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels


def expand_box(box: Box, factor: float) -> Box:
    """Scale a box about its centre by ``factor`` (1.0 keeps it)."""
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    hw, hh = (x2 - x1) * factor / 2, (y2 - y1) * factor / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


def clip_box(box: Box, width: int, height: int) -> Box:
    x1, y1, x2, y2 = box
    return (
        min(max(x1, 0.0), width), min(max(y1, 0.0), height),
        min(max(x2, 0.0), width), min(max(y2, 0.0), height),
    )  # fmt: skip


def crop_resize(image: np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """Cut ``box`` (may exceed the image) out of an (H, W, 3) uint8 image, resize to ``size`` (w, h).

    Only the part of the image under the box is copied, so a small box in a huge image is cheap.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"empty box {box}")
    # Integer region that covers the box, then edge-pad whatever falls outside the image.
    ix1, iy1 = math.floor(x1), math.floor(y1)
    ix2, iy2 = max(math.ceil(x2), ix1 + 1), max(math.ceil(y2), iy1 + 1)
    cx1, cy1 = min(max(ix1, 0), w - 1), min(max(iy1, 0), h - 1)
    cx2, cy2 = max(min(ix2, w), cx1 + 1), max(min(iy2, h), cy1 + 1)
    region = image[cy1:cy2, cx1:cx2]
    pad = ((cy1 - iy1, iy2 - cy2), (cx1 - ix1, ix2 - cx2), (0, 0))
    if any(p for pair in pad for p in pair):
        region = np.pad(region, [(max(a, 0), max(b, 0)) for a, b in pad], mode="edge")
    local = (x1 - ix1, y1 - iy1, x2 - ix1, y2 - iy1)
    out = Image.fromarray(np.ascontiguousarray(region)).resize(
        size, Image.Resampling.BILINEAR, box=local, reducing_gap=2.0
    )
    return np.asarray(out)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


# Where CelebA's aligned crops hold the tight face box (fractions of the crop's width, height).
ALIGNED_FACE_BOX = (0.22, 0.33, 0.78, 0.86)


def frame_face(box: Box, face_box: tuple[float, float, float, float] = ALIGNED_FACE_BOX) -> Box:
    """The framing rule: the rectangle around a tight face box in which that box sits where
    ``face_box`` says (by default as in an aligned CelebA crop), so a found face is cut out the
    way ANet's aligned training faces were."""
    x1, y1, x2, y2 = box
    fx1, fy1, fx2, fy2 = face_box
    w, h = (x2 - x1) / (fx2 - fx1), (y2 - y1) / (fy2 - fy1)
    return (x1 - fx1 * w, y1 - fy1 * h, x1 - fx1 * w + w, y1 - fy1 * h + h)
