"""The cascade in one object: localize faces, extract ANet features in one pass, score attributes.

Everything that predicts attributes goes through `Predictor`: the annotate job's actors (whole,
or its steps in the split pools), `evaluate`, the report, reproduce's head features, the demo
and the benchmarks. What only localizes uses the localizer's public API instead
(`LNetLocalizer.from_bundle`: calibration, the `localize` command, figures), which is the very
object `Predictor` holds. So the pipeline-versus-bare-loop benchmark measures Ray's overhead and
nothing more.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from faceattr_ray.bundle import Bundle
from faceattr_ray.heads import LinearHeads, linear_scores
from faceattr_ray.localizers import (
    LOCALIZERS,
    CascadeLocalizer,
    Detection,
    FramedLocalizer,
    FullImageLocalizer,
    LNetLocalizer,
)
from faceattr_ray.models import Preprocess
from faceattr_ray.models.fold import fold_batch_norm
from faceattr_ray.runtime import amp_dtype, check_precision, pick_device, to_channels_last


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


class Predictor:
    """Runs a model bundle over decoded images (uint8 RGB arrays of any size).

    ``predict`` is three steps that can also run apart (the annotate job's split pools):
    ``localize`` (LNets or another localizer; with ``frame_zooms``, each box then re-sized to
    the zoom ANet reads most confidently, `localizers.framing`) -> ``face_crops`` (each face
    framed by the bundle's preprocessing, at ANet's input size) -> ``describe`` (ANet one pass
    + heads). ``parts`` builds only what one side needs: "localize" (no ANet unless framing
    needs it), "describe" (no localizer) or "all".
    """

    def __init__(
        self,
        bundle: Bundle,
        device: str | torch.device | None = None,
        localizer: str = "lnet",
        all_faces: bool = False,
        with_features: bool = False,
        parts: str = "all",
        flip: bool | None = None,
        precision: str = "auto",
        channels_last: bool | None = None,
        fold: bool = True,
        frame_zooms: Sequence[float] | None = None,
    ) -> None:
        check_precision(precision)
        if localizer not in LOCALIZERS:
            raise ValueError(f"localizer must be one of {LOCALIZERS}, not {localizer!r}")
        if parts not in ("all", "localize", "describe"):
            raise ValueError(f"parts must be 'all', 'localize' or 'describe', not {parts!r}")
        self.bundle = bundle
        self.device = pick_device(device)
        self.with_features = with_features
        # Test-time flip averaging: each crop's patches and its mirror's patches both feed the
        # scores (their mean). None: the bundle's own setting (config "predict": {"flip"}).
        self.flip = bool((bundle.config.get("predict") or {}).get("flip", False)
                         if flip is None else flip)
        self.attributes = list(bundle.attributes)
        self.preprocess = Preprocess.of(bundle)  # what training wrote into the bundle
        self.crop_side = bundle.anet.config.window_size
        # "full": every image is an aligned face crop, taken whole (no extra context).
        self.aligned = localizer == "full"
        # fold: batch norm folded into the convolutions (`models.fold`, copies of the bundle's
        # networks): the same outputs without a normalisation pass
        self.localizer = (None if parts == "describe"
                          else self._make_localizer(localizer, all_faces, fold))
        # Found boxes framed by ANet's confidence (localizers/framing.py): these zooms of each
        # box are read and the most confident kept. None: the bundle's own setting (config
        # "predict": {"frame_zooms"}); () or [] turns it off. Aligned crops are never framed.
        if frame_zooms is None:
            frame_zooms = bundle_frame_zooms(bundle)
        framing = bool(frame_zooms) and parts != "describe" and not self.aligned
        self.anet = None
        if parts != "localize" or framing:
            anet = fold_batch_norm(bundle.anet) if fold else bundle.anet
            self.anet = anet.to(self.device).eval()
            weight, bias, _ = bundle.head_arrays()
            LinearHeads.from_arrays(self.attributes, {"weight": weight, "bias": bias})  # checks
            self._head_w = torch.as_tensor(weight, device=self.device)
            self._head_b = torch.as_tensor(bias, device=self.device)
        # and found boxes that ANet reads below the bundle's floor (set by `reproduce` on val
        # scenes) are dropped as face-like texture
        self.framer = bundle_framer(bundle, self.localizer, self, frame_zooms) if framing else None
        self.amp_dtype = amp_dtype(precision, self.device)
        # Channels-last (NHWC) is the layout GPU convolutions (cuDNN, tensor cores) run fastest
        # in; on a CPU it is a measured choice (bench/annotate.py), off by default.
        if channels_last if channels_last is not None else self.device.type == "cuda":
            for net in self.networks():
                to_channels_last(net)

    def networks(self) -> list[torch.nn.Module]:
        """The CNNs this predictor runs (LNets, ANet), on its device."""
        nets = [getattr(self.localizer, n, None) for n in ("lnet_o", "lnet_s")] + [self.anet]
        return [n for n in nets if isinstance(n, torch.nn.Module)]

    def _make_localizer(self, localizer: str, all_faces: bool, fold: bool):
        bundle = self.bundle
        if localizer == "lnet":
            return LNetLocalizer.from_bundle(bundle, all_faces=all_faces, device=self.device,
                                             fold=fold)
        if localizer == "cascade":
            return CascadeLocalizer(all_faces=all_faces)
        return FullImageLocalizer()

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @torch.inference_mode()
    def predict(self, images: list[np.ndarray]) -> list[ImageResult]:
        """Every image's faces. ANet and the heads run once over the face crops of all the
        images together (one batch across images)."""
        detections = self.localize(images)
        scores, features = self.describe(self.face_crops(images, detections))
        return assemble_results([im.shape for im in images], detections, scores, features)

    def localize(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Faces of each image (boxes in its pixels), dominant first; framed by ANet when the
        predictor frames."""
        with self._autocast():
            found = self.localizer.localize(images)
        return found if self.framer is None else self.framer.frame(images, found)

    def face_crops(self, images: list[np.ndarray],
                   detections: list[list[Detection]]) -> np.ndarray:
        """(M, S, S, 3) uint8: every detected face framed by the bundle's preprocessing
        (`Preprocess.face_crop`) at ANet's input side, in the order of ``detections`` (image by
        image, face by face)."""
        side = self.crop_side
        crops = [self.preprocess.face_crop(images[i], None if self.aligned else d.box, side)
                 for i, dets in enumerate(detections) for d in dets]
        if not crops:
            return np.zeros((0, side, side, 3), np.uint8)
        return np.stack(crops)

    @torch.inference_mode()
    def describe(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Attribute scores (M, A) of face crops, and their patch-mean features (M, F) when
        ``with_features``."""
        if len(crops) == 0:
            dim = self.anet.config.feature_dim
            return (np.zeros((0, len(self.attributes)), np.float32),
                    np.zeros((0, dim), np.float32) if self.with_features else None)
        feats = self.patch_features(crops)
        with self._autocast():
            scores = self._score(feats)
        mean_feats = feats.mean(dim=1).cpu().numpy() if self.with_features else None
        return scores.float().cpu().numpy(), mean_feats

    def attribute_scores(self, crops: np.ndarray, chunk: int = 256) -> np.ndarray:
        """(M, A) attribute scores of face crops (`describe` without features), ``chunk`` crops
        at a time (framing reads several crops of every face)."""
        return np.concatenate([self.describe(crops[i:i + chunk])[0]
                               for i in range(0, max(len(crops), 1), chunk)])

    @torch.inference_mode()
    def patch_features(self, crops: np.ndarray) -> torch.Tensor:
        """ANet FC vectors of every lattice patch of each face crop, (M, P, F) float32, one
        pass per crop, on the predictor's device; with ``flip``, (M, 2P, F): the mirrored
        crop's patches follow (a second pass), so a patch mean is the mean of both views."""
        x = self.crop_tensor(crops)
        with self._autocast():
            feats = self.anet.patch_features(x).float()
            if self.flip:
                mirrored = self.anet.patch_features(torch.flip(x, dims=[3])).float()
                feats = torch.cat([feats, mirrored], dim=1)
        return feats

    @torch.inference_mode()
    def mean_features(self, crops: np.ndarray, chunk: int = 256) -> np.ndarray:
        """(M, F) float32 patch-mean ANet features of face crops, ``chunk`` at a time (what the
        face head reads, and what it is fit on)."""
        if len(crops) == 0:
            return np.zeros((0, self.anet.config.feature_dim), np.float32)
        return np.concatenate([self.patch_features(crops[i:i + chunk]).mean(dim=1).cpu().numpy()
                               for i in range(0, len(crops), chunk)])

    def face_scores(self, crops: np.ndarray) -> np.ndarray:
        """(M,) the bundle's face head (`heads.face`) on face crops: above 0 reads as a face."""
        from faceattr_ray.heads.face import face_head_scores

        head = bundle_face_head(self.bundle)
        if head is None:
            raise ValueError("the bundle has no face head (config predict.face_head)")
        return face_head_scores(self.mean_features(crops), head)

    def crop_tensor(self, crops: np.ndarray) -> torch.Tensor:
        """(M, 3, S, S) float32: face crops normalised as in training, on the device."""
        return self.preprocess.normalize(crops, self.device)

    def _score(self, feats: torch.Tensor) -> torch.Tensor:
        """Attribute scores averaged over patches: the bundle's SVM heads, else ANet's own
        attribute layer (`Bundle.head_arrays`)."""
        return linear_scores(feats, self._head_w, self._head_b)


def bundle_frame_zooms(bundle: Bundle) -> tuple[float, ...]:
    """The zooms a bundle frames its found boxes at (config "predict": {"frame_zooms"}); ()
    when it does not frame."""
    return tuple((bundle.config.get("predict") or {}).get("frame_zooms") or ())


def bundle_frame_shifts(bundle: Bundle) -> dict[str, tuple[float, ...]]:
    """The centre moves a bundle tries after the zoom (config "predict": {"frame_shifts_y",
    "frame_shifts_x"}), as `FramedLocalizer` keywords; none by default."""
    predict = bundle.config.get("predict") or {}
    return {"shifts_y": tuple(predict.get("frame_shifts_y") or ()),
            "shifts_x": tuple(predict.get("frame_shifts_x") or ())}


def bundle_face_head(bundle: Bundle) -> dict | None:
    """A bundle's face head (config "predict": {"face_head"}: "weight", "bias"; set by
    `reproduce` when its recipe asks, or `faceattr-ray calibrate-scenes`), which its
    confidence floor reads; None: the floor reads ANet's attribute
    confidence (bundles before it)."""
    return (bundle.config.get("predict") or {}).get("face_head")


def bundle_frame_floor(bundle: Bundle) -> float | None:
    """The ANet confidence (the face head's score when the bundle has one) below which a
    bundle drops a framed box (config "predict": {"frame_min_confidence"}, set by
    `reproduce`); None: nothing dropped."""
    floor = (bundle.config.get("predict") or {}).get("frame_min_confidence")
    return None if floor is None else float(floor)


def framed_localizer(bundle: Bundle, localizer, zooms: Sequence[float] | None = None,
                     device: str | torch.device | None = None, floor: bool = True):
    """``localizer`` (any, e.g. an `LNetLocalizer` without a threshold for figures) with each
    found box framed by the bundle's ANet as `Predictor` frames it, at ``zooms`` (None: the
    bundle's "predict" setting), and dropped below the bundle's confidence floor unless
    ``floor`` is False; ``localizer`` itself when there are no zooms (no ANet is built)."""
    zooms = bundle_frame_zooms(bundle) if zooms is None else zooms
    if not zooms:
        return localizer
    return bundle_framer(bundle, localizer, Predictor(bundle, device, parts="describe"), zooms,
                         floor)


def bundle_framer(bundle: Bundle, localizer, describe: Predictor, zooms: Sequence[float],
                  floor: bool = True) -> FramedLocalizer:
    """``localizer`` framed by ``describe``'s ANet (a `Predictor` that describes faces) at
    ``zooms``, with the bundle's centre moves and, when ``floor``, its confidence floor, read
    on the bundle's face head when it has one (`heads.face`)."""
    face_scores = describe.face_scores if bundle_face_head(bundle) is not None else None
    return FramedLocalizer(localizer, describe.attribute_scores, describe.preprocess.face_crop,
                           describe.crop_side, zooms,
                           min_confidence=bundle_frame_floor(bundle) if floor else None,
                           face_scores=face_scores, **bundle_frame_shifts(bundle))


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
