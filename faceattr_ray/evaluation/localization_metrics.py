"""Localization metrics: IoU, one-to-one matching, recall vs IoU, TPR vs false positives per image.

The paper scores face localization with ROC curves at IoU >= 0.5 (true-positive rate against
false positives per image, Fig. 7a/b) and with recall as the required overlap grows (Fig. 7c).

Detections of one image are given either as a sequence of objects with ``.box`` and ``.score``
(e.g. ``localizers.Detection``) or as a pair ``(boxes (K, 4), scores (K,))``. Ground truth of one
image is an array (G, 4). Boxes are x1, y1, x2, y2 in pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from faceattr_ray.crops import box_iou


def _as_arrays(detections: Any) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(detections, tuple) and len(detections) == 2 and not hasattr(detections[0], "box"):
        boxes, scores = detections
        return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64).ravel()
    boxes = np.array([d.box for d in detections], np.float64).reshape(-1, 4)
    return boxes, np.array([d.score for d in detections], np.float64)


def match_detections(
    boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, iou_threshold: float = 0.5
) -> np.ndarray:
    """Greedy one-to-one matching of one image's detections to its ground truth.

    Detections are taken by decreasing score; each takes the still-free ground-truth box it
    overlaps most, if that IoU >= ``iou_threshold``. Returns, per detection (input order), the
    index of its ground-truth box or -1 (a false positive). Greedy by score makes a score cut keep
    exactly the matches it would have on its own, so one matching gives the whole ROC curve.
    """
    scores = np.asarray(scores, np.float64).ravel()
    matched = np.full(len(scores), -1, dtype=np.int64)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    if len(scores) == 0 or len(gt_boxes) == 0:
        return matched
    iou = box_iou(boxes, gt_boxes)
    free = np.ones(len(gt_boxes), dtype=bool)
    for i in np.argsort(-scores, kind="stable"):
        candidates = np.where(free, iou[i], -1.0)
        j = int(np.argmax(candidates))
        if candidates[j] >= iou_threshold:
            matched[i] = j
            free[j] = False
    return matched


def roc_curve(
    detections: Sequence[Any], ground_truth: Sequence[np.ndarray], iou_threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True-positive rate vs false positives per image as the score cut falls (paper Fig. 7a).

    Returns ``(fppi, tpr, score_cuts)``, one operating point per distinct score (keeping every
    detection with score >= the cut), starting from the point (0, 0) at cut +inf.
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"{len(detections)} detection lists for {len(ground_truth)} images")
    all_scores, all_tp = [], []
    num_gt = 0
    for dets, gt in zip(detections, ground_truth, strict=True):
        boxes, scores = _as_arrays(dets)
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        num_gt += len(gt)
        all_scores.append(scores)
        all_tp.append(match_detections(boxes, scores, gt, iou_threshold) >= 0)
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    tp = np.concatenate(all_tp) if all_tp else np.zeros(0, bool)
    order = np.argsort(-scores, kind="stable")
    scores, tp = scores[order], tp[order]
    cum_tp, cum_fp = np.cumsum(tp), np.cumsum(~tp)
    # Tied scores are kept or dropped together: one operating point at the end of each tie.
    last_of_tie = np.r_[scores[1:] != scores[:-1], True] if len(scores) else np.zeros(0, bool)
    num_images = max(len(detections), 1)
    fppi = np.r_[0.0, cum_fp[last_of_tie] / num_images]
    tpr = np.r_[0.0, cum_tp[last_of_tie] / max(num_gt, 1)]
    return fppi, tpr, np.r_[np.inf, scores[last_of_tie]]


def tpr_at_fppi(
    detections: Sequence[Any],
    ground_truth: Sequence[np.ndarray],
    fppi: float = 0.1,
    iou_threshold: float = 0.5,
) -> float:
    """The best true-positive rate whose false positives per image stay <= ``fppi``."""
    curve_fppi, curve_tpr, _ = roc_curve(detections, ground_truth, iou_threshold)
    return float(curve_tpr[curve_fppi <= fppi + 1e-12].max())


def recall_vs_iou(
    detections: Sequence[Any],
    ground_truth: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] | np.ndarray = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    fppi: float | None = None,
) -> np.ndarray:
    """Recall at each IoU threshold (paper Fig. 7c).

    ``fppi=None`` keeps every detection; a number keeps the score cut allowed at that many false
    positives per image (the paper uses 0.1), chosen separately at each overlap.
    """
    if fppi is None:
        fppi = np.inf
    return np.array(
        [tpr_at_fppi(detections, ground_truth, fppi, float(t)) for t in iou_thresholds]
    )


# A face whose nearest other face's centre lies within this many of its own widths is
# "crowded": shoulder to shoulder, as in group photos, where the LNets find fewer faces
# (README, *Localization in the wild*, tenth round).
CROWDED_WIDTHS: float = 1.5


def crowded(boxes: np.ndarray, widths: float = CROWDED_WIDTHS) -> np.ndarray:
    """(N,) bool: which of one image's (N, 4) face boxes has another face's centre within
    ``widths`` of its own width from its centre."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) < 2:
        return np.zeros(len(boxes), bool)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    dist = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    np.fill_diagonal(dist, np.inf)
    return dist.min(axis=1) <= widths * (boxes[:, 2] - boxes[:, 0])


def scene_scores(detections: Sequence[Any], ground_truth: Sequence[np.ndarray],
                 threshold: float | None, iou_threshold: float = 0.5) -> dict:
    """What a user of a localizer sees: at its operating ``threshold``, the share of faces found
    at IoU >= ``iou_threshold`` and the false detections per image, and that share among the
    `crowded` faces alone (None without any); and, over all thresholds, the TPR at 0.1 and at 1
    false positive per image."""
    tp = fp = crowded_tp = crowded_faces = 0
    num_gt = sum(len(np.asarray(g).reshape(-1, 4)) for g in ground_truth)
    for dets, gt in zip(detections, ground_truth, strict=True):
        boxes, scores = _as_arrays(dets)
        if threshold is not None:
            keep = scores >= threshold
            boxes, scores = boxes[keep], scores[keep]
        gt = np.asarray(gt).reshape(-1, 4)
        matched = match_detections(boxes, scores, gt, iou_threshold)
        tp += int((matched >= 0).sum())
        fp += int((matched < 0).sum())
        near = crowded(gt)
        crowded_faces += int(near.sum())
        crowded_tp += int(near[matched[matched >= 0]].sum())
    images = max(len(detections), 1)
    return {"recall_iou50": tp / max(num_gt, 1), "false_per_image": fp / images,
            "detections_per_image": (tp + fp) / images,
            "recall_crowded": crowded_tp / crowded_faces if crowded_faces else None,
            "crowded_faces": crowded_faces,
            "tpr_fppi01": tpr_at_fppi(detections, ground_truth, 0.1, iou_threshold),
            "tpr_fppi1": tpr_at_fppi(detections, ground_truth, 1.0, iou_threshold)}


# Why a true face is missed, the first that applies: no find of any score near it (IoU >= 0.3),
# every find near it below the threshold, none of those framed onto it (IoU >= 0.5), all of
# those read below the confidence floor, or lost after that (NMS, or matched to another face).
MISS_REASONS = ("found", "nothing near", "below threshold", "framed off", "below floor",
                "lost to NMS")


def miss_reasons(found: Sequence[Any], scored: Sequence[tuple[Any, float]],
                 truth: np.ndarray, threshold: float | None, min_confidence: float | None,
                 nms_iou: float | None = 0.3, iou: float = 0.5, near: float = 0.3
                 ) -> dict[str, int]:
    """One image's true faces counted by `MISS_REASONS`: ``found`` are the localizer's
    detections with no threshold (`every_detection`), ``scored`` the same ones framed
    (`FramedLocalizer.frame_scored`: (detection, confidence), in the same order). What a user
    gets is the framed boxes scoring at least ``threshold``, read at least ``min_confidence``,
    after NMS at ``nms_iou``; a face counts as found when it is matched one to one at ``iou``."""
    from faceattr_ray.localizers.windows import nms

    truth = np.asarray(truth, np.float64).reshape(-1, 4)
    counts = dict.fromkeys(MISS_REASONS, 0)
    if not len(truth):
        return counts
    raw = np.array([d.box for d in found], np.float64).reshape(-1, 4)
    framed = np.array([d.box for d, _ in scored], np.float64).reshape(-1, 4)
    score = np.array([d.score for d in found], np.float64)
    read = np.array([r for _, r in scored], np.float64)
    passes = np.ones(len(score), bool) if threshold is None else score >= threshold
    kept = np.flatnonzero(passes & (True if min_confidence is None else read >= min_confidence))
    if nms_iou is not None and len(kept):
        kept = kept[np.sort(nms(framed[kept], score[kept], nms_iou))]
    matched = np.zeros(len(truth), bool)
    if len(kept):
        hits = match_detections(framed[kept], score[kept], truth, iou)
        matched[hits[hits >= 0]] = True
    for g, face in enumerate(truth):
        if matched[g]:
            counts["found"] += 1
            continue
        close = (box_iou(face[None], raw)[0] >= near) if len(raw) else np.zeros(0, bool)
        onto = (box_iou(face[None], framed)[0] >= iou) if len(framed) else np.zeros(0, bool)
        if not close.any():
            reason = "nothing near"
        elif not (close & passes).any():
            reason = "below threshold"
        elif not (close & passes & onto).any():
            reason = "framed off"
        elif min_confidence is not None and not (
                close & passes & onto & (read >= min_confidence)).any():
            reason = "below floor"
        else:
            reason = "lost to NMS"
        counts[reason] += 1
    return counts


# --- calibrating a pyramid localizer (localizers/pyramid.py) on scenes with known boxes ---


def calibrate_geometry(localizer, images: Sequence[np.ndarray],
                       boxes: Sequence[np.ndarray]) -> dict:
    """Box shape from validation scenes: for each true face, the refined face (centre, width)
    nearest to it; returns the median width, height and vertical offset of true boxes in units
    of the found face width (``geometry``), and how many faces were paired."""
    ratios = []
    for image, truth in zip(images, boxes, strict=True):
        if len(truth) == 0:
            continue
        faces = localizer.refine(image, localizer.proposals(image))
        if len(faces) == 0:
            continue
        for x1, y1, x2, y2 in truth:
            cx, cy, tw = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1
            d = np.hypot(faces[:, 0] - cx, faces[:, 1] - cy)
            k = int(np.argmin(d))
            if d[k] < 0.5 * tw and 0.5 < faces[k, 2] / tw < 2.0:
                fw = faces[k, 2]
                ratios.append((tw / fw, (y2 - y1) / fw, (cy - faces[k, 1]) / fw))
    if not ratios:
        return {"geometry": dict(localizer.geometry), "paired": 0}
    r = np.median(np.array(ratios), axis=0)
    return {"geometry": {"width": float(r[0]), "height": float(r[1]), "dy": float(r[2])},
            "paired": len(ratios)}


def every_detection(localizer, images: Sequence[np.ndarray]) -> list[list]:
    """What ``localizer`` finds in each image with its threshold off and all faces kept (its
    own settings restored after)."""
    saved, localizer.threshold = localizer.threshold, None
    saved_all, localizer.all_faces = localizer.all_faces, True
    try:
        return [localizer.detect(im) for im in images]
    finally:
        localizer.threshold, localizer.all_faces = saved, saved_all


def choose_threshold(localizer, images: Sequence[np.ndarray],
                     boxes: Sequence[np.ndarray], max_false_per_image: float = 0.25,
                     iou: float = 0.5, detections: list[list] | None = None) -> dict:
    """The lowest face-score threshold whose false detections per image stay within
    ``max_false_per_image`` on validation scenes (faces and face-free ones), with the recall
    it gives there. ``detections``: the boxes users get when they are not the localizer's own
    (`every_detection`), e.g. framed by ANet (`FramedLocalizer`)."""
    dets = every_detection(localizer, images) if detections is None else detections
    fppi, tpr, cuts = roc_curve(dets, [np.asarray(b).reshape(-1, 4) for b in boxes], iou)
    ok = np.flatnonzero(fppi <= max_false_per_image)
    k = ok[-1]
    return {"threshold": float(cuts[k]) if np.isfinite(cuts[k]) else 1.0,
            "recall": float(tpr[k]), "false_per_image": float(fppi[k]), "images": len(images)}


def confidence_floor(scored: Sequence[list[tuple[Any, float]]],
                     boxes: Sequence[np.ndarray], threshold: float, quantile: float,
                     iou: float = 0.5) -> dict:
    """A ``min_confidence`` for framing: the ``quantile`` of the confidence ANet reads on the
    framed detections (`FramedLocalizer.frame_scored`; score >= ``threshold``) that match a
    true face at ``iou`` on validation scenes, so about that share of the faces found is given
    up; with how many faces it was set on and the share of the other detections it drops."""
    faces, others = [], []
    for one, truth in zip(scored, boxes, strict=True):
        one = [(d, read) for d, read in one if d.score >= threshold]
        if not one:
            continue
        matched = match_detections(np.array([d.box for d, _ in one]).reshape(-1, 4),
                                   np.array([d.score for d, _ in one]),
                                   np.asarray(truth).reshape(-1, 4), iou)
        for (_, read), m in zip(one, matched, strict=True):
            (faces if m >= 0 else others).append(read)
    if not faces:
        return {"min_confidence": None, "faces": 0, "others_dropped": 0.0}
    floor = float(np.quantile(faces, quantile))
    dropped = float(np.mean(np.array(others) < floor)) if others else 0.0
    return {"min_confidence": floor, "faces": len(faces), "others_dropped": dropped}


def choose_threshold_and_floor(scored: Sequence[list[tuple[Any, float]]],
                               boxes: Sequence[np.ndarray], select: Callable,
                               max_false_per_image: float, quantile: float,
                               iou: float = 0.5) -> dict:
    """Face-score threshold and confidence floor chosen together on validation scenes: for each
    candidate threshold t (the framed detections' scores), the floor is the ``quantile`` of what
    ANet reads on the faces found at t (`confidence_floor`), and t is the lowest whose false
    detections per image, after the floor, stay within ``max_false_per_image``. So the false
    detections the floor removes are spent on a lower threshold (more faces) instead of left
    unused. ``scored``: `FramedLocalizer.frame_scored` per image; ``select``: its ``select``
    (floor, then duplicates dropped)."""
    truths = [np.asarray(b).reshape(-1, 4) for b in boxes]
    faces = sum(len(t) for t in truths)
    candidates = np.unique([d.score for one in scored for d, _ in one])[::-1]
    best = None
    for t in candidates:
        floor = confidence_floor(scored, truths, float(t), quantile, iou)
        tp = fp = 0
        for one, truth in zip(scored, truths, strict=True):
            dets = [d for d in select(one, floor["min_confidence"]) if d.score >= t]
            if dets:
                matched = match_detections(np.array([d.box for d in dets]).reshape(-1, 4),
                                           np.array([d.score for d in dets]), truth, iou)
                tp += int((matched >= 0).sum())
                fp += int((matched < 0).sum())
        if fp / max(len(scored), 1) <= max_false_per_image:
            best = (float(t), floor, tp, fp)
    if best is None:  # nothing passes: no face is called (the highest score plus a margin)
        top = float(candidates[0]) if len(candidates) else 0.0
        return {"threshold": float(np.nextafter(top, np.inf)), "recall": 0.0,
                "false_per_image": 0.0, "images": len(scored),
                "confidence_floor": {"min_confidence": None, "faces": 0, "others_dropped": 0.0,
                                     "quantile": quantile}}
    t, floor, tp, fp = best
    return {"threshold": t, "recall": tp / max(faces, 1),
            "false_per_image": fp / max(len(scored), 1), "images": len(scored),
            "confidence_floor": {**floor, "quantile": quantile}}
