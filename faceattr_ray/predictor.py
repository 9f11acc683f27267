"""The cascade in one object: localize faces, extract ANet features in one pass, score attributes.

Everything that predicts goes through `Predictor.predict`: the Ray Data actor of the annotate job,
`evaluate`, the demo and the benchmarks. Inference logic lives here and nowhere else, so the
pipeline-versus-bare-loop benchmark measures Ray's overhead and nothing more.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from faceattr_ray.bundle import Bundle
from faceattr_ray.heads import LinearHeads
from faceattr_ray.localize import (
    CascadeLocalizer,
    Detection,
    FullImageLocalizer,
    LNetLocalizer,
)
from faceattr_ray.models import to_tensor
from faceattr_ray.crops import crop_resize, expand_box

LOCALIZERS = ("lnet", "cascade", "full")


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the input image's pixels
    score: float  # the localizer's face score
    attributes: np.ndarray  # (A,) attribute scores; > 0 means present
    features: np.ndarray | None = None  # (F,) ANet FC features averaged over patches


@dataclass
class ImageResult:
    width: int
    height: int
    faces: list[Face]


def pick_device(device: str | None = None) -> torch.device:
    """``device`` if given, else the GPU when there is one, else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Predictor:
    """Runs a model bundle over decoded images (uint8 RGB arrays of any size).

    ``predict`` is three steps that can also run apart (the annotate job's split pools):
    ``localize`` (LNets or another localizer) -> ``face_windows`` (crops at ANet's input size)
    -> ``describe`` (ANet one pass + heads). ``parts`` builds only what one side needs:
    "localize" (no ANet), "describe" (no localizer) or "all".
    """

    def __init__(
        self,
        bundle: Bundle,
        device: str | torch.device | None = None,
        localizer: str = "lnet",
        all_faces: bool = False,
        with_features: bool = False,
        parts: str = "all",
    ) -> None:
        if localizer not in LOCALIZERS:
            raise ValueError(f"localizer must be one of {LOCALIZERS}, not {localizer!r}")
        if parts not in ("all", "localize", "describe"):
            raise ValueError(f"parts must be 'all', 'localize' or 'describe', not {parts!r}")
        self.bundle = bundle
        self.device = pick_device(str(device) if device is not None else None)
        self.with_features = with_features
        self.attributes = list(bundle.attributes)
        pre = bundle.config.get("preprocess", {})
        self.mean, self.std = pre.get("mean"), pre.get("std")
        self.window_side = bundle.anet.config.window_size
        # Aligned crops already frame the face; found faces get the paper's small extra context.
        self.context = 1.0 if localizer == "full" else float(pre.get("face_context", 1.2))
        self.localizer = None if parts == "describe" else self._make_localizer(localizer, all_faces)
        self.anet = self.heads = None
        if parts != "localize":
            self.anet = bundle.anet.to(self.device).eval()
            if bundle.heads:
                self.heads = LinearHeads.from_arrays(self.attributes, bundle.heads)
                self._head_w = torch.as_tensor(self.heads.weight, device=self.device).T.contiguous()
                self._head_b = torch.as_tensor(self.heads.bias, device=self.device)

    def _make_localizer(self, localizer: str, all_faces: bool):
        bundle = self.bundle
        if localizer == "lnet":
            if bundle.lnet_o is None or bundle.lnet_s is None:
                raise ValueError("this bundle has no LNets: use localizer 'full' or 'cascade'")
            return LNetLocalizer(
                bundle.lnet_o.to(self.device).eval(),
                bundle.lnet_s.to(self.device).eval(),
                threshold=bundle.threshold,
                all_faces=all_faces,
                device=self.device,
                **bundle.config.get("localizer", {}).get("options", {}),
            )
        if localizer == "cascade":
            return CascadeLocalizer(all_faces=all_faces)
        return FullImageLocalizer()

    def _autocast(self):
        # Mixed precision only on GPU: on CPU plain float32 is both faster and exact.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        detections = self.localize(images)
        windows = self.face_windows(images, detections)
        scores, features = self.describe(windows)
        return assemble_results([im.shape for im in images], detections, scores, features)

    def localize(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces of each image (boxes in its pixels), dominant first."""
        return self.localizer.localize(images)

    def face_windows(self, images: list[np.ndarray],
                     detections: list[list[Detection]]) -> np.ndarray:
        """(M, S, S, 3) uint8: every detected face, enlarged by the context factor and resized to
        ANet's window, in the order of ``detections`` (image by image, face by face)."""
        side = self.window_side
        windows = [crop_resize(images[i], expand_box(d.box, self.context), (side, side))
                   for i, dets in enumerate(detections) for d in dets]
        if not windows:
            return np.zeros((0, side, side, 3), np.uint8)
        return np.stack(windows)

    @torch.inference_mode()
    def describe(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Attribute scores (M, A) of face windows, and their patch-mean features (M, F) when
        ``with_features``."""
        if len(windows) == 0:
            dim = self.anet.config.feature_dim
            return (np.zeros((0, len(self.attributes)), np.float32),
                    np.zeros((0, dim), np.float32) if self.with_features else None)
        feats = self.patch_features(windows)
        with self._autocast():
            scores = self._score(feats)
        mean_feats = feats.mean(dim=1).cpu().numpy() if self.with_features else None
        return scores.float().cpu().numpy(), mean_feats

    @torch.inference_mode()
    def patch_features(self, windows: np.ndarray) -> torch.Tensor:
        """ANet FC vectors of every lattice patch of each face window, (M, P, F) float32, one
        pass per window, on the predictor's device."""
        x = to_tensor(windows, None, self.mean, self.std).to(self.device)
        with self._autocast():
            return self.anet.patch_features(x).float()

    def _score(self, feats: torch.Tensor) -> torch.Tensor:
        """Attribute scores averaged over patches: the SVM heads, else ANet's own attribute head."""
        if self.heads is not None:
            return (feats @ self._head_w + self._head_b).mean(dim=1)
        m, p, f = feats.shape
        return self.anet.attribute_logits(feats.reshape(m * p, f)).reshape(m, p, -1).mean(dim=1)


def assemble_results(
    shapes: list[tuple[int, ...]],
    detections: list[list[Detection]],
    scores: np.ndarray,
    features: np.ndarray | None,
) -> list[ImageResult]:
    """Per-image results from per-face arrays laid out in ``detections``' order."""
    results, k = [], 0
    for shape, dets in zip(shapes, detections, strict=True):
        faces = []
        for d in dets:
            faces.append(Face(box=tuple(float(v) for v in d.box), score=float(d.score),
                              attributes=scores[k],
                              features=None if features is None else features[k]))
            k += 1
        results.append(ImageResult(int(shape[1]), int(shape[0]), faces))
    return results
