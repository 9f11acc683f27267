"""The paper's localizer (section 2.1): LNet_o's averaged response map over the whole image
gives the head-and-shoulders box; that box, resized for LNet_s, gives the face; boxes come back
in the original image's pixels.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from faceattr_ray.crops import Box, clip_box, crop_resize, expand_box
from faceattr_ray.localizers.base import Detection, as_rgb, chunks, resize_rgb
from faceattr_ray.localizers.peaks import region_windows
from faceattr_ray.localizers.windows import DEFAULT_ALPHA, above_baseline, best_window, nms
from faceattr_ray.models import IMAGENET_MEAN, IMAGENET_STD, to_tensor


@dataclass
class LocalizationTrace:
    """What the cascade saw for one image (for figures like the paper's Fig. 3 and 6)."""

    detections: list[Detection]
    response_o: np.ndarray | None = None  # LNet_o map over the image (padding cut off)
    head_shoulders: list[Box] = field(default_factory=list)  # original pixels
    responses_s: list[np.ndarray] = field(default_factory=list)  # LNet_s map of each crop


class LNetLocalizer:
    """LNet_o on the whole image -> head-shoulder box -> LNet_s on it (227x227) -> face.

    ``threshold`` applies to the face score: the best LNet_s window score (sum / sqrt(area) on its
    averaged C5 map). Below it an image has no face; ``None`` always returns the best window.
    ``baseline``: each map's level at this quantile (default the median) is subtracted before
    windows are scored (`above_baseline`: without it a response floor makes the whole image the
    best window); ``None`` scores the raw maps.
    ``all_faces``: one detection per LNet_o region and LNet_s region above the threshold, after
    non-maximum suppression, highest score first (LNet_o regions scoring under
    ``min_relative_score`` of its best are not searched). Otherwise the dominant face only:
    LNet_o's best window, then LNet_s's densest region, as the paper prunes several faces that
    share one head-shoulder box. Box geometry is proportional (a map cell covers an equal share
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
                    device: str | torch.device | None = None, fold: bool = True, **overrides):
        """The bundle's LNet cascade, read as it was trained: the one way to build it from a
        bundle (annotate, calibrate, reproduce, report, `localize`, the benchmarks).

        Options, later ones winning: the bundle's preprocessing (normalisation, the sizes the
        LNets read at), its localizer options (``config["localizer"]["options"]``), then
        ``overrides``. ``threshold``: "bundle" (the calibrated one), a number, or None (every
        image gets its best window: what calibration scores). ``fold``: the LNets run with
        their batch norm folded into the convolutions (`models.fold`; copies, the bundle's own
        networks are untouched).
        """
        from faceattr_ray.errors import BundleError
        from faceattr_ray.models import Preprocess
        from faceattr_ray.models.fold import fold_batch_norm
        from faceattr_ray.runtime import pick_device

        if bundle.lnet_o is None or bundle.lnet_s is None:
            raise BundleError(f"{bundle.path or 'the bundle'}: the bundle has no LNets to "
                              "localize with (use the 'full' or 'cascade' localizer)")
        if getattr(bundle.lnet_o.config, "face_tag", False):
            # Face-tag LNets (preset "wild") are read over an image pyramid.
            from faceattr_ray.localizers.pyramid import PyramidLNetLocalizer

            return PyramidLNetLocalizer.from_bundle(bundle, threshold, all_faces, device, fold,
                                                    **overrides)
        options = {**Preprocess.of(bundle).lnet_options(),
                   **((bundle.config.get("localizer") or {}).get("options") or {}), **overrides}
        nets = [fold_batch_norm(n) if fold else n for n in (bundle.lnet_o, bundle.lnet_s)]
        return cls(*nets,
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
        x = to_tensor(images, None, self.mean or IMAGENET_MEAN, self.std or IMAGENET_STD,
                      self.device)
        # Pad (zeros = the mean colour after normalisation) up to the smallest input C5 accepts.
        side = max(self.min_input, getattr(net, "min_input_size", 0))
        ph, pw = max(0, side - x.shape[2]), max(0, side - x.shape[3])
        if ph or pw:
            x = torch.nn.functional.pad(x, (0, pw, 0, ph))
        maps = net.response_map(x).float().cpu().numpy()
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
        """Stage 1 alone: LNet_o on whole images -> head-shoulder boxes (``response_o`` and
        ``head_shoulders`` of each trace filled in; no detections). Also what LNet_s trains on."""
        rgb = [as_rgb(im) for im in images]
        traces = [LocalizationTrace(detections=[]) for _ in rgb]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, im in enumerate(rgb):
            if im.shape[0] and im.shape[1]:
                groups[self._input_size(im.shape[0], im.shape[1])].append(i)
        for (rh, rw), members in groups.items():
            for chunk in chunks(members, self.batch_size):
                maps, ph, pw = self._maps(self.lnet_o, [resize_rgb(rgb[i], rw, rh) for i in chunk])
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
        for chunk in chunks(crops, self.batch_size):
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
        """Fig. 3/6-style PNG (`draw_cascade`): LNet_o's map and head-shoulder boxes, LNet_s's
        maps over those windows and the face boxes."""
        from faceattr_ray.localizers.drawing import draw_cascade

        trace = self.localize_traced([image])[0]
        draw_cascade(image, trace, path)
        return trace
