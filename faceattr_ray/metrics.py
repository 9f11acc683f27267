"""Attribute metrics: accuracy, balanced accuracy, the majority baseline, and a Table-1 printout;
and the per-class IoU of face parsing (a confusion matrix of label maps).

Labels are float {1.0, 0.0, NaN} (see attributes.normalize_labels); NaN rows are left out of
that attribute's figures. A score > threshold (0 for SVM scores, or an operating point's
per-attribute thresholds, heads/points.py) means "present"; a NaN threshold (a precision the
choice images could not reach) means "never present".
Average precision (AP, scikit-learn's step-wise area under the precision-recall curve) ranks
the scores and so does not depend on the threshold.
Balanced accuracy is the mean of the true-positive and true-negative rates, the metric the
paper uses on LFWA+ (section 3); accuracy is the one of its Table 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, balanced_accuracy_score

MEAN_KEYS = ("accuracy", "balanced_accuracy", "majority_baseline", "average_precision")


def attribute_metrics(
    y_true: np.ndarray, scores: np.ndarray, names: Sequence[str],
    threshold: float | Sequence[float] | np.ndarray = 0.0,
) -> dict:
    """Per-attribute and mean figures of ``scores`` (N, A) against ``y_true`` (N, A).

    Returns a JSON-able dict::

        {"images": N,
         "attributes": {name: {"count", "accuracy", "balanced_accuracy", "positive_rate",
                               "predicted_positive_rate", "majority_baseline",
                               "average_precision", "precision", "recall", "threshold"}},
         "mean": {"accuracy", "balanced_accuracy", "majority_baseline", "average_precision"}}

    ``threshold``: one value for every attribute or one per attribute (A,).

    ``majority_baseline`` is the accuracy of always answering the split's majority class (its
    balanced accuracy is 0.5 by definition). An attribute with no known label has None figures
    and is left out of the means.
    """
    y_true = np.asarray(y_true, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if y_true.ndim != 2 or y_true.shape != scores.shape or y_true.shape[1] != len(names):
        raise ValueError(
            f"labels {y_true.shape}, scores {scores.shape} and {len(names)} names do not agree"
        )
    cuts = np.broadcast_to(np.asarray(threshold, np.float64), (len(names),))
    per: dict[str, dict] = {}
    for j, name in enumerate(names):
        known = ~np.isnan(y_true[:, j])
        truth = y_true[known, j] > 0.5
        t = float(cuts[j])
        pred = scores[known, j] > t if not np.isnan(t) else np.zeros(truth.shape, bool)
        per[name] = {**_one_attribute(truth, pred, scores[known, j]),
                     "threshold": None if np.isnan(t) else t}
    mean = {key: _mean([m[key] for m in per.values()]) for key in MEAN_KEYS}
    return {"images": int(y_true.shape[0]), "attributes": per, "mean": mean}


def _one_attribute(truth: np.ndarray, pred: np.ndarray, scores: np.ndarray) -> dict:
    n = int(truth.size)
    if n == 0:
        return {"count": 0, "accuracy": None, "balanced_accuracy": None, "positive_rate": None,
                "predicted_positive_rate": None, "majority_baseline": None,
                "average_precision": None, "precision": None, "recall": None}
    positive_rate = float(truth.mean())
    with warnings.catch_warnings():
        # With one class present, sklearn warns and returns that class's recall: what we want.
        warnings.simplefilter("ignore")
        balanced = float(balanced_accuracy_score(truth, pred))
    positives, predicted = int(truth.sum()), int(pred.sum())
    hits = int((truth & pred).sum())
    return {
        # AP needs both classes (with no positive it is undefined, with no negative it is 1)
        "average_precision": float(average_precision_score(truth, scores))
        if 0 < positives < n else None,
        "precision": hits / predicted if predicted else None,
        "recall": hits / positives if positives else None,
        "count": n,
        "accuracy": float(accuracy_score(truth, pred)),
        "balanced_accuracy": balanced,
        "positive_rate": positive_rate,
        "predicted_positive_rate": float(pred.mean()),
        "majority_baseline": max(positive_rate, 1.0 - positive_rate),
    }


def _mean(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def format_table(metrics: dict, reference: Mapping[str, float] | None = None) -> str:
    """A fixed-width table like the paper's Table 1 (percentages), with a mean row.

    ``reference`` maps attribute names to an accuracy in 0-1 (e.g.
    ``attributes.paper_reference(names)``); names it lacks show "-".
    """
    header = ["attribute", "n", "acc", "bal.acc", "majority", "pos.rate"]
    if reference is not None:
        header.append("paper")
    rows = []
    for name, m in metrics["attributes"].items():
        row = [name, str(m["count"]), _pct(m["accuracy"]), _pct(m["balanced_accuracy"]),
               _pct(m["majority_baseline"]), _pct(m["positive_rate"])]
        if reference is not None:
            row.append(_pct(reference.get(name)))
        rows.append(row)
    mean = metrics["mean"]
    last = ["mean", str(metrics["images"]), _pct(mean["accuracy"]),
            _pct(mean["balanced_accuracy"]), _pct(mean["majority_baseline"]), ""]
    if reference is not None:
        known = [reference[n] for n in metrics["attributes"] if n in reference]
        last.append(_pct(float(np.mean(known))) if known else "-")
    widths = [max(len(r[i]) for r in [header, *rows, last]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)])

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in rows), rule, line(last)])


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100.0 * value:.1f}"


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, classes: int,
                     ignore: int | None = None) -> np.ndarray:
    """(K, K) counts, rows the true class and columns the predicted one, of label arrays of
    any shape; pixels labelled ``ignore`` are left out."""
    t, p = np.asarray(truth).ravel().astype(np.int64), np.asarray(predicted).ravel().astype(np.int64)
    keep = (t != ignore) if ignore is not None else np.ones(len(t), bool)
    return np.bincount(t[keep] * classes + p[keep], minlength=classes * classes).reshape(
        classes, classes)


def intersection_over_union(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU of a confusion matrix; NaN for a class neither present nor predicted."""
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)
