"""Windows on an averaged response map: score every candidate rectangle, keep the best.

Windows are in map cells: (x1, y1, x2, y2) with x2, y2 exclusive, so a window covering columns
2..4 is (2, y1, 5, y2). Maps are taken as non-negative (the C5 map is after a ReLU); negative
values are clipped to 0.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from faceattr_ray.crops import Box, box_iou

# Window score = (response summed inside) / area ** ALPHA.
# Why 1/2: growing a window of mean response m by a strip whose response is r raises the score
# iff r > ALPHA * m, so the best window ends where the response falls to ALPHA times the mean
# inside it. ALPHA = 1 (the plain mean) stops at the single hottest cell: a lone hot pixel beats a
# face-sized blob. ALPHA = 0 (the plain sum) grows over any positive response: the whole image
# wins. ALPHA = 1/2 puts the border at half the inside mean at every scale, and sum / sqrt(area) is
# the z-score of the window's sum if the cells were independent zero-mean noise: spatial support
# counts as evidence, as it should (a uniform blob of value v over A cells scores v * sqrt(A)).
DEFAULT_ALPHA = 0.5



def as_map(response_map) -> np.ndarray:
    if isinstance(response_map, torch.Tensor):
        response_map = response_map.detach().float().cpu().numpy()
    m = np.asarray(response_map, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a response map is 2-D (h, w), got shape {m.shape}")
    return np.clip(np.nan_to_num(m), 0.0, None)


def integral_image(m: np.ndarray) -> np.ndarray:
    """Summed-area table with a zero first row and column: sum of m[y1:y2, x1:x2] in 4 lookups."""
    table = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    table[1:, 1:] = m.cumsum(0).cumsum(1)
    return table


def _side_lengths(n: int, per_axis: int) -> np.ndarray:
    # Every size on small maps (LNet_s's 13x13); geometric steps on large ones.
    if n <= per_axis:
        return np.arange(1, n + 1)
    return np.unique(np.round(np.geomspace(1, n, per_axis)).astype(int))


def _intervals(n: int, per_axis: int, stride_fraction: float) -> np.ndarray:
    """(K, 2) start, end of every candidate extent along one axis of length n."""
    out = []
    for size in _side_lengths(n, per_axis):
        # Step a fraction of the window's size; always include the position flush with the end.
        starts = np.unique(np.r_[np.arange(0, n - size + 1, max(1, int(size * stride_fraction))), n - size])
        out.append(np.stack([starts, starts + size], 1))
    return np.concatenate(out)


def _scored_windows(
    m: np.ndarray, alpha: float, max_aspect: float, sides_per_axis: int, stride_fraction: float
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (rows (R, 2), cols (C, 2), scores (R, C)): every row extent x every column extent.

    Windows outside the aspect-ratio limit score -inf. Blocks of rows bound the memory.
    """
    table = integral_image(m)
    rows = _intervals(m.shape[0], sides_per_axis, stride_fraction)
    cols = _intervals(m.shape[1], sides_per_axis, stride_fraction)
    widths = (cols[:, 1] - cols[:, 0]).astype(np.float64)
    c0, c1 = cols[:, 0], cols[:, 1]
    for start in range(0, len(rows), 256):
        r = rows[start : start + 256]
        r0, r1 = r[:, 0:1], r[:, 1:2]
        sums = table[r1, c1] - table[r0, c1] - table[r1, c0] + table[r0, c0]
        heights = (r1 - r0).astype(np.float64)
        scores = sums / (heights * widths) ** alpha
        ratio = heights / widths
        scores[(ratio > max_aspect) | (ratio < 1 / max_aspect)] = -np.inf
        yield r, cols, scores


def score_windows(
    response_map,
    alpha: float = DEFAULT_ALPHA,
    max_aspect: float = 4.0,
    sides_per_axis: int = 24,
    stride_fraction: float = 0.125,
) -> tuple[np.ndarray, np.ndarray]:
    """Every candidate window (K, 4) in map cells and its score (K,), scored exactly.

    Candidates: all heights x widths (geometric when a side exceeds ``sides_per_axis``) with
    aspect ratio within ``max_aspect``, at every position stepping ``stride_fraction`` of the size.
    """
    m = as_map(response_map)
    boxes, scores = [], []
    for rows, cols, s in _scored_windows(m, alpha, max_aspect, sides_per_axis, stride_fraction):
        ri, ci = np.nonzero(np.isfinite(s))
        boxes.append(np.stack([cols[ci, 0], rows[ri, 0], cols[ci, 1], rows[ri, 1]], 1))
        scores.append(s[ri, ci])
    return np.concatenate(boxes).astype(np.float64), np.concatenate(scores)


def best_window(
    response_map,
    alpha: float = DEFAULT_ALPHA,
    max_aspect: float = 4.0,
    sides_per_axis: int = 24,
    stride_fraction: float = 0.125,
) -> tuple[Box, float]:
    """The highest-scoring window (map cells) and its score; the whole map, 0.0 if all zero."""
    m = as_map(response_map)
    h, w = m.shape
    best: tuple[Box, float] = ((0.0, 0.0, float(w), float(h)), 0.0)
    if m.size == 0 or m.max() <= 0:
        return best
    for rows, cols, s in _scored_windows(m, alpha, max_aspect, sides_per_axis, stride_fraction):
        ri, ci = np.unravel_index(int(np.argmax(s)), s.shape)
        if s[ri, ci] > best[1]:
            best = ((float(cols[ci, 0]), float(rows[ri, 0]), float(cols[ci, 1]), float(rows[ri, 1])),
                    float(s[ri, ci]))
    return best


def above_baseline(response_map, quantile: float | None = 0.5) -> np.ndarray:
    """The map minus its ``quantile`` level, clipped at 0 (``None``: the map as it is).

    Why: an averaged C5 map trained from attribute tags is positive almost everywhere (a floor
    of background response under the face's peak). With sum / sqrt(area) a floor v adds
    v * sqrt(A) to a window of A cells, so the best window grows to the whole image however
    clear the peak is. The median is the background's level whenever a face covers under half
    of the map, so what is left is the response that stands out of its own image.
    """
    m = as_map(response_map)
    if quantile is None or m.size == 0:
        return m
    return np.clip(m - np.quantile(m, quantile), 0.0, None)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3) -> np.ndarray:
    """Greedy non-maximum suppression: indices kept, highest score first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        order = order[1:][box_iou(boxes[i : i + 1], boxes[order[1:]])[0] <= iou_threshold]
    return np.array(keep, dtype=np.int64)
