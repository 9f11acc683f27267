"""Found faces framed by the attribute network: each box is tried at a few zooms about its
centre, and the zoom whose crop the attribute network reads most confidently is kept.

Why: the LNets find faces but size them loosely (README, *Localization in the wild*: on
collages of real crops the log error of the found width has a standard deviation of 0.23, and
with the true width nearly every found face would reach IoU 0.5). ANet learned its attributes
from crops framed by one rule (`Preprocess.face_crop`, a localizer's small box errors
included), so its scores are largest, in root mean square over the attributes, near that
framing: on val collages the zoom that maximises them follows the correction the box needs
(r 0.79). No box is used to learn this; it reads the networks trained from tags. The centre
is then moved the same way, up or down first, then sideways (``shifts_y``, ``shifts_x``):
LNet_s places some draws' faces off centre, in real photos mostly too high (README, results).

The same confidence also tells faces from face-like texture: a cat's eye or a flower that the
LNets score high is read with little confidence at every zoom (val sample photos: such finds
at 2.5-3.4, the faces at 3.6-6.9). ``min_confidence`` drops found boxes read below it;
`reproduce` sets it on validation scenes as a low quantile of the found faces' confidence
(`evaluation.localization_metrics.confidence_floor`), so it is in the units of the bundle's own heads.

A bundle can instead carry a face head (``face_scores``; `heads.face`): one linear score on
ANet's patch-mean features, fit on the framed finds of generated training scenes. When given,
the floor reads it on each framed crop instead of the attribute confidence (val calibration
scenes: AUC 0.993 against 0.978; the bundled model has one; `reproduce` fits one only when
asked: README, results, twenty-first round).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np

from faceattr_ray.crops import expand_box
from faceattr_ray.localizers.base import Detection
from faceattr_ray.localizers.windows import nms

# Nine zooms from 0.7x to 1.43x of the found box (steps of 2^(1/8)): room for the found width's
# spread (10-90% of true over found width 0.76-1.46 on val collages).
DEFAULT_ZOOMS: tuple[float, ...] = tuple(float(2 ** (k / 8)) for k in range(-4, 5))
# Framed boxes of one image overlapping more than this: the better-scored one stays (val
# collages: false detections per image 0.45 -> 0.30 at the same recall; README, results).
NMS_IOU: float = 0.3


def shift_box(box: tuple, dx: float, dy: float) -> tuple:
    """``box`` moved by ``dx`` of its width and ``dy`` of its height."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (x1 + dx * w, y1 + dy * h, x2 + dx * w, y2 + dy * h)


def attribute_confidence(scores: np.ndarray) -> np.ndarray:
    """(N, A) attribute scores -> (N,) root mean square: how far from undecided a crop reads."""
    scores = np.asarray(scores, np.float64)
    return np.sqrt((scores * scores).mean(axis=1))


class FramedLocalizer:
    """A localizer whose boxes are re-sized by ``frame``: ``localize(images)`` runs
    ``localizer`` and frames what it found. ``crop(image, box, side)`` cuts the attribute
    network's (side, side, 3) crop of a face box; ``score_crops`` turns (N, side, side, 3) crops
    into (N, A) attribute scores; ``face_scores``, when given, turns crops into (N,) face
    scores, what the floor then reads on each framed crop (a bundle's face head). After the
    zoom, each of ``shifts_y`` then each of ``shifts_x`` moves the box's centre (fractions of
    its height, width), kept where ANet reads it more confidently than before. Scores and order
    of the faces are the localizer's; a framed box overlapping a better-scored framed box by
    more than ``nms_iou`` is dropped (two finds of one face, e.g. its chin and the whole face,
    often frame to the same box; None keeps all)."""

    def __init__(self, localizer, score_crops: Callable[[np.ndarray], np.ndarray],
                 crop: Callable[[np.ndarray, tuple, int], np.ndarray], side: int,
                 zooms: Sequence[float] = DEFAULT_ZOOMS, nms_iou: float | None = NMS_IOU,
                 min_confidence: float | None = None, shifts_y: Sequence[float] = (),
                 shifts_x: Sequence[float] = (),
                 face_scores: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        if not zooms or min(zooms) <= 0:
            raise ValueError(f"framing zooms must be positive, got {list(zooms)}")
        self.localizer, self.score_crops, self.crop = localizer, score_crops, crop
        self.side, self.zooms = int(side), tuple(float(z) for z in zooms)
        self.shifts_y = tuple(float(v) for v in shifts_y)
        self.shifts_x = tuple(float(v) for v in shifts_x)
        self.nms_iou, self.min_confidence = nms_iou, min_confidence
        self.face_scores = face_scores

    def localize(self, images: list[np.ndarray]) -> list[list[Detection]]:
        return self.frame(images, self.localizer.localize(images))

    def frame_scored(self, images: Sequence[np.ndarray], detections: list[list[Detection]]
                     ) -> list[list[tuple[Detection, float]]]:
        """Each detection with its box scaled about its centre by the zoom read most
        confidently, then moved by the shifts that read more confidently; and the confidence
        of that zoom, before any move (what the floor reads: moves raise texture's confidence
        as well as faces', and val photos then kept 3x the false detections; README, results),
        or, with ``face_scores``, the face score of the framed crop; nothing dropped."""
        owners = [i for i, dets in enumerate(detections) for _ in dets]
        found = [d.box for dets in detections for d in dets]
        if not found:
            return [[] for _ in detections]
        boxes, read = self._most_confident(images, owners, found, [
            lambda b, z=z: expand_box(b, z) for z in self.zooms])
        moved = read
        for moves in ([lambda b, v=v: shift_box(b, 0.0, v) for v in self.shifts_y],
                      [lambda b, v=v: shift_box(b, v, 0.0) for v in self.shifts_x]):
            if moves:  # the box as it stands is one candidate, already read
                boxes, moved = self._most_confident(images, owners, boxes, moves, moved)
        if self.face_scores is not None:
            read = np.asarray(self.face_scores(np.stack(
                [self.crop(images[i], b, self.side) for i, b in zip(owners, boxes, strict=True)])),
                np.float64).reshape(len(boxes))
        out, k = [], 0
        for dets in detections:
            scored = []
            for d in dets:
                scored.append((replace(d, box=tuple(float(v) for v in boxes[k])), float(read[k])))
                k += 1
            out.append(scored)
        return out

    def _most_confident(self, images, owners, boxes, moves, read=None):
        """For each box, the move whose crop ANet reads most confidently (the box unmoved
        competes with confidence ``read`` when given): (moved boxes, their confidence)."""
        crops = [self.crop(images[i], move(b), self.side)
                 for i, b in zip(owners, boxes, strict=True) for move in moves]
        confidence = attribute_confidence(self.score_crops(np.stack(crops)))
        confidence = confidence.reshape(len(boxes), len(moves))
        if read is not None:
            confidence = np.column_stack([read, confidence])
            moves = [lambda b: b, *moves]
        best = confidence.argmax(axis=1)
        return ([moves[m](b) for m, b in zip(best, boxes, strict=True)],
                confidence.max(axis=1))

    def frame(self, images: Sequence[np.ndarray],
              detections: list[list[Detection]]) -> list[list[Detection]]:
        """Framed detections (`frame_scored`), then `select`ed."""
        return [self.select(scored, self.min_confidence)
                for scored in self.frame_scored(images, detections)]

    def select(self, scored: list[tuple[Detection, float]],
               min_confidence: float | None) -> list[Detection]:
        """One image's framed detections read at least ``min_confidence`` (None: all), framed
        duplicates dropped (``nms_iou``), in the localizer's order."""
        dets = [d for d, read in scored if min_confidence is None or read >= min_confidence]
        if self.nms_iou is not None and dets:
            keep = nms(np.array([d.box for d in dets]).reshape(-1, 4),
                       np.array([d.score for d in dets]), self.nms_iou)
            dets = [dets[i] for i in sorted(keep)]
        return dets
