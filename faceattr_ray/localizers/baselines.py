"""Localizers to compare LNet with: scikit-image's LBP face cascade (the off-the-shelf
detector, the paper's "[17]+ANet" style baseline) and the whole image (aligned crops)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from faceattr_ray.crops import box_iou
from faceattr_ray.localizers.base import Detection, as_rgb, resize_rgb


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
            image = resize_rgb(image, max(1, round(w * scale)), max(1, round(h * scale)))
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
