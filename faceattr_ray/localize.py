"""Face localization: averaged response maps -> scored windows -> face boxes (paper section 2.1).

`LNetLocalizer` runs the paper's cascade: LNet_o's averaged C5 map over the whole image gives the
head-and-shoulders window; that window, resized to 227x227, goes through LNet_s, whose map gives
the face window; boxes come back in the original image's pixels. `CascadeLocalizer` (scikit-image's
LBP face cascade, the off-the-shelf baseline) and `FullImageLocalizer` (aligned crops) offer the
same `localize(images) -> list[list[Detection]]`.

Windows on a map are in map cells: (x1, y1, x2, y2) with x2, y2 exclusive, so a window covering
columns 2..4 is (2, y1, 5, y2). Maps are taken as non-negative (the C5 map is after a ReLU);
negative values are clipped to 0.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from faceattr_ray.crops import Box, clip_box, crop_resize, expand_box
from faceattr_ray.localization_metrics import box_iou
from faceattr_ray.models import to_tensor

# Window score = (response summed inside) / area ** ALPHA.
# Why 1/2: growing a window of mean response m by a strip whose response is r raises the score
# iff r > ALPHA * m, so the best window ends where the response falls to ALPHA times the mean
# inside it. ALPHA = 1 (the plain mean) stops at the single hottest cell: a lone hot pixel beats a
# face-sized blob. ALPHA = 0 (the plain sum) grows over any positive response: the whole image
# wins. ALPHA = 1/2 puts the border at half the inside mean at every scale, and sum / sqrt(area) is
# the z-score of the window's sum if the cells were independent zero-mean noise: spatial support
# counts as evidence, as it should (a uniform blob of value v over A cells scores v * sqrt(A)).
DEFAULT_ALPHA = 0.5


@dataclass
class Detection:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the original image's pixels
    score: float  # LNet: the LNet_s window score, the number the threshold is compared with


# --- windows on a response map -----------------------------------------------------------------


def _as_map(response_map) -> np.ndarray:
    if isinstance(response_map, torch.Tensor):
        response_map = response_map.detach().float().cpu().numpy()
    m = np.asarray(response_map, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"a response map is 2-D (h, w), got shape {m.shape}")
    return np.clip(np.nan_to_num(m), 0.0, None)


def _integral_image(m: np.ndarray) -> np.ndarray:
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
    table = _integral_image(m)
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
    m = _as_map(response_map)
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
    m = _as_map(response_map)
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
    m = _as_map(response_map)
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


# --- density peaks (Rodriguez & Laio 2014; paper: pruning multiple faces) ----------------------


@dataclass
class DensityPeaks:
    centers: np.ndarray  # (k, 2) row, col of each region's peak; dominant (densest) first
    density: np.ndarray  # (k,) rho: response mass around the peak
    separation: np.ndarray  # (k,) sigma: distance (cells) to the nearest denser cell
    d: np.ndarray  # (k,) sqrt(rho'^2 + sigma'^2), rho' / sigma' scaled to [0, 1]; sorted descending
    labels: np.ndarray  # (h, w) index into centers of the region each cell belongs to


def density_peaks(
    response_map,
    radius: int | None = None,
    min_separation: float | None = None,
    min_relative_density: float = 0.25,
) -> DensityPeaks:
    """Split a response map into regions around density peaks.

    rho_i is the response summed in a (2r+1)^2 box around cell i (a blob's mass, not one hot
    cell); sigma_i the distance to the nearest cell of higher rho (ties broken by raster order, so
    a plateau has one peak). A local maximum of rho becomes a region centre when it lies at least
    ``min_separation`` cells from any denser cell and has at least ``min_relative_density`` of
    the top density; every other cell joins a centre by steepest ascent, and minor peaks join the
    region of their nearest denser cell, as Rodriguez & Laio assign points. The paper ranks peaks
    by d = sqrt(rho^2 + sigma^2); with both scaled to [0, 1] and the top peak's sigma set to the
    map diagonal, the densest region always comes first.
    """
    m = _as_map(response_map)
    h, w = m.shape
    n = h * w
    r = max(1, round(0.08 * min(h, w))) if radius is None else int(radius)
    sep = max(2.0, 0.2 * min(h, w)) if min_separation is None else float(min_separation)

    table = _integral_image(m)
    y0, y1 = np.clip(np.arange(h) - r, 0, h), np.clip(np.arange(h) + r + 1, 0, h)
    x0, x1 = np.clip(np.arange(w) - r, 0, w), np.clip(np.arange(w) + r + 1, 0, w)
    rho = (
        table[np.ix_(y1, x1)] - table[np.ix_(y0, x1)] - table[np.ix_(y1, x0)] + table[np.ix_(y0, x0)]
    ).ravel()

    order = np.lexsort((np.arange(n), -rho))  # densest first; a total order
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    # Steepest ascent: each cell points to its best-ranked 3x3 neighbour (a peak to itself).
    padded = np.pad(rank.reshape(h, w), 1, constant_values=n)
    neigh = np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    k = neigh.argmin(0)
    parent = ((np.arange(h)[:, None] + k // 3 - 1) * w + np.arange(w)[None, :] + k % 3 - 1).ravel()
    while True:  # pointer jumping: parent becomes the peak each cell climbs to
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    peaks = np.flatnonzero(parent == np.arange(n))
    peaks = peaks[np.argsort(rank[peaks])]

    # sigma is needed only at peaks: any other cell has a denser neighbour within sqrt(2).
    ys, xs = np.divmod(np.arange(n), w)
    sigma = np.empty(len(peaks))
    nearest = np.zeros(len(peaks), dtype=np.int64)
    for start in range(0, len(peaks), 256):  # chunks keep memory small on noisy maps
        p = peaks[start : start + 256]
        dist = np.hypot(ys[p, None] - ys[None], xs[p, None] - xs[None])
        dist[rank[None, :] >= rank[p, None]] = np.inf
        nearest[start : start + 256] = dist.argmin(1)
        sigma[start : start + 256] = dist.min(1)
    diag = math.hypot(h, w)
    sigma[0] = diag  # the densest peak has no denser cell

    rho_max = rho[peaks[0]]
    rel = rho[peaks] / rho_max if rho_max > 0 else np.zeros(len(peaks))
    peak_index = np.full(n, -1, dtype=np.int64)
    peak_index[peaks] = np.arange(len(peaks))
    joins = np.arange(len(peaks))  # which peak's region each peak ends up in
    for i in range(1, len(peaks)):  # densest first, so the target is already resolved
        if sigma[i] < sep or rel[i] < min_relative_density:
            joins[i] = joins[peak_index[parent[nearest[i]]]]
    centres = np.flatnonzero(joins == np.arange(len(peaks)))
    d = np.hypot(rel[centres], sigma[centres] / diag)
    by_d = centres[np.argsort(-d, kind="stable")]
    region_of_peak = np.full(len(peaks), -1, dtype=np.int64)
    region_of_peak[by_d] = np.arange(len(by_d))
    labels = region_of_peak[joins[peak_index[parent]]].reshape(h, w)
    return DensityPeaks(
        centers=np.stack([ys[peaks[by_d]], xs[peaks[by_d]]], 1),
        density=rho[peaks[by_d]],
        separation=sigma[by_d],
        d=np.sort(d)[::-1],
        labels=labels,
    )


def region_windows(
    response_map, max_regions: int | None = 1, alpha: float = DEFAULT_ALPHA, **peak_options
) -> list[tuple[Box, float]]:
    """Best window of each density-peak region (dominant first), the map outside it zeroed.

    ``max_regions=1`` is the paper's pruning: when several faces respond inside one window, keep
    the densest one only. ``None`` returns every region.
    """
    m = _as_map(response_map)
    if m.size == 0 or m.max() <= 0:
        return [best_window(m, alpha)]
    peaks = density_peaks(m, **peak_options)
    count = len(peaks.centers) if max_regions is None else min(max_regions, len(peaks.centers))
    return [best_window(np.where(peaks.labels == k, m, 0.0), alpha) for k in range(count)]


# --- images --------------------------------------------------------------------------------------


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


def _to_tensor(images: list[np.ndarray], mean, std) -> torch.Tensor:
    if mean is None or std is None:
        return to_tensor(images, None)
    return to_tensor(images, None, mean, std)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(
        Image.fromarray(image).resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    )


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class LocalizationTrace:
    """What the cascade saw for one image (for figures like the paper's Fig. 3 and 6)."""

    detections: list[Detection]
    response_o: np.ndarray | None = None  # LNet_o map over the image (padding cut off)
    head_shoulders: list[Box] = field(default_factory=list)  # original pixels
    responses_s: list[np.ndarray] = field(default_factory=list)  # LNet_s map of each crop


class LNetLocalizer:
    """LNet_o on the whole image -> head-shoulder window -> LNet_s on it (227x227) -> face.

    ``threshold`` applies to the face score: the best LNet_s window score (sum / sqrt(area) on its
    averaged C5 map). Below it an image has no face; ``None`` always returns the best window.
    ``baseline``: each map's level at this quantile (default the median) is subtracted before
    windows are scored (`above_baseline`: without it a response floor makes the whole image the
    best window); ``None`` scores the raw maps.
    ``all_faces``: one detection per LNet_o region and LNet_s region above the threshold, after
    non-maximum suppression, highest score first (LNet_o regions scoring under
    ``min_relative_score`` of its best are not searched). Otherwise the dominant face only:
    LNet_o's best window, then LNet_s's densest region, as the paper prunes several faces that
    share one head-shoulder window. Box geometry is proportional (a map cell covers an equal share
    of the network input); for AlexNet's C5 at 227 pixels it is within one cell (16 px) of the
    receptive-field geometry.
    """

    def __init__(
        self,
        lnet_o: torch.nn.Module,
        lnet_s: torch.nn.Module | None,
        threshold: float | None,
        all_faces: bool = False,
        device: str | torch.device = "cpu",
        *,
        short_side: int = 227,
        max_long_side: int = 1024,
        min_input: int = 63,
        crop_size: int = 227,
        head_shoulder_margin: float = 0.1,
        alpha: float = DEFAULT_ALPHA,
        nms_iou: float = 0.3,
        max_faces: int = 10,
        min_relative_score: float = 0.5,
        baseline: float | None = 0.5,
        batch_size: int = 32,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.lnet_o = lnet_o.to(self.device).eval()
        # None: stage 1 only (`head_shoulders`, which is what LNet_s trains on).
        self.lnet_s = None if lnet_s is None else lnet_s.to(self.device).eval()
        self.threshold = None if threshold is None else float(threshold)
        self.all_faces = all_faces
        self.short_side, self.max_long_side, self.min_input = short_side, max_long_side, min_input
        self.crop_size = crop_size
        self.head_shoulder_margin = head_shoulder_margin
        self.alpha, self.nms_iou, self.max_faces = alpha, nms_iou, max_faces
        self.min_relative_score = min_relative_score
        self.baseline = None if baseline is None else float(baseline)
        self.batch_size = batch_size
        self.mean, self.std = mean, std

    @classmethod
    def from_bundle(cls, bundle, threshold: float | None | str = "bundle", all_faces: bool = False,
                    device: str | torch.device | None = None, **overrides) -> LNetLocalizer:
        """The bundle's LNet cascade, read as it was trained: the one way to build it from a
        bundle (annotate, calibrate, reproduce, report, `localize`, the benchmarks).

        Options, later ones winning: the bundle's preprocessing (normalisation, the sizes the
        LNets read at), its localizer options (``config["localizer"]["options"]``), then
        ``overrides``. ``threshold``: "bundle" (the calibrated one), a number, or None (every
        image gets its best window: what calibration scores).
        """
        from faceattr_ray.errors import BundleError
        from faceattr_ray.models import Preprocess
        from faceattr_ray.runtime import pick_device

        if bundle.lnet_o is None or bundle.lnet_s is None:
            raise BundleError(f"{bundle.path or 'the bundle'}: the bundle has no LNets to "
                              "localize with (use the 'full' or 'cascade' localizer)")
        options = {**Preprocess.of(bundle).lnet_options(),
                   **((bundle.config.get("localizer") or {}).get("options") or {}), **overrides}
        return cls(bundle.lnet_o, bundle.lnet_s,
                   threshold=bundle.threshold if threshold == "bundle" else threshold,
                   all_faces=all_faces, device=pick_device(device), **options)

    def options(self) -> dict:
        """Every setting that decides a face score or box (threshold, all_faces and device
        aside): two localizers with equal options score every image alike."""
        return {"short_side": self.short_side, "max_long_side": self.max_long_side,
                "min_input": self.min_input, "crop_size": self.crop_size,
                "head_shoulder_margin": self.head_shoulder_margin, "alpha": self.alpha,
                "nms_iou": self.nms_iou, "max_faces": self.max_faces,
                "min_relative_score": self.min_relative_score, "baseline": self.baseline,
                "batch_size": self.batch_size,
                "mean": None if self.mean is None else tuple(self.mean),
                "std": None if self.std is None else tuple(self.std)}

    def _input_size(self, height: int, width: int) -> tuple[int, int]:
        # Short side to `short_side`, aspect kept, long side capped (extreme strips stay small).
        scale = min(self.short_side / min(height, width), self.max_long_side / max(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    @torch.inference_mode()
    def _maps(self, net: torch.nn.Module, images: list[np.ndarray]) -> tuple[np.ndarray, int, int]:
        """Response maps (N, h, w) of same-size images, and the (padded) input height, width."""
        x = _to_tensor(images, self.mean, self.std)
        # Pad (zeros = the mean colour after normalisation) up to the smallest input C5 accepts.
        side = max(self.min_input, getattr(net, "min_input_size", 0))
        ph, pw = max(0, side - x.shape[2]), max(0, side - x.shape[3])
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph))
        maps = net.response_map(x.to(self.device)).float().cpu().numpy()
        return maps, x.shape[2], x.shape[3]

    def _windows(self, m: np.ndarray, stage: str) -> list[tuple[Box, float]]:
        m = above_baseline(m, self.baseline)
        if not self.all_faces:
            # LNet_o: the best window as is, so one person's head and shoulders stay together.
            # LNet_s: prune to the densest region when several faces share the window (paper).
            if stage == "o":
                return [best_window(m, self.alpha)]
            return region_windows(m, max_regions=1, alpha=self.alpha)
        found = region_windows(m, max_regions=self.max_faces, alpha=self.alpha)
        if stage == "s" and self.threshold is not None:
            return found
        # Without a face threshold, keep the regions that respond at least this much of the best.
        floor = self.min_relative_score * max(s for _, s in found)
        return [(b, s) for b, s in found if s >= floor and s > 0] or found[:1]

    def head_shoulders(self, images: Sequence[np.ndarray]) -> list[LocalizationTrace]:
        """Stage 1 alone: LNet_o on whole images -> head-shoulder windows (``response_o`` and
        ``head_shoulders`` of each trace filled in; no detections). Also what LNet_s trains on."""
        rgb = [as_rgb(im) for im in images]
        traces = [LocalizationTrace(detections=[]) for _ in rgb]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, im in enumerate(rgb):
            if im.shape[0] and im.shape[1]:
                groups[self._input_size(im.shape[0], im.shape[1])].append(i)
        for (rh, rw), members in groups.items():
            for chunk in _chunks(members, self.batch_size):
                maps, ph, pw = self._maps(self.lnet_o, [_resize(rgb[i], rw, rh) for i in chunk])
                cell_h, cell_w = ph / maps.shape[1], pw / maps.shape[2]
                vh = min(maps.shape[1], math.ceil(rh / cell_h))
                vw = min(maps.shape[2], math.ceil(rw / cell_w))
                for i, m in zip(chunk, maps, strict=True):
                    height, width = rgb[i].shape[:2]
                    sx, sy = cell_w * width / rw, cell_h * height / rh  # cell -> original pixels
                    traces[i].response_o = m[:vh, :vw]
                    for (x1, y1, x2, y2), _ in self._windows(m[:vh, :vw], "o"):
                        box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
                        box = clip_box(expand_box(box, 1 + 2 * self.head_shoulder_margin), width, height)
                        if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                            box = (0.0, 0.0, float(width), float(height))
                        traces[i].head_shoulders.append(box)
        return traces

    def localize_traced(self, images: Sequence[np.ndarray]) -> list[LocalizationTrace]:
        if self.lnet_s is None:
            raise ValueError("this localizer has no LNet_s: it finds head-shoulder boxes only")
        rgb = [as_rgb(im) for im in images]
        traces = self.head_shoulders(rgb)
        crops = [(i, box) for i, t in enumerate(traces) for box in t.head_shoulders]

        # Stage 2: LNet_s on every head-shoulder crop at crop_size x crop_size.
        found: dict[int, list[Detection]] = defaultdict(list)
        size = (self.crop_size, self.crop_size)
        for chunk in _chunks(crops, self.batch_size):
            maps, _, _ = self._maps(self.lnet_s, [crop_resize(rgb[i], box, size) for i, box in chunk])
            for (i, (bx1, by1, bx2, by2)), m in zip(chunk, maps, strict=True):
                traces[i].responses_s.append(m)
                sx, sy = (bx2 - bx1) / m.shape[1], (by2 - by1) / m.shape[0]
                for (x1, y1, x2, y2), score in self._windows(m, "s"):
                    box = (bx1 + x1 * sx, by1 + y1 * sy, bx1 + x2 * sx, by1 + y2 * sy)
                    found[i].append(Detection(tuple(map(float, box)), float(score)))

        for i, dets in found.items():
            if self.threshold is not None:
                dets = [d for d in dets if d.score >= self.threshold]
            if self.all_faces and dets:
                keep = nms(np.array([d.box for d in dets]), np.array([d.score for d in dets]),
                           self.nms_iou)
                dets = [dets[k] for k in keep[: self.max_faces]]
            traces[i].detections = dets
        return traces

    def localize(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [t.detections for t in self.localize_traced(images)]

    def draw(self, image: np.ndarray, path: str) -> LocalizationTrace:
        """Fig. 3/6-style PNG (`draw_cascade`): LNet_o's map and head-shoulder windows, LNet_s's
        maps over those windows and the face boxes."""
        trace = self.localize_traced([image])[0]
        draw_cascade(image, trace, path)
        return trace


# --- baselines -----------------------------------------------------------------------------------


class CascadeLocalizer:
    """scikit-image's LBP frontal-face cascade (the off-the-shelf detector to compare LNet with).

    The cascade gives no score, so each face's score is the number of raw detections (scales and
    positions) that agree on it, like OpenCV's neighbour count: more agreement, more confidence.
    ``threshold`` (default 4, scikit-image's own ``min_neighbor_number``) applies to that count.
    Faces come largest first (the dominant face); ``all_faces=False`` keeps only that one.
    """

    def __init__(
        self,
        threshold: float | None = 4.0,
        all_faces: bool = False,
        min_size: int = 24,
        scale_factor: float = 1.2,
        step_ratio: float = 1.0,
        max_side: int = 640,
        group_iou: float = 0.3,
    ) -> None:
        self.threshold = None if threshold is None else float(threshold)
        self.all_faces = all_faces
        self.min_size, self.scale_factor, self.step_ratio = min_size, scale_factor, step_ratio
        self.max_side, self.group_iou = max_side, group_iou
        self._cascade = None  # built on first use, so the localizer pickles (Ray actors)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cascade": None}  # rebuilt where it is unpickled

    def _raw(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if self._cascade is None:
            from skimage.data import lbp_frontal_face_cascade_filename
            from skimage.feature import Cascade

            self._cascade = Cascade(lbp_frontal_face_cascade_filename())
        h, w = image.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))  # big photos: search a smaller copy
        if scale < 1.0:
            image = _resize(image, max(1, round(w * scale)), max(1, round(h * scale)))
            h, w = image.shape[:2]
        if min(h, w) < self.min_size:
            return np.zeros((0, 4)), scale
        raw = self._cascade.detect_multi_scale(
            img=image, scale_factor=self.scale_factor, step_ratio=self.step_ratio,
            min_size=(self.min_size, self.min_size), max_size=(h, w),
            min_neighbor_number=0, intersection_score_threshold=1.01,  # no merging: we group
        )  # fmt: skip
        boxes = np.array([[d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]] for d in raw],
                         dtype=np.float64).reshape(-1, 4)
        return boxes, scale

    def _group(self, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Connected groups of raw windows (IoU >= group_iou): mean box, number of windows."""
        from scipy.sparse.csgraph import connected_components

        if len(boxes) == 0:
            return boxes, np.zeros(0)
        count, label = connected_components(box_iou(boxes, boxes) >= self.group_iou, directed=False)
        votes = np.bincount(label, minlength=count).astype(np.float64)
        sums = np.stack([np.bincount(label, boxes[:, c], count) for c in range(4)], 1)
        return sums / votes[:, None], votes

    def localize(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        out = []
        for image in images:
            rgb = as_rgb(image)
            if rgb.shape[0] == 0 or rgb.shape[1] == 0:
                out.append([])
                continue
            raw, scale = self._raw(rgb)
            boxes, votes = self._group(raw)
            keep = np.flatnonzero(votes >= (self.threshold if self.threshold is not None else 1))
            # The dominant face is the largest one that passes (the photo's subject): vote counts
            # alone favour small face-like textures, which fire at many positions and scales.
            area = (boxes[keep, 2] - boxes[keep, 0]) * (boxes[keep, 3] - boxes[keep, 1])
            keep = keep[np.lexsort((-votes[keep], -area))][: (None if self.all_faces else 1)]
            out.append([Detection(tuple(float(v) for v in boxes[k] / scale), float(votes[k]))
                        for k in keep])
        return out


class FullImageLocalizer:
    """The whole image is the face (aligned crops such as CelebA's); score 1.0."""

    def localize(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        out = []
        for image in images:
            h, w = np.asarray(image).shape[:2]
            out.append([Detection((0.0, 0.0, float(w), float(h)), 1.0)] if h and w else [])
        return out


# --- figures -------------------------------------------------------------------------------------


def _figure(width: int, height: int, panels: int, max_side: int):
    """A matplotlib Figure (no pyplot state) of ``panels`` image axes side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scale = max_side / max(height, width)
    px_w, px_h = max(1, round(width * scale)), max(1, round(height * scale))
    dpi = 100
    fig = Figure(figsize=(panels * px_w / dpi, px_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = [fig.add_axes((k / panels, 0, 1 / panels, 1)) for k in range(panels)]
    for ax in axes:
        ax.set_axis_off()
    return fig, axes, max(px_w, px_h)


def _draw_panel(ax, rgb: np.ndarray, layers: Sequence, boxes: Sequence, extra_boxes: Sequence,
                px: int, dim_outside: bool = False, title: str | None = None) -> None:
    """The image, each (map, (x1, y1, x2, y2)) layer drawn as a heat map over its extent (its
    own colour scale), ``extra_boxes`` dashed yellow, ``boxes`` lime with their scores."""
    from matplotlib.patches import Rectangle

    h, w = rgb.shape[:2]
    ax.imshow(rgb, extent=(0, w, h, 0), interpolation="bilinear")
    if dim_outside:  # only the windows' maps mean anything here
        ax.imshow(np.zeros((1, 1, 4)) + [0, 0, 0, 0.55], extent=(0, w, h, 0))
    for response, (x1, y1, x2, y2) in layers:
        m = _as_map(response)
        if m.size:
            if dim_outside:
                ax.imshow(_crop_of(rgb, (x1, y1, x2, y2)), extent=(x1, x2, y2, y1),
                          interpolation="bilinear")
            ax.imshow(m, extent=(x1, x2, y2, y1), cmap="jet", alpha=0.45, interpolation="bilinear",
                      vmin=0.0, vmax=max(float(m.max()), 1e-12))
    line = max(1.0, 0.004 * px)
    for b in extra_boxes:
        x1, y1, x2, y2 = getattr(b, "box", b)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="yellow", lw=line, ls="--"))
    for b in boxes:
        x1, y1, x2, y2 = getattr(b, "box", b)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="lime", lw=line))
        if hasattr(b, "score"):
            ax.text(x1, y1, f"{b.score:.2f}", color="black", va="bottom",
                    fontsize=max(8.0, 0.015 * px),
                    bbox={"facecolor": "lime", "edgecolor": "none", "pad": 1})
    if title:
        ax.text(0.01 * w, 0.01 * h, title, color="white", va="top", fontsize=max(8.0, 0.02 * px),
                bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 2})
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)


def _crop_of(rgb: np.ndarray, box: Box) -> np.ndarray:
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in clip_box(box, w, h))
    return rgb[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def draw_response_overlay(
    image: np.ndarray,
    response_map,
    boxes: Sequence,
    path: str,
    extra_boxes: Sequence = (),
    max_side: int = 1024,
) -> None:
    """PNG like the paper's Fig. 3/6: the image, its averaged response map overlaid, boxes drawn.

    ``boxes`` (Detections or x1, y1, x2, y2 in image pixels) are drawn in green with their score;
    ``extra_boxes`` (e.g. head-shoulder windows) in dashed yellow. The PNG keeps the image's aspect.
    """
    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("cannot draw an empty image")
    fig, (ax,), px = _figure(w, h, 1, max_side)
    layers = [] if response_map is None else [(response_map, (0, 0, w, h))]
    _draw_panel(ax, rgb, layers, boxes, extra_boxes, px)
    fig.savefig(path, dpi=fig.dpi)


def draw_cascade(image: np.ndarray, trace: LocalizationTrace, path: str,
                 max_side: int = 640) -> None:
    """Two panels side by side, like the paper's Fig. 3/6, from ``LNetLocalizer.localize_traced``.

    Left: LNet_o's averaged response map over the whole image and the head-shoulder windows it
    chose (dashed yellow). Right: LNet_s's averaged response map of each window, drawn over that
    window (the rest of the image dimmed), and the face boxes with their scores (green).
    """
    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("cannot draw an empty image")
    fig, (left, right), px = _figure(w, h, 2, max_side)
    layers_o = [] if trace.response_o is None else [(trace.response_o, (0, 0, w, h))]
    _draw_panel(left, rgb, layers_o, [], trace.head_shoulders, px, title="LNet_o")
    layers_s = list(zip(trace.responses_s, trace.head_shoulders, strict=False))
    _draw_panel(right, rgb, layers_s, trace.detections, trace.head_shoulders, px,
                dim_outside=True, title="LNet_s")
    fig.savefig(path, dpi=fig.dpi)


# --- `faceattr-ray localize` ---------------------------------------------------------------------


def run(args) -> int:
    """`faceattr-ray localize`: per image, a `draw_cascade` PNG in ``args.out`` and its boxes."""
    import json
    import os
    import sys

    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.data.sources import list_inputs
    from faceattr_ray.errors import BundleError, DataError, FaceAttrError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    bundle = load_bundle(args.model, device=device)
    if bundle.lnet_o is None or bundle.lnet_s is None:
        raise BundleError(f"{args.model}: the bundle has no LNets to localize with")
    paths = list_inputs(args.images)
    if not paths:
        raise DataError(f"no images found in {' '.join(args.images)}")
    threshold = bundle.threshold if args.threshold is None else args.threshold
    options = (bundle.config.get("localizer") or {}).get("options") or {}
    localizer = LNetLocalizer(bundle.lnet_o, bundle.lnet_s, threshold=threshold,
                              all_faces=args.all_faces, device=device, **options)
    if threshold is None:
        print("note: the bundle has no threshold (run `faceattr-ray calibrate`); every image "
              "gets its best window")
    os.makedirs(args.out, exist_ok=True)
    used: set[str] = set()
    failed = 0
    with open(os.path.join(args.out, "boxes.jsonl"), "w") as log:
        for path in paths:
            try:
                image = load_image(path)
            except FaceAttrError as e:  # one unreadable file does not stop the others
                print(f"{path}: error: {e}", file=sys.stderr)
                failed += 1
                continue
            trace = localizer.localize_traced([image])[0]
            stem = os.path.splitext(os.path.basename(path.rstrip("/")))[0] or "image"
            name, k = f"{stem}.png", 1
            while name in used:  # same file name in two folders
                name, k = f"{stem}_{k}.png", k + 1
            used.add(name)
            figure = os.path.join(args.out, name)
            draw_cascade(image, trace, figure)
            faces = [{"box": [round(v, 1) for v in d.box], "score": round(d.score, 4)}
                     for d in trace.detections]
            log.write(json.dumps({"path": path, "figure": figure, "faces": faces}) + "\n")
            found = "; ".join(f"({', '.join(f'{v:.0f}' for v in f['box'])}) score {f['score']:.3g}"
                              for f in faces) or "no face above the threshold"
            print(f"{path}: {found} -> {figure}")
    print(f"{len(paths) - failed} image(s) localized, {failed} unreadable; boxes in "
          f"{os.path.join(args.out, 'boxes.jsonl')}")
    return 1 if failed else 0
