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
from faceattr_ray.windows import crop_resize, expand_box

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
    """Runs a model bundle over decoded images (uint8 RGB arrays of any size)."""

    def __init__(
        self,
        bundle: Bundle,
        device: str | torch.device | None = None,
        localizer: str = "lnet",
        all_faces: bool = False,
        with_features: bool = False,
    ) -> None:
        if localizer not in LOCALIZERS:
            raise ValueError(f"localizer must be one of {LOCALIZERS}, not {localizer!r}")
        self.bundle = bundle
        self.device = pick_device(str(device) if device is not None else None)
        self.with_features = with_features
        self.attributes = list(bundle.attributes)
        self.anet = bundle.anet.to(self.device).eval()
        pre = bundle.config.get("preprocess", {})
        self.mean, self.std = pre.get("mean"), pre.get("std")
        # Aligned crops already frame the face; found faces get the paper's small extra context.
        self.context = 1.0 if localizer == "full" else float(pre.get("face_context", 1.2))
        if localizer == "lnet":
            if bundle.lnet_o is None or bundle.lnet_s is None:
                raise ValueError("this bundle has no LNets: use localizer 'full' or 'cascade'")
            self.localizer = LNetLocalizer(
                bundle.lnet_o.to(self.device).eval(),
                bundle.lnet_s.to(self.device).eval(),
                threshold=bundle.threshold,
                all_faces=all_faces,
                device=self.device,
                **bundle.config.get("localizer", {}).get("options", {}),
            )
        elif localizer == "cascade":
            self.localizer = CascadeLocalizer(all_faces=all_faces)
        else:
            self.localizer = FullImageLocalizer()
        self.heads = (
            LinearHeads.from_arrays(self.attributes, bundle.heads) if bundle.heads else None
        )
        if self.heads is not None:
            self._head_w = torch.as_tensor(self.heads.weight, device=self.device).T.contiguous()
            self._head_b = torch.as_tensor(self.heads.bias, device=self.device)

    def _autocast(self):
        # Mixed precision only on GPU: on CPU plain float32 is both faster and exact.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        detections = self.localizer.localize(images)
        results = [ImageResult(im.shape[1], im.shape[0], []) for im in images]
        jobs: list[tuple[int, Detection]] = [
            (i, d) for i, dets in enumerate(detections) for d in dets
        ]
        if not jobs:
            return results
        side = self.anet.config.window_size
        windows = [
            crop_resize(images[i], expand_box(d.box, self.context), (side, side)) for i, d in jobs
        ]
        x = to_tensor(windows, None, self.mean, self.std).to(self.device)
        with self._autocast():
            feats = self.anet.patch_features(x).float()  # (M, P, F)
            scores = self._score(feats)
        scores = scores.cpu().numpy()
        mean_feats = feats.mean(dim=1).cpu().numpy() if self.with_features else None
        for k, (i, d) in enumerate(jobs):
            results[i].faces.append(
                Face(
                    box=tuple(float(v) for v in d.box),
                    score=float(d.score),
                    attributes=scores[k],
                    features=None if mean_feats is None else mean_feats[k],
                )
            )
        return results

    def _score(self, feats: torch.Tensor) -> torch.Tensor:
        """Attribute scores averaged over patches: the SVM heads, else ANet's own attribute head."""
        if self.heads is not None:
            return (feats @ self._head_w + self._head_b).mean(dim=1)
        m, p, f = feats.shape
        return self.anet.attribute_logits(feats.reshape(m * p, f)).reshape(m, p, -1).mean(dim=1)
