"""The paper's analyses of a trained model as plain functions: arrays in, numbers out.

Nothing here draws; ``report.py`` turns these numbers into figures. Each function names the figure
of Liu et al. (ICCV 2015) it reproduces:

- ``concept_neurons`` / ``response_groups`` / ``mean_images``: ANet's FC neurons as concepts, the
  mean face of images with high, medium and low responses (Fig. 8);
- ``sparsity_curve`` / ``fraction_needed``: accuracy when an attribute keeps only its best k% of
  FC neurons by |weight| (Fig. 10b);
- ``attribute_groups``: k-means over the attribute heads' weight vectors (Fig. 11);
- ``attribute_map_peaks``: where each attribute's fully convolutional LNet map peaks (Fig. 9);
- ``localization_curves``: recall vs IoU and TPR vs FPPI (Fig. 7);
- ``annotation_summary``: what an annotate output holds (status counts, faces per image,
  attribute prevalence).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

DEFAULT_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


# --- Fig. 8: concept neurons ---------------------------------------------------------------------


def concept_neurons(
    features: np.ndarray, weight: np.ndarray | None = None, count: int = 6, by: str = "variance"
) -> np.ndarray:
    """Indices of the ``count`` most telling FC neurons, most telling first.

    ``by="variance"``: the neurons whose response varies most over the images (a neuron that is
    always on or always off says nothing about a face). ``by="weight"``: the neurons the attribute
    heads lean on most (sum of |weight| over attributes; needs ``weight`` (A, F)); neurons with
    the same response on every image come last, whatever their weight: their high, medium and
    low groups would be an arbitrary split of identical responses.
    """
    x = np.asarray(features, np.float64)
    if by == "variance":
        score = x.var(axis=0)
    elif by == "weight":
        if weight is None:
            raise ValueError("by='weight' needs the heads' weight (A, F)")
        w = np.asarray(weight, np.float64)
        if w.ndim != 2 or w.shape[1] != x.shape[1]:
            raise ValueError(f"weight {w.shape} does not fit features {x.shape}")
        score = np.where(x.var(axis=0) > 0, np.abs(w).sum(axis=0), -np.inf)
    else:
        raise ValueError(f"by must be 'variance' or 'weight', not {by!r}")
    return np.argsort(-score, kind="stable")[: min(count, x.shape[1])]


def response_groups(responses: np.ndarray, fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Image indices with high, medium and low response of one neuron (paper Fig. 8).

    Each group holds ``fraction`` of the images (at least one): the top, the ones around the
    median, and the bottom of the ranking.
    """
    r = np.asarray(responses, np.float64).ravel()
    n = len(r)
    if n == 0:
        raise ValueError("no responses to group")
    k = max(1, int(round(fraction * n)))
    order = np.argsort(-r, kind="stable")
    mid = max(0, min(n - k, n // 2 - k // 2))
    return {"high": order[:k], "medium": order[mid : mid + k], "low": order[n - k :]}


def mean_images(images: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pixel mean (uint8) of each group of equally sized images (N, H, W, 3)."""
    x = np.asarray(images)
    return {
        name: np.clip(x[idx].astype(np.float64).mean(axis=0) + 0.5, 0, 255).astype(np.uint8)
        for name, idx in groups.items()
    }


def best_correlated(
    responses: np.ndarray, labels: np.ndarray, names: Sequence[str]
) -> tuple[str | None, float]:
    """The attribute whose labels correlate most (|Pearson r|) with a neuron's responses: a name
    for the concept the neuron measures, with the signed r. Unknown labels (NaN) are left out."""
    r = np.asarray(responses, np.float64).ravel()
    y = np.asarray(labels, np.float64)
    best, best_r = None, 0.0
    for j, name in enumerate(names):
        known = ~np.isnan(y[:, j])
        a, b = r[known], y[known, j]
        if len(a) < 3 or a.std() == 0 or b.std() == 0:
            continue
        c = float(np.corrcoef(a, b)[0, 1])
        if abs(c) > abs(best_r):
            best, best_r = name, c
    return best, best_r


# --- Fig. 10b: sparsity --------------------------------------------------------------------------


def sparsity_curve(
    features: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    threshold: float = 0.0,
) -> np.ndarray:
    """Accuracy (K, A) of each attribute when its head keeps only its best ``fractions[k]`` of
    FC neurons, ranked by |weight| (at least one neuron).

    The heads are masked, not refit: a dropped neuron is replaced by its mean response over
    ``features``, which folds ``w_j * mean_j`` into the bias. Without that, dropping neurons
    would also shift every score and the accuracy would measure the shift, not what the kept
    neurons know. No label is used to adjust anything, so the curve shows what the given heads
    hold. Unknown labels (NaN) are left out; an attribute with none gives NaN.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(labels, np.float64)
    w = np.asarray(weight, np.float64)
    b = np.asarray(bias, np.float64)
    n_feat = w.shape[1]
    if x.ndim != 2 or x.shape[1] != n_feat or y.shape != (len(x), w.shape[0]):
        raise ValueError(f"features {x.shape}, labels {y.shape} and weight {w.shape} do not agree")
    mean = x.mean(axis=0)
    centred = x - mean
    rank = np.argsort(-np.abs(w), axis=1, kind="stable")  # (A, F) best neurons first
    out = np.full((len(fractions), w.shape[0]), np.nan)
    known = ~np.isnan(y)
    for k, frac in enumerate(fractions):
        keep = max(1, int(np.ceil(frac * n_feat)))
        mask = np.zeros_like(w)
        np.put_along_axis(mask, rank[:, :keep], 1.0, axis=1)
        scores = centred @ (w * mask).T + (mean @ w.T + b)  # dropped neurons sit at their mean
        correct = (scores > threshold) == (y > 0.5)
        for a in range(w.shape[0]):
            if known[:, a].any():
                out[k, a] = correct[known[:, a], a].mean()
    return out


def fraction_needed(
    curve: np.ndarray, fractions: Sequence[float], target: float = 0.9
) -> np.ndarray:
    """Per attribute, the smallest fraction of neurons whose accuracy reaches ``target`` times
    the accuracy with all of them (the last row of ``curve``); NaN where unknown.

    ``fractions`` must rise and end at 1.0: the target is relative to the last row, and "the
    first row that reaches it" is the smallest fraction only when they rise.
    """
    curve = np.asarray(curve, np.float64)
    f = np.asarray(fractions, np.float64)
    if curve.ndim != 2 or len(f) != curve.shape[0]:
        raise ValueError(f"curve {curve.shape} needs one row per fraction ({len(f)})")
    if len(f) == 0 or np.any(np.diff(f) <= 0) or f[-1] != 1.0:
        raise ValueError(f"fractions must rise and end at 1.0 (all neurons), got {list(f)}")
    full = curve[-1]
    out = np.full(curve.shape[1], np.nan)
    for a in range(curve.shape[1]):
        if np.isnan(full[a]):
            continue
        reached = np.flatnonzero(curve[:, a] >= target * full[a] - 1e-12)
        out[a] = fractions[int(reached[0])]
    return out


# --- Fig. 11: attribute grouping -----------------------------------------------------------------


def attribute_groups(weight: np.ndarray, groups: int = 6, seed: int = 0) -> np.ndarray:
    """k-means cluster (0..groups-1) of each attribute's weight vector (A, F).

    Vectors are scaled to unit length first: a head's direction in feature space is its decision
    hyperplane; its length only says how confident it is. Cluster ids are renumbered by the first
    attribute in each, so the result does not depend on k-means' internal order.
    """
    from sklearn.cluster import KMeans

    w = np.asarray(weight, np.float64)
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    unit = w / np.where(norms > 0, norms, 1.0)
    k = max(1, min(groups, len(w)))
    raw = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit)
    first_seen: dict[int, int] = {}
    for c in raw:
        first_seen.setdefault(int(c), len(first_seen))
    return np.array([first_seen[int(c)] for c in raw], dtype=np.int64)


def project_2d(weight: np.ndarray) -> np.ndarray:
    """(A, 2) coordinates of the unit weight vectors on their first two principal axes."""
    w = np.asarray(weight, np.float64)
    norms = np.linalg.norm(w, axis=1, keepdims=True)
    unit = w / np.where(norms > 0, norms, 1.0)
    centred = unit - unit.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    axes = vt[:2]
    out = centred @ axes.T
    return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))


# --- Fig. 9: attribute-specific regions ----------------------------------------------------------


def attribute_map_peaks(maps: np.ndarray) -> list[tuple[float, float]]:
    """(row, col) of each attribute map's maximum (A, h, w), as fractions of the map's height and
    width measured at the cell centre: where on the face the attribute responds most."""
    m = np.asarray(maps, np.float64)
    out = []
    for a in range(m.shape[0]):
        r, c = np.unravel_index(int(np.argmax(m[a])), m[a].shape)
        out.append(((r + 0.5) / m.shape[1], (c + 0.5) / m.shape[2]))
    return out


# --- Fig. 7: localization ------------------------------------------------------------------------


def localization_curves(
    detections: Sequence, ground_truth: Sequence[np.ndarray],
    iou_thresholds: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
) -> dict:
    """Recall at each IoU (every detection kept) and the ROC (FPPI, TPR) at IoU >= 0.5, with the
    TPR at 0.1 and 1 false positive per image."""
    from faceattr_ray.evaluation.localization_metrics import recall_vs_iou, roc_curve, tpr_at_fppi

    fppi, tpr, cuts = roc_curve(detections, ground_truth, 0.5)
    return {
        "iou_thresholds": [float(t) for t in iou_thresholds],
        "recall": recall_vs_iou(detections, ground_truth, iou_thresholds).tolist(),
        "fppi": fppi.tolist(),
        "tpr": tpr.tolist(),
        "score_cuts": [None if not np.isfinite(c) else float(c) for c in cuts],
        "tpr_at_0.1_fppi": tpr_at_fppi(detections, ground_truth, 0.1),
        "tpr_at_1_fppi": tpr_at_fppi(detections, ground_truth, 1.0),
        "images": len(detections),
        "faces": int(sum(len(np.asarray(g).reshape(-1, 4)) for g in ground_truth)),
    }


# --- annotate output -----------------------------------------------------------------------------


def annotation_summary(
    paths: Sequence[str], status: Sequence[str], scores: np.ndarray, names: Sequence[str],
    errors: Sequence[str | None] | None = None, top_errors: int = 10,
) -> dict:
    """Counts a user checks first in an annotate output (one row per face, one per image with no
    face or an error).

    ``scores`` (rows, A) are attribute scores (> 0 = present); prevalence counts ``ok`` rows
    only. Faces per image counts ok rows per path, over the images that decoded.
    """
    status = [str(s) for s in status]
    counts = Counter(status)
    scores = np.asarray(scores, np.float64).reshape(len(status), len(names))
    ok = np.array([s == "ok" for s in status], bool)
    faces_of: dict[str, int] = {}
    for p, s in zip(paths, status, strict=True):
        if s == "error":
            continue
        faces_of[p] = faces_of.get(p, 0) + (1 if s == "ok" else 0)
    per_image = Counter(faces_of.values())
    prevalence = {}
    for j, name in enumerate(names):
        col = scores[ok, j]
        col = col[~np.isnan(col)]
        prevalence[name] = float((col > 0).mean()) if len(col) else None
    # "corrupt or truncated image: <detail>" -> its kind, so one cause counts once however many
    # files it hit. (`errors` may be a numpy array: no truth-value test on it.)
    messages = [None] * len(status) if errors is None else list(errors)
    error_kinds = Counter(str(e).split(":")[0] for e, s in zip(messages, status, strict=True)
                          if s == "error")
    return {
        "rows": len(status),
        "images": len(set(paths)),
        "faces": int(counts.get("ok", 0)),
        "no_face": int(counts.get("no_face", 0)),
        "errors": int(counts.get("error", 0)),
        "faces_per_image": {str(k): int(v) for k, v in sorted(per_image.items())},
        "prevalence": prevalence,
        "error_messages": dict(error_kinds.most_common(top_errors)),
    }


def reliability(probabilities: np.ndarray, truth: np.ndarray, bins: int = 10) -> dict:
    """Reliability diagram data: per equal-width probability bin, the count, the mean predicted
    probability and the observed frequency of the positive class (None in an empty bin), plus
    the expected calibration error (count-weighted mean |observed - predicted|) and the Brier
    score."""
    p = np.asarray(probabilities, np.float64).ravel()
    t = np.asarray(truth, bool).ravel()
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    count, predicted, observed = [], [], []
    ece = 0.0
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        count.append(n)
        predicted.append(float(p[inside].mean()) if n else None)
        observed.append(float(t[inside].mean()) if n else None)
        if n:
            ece += n * abs(observed[-1] - predicted[-1])
    return {"edges": edges.tolist(), "count": count, "predicted": predicted,
            "observed": observed, "ece": ece / max(len(p), 1),
            "brier": float(np.mean((p - t) ** 2)) if len(p) else None}


def part_contributions(features: np.ndarray, weight: np.ndarray, parts: int) -> np.ndarray:
    """(A, parts): for SSP features (N, parts * C, one C-block per part) and linear heads
    ``weight`` (A, parts * C), the mean over faces of the absolute score each part's block
    contributes, normalised per attribute (rows sum to 1; 0 rows stay 0)."""
    n = len(features)
    f = np.asarray(features, np.float64).reshape(n, parts, -1)
    w = np.asarray(weight, np.float64).reshape(len(weight), parts, -1)
    per = np.abs(np.einsum("npc,apc->nap", f, w)).mean(axis=0)  # (A, parts)
    total = per.sum(axis=1, keepdims=True)
    return np.divide(per, total, out=np.zeros_like(per), where=total > 0)
