"""The face head: one linear score on ANet's patch-mean features that tells a framed face from
a framed false find (face-like texture: a badge, a flower, a cat's eye).

Why: the confidence floor of framing (`localizers.framing`) reads how strongly ANet's
attribute heads commit on a crop, a proxy. A head fit for the question itself separates the
framed finds of the val calibration scenes better (AUC 0.993 against 0.978) and drops the
badge, medal and flower boxes that the proxy keeps on the sample photos. It reads the
cameraman's near-profile face low, so its floor sits at a lower quantile of the faces' scores
(`reproduce.FACE_HEAD`; README, results, twenty-first round).

How it is fit (`reproduce.fit_scene_face_head`, when RECIPE's "frame_face_head" asks for it,
or `faceattr-ray calibrate-scenes`): the bundle's LNets and framing run over generated scenes
of *train* faces on the *training* backgrounds; a framed find that covers a pasted face
(IoU >= 0.5) is a positive, one that overlaps no pasted face (IoU < 0.3) a negative, the rest
are left out. The
pasted positions are known because the scenes are generated, as for the box geometry and
threshold that `reproduce` calibrates on val scenes; no hand-drawn box is used, and the LNets
themselves still learn from image-level tags only.
"""

from __future__ import annotations

import numpy as np

# A find is a positive at this IoU with a pasted face, a negative below the lower one.
POSITIVE_IOU: float = 0.5
NEGATIVE_IOU: float = 0.3


def face_labels(best_iou: np.ndarray) -> np.ndarray:
    """1 (face), 0 (not a face) or -1 (left out: a find half on a face) from each find's best
    IoU with the scene's pasted faces."""
    best_iou = np.asarray(best_iou, np.float64)
    return np.where(best_iou >= POSITIVE_IOU, 1, np.where(best_iou < NEGATIVE_IOU, 0, -1))


def fit_face_head(features: np.ndarray, labels: np.ndarray, C: float = 0.01) -> dict:
    """A class-balanced logistic regression of ``labels`` (1 face, 0 not, -1 left out) on
    (N, F) features, standardised first; the standardisation is folded into the returned
    weights, so the score is ``features @ weight + bias`` (positive: face). Returns a dict
    for a bundle's config: "weight" (F floats), "bias", "C" and the counts it was fit on."""
    from sklearn.linear_model import LogisticRegression

    features = np.asarray(features, np.float64)
    labels = np.asarray(labels)
    use = labels >= 0
    x, y = features[use], labels[use].astype(int)
    if len(np.unique(y)) < 2:
        raise ValueError(f"a face head needs faces and non-faces, got {int(y.sum())} faces "
                         f"and {int(len(y) - y.sum())} others")
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    fit = LogisticRegression(C=C, max_iter=5000, class_weight="balanced")
    fit.fit((x - mean) / std, y)
    weight = fit.coef_[0] / std
    bias = float(fit.intercept_[0] - weight @ mean)
    return {"weight": [float(v) for v in weight], "bias": bias, "C": float(C),
            "faces": int(y.sum()), "others": int(len(y) - y.sum())}


def face_head_scores(features: np.ndarray, head: dict) -> np.ndarray:
    """(N,) face scores of (N, F) features under a face head (`fit_face_head`)."""
    weight = np.asarray(head["weight"], np.float64)
    return np.asarray(features, np.float64) @ weight + float(head["bias"])
