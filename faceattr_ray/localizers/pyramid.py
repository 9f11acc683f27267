"""Finding faces with face-tag LNets (``LNetConfig.face_tag``): an image pyramid and a cascade.

LNet_o was trained on scenes whose faces are ``face_px`` wide, so on a photo it is read at the
scales that bring every face size from ``min_face`` pixels to the photo's short side into that
range (steps of 2^(1/2)). Each scale's face map (the face tag's logit at every C5 cell, stride 8)
gives local maxima; a maximum at scale s proposes a face centred there, ``canonical / s``
pixels wide. Proposals of all scales go through non-maximum suppression.

LNet_s then looks at each proposal's head-shoulder window (``window_faces`` face widths, resized
to its input) at a few zooms: the zoom and cell where its face map peaks (within
``refine_radius`` face widths of the proposal, when set) refine the centre and the size, and
its probability is the face score the threshold applies to (paper section 2.1: LNet_o
proposes, LNet_s refines). The box's shape relative to that centre and size
(``geometry``: width and height in face widths, vertical offset) is calibrated on validation
scenes with `calibrate_geometry`; it is the one place where known boxes enter, as 3 numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from faceattr_ray.crops import crop_resize
from faceattr_ray.localizers.base import Detection, as_rgb, resize_rgb
from faceattr_ray.localizers.windows import nms
from faceattr_ray.models import IMAGENET_MEAN, IMAGENET_STD, to_tensor

DEFAULT_GEOMETRY = {"width": 1.0, "height": 1.25, "dy": 0.0}
STRIDE = 8


def _resize(image: np.ndarray, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    return resize_rgb(image, max(8, round(w * scale)), max(8, round(h * scale)))


def _local_maxima(m: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows, cols of cells above ``floor`` that no 3x3 neighbour exceeds."""
    p = np.pad(m, 1, constant_values=-np.inf)
    h, w = m.shape
    neigh = np.stack([p[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)
                      if (dy, dx) != (1, 1)])
    peak = (m >= neigh.max(0)) & (m > floor)
    return np.nonzero(peak)


def _subcell(m: np.ndarray, r: int, c: int) -> tuple[float, float]:
    """The peak's position to a fraction of a cell: a parabola through it and its neighbours."""
    def offset(a: float, b: float, c_: float) -> float:
        d = a - 2 * b + c_
        return 0.0 if d >= 0 else float(np.clip(0.5 * (a - c_) / d, -0.5, 0.5))
    h, w = m.shape
    dy = offset(m[r - 1, c], m[r, c], m[r + 1, c]) if 0 < r < h - 1 else 0.0
    dx = offset(m[r, c - 1], m[r, c], m[r, c + 1]) if 0 < c < w - 1 else 0.0
    return r + dy, c + dx


def cell_centre(index: float) -> float:
    """Input pixel at the centre of C5 cell ``index`` (stride 8, 'same' padding)."""
    return (index + 0.5) * STRIDE - 0.5


class PyramidLNetLocalizer:
    """LNet_o over an image pyramid proposes faces; LNet_s verifies and refines each one."""

    def __init__(self, lnet_o: torch.nn.Module, lnet_s: torch.nn.Module | None,
                 threshold: float | None = 0.5, all_faces: bool = False,
                 device: str | torch.device = "cpu", *, canonical: float = 36.0,
                 min_face: float = 20.0, scale_step: float = 2 ** 0.5, max_side: int = 1600,
                 proposal_floor: float = 0.1, max_proposals: int = 12, nms_iou: float = 0.3,
                 window_size: int = 96, window_faces: float = 2.5,
                 zooms: Sequence[float] = (0.7, 0.84, 1.0, 1.19, 1.42), max_faces: int = 20,
                 geometry: dict | None = None, refine_radius: float | None = None,
                 flip_proposals: bool = False,
                 mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> None:
        self.device = torch.device(device)
        self.lnet_o = lnet_o.to(self.device).eval()
        self.lnet_s = None if lnet_s is None else lnet_s.to(self.device).eval()
        self.threshold = None if threshold is None else float(threshold)
        self.all_faces = all_faces
        self.canonical, self.min_face, self.scale_step = canonical, min_face, scale_step
        self.max_side, self.proposal_floor = max_side, proposal_floor
        self.max_proposals, self.nms_iou, self.max_faces = max_proposals, nms_iou, max_faces
        self.window_size, self.window_faces, self.zooms = window_size, window_faces, tuple(zooms)
        self.geometry = dict(DEFAULT_GEOMETRY, **(geometry or {}))
        self.refine_radius = None if refine_radius is None else float(refine_radius)
        self.flip_proposals = bool(flip_proposals)
        self.mean, self.std = tuple(mean), tuple(std)

    @classmethod
    def from_bundle(cls, bundle, threshold: float | None | str = "bundle", all_faces: bool = False,
                    device: str | torch.device | None = None, fold: bool = True,
                    **overrides) -> PyramidLNetLocalizer:
        """The bundle's face-tag LNets with its normalisation, its stored options (geometry,
        scales) and then ``overrides``; ``threshold`` and ``fold`` as in
        `LNetLocalizer.from_bundle`."""
        from faceattr_ray.models import Preprocess
        from faceattr_ray.models.fold import fold_batch_norm
        from faceattr_ray.runtime import pick_device

        pre = Preprocess.of(bundle)
        options = {"mean": pre.mean, "std": pre.std,
                   **((bundle.config.get("localizer") or {}).get("options") or {}), **overrides}
        nets = [fold_batch_norm(n) if fold else n for n in (bundle.lnet_o, bundle.lnet_s)]
        return cls(*nets, threshold=bundle.threshold if threshold == "bundle" else threshold,
                   all_faces=all_faces, device=pick_device(device), **options)

    @property
    def crop_size(self) -> int:
        """The side LNet_s reads a head-shoulder window at (as `LNetLocalizer.crop_size`)."""
        return self.window_size

    def options(self) -> dict:
        """Every setting that decides a face score or box (threshold, all_faces and device
        aside), as stored in a bundle's ``localizer.options``."""
        return {"canonical": self.canonical, "min_face": self.min_face,
                "scale_step": self.scale_step, "max_side": self.max_side,
                "proposal_floor": self.proposal_floor, "max_proposals": self.max_proposals,
                "nms_iou": self.nms_iou, "window_size": self.window_size,
                "window_faces": self.window_faces, "zooms": list(self.zooms),
                "max_faces": self.max_faces, "geometry": dict(self.geometry),
                "refine_radius": self.refine_radius, "flip_proposals": self.flip_proposals,
                "mean": list(self.mean), "std": list(self.std)}

    # --- stage 1 -------------------------------------------------------------------------------

    def scales(self, height: int, width: int) -> list[float]:
        """Resize factors that bring faces of ``min_face`` .. the short side to ``canonical``."""
        largest = max(self.canonical / min(height, width), 1e-3)
        s = self.canonical / self.min_face
        out = []
        while s >= largest * 0.99:
            if max(height, width) * s <= self.max_side:
                out.append(s)
            s /= self.scale_step
        return out or [min(1.0, self.max_side / max(height, width))]

    @torch.inference_mode()
    def _face_logits(self, net: torch.nn.Module, images: list[np.ndarray]) -> np.ndarray:
        x = to_tensor(images, None, self.mean, self.std, self.device)
        return net.face_map(x).float().cpu().numpy()

    def _proposal_map(self, scaled: np.ndarray) -> np.ndarray:
        """LNet_o's face map of one pyramid level; with ``flip_proposals``, averaged with the
        map of the level's mirror image, mirrored back onto the level's cells."""
        if not self.flip_proposals:
            return self._face_logits(self.lnet_o, [scaled])[0]
        # the level and its mirror in one batch: one call of LNet_o, not two
        m, mirrored = self._face_logits(self.lnet_o,
                                        [scaled, np.ascontiguousarray(scaled[:, ::-1])])
        return (m + _mirror_back(mirrored, scaled.shape[1])) / 2

    def proposals(self, image: np.ndarray, maps: list | None = None) -> np.ndarray:
        """(K, 4) rows of centre x, centre y, face width, probability; best first, after NMS.
        ``maps``: a list that receives each scale's face map (for figures)."""
        h, w = image.shape[:2]
        rows = []
        floor = math.log(self.proposal_floor / (1 - self.proposal_floor))
        for s in self.scales(h, w):
            scaled = _resize(image, s)
            m = self._proposal_map(scaled)
            if maps is not None:
                maps.append(m)
            sy, sx = scaled.shape[0] / h, scaled.shape[1] / w
            for r, c in zip(*_local_maxima(m, floor), strict=True):
                fr, fc = _subcell(m, int(r), int(c))
                rows.append((cell_centre(fc) / sx, cell_centre(fr) / sy, self.canonical / s,
                             float(m[r, c])))
        if not rows:
            return np.zeros((0, 4))
        p = np.array(rows)
        p[:, 3] = 1 / (1 + np.exp(-p[:, 3]))
        keep = nms(_square(p), p[:, 3], self.nms_iou)[: self.max_proposals]
        return p[keep]

    # --- stage 2 -------------------------------------------------------------------------------

    def refine(self, image: np.ndarray, proposals: np.ndarray,
               trace: list | None = None) -> np.ndarray:
        """LNet_s on each proposal's window at each zoom: (K, 4) centre x, y, width, probability.

        The zoom whose map peaks highest gives the width, refined between zooms by a parabola
        through the peaks in log zoom; that map's peak gives the centre. ``trace``: a list that
        receives (window, LNet_s probability map) of each proposal's chosen zoom."""
        if self.lnet_s is None or len(proposals) == 0:
            if trace is not None:
                trace.extend((tuple(b), None) for b in self.to_boxes(proposals))
            return proposals
        side_in, zooms = self.window_size, np.array(self.zooms, np.float64)
        crops, windows = [], []
        for cx, cy, fw, _ in proposals:
            for z in zooms:
                half = fw * z * self.window_faces / 2
                box = (cx - half, cy - half, cx + half, cy + half)
                crops.append(crop_resize(image, box, (side_in, side_in)))
                windows.append(box)
        maps = self._face_logits(self.lnet_s, crops)
        maps = maps.reshape(len(proposals), len(zooms), *maps.shape[1:])
        reach = self._reach(maps.shape[2:], zooms)
        out = proposals.copy()
        for k in range(len(proposals)):
            peaks = np.where(reach, maps[k], -np.inf).max(axis=(1, 2))
            z = int(np.argmax(peaks))
            log_zoom = math.log(zooms[z])
            if 0 < z < len(zooms) - 1:  # vertex of the parabola through three peaks
                a, b, c = peaks[z - 1], peaks[z], peaks[z + 1]
                d = a - 2 * b + c
                if d < 0:
                    step = math.log(zooms[z + 1] / zooms[z])
                    log_zoom += step * float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
            m = maps[k, z]
            r, c_ = np.unravel_index(int(np.argmax(np.where(reach[z], m, -np.inf))), m.shape)
            fr, fc = _subcell(m, int(r), int(c_))
            x0, y0, x1, _ = windows[k * len(zooms) + z]
            px = (x1 - x0) / side_in
            out[k, 0] = x0 + cell_centre(fc) * px
            out[k, 1] = y0 + cell_centre(fr) * px
            out[k, 2] = proposals[k, 2] * math.exp(log_zoom)
            out[k, 3] = 1 / (1 + math.exp(-float(peaks[z])))
            if trace is not None:
                trace.append((windows[k * len(zooms) + z], 1 / (1 + np.exp(-m))))
        return out

    def _reach(self, shape: tuple[int, ...], zooms: np.ndarray) -> np.ndarray:
        """(Z, h, w): the LNet_s cells whose centre lies within ``refine_radius`` face widths
        of the window's centre at each zoom (all of them when None). In a group photo a
        window holds the neighbours' faces too; a peak on one of them would move the proposal
        onto a face that another proposal already holds."""
        h, w = shape
        if self.refine_radius is None:
            return np.ones((len(zooms), h, w), bool)
        face = self.window_size / (zooms * self.window_faces)  # face width in window pixels
        centre = (self.window_size - 1) / 2
        dist = np.hypot(cell_centre(np.arange(h))[:, None] - centre,
                        cell_centre(np.arange(w))[None, :] - centre)
        reach = dist[None] <= self.refine_radius * face[:, None, None]
        reach[reach.reshape(len(zooms), -1).sum(1) == 0] = True  # never an empty search
        return reach

    # --- boxes ---------------------------------------------------------------------------------

    def to_boxes(self, faces: np.ndarray) -> np.ndarray:
        g = self.geometry
        cx, cy, fw = faces[:, 0], faces[:, 1] + g["dy"] * faces[:, 2], faces[:, 2]
        hw, hh = g["width"] * fw / 2, g["height"] * fw / 2
        return np.stack([cx - hw, cy - hh, cx + hw, cy + hh], 1)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces of one image, best first: all above the threshold (``all_faces``), else the
        best one if it is above."""
        return self._detect(as_rgb(image))[0]

    def _detect(self, image: np.ndarray, traced: bool = False):
        maps: list | None = [] if traced else None
        windows: list | None = [] if traced else None
        faces = self.refine(image, self.proposals(image, maps), windows)
        keep = np.zeros(0, np.int64)
        boxes = self.to_boxes(faces) if len(faces) else np.zeros((0, 4))
        if len(faces):
            keep = nms(boxes, faces[:, 3], self.nms_iou)
            if self.threshold is not None:
                keep = keep[faces[keep, 3] >= self.threshold]
            keep = keep[: self.max_faces] if self.all_faces else keep[:1]
        dets = [Detection(tuple(float(v) for v in boxes[i]), float(faces[i, 3])) for i in keep]
        return dets, maps, windows, keep

    def localize(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return [self.detect(im) for im in images]

    def localize_traced(self, images: Sequence[np.ndarray]) -> list:
        """`localize` plus what the cascade saw (for `drawing.draw_cascade`): LNet_o's face
        probability over the image (the maximum over scales, on the finest scale's grid), each
        kept face's head-shoulder window and LNet_s's probability map of it."""
        from faceattr_ray.localizers.lnet import LocalizationTrace

        out = []
        for image in images:
            image = as_rgb(image)
            dets, maps, windows, keep = self._detect(image, traced=True)
            out.append(LocalizationTrace(
                detections=dets, response_o=_max_over_scales(maps),
                head_shoulders=[tuple(float(v) for v in windows[i][0]) for i in keep],
                responses_s=[windows[i][1] for i in keep if windows[i][1] is not None]))
        return out

    def draw(self, image: np.ndarray, path: str):
        """A Fig. 3/6-style PNG of one image (`drawing.draw_cascade`); returns its trace."""
        from faceattr_ray.localizers.drawing import draw_cascade

        trace = self.localize_traced([image])[0]
        draw_cascade(image, trace, path)
        return trace


def _mirror_back(m: np.ndarray, width: int) -> np.ndarray:
    """The face map of a mirrored image (``width`` pixels wide) on the cells of the original.
    Cell i's centre is `cell_centre(i)`; reversed, the mirror's cells sit (width - 8 W) pixels
    off the original's (W cells: a width that is no multiple of the stride leaves a part
    cell), so the reversed rows are read there by linear interpolation."""
    reversed_ = m[:, ::-1]
    cells = m.shape[1]
    shift = (width - STRIDE * cells) / STRIDE
    index = np.arange(cells, dtype=np.float64)
    return np.stack([np.interp(index - shift, index, row) for row in reversed_]).astype(m.dtype)


def _max_over_scales(maps: list[np.ndarray]) -> np.ndarray | None:
    """Face probability maps of every scale, resized to the largest one's grid, maximum taken."""
    if not maps:
        return None
    h, w = max((m.shape for m in maps), key=lambda s: s[0] * s[1])
    probs = torch.sigmoid(torch.from_numpy(np.stack([
        torch.nn.functional.interpolate(torch.from_numpy(m)[None, None], size=(h, w),
                                        mode="bilinear", align_corners=False)[0, 0].numpy()
        for m in maps])))
    return probs.amax(0).numpy()


def _square(p: np.ndarray) -> np.ndarray:
    half = p[:, 2] / 2
    return np.stack([p[:, 0] - half, p[:, 1] - half, p[:, 0] + half, p[:, 1] + half], 1)
