"""Operating points (heads/points.py): thresholds reproduce known optima on constructed score
distributions; calibrated probabilities; storage in a bundle's config; AP in the metrics."""

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from faceattr_ray.errors import DataError
from faceattr_ray.heads.points import (
    OperatingPoints,
    best_threshold,
    choose_points,
    fit_platt,
    parse_point,
)
from faceattr_ray.metrics import attribute_metrics


def _brute(scores, truth, figure):
    """The best value of ``figure(pred, truth)`` over every threshold between scores."""
    values = np.unique(scores)
    cuts = np.r_[values[0] - 1, (values[:-1] + values[1:]) / 2, values[-1] + 1]
    return max(figure(scores > t, truth) for t in cuts)


def _acc(pred, truth):
    return np.mean(pred == truth)


def _bal(pred, truth):
    return 0.5 * (np.mean(pred[truth]) + np.mean(~pred[~truth]))


def test_accuracy_point_on_two_gaussians():
    # Rare positives at +1, negatives at -1 (sd 1): the Bayes threshold of accuracy is
    # ln(0.9 / 0.1) / 2 = 1.10, right of the SVM's 0; the chosen one lands near it and is the
    # best of all thresholds on these scores.
    rng = np.random.default_rng(0)
    truth = rng.random(20000) < 0.1
    scores = np.where(truth, 1.0, -1.0) + rng.normal(0, 1, truth.size)
    t = best_threshold(scores, truth, "accuracy")
    assert abs(t - np.log(9) / 2) < 0.15
    assert np.isclose(_acc(scores > t, truth), _brute(scores, truth, _acc))
    assert _acc(scores > t, truth) > _acc(scores > 0, truth)


def test_balanced_point_is_the_equal_error_point_for_symmetric_classes():
    # Equal-variance classes: balanced accuracy peaks where the two error rates are equal,
    # at the midpoint 0, whatever the class ratio (accuracy would move right).
    rng = np.random.default_rng(1)
    truth = rng.random(20000) < 0.1
    scores = np.where(truth, 1.0, -1.0) + rng.normal(0, 1, truth.size)
    t = best_threshold(scores, truth, "balanced")
    assert abs(t) < 0.15
    assert np.isclose(_bal(scores > t, truth), _brute(scores, truth, _bal))
    miss, false_alarm = np.mean(scores[truth] <= t), np.mean(scores[~truth] > t)
    assert abs(miss - false_alarm) < 0.03


def test_thresholds_on_a_small_exact_case():
    scores = np.array([-3.0, -2.0, -1.0, 0.5, 1.0, 2.0])
    truth = np.array([0, 0, 1, 0, 1, 1], bool)
    # accuracy 5/6 at t in (-2, -1) (one false alarm) or (0.5, 1) (one miss): the cut nearest
    # 0 is 0.75; balanced accuracy is 5/6 at both too (2/3 of one class, all of the other)
    assert best_threshold(scores, truth, "accuracy") == 0.75
    assert best_threshold(scores, truth, "balanced") == 0.75
    # with the lone negative at 0.5 gone, only t in (-2, -1) separates the classes
    assert best_threshold(np.delete(scores, 3), np.delete(truth, 3), "accuracy") == -1.5
    # precision 1.0 first reached above 0.5 (scores 1, 2 only): the lowest such cut is 0.75
    assert best_threshold(scores, truth, "precision:1") == 0.75
    # precision >= 0.75: 3 of 4 above -1.5 -> the lowest cut reaching it
    assert best_threshold(scores, truth, "precision:0.75") == -1.5
    assert best_threshold(scores, truth, "zero") == 0.0


def test_unreachable_precision_is_none_and_never_present():
    scores = np.array([3.0, 2.0, 1.0, 0.0])
    truth = np.array([0, 1, 0, 1], bool)  # the top score is a negative: max precision 2/3
    assert best_threshold(scores, truth, "precision:0.9") is None
    pts = choose_points(scores[:, None], truth[:, None].astype(float), ["A"], precisions=[0.9])
    assert pts.unreachable("precision:0.9") == ["A"]
    m = attribute_metrics(truth[:, None].astype(float), scores[:, None], ["A"],
                          pts.threshold("precision:0.9"))
    a = m["attributes"]["A"]
    assert a["predicted_positive_rate"] == 0.0 and a["threshold"] is None
    assert a["precision"] is None  # nothing predicted


def test_platt_recovers_a_known_sigmoid():
    rng = np.random.default_rng(2)
    s = rng.normal(0, 2, 50000)
    truth = rng.random(s.size) < 1 / (1 + np.exp(-(1.5 * s - 0.5)))
    a, b = fit_platt(s, truth)
    assert abs(a - 1.5) < 0.1 and abs(b + 0.5) < 0.1
    a, b = fit_platt(np.array([-1.0, 1.0]), np.array([False, True]))  # separable: finite
    assert np.isfinite(a) and np.isfinite(b) and a > 0


def test_platt_method_reads_the_sigmoid():
    rng = np.random.default_rng(3)
    s = rng.normal(0, 2, 20000)
    truth = rng.random(s.size) < 1 / (1 + np.exp(-(s - 1.0)))
    pts = choose_points(s[:, None], truth[:, None].astype(float), ["A"], method="platt")
    assert abs(pts.threshold("accuracy")[0] - 1.0) < 0.1  # P = 0.5 at s = 1


def test_balanced_guard_takes_platt_only_below_the_positive_count():
    rng = np.random.default_rng(5)
    s = rng.normal(0, 2, (400, 2))
    truth = np.c_[rng.random(400) < 0.03, rng.random(400) < 0.4]  # ~12 and ~160 positives
    y = truth.astype(float)
    plain = choose_points(s, y, ["Rare", "Common"], method="guarded")
    platt = choose_points(s, y, ["Rare", "Common"], method="platt")
    guarded = choose_points(s, y, ["Rare", "Common"], method="guarded",
                            balanced_platt_below=50)
    t = guarded.threshold("balanced")
    assert t[0] == platt.threshold("balanced")[0] != plain.threshold("balanced")[0]
    assert t[1] == plain.threshold("balanced")[1]
    assert guarded.threshold("accuracy")[0] == plain.threshold("accuracy")[0]
    assert guarded.info["balanced_platt_below"] == 50


def test_points_round_trip_through_json():
    rng = np.random.default_rng(4)
    y = (rng.random((300, 2)) < [0.3, 0.05]).astype(float)
    s = y * 2 - 1 + rng.normal(0, 1.2, y.shape)
    y[0, 1] = np.nan
    pts = choose_points(s, y, ["A", "B"], precisions=[0.9, 0.99], info={"chosen_on": "test"})
    cfg = json.loads(json.dumps(pts.to_config()))
    back = OperatingPoints.from_config({"operating_points": cfg}, ["B", "A"])  # reordered
    for k in pts.thresholds:
        np.testing.assert_allclose(back.threshold(k), pts.threshold(k)[::-1])
    np.testing.assert_allclose(back.probabilities(s[:, ::-1]), pts.probabilities(s)[:, ::-1],
                               rtol=1e-6)
    assert back.info["chosen_on"] == "test"
    assert OperatingPoints.from_config({}, ["A"]) is None
    with pytest.raises(DataError, match="not stored"):
        pts.threshold("precision:0.5")


def test_parse_point():
    assert parse_point("Accuracy") == "accuracy"
    assert parse_point("precision:0.90") == "precision:0.9"
    for bad in ("precise", "precision:1.5", "precision:x", "precision:0"):
        with pytest.raises(DataError):
            parse_point(bad)


def test_average_precision_matches_sklearn():
    rng = np.random.default_rng(5)
    y = (rng.random((200, 3)) < [0.5, 0.1, 0.0]).astype(np.float32)
    s = y + rng.normal(0, 1, y.shape).astype(np.float32)
    y[:5, 0] = np.nan
    m = attribute_metrics(y, s, ["A", "B", "C"])
    known = ~np.isnan(y[:, 0])
    assert np.isclose(m["attributes"]["A"]["average_precision"],
                      average_precision_score(y[known, 0], s[known, 0]))
    assert np.isclose(m["attributes"]["B"]["average_precision"],
                      average_precision_score(y[:, 1], s[:, 1]))
    assert m["attributes"]["C"]["average_precision"] is None  # no positive: undefined
    assert np.isclose(m["mean"]["average_precision"],
                      np.mean([m["attributes"][n]["average_precision"] for n in "AB"]))
    # AP ranks scores: a per-attribute threshold changes decisions, not AP
    m2 = attribute_metrics(y, s, ["A", "B", "C"], np.array([0.5, -0.5, 0.0]))
    assert m2["mean"]["average_precision"] == m["mean"]["average_precision"]
    assert m2["attributes"]["A"]["accuracy"] != m["attributes"]["A"]["accuracy"]


def test_guarded_accuracy_keeps_zero_unless_the_gain_is_clear():
    from faceattr_ray.heads.points import guarded_accuracy_threshold

    rng = np.random.default_rng(6)
    # a clear shift: positives rare, the Bayes threshold well right of 0 -> moved
    truth = rng.random(5000) < 0.1
    scores = np.where(truth, 1.0, -1.0) + rng.normal(0, 1, truth.size)
    assert guarded_accuracy_threshold(scores, truth) == best_threshold(scores, truth, "accuracy")
    # 0 is already right (balanced classes, symmetric): any move is noise -> 0 kept
    truth = rng.random(200) < 0.5
    scores = np.where(truth, 1.0, -1.0) + rng.normal(0, 1, truth.size)
    assert guarded_accuracy_threshold(scores, truth) == 0.0


def test_guarded_precision_needs_the_lower_bound_to_reach_the_target():
    from faceattr_ray.heads.points import wilson_lower

    scores = np.array([-3.0, -2.0, -1.0, 0.5, 1.0, 2.0])
    truth = np.array([0, 0, 1, 0, 1, 1], bool)
    assert best_threshold(scores, truth, "precision:0.9") == 0.75  # 2 of 2: observed 1.0
    # 2 of 2 has a Wilson lower bound of 2/3 at z = 1: not enough evidence for 0.9
    assert np.isclose(wilson_lower(np.array([2.0]), np.array([2.0]), 1.0)[0], 2 / 3)
    assert best_threshold(scores, truth, "precision:0.9", confidence_z=1.0) is None
    # with many faces the bound closes in on the observed precision
    rng = np.random.default_rng(7)
    truth = rng.random(20000) < 0.2
    scores = np.where(truth, 2.0, -1.0) + rng.normal(0, 1, truth.size)
    loose = best_threshold(scores, truth, "precision:0.9")
    strict = best_threshold(scores, truth, "precision:0.9", confidence_z=1.0)
    assert loose <= strict < loose + 0.2
