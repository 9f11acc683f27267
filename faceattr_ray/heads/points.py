"""Operating points: per attribute, the score threshold a user's decision uses, and calibrated
probabilities, chosen on labelled scores the heads were not fit on.

A decision is ``score > threshold``. The points:

- ``zero``: threshold 0, the SVM's own boundary (what every bundle does without stored points).
- ``accuracy``: the threshold with the best accuracy on the choice images.
- ``balanced``: the best balanced accuracy (mean of true-positive and true-negative rates, the
  paper's LFWA+ metric); where that is reached, the true-positive and true-negative rates are
  as close as the choice images allow to the equal-error point.
- ``precision:P``: the lowest threshold whose precision on the choice images is at least P
  (the most positives found at that precision). When no threshold reaches P (with at least
  one positive predicted), the point is *unreachable* for that attribute: its threshold is
  stored as null and the decision is "absent" for every face, so a search at that precision
  returns nothing for it rather than results below the precision asked for.

Among equally good thresholds the one nearest 0 is kept (the least change to the SVM's rule).
Candidate thresholds are the midpoints between consecutive distinct scores, plus one below and
one above all of them, so a threshold never sits on a choice image's score.

Calibrated probabilities: Platt scaling, ``p = 1 / (1 + exp(-(a * score + b)))`` per attribute,
fit by maximum likelihood with Platt's smoothed targets (so separable scores still give finite
a, b). The map is increasing when a > 0, so a probability threshold and a score threshold give
the same decisions; the precision point is stored in both units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceattr_ray.errors import DataError

NAMED_POINTS = ("zero", "accuracy", "balanced")
DEFAULT_PRECISIONS = (0.8, 0.9, 0.95)
METHODS = ("empirical", "guarded", "platt")  # how the accuracy and balanced points are read
GUARD_Z = 1.0  # "guarded" precision points: the Wilson lower bound at 1 standard error


def parse_point(text: str) -> str:
    """Canonical name of an operating point: "zero", "accuracy", "balanced" or "precision:P"
    (P in (0, 1], written as stored: "precision:0.9"). Anything else is a DataError."""
    text = text.strip().lower()
    if text in NAMED_POINTS:
        return text
    if text.startswith("precision:"):
        try:
            p = float(text.split(":", 1)[1])
        except ValueError:
            p = -1.0
        if 0.0 < p <= 1.0:
            return precision_key(p)
    raise DataError(f"operating point {text!r}: expected zero, accuracy, balanced or "
                    "precision:P with 0 < P <= 1 (e.g. precision:0.9)")


def precision_key(p: float) -> str:
    return f"precision:{float(p):g}"


def _cuts(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate thresholds (ascending) and, for each, true and false positives of
    ``score > threshold``."""
    values = np.unique(scores)
    if len(values) == 0:
        return np.zeros(1), np.zeros(1), np.zeros(1)
    gap = float(np.diff(values).min()) if len(values) > 1 else 1.0
    cuts = np.r_[values[0] - gap, (values[:-1] + values[1:]) / 2, values[-1] + gap]
    order = np.sort(scores[truth])
    neg = np.sort(scores[~truth])
    tp = len(order) - np.searchsorted(order, cuts, side="right")
    fp = len(neg) - np.searchsorted(neg, cuts, side="right")
    return cuts, tp.astype(np.float64), fp.astype(np.float64)


def _nearest_zero(cuts: np.ndarray, good: np.ndarray) -> float:
    idx = np.flatnonzero(good)
    return float(cuts[idx[np.argmin(np.abs(cuts[idx]))]])


def wilson_lower(hits: np.ndarray, n: np.ndarray, z: float) -> np.ndarray:
    """Wilson's lower confidence bound of a proportion hits / n (z standard errors)."""
    n = np.maximum(n, 1)
    p = hits / n
    centre = p + z * z / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)


def best_threshold(scores, truth, point: str, confidence_z: float = 0.0) -> float | None:
    """The threshold of ``point`` (see the module doc) on one attribute's scores (n,) and
    boolean truth (n,); None when a precision target is unreachable. With one class only,
    accuracy and balanced keep 0. ``confidence_z`` > 0: a precision point needs the Wilson
    lower bound of its precision (z standard errors) to reach the target, not the observed
    precision, so that a handful of lucky positives does not set it."""
    scores = np.asarray(scores, np.float64)
    truth = np.asarray(truth, bool)
    point = parse_point(point)
    if point == "zero":
        return 0.0
    pos, neg = int(truth.sum()), int((~truth).sum())
    cuts, tp, fp = _cuts(scores, truth)
    if point.startswith("precision:"):
        target = float(point.split(":")[1])
        predicted = tp + fp
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        if confidence_z > 0:
            precision = wilson_lower(tp, predicted, confidence_z)
        ok = (predicted > 0) & (precision >= target - 1e-12)
        return float(cuts[np.flatnonzero(ok)[0]]) if ok.any() else None
    if pos == 0 or neg == 0:
        return 0.0
    if point == "accuracy":
        figure = (tp + (neg - fp)) / (pos + neg)
    else:
        figure = 0.5 * (tp / pos + (neg - fp) / neg)
    return _nearest_zero(cuts, np.isclose(figure, figure.max(), rtol=0, atol=1e-12))


def fit_platt(scores, truth, iterations: int = 100) -> tuple[float, float]:
    """Platt's sigmoid (a, b) for one attribute: Newton's method on the log-likelihood of
    smoothed targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2)."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(truth, bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if len(s) == 0:
        return 1.0, 0.0
    t = np.where(y, (pos + 1.0) / (pos + 2.0), 1.0 / (neg + 2.0))
    a, b = 0.0, float(np.log((pos + 1.0) / (neg + 1.0)))
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(a * s + b)))
        g = np.array([np.sum((p - t) * s), np.sum(p - t)])
        w = np.maximum(p * (1 - p), 1e-12)
        h = np.array([[np.sum(w * s * s), np.sum(w * s)], [np.sum(w * s), np.sum(w)]])
        h += 1e-9 * np.eye(2)  # a constant score (one value) makes h singular
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


@dataclass(eq=False)
class OperatingPoints:
    """Per-attribute thresholds of each point (NaN = unreachable) and Platt parameters."""

    names: list[str]
    thresholds: dict[str, np.ndarray]  # point -> (A,) score thresholds
    platt_a: np.ndarray  # (A,)
    platt_b: np.ndarray  # (A,)
    info: dict = field(default_factory=dict)  # where they were chosen, counts, figures
    held_out: tuple | None = field(default=None, repr=False)  # (scores, labels) chosen on

    def points(self) -> list[str]:
        return ["zero", *self.thresholds]

    def threshold(self, point: str) -> np.ndarray:
        """(A,) thresholds of ``point``; NaN where unreachable (decide: never present)."""
        point = parse_point(point)
        if point == "zero":
            return np.zeros(len(self.names))
        if point not in self.thresholds:
            raise DataError(f"operating point {point!r} is not stored in this bundle (it has "
                            f"{', '.join(self.points())}); add it with `faceattr-ray "
                            "calibrate-points --precision P`")
        return self.thresholds[point]

    def unreachable(self, point: str) -> list[str]:
        t = self.threshold(point)
        return [n for n, v in zip(self.names, t, strict=True) if np.isnan(v)]

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Calibrated P(present) of scores (N, A)."""
        z = np.asarray(scores, np.float64) * self.platt_a + self.platt_b
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def to_config(self) -> dict:
        """JSON-able: thresholds as lists (null = unreachable), Platt a, b, info."""
        def listed(v: np.ndarray) -> list:
            return [None if np.isnan(x) else float(x) for x in v]

        probability = {}  # the same precision points in units of the probability column
        for k, v in self.thresholds.items():
            if k.startswith("precision:"):
                p = self.probabilities(np.nan_to_num(v)[None])[0].astype(np.float64)
                probability[k] = listed(np.where(np.isnan(v), np.nan, p))
        return {"rule": "score > threshold", "attributes": list(self.names),
                "thresholds": {k: listed(v) for k, v in self.thresholds.items()},
                "probability_thresholds": probability,
                "platt": {"a": listed(self.platt_a), "b": listed(self.platt_b)},
                **self.info}

    @classmethod
    def from_config(cls, config: dict | None, names: Sequence[str]) -> OperatingPoints | None:
        """The points stored in a bundle's config (``config["operating_points"]``), in the
        order of ``names``; None when it has none."""
        stored = (config or {}).get("operating_points")
        if not stored:
            return None
        own = list(stored.get("attributes") or [])
        missing = [n for n in names if n not in own]
        if missing:
            raise DataError(f"operating points lack attributes {missing[:3]}")
        cols = [own.index(n) for n in names]

        def arr(v) -> np.ndarray:
            return np.array([np.nan if v[c] is None else float(v[c]) for c in cols])

        info = {k: v for k, v in stored.items()
                if k not in ("rule", "attributes", "thresholds", "probability_thresholds",
                             "platt")}
        return cls(list(names), {k: arr(v) for k, v in stored["thresholds"].items()},
                   arr(stored["platt"]["a"]), arr(stored["platt"]["b"]), info)


def guarded_accuracy_threshold(scores, truth, z: float = 2.0) -> float:
    """The accuracy point's threshold only where it beats 0 clearly on these images: its gain
    in correct decisions over score > 0, g = wins - losses among the d images whose decision
    differs, must reach z * sqrt(d) (McNemar's test, about 2 sigma at z = 2); else 0. On a few
    hundred faces the best threshold is often chance, and 0 is the SVM's own boundary."""
    scores = np.asarray(scores, np.float64)
    truth = np.asarray(truth, bool)
    t = best_threshold(scores, truth, "accuracy")
    moved = (scores > t) != (scores > 0)
    wins = int(((scores > t) == truth)[moved].sum())
    losses = int(moved.sum()) - wins
    return t if wins - losses >= z * np.sqrt(max(wins + losses, 1)) else 0.0


def platt_threshold(a: float, b: float, probability: float) -> float:
    """The score where Platt's sigmoid (a, b) crosses ``probability`` (0 when a <= 0: the
    scores carry no usable order)."""
    if a <= 0:
        return 0.0
    return float((np.log(probability / (1.0 - probability)) - b) / a)


def choose_points(scores, labels, names: Sequence[str],
                  precisions: Sequence[float] = DEFAULT_PRECISIONS,
                  info: dict | None = None, method: str = "empirical",
                  balanced_platt_below: int = 0) -> OperatingPoints:
    """Every point's threshold and Platt's sigmoid per attribute from held-out scores (N, A)
    and labels (N, A) in {1, 0, NaN} (NaN: left out for that attribute).

    ``method``: "empirical" takes the accuracy and balanced thresholds that are best on these
    images (`best_threshold`); "guarded" is empirical but keeps 0 for accuracy unless the best
    threshold beats it clearly (`guarded_accuracy_threshold`), and sets precision points on
    the Wilson lower bound of precision (GUARD_Z) rather than the observed one; "platt" reads them off the fitted sigmoid instead (accuracy:
    P(present) = 0.5; balanced: P(present) = the attribute's positive rate, where a calibrated
    posterior's likelihood ratio is 1), two fitted numbers rather than a step function's
    maximum, so less tied to the few positives of a rare attribute. Precision points are
    empirical either way.

    ``balanced_platt_below`` N > 0: whatever the method, an attribute with fewer than N
    positives among these images takes Platt's balanced threshold (a guard for rare
    attributes; a large N gives Platt's for every attribute)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, np.float64)
    if s.shape != y.shape or s.ndim != 2 or s.shape[1] != len(names):
        raise DataError(f"scores {s.shape} and labels {y.shape} do not fit {len(names)} "
                        "attributes")
    keys = ["accuracy", "balanced", *(precision_key(p) for p in precisions)]
    thresholds = {k: np.full(len(names), np.nan) for k in keys}
    a, b = np.ones(len(names)), np.zeros(len(names))
    positives = []
    for j in range(len(names)):
        known = ~np.isnan(y[:, j])
        sj, tj = s[known, j], y[known, j] > 0.5
        positives.append(int(tj.sum()))
        for k in keys:
            z = GUARD_Z if method == "guarded" and k.startswith("precision:") else 0.0
            t = best_threshold(sj, tj, k, confidence_z=z)
            thresholds[k][j] = np.nan if t is None else t
        a[j], b[j] = fit_platt(sj, tj)
        if method == "guarded" and 0 < tj.sum() < len(tj):
            thresholds["accuracy"][j] = guarded_accuracy_threshold(sj, tj)
        if method == "platt" and 0 < tj.sum() < len(tj):
            thresholds["accuracy"][j] = platt_threshold(a[j], b[j], 0.5)
        if 0 < tj.sum() < len(tj) and (method == "platt" or tj.sum() < balanced_platt_below):
            thresholds["balanced"][j] = platt_threshold(a[j], b[j], float(tj.mean()))
    guard = {"balanced_platt_below": int(balanced_platt_below)} if balanced_platt_below else {}
    return OperatingPoints(list(names), thresholds, a, b,
                           {"images": int(len(s)), "positives": positives, "method": method,
                            **guard, **(info or {})}, held_out=(s, y))


NO_POINTS_NOTE = ("this bundle stores no operating points, so decisions are score > 0 (the "
                  "SVM's own boundary), not the point requested; `faceattr-ray "
                  "calibrate-points` adds them")


def resolve_point(config: dict | None, names: Sequence[str], point: str
                  ) -> tuple[np.ndarray, dict]:
    """(A,) thresholds of ``point`` for a bundle's config (NaN: never present) and a JSON-able
    description for output metadata. A bundle without stored points falls back to score > 0,
    and the description's "note" says so."""
    point = parse_point(point)
    stored = OperatingPoints.from_config(config, names)
    if stored is None:
        meta = {"requested": point, "point": "zero", "rule": "score > 0"}
        if point != "zero":
            meta["note"] = NO_POINTS_NOTE
        return np.zeros(len(names)), meta
    t = stored.threshold(point)
    unreachable = stored.unreachable(point)
    meta = {"requested": point, "point": point, "rule": "score > threshold",
            "thresholds": {n: None if np.isnan(v) else float(v)
                           for n, v in zip(names, t, strict=True)},
            "chosen_on": stored.info.get("chosen_on"), "method": stored.info.get("method")}
    if unreachable:
        meta["unreachable"] = unreachable
        meta["note"] = (f"{point} was not reached on the choice images for "
                        f"{len(unreachable)} attribute(s): their decision is always false")
    return t, meta
