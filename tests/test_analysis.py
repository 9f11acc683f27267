"""The paper's analyses (analysis.py) on hand-made inputs whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from faceattr_ray.evaluation import analysis
from faceattr_ray.localizers import Detection

# --- Fig. 8: concept neurons ---------------------------------------------------------------------


def test_concept_neurons_rank_by_variance_and_by_weight():
    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, s, 50) for s in (0.1, 3.0, 1.0, 0.0)], 1)  # neuron 3 is constant
    assert analysis.concept_neurons(x, count=3).tolist() == [1, 2, 0]
    w = np.array([[0.0, 0.1, 2.0, 9.0], [0.5, 0.0, 1.0, 9.0]])
    # Neuron 3 carries the most weight but never changes: it cannot be a concept, so it is last.
    assert analysis.concept_neurons(x, w, count=4, by="weight").tolist() == [2, 0, 1, 3]
    with pytest.raises(ValueError, match="needs the heads"):
        analysis.concept_neurons(x, by="weight")
    with pytest.raises(ValueError, match="does not fit"):
        analysis.concept_neurons(x, w[:, :3], by="weight")
    with pytest.raises(ValueError, match="variance"):
        analysis.concept_neurons(x, by="luck")


def test_response_groups_take_top_middle_and_bottom():
    r = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 0.0, 8.0, 2.0, 6.0, 4.0])  # ranks are obvious
    g = analysis.response_groups(r, fraction=0.2)
    assert sorted(r[g["high"]]) == [8.0, 9.0]
    assert sorted(r[g["low"]]) == [0.0, 1.0]
    assert sorted(r[g["medium"]]) == [4.0, 5.0]  # around the median
    tiny = analysis.response_groups(np.array([1.0, 2.0]), fraction=0.1)
    assert [len(v) for v in tiny.values()] == [1, 1, 1]  # at least one image each
    with pytest.raises(ValueError):
        analysis.response_groups(np.array([]))


def test_mean_images_average_the_right_pictures():
    images = np.zeros((4, 2, 2, 3), np.uint8)
    images[0], images[1], images[2], images[3] = 0, 100, 201, 255
    means = analysis.mean_images(images, {"a": np.array([0, 1]), "b": np.array([2, 3])})
    assert means["a"].dtype == np.uint8 and means["a"].shape == (2, 2, 3)
    assert (means["a"] == 50).all() and (means["b"] == 228).all()  # 228 = round(228.0)


def test_best_correlated_names_the_attribute_and_its_sign():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 3)) > 0.5).astype(np.float64)
    r = -2.0 * y[:, 1] + rng.normal(0, 0.3, 200)  # fires on the absence of attribute 1
    y[:10, 1] = np.nan  # unknown labels are left out, not counted as absent
    name, c = analysis.best_correlated(r, y, ["A", "B", "C"])
    assert name == "B" and c < -0.8
    # A constant neuron correlates with nothing.
    assert analysis.best_correlated(np.ones(200), y, ["A", "B", "C"]) == (None, 0.0)


# --- Fig. 10b: sparsity --------------------------------------------------------------------------


def _sparse_problem():
    """Attribute 0 is decided by neuron 0 alone; attribute 1 needs neurons 1..4 together."""
    rng = np.random.default_rng(2)
    n, f = 400, 10
    x = rng.normal(0, 1, (n, f)) + 3.0  # a mean far from 0: dropping must not shift the scores
    y0 = (x[:, 0] > 3.0).astype(float)
    y1 = (x[:, 1:5].sum(1) > 12.0).astype(float)
    w = np.zeros((2, f))
    w[0, 0], w[0, 5:] = 1.0, 0.05  # small weights on noise neurons, their mean in the bias
    w[1, 1:5] = 1.0
    b = np.array([-3.0 - 0.05 * x[:, 5:].mean(0).sum(), -12.0])
    return x, np.stack([y0, y1], 1), w, b


def test_sparsity_curve_full_row_is_the_heads_accuracy():
    x, y, w, b = _sparse_problem()
    curve = analysis.sparsity_curve(x, y, w, b, fractions=(0.1, 0.5, 1.0))
    expected = ((x @ w.T + b > 0) == (y > 0.5)).mean(0)
    np.testing.assert_allclose(curve[-1], expected)


def test_sparsity_curve_keeps_the_best_neurons_and_holds_the_rest_at_their_mean():
    x, y, w, b = _sparse_problem()
    fractions = (0.1, 0.2, 0.4, 1.0)  # 1, 2, 4 and 10 of 10 neurons
    curve = analysis.sparsity_curve(x, y, w, b, fractions)
    # Attribute 0: its one neuron decides it, so one neuron (10%) is exact and the noise
    # neurons only cost accuracy. Had the dropped neurons been set to 0 instead of their mean
    # (about 3), the score would shift by about -0.05 * 5 * 3 and a quarter of the faces would flip.
    assert curve[0, 0] == 1.0 and 0.9 < curve[-1, 0] < 1.0
    zeroed = ((x[:, 0] + b[0] > 0) == (y[:, 0] > 0.5)).mean()
    assert zeroed < 0.8
    # Attribute 1 needs all four of its neurons: fewer lose accuracy, four recover it.
    assert curve[0, 1] < curve[2, 1] - 0.05
    assert curve[2, 1] == pytest.approx(curve[-1, 1])
    needed = analysis.fraction_needed(curve, fractions, target=0.9)
    assert needed[0] == 0.1
    assert needed[1] == 0.4


def test_sparsity_curve_skips_unknown_labels_and_checks_shapes():
    x, y, w, b = _sparse_problem()
    y[:, 1] = np.nan
    curve = analysis.sparsity_curve(x, y, w, b, (0.5, 1.0))
    assert np.isnan(curve[:, 1]).all() and np.isfinite(curve[:, 0]).all()
    assert np.isnan(analysis.fraction_needed(curve, (0.5, 1.0))[1])
    with pytest.raises(ValueError, match="do not agree"):
        analysis.sparsity_curve(x[:, :3], y, w, b)


def test_fraction_needed_by_hand():
    fractions = (0.1, 0.5, 1.0)
    curve = np.array([[0.50, 0.80], [0.85, 0.89], [0.90, 0.90]])
    # 0.9 * 0.9 = 0.81: attribute 0 reaches it at 50%, attribute 1 at 50% (0.80 < 0.81).
    np.testing.assert_allclose(analysis.fraction_needed(curve, fractions), [0.5, 0.5])
    np.testing.assert_allclose(analysis.fraction_needed(curve, fractions, 0.85), [0.5, 0.1])
    with pytest.raises(ValueError, match="end at 1.0"):
        analysis.fraction_needed(curve, (0.1, 0.5, 0.9))
    with pytest.raises(ValueError, match="rise"):
        analysis.fraction_needed(curve, (0.5, 0.1, 1.0))


# --- Fig. 11: grouping ---------------------------------------------------------------------------


def test_attribute_groups_cluster_directions_not_lengths():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=20), rng.normal(size=20)
    # Attributes 0, 2, 4 point along a, 1, 3 along b, with very different lengths.
    w = np.stack([a, 10 * b + rng.normal(0, 0.1, 20), 0.01 * a, b, 50 * a + rng.normal(0, 0.1, 20)])
    groups = analysis.attribute_groups(w, groups=2)
    assert groups.tolist() == [0, 1, 0, 1, 0]  # numbered by the first attribute in each group
    coords = analysis.project_2d(w)
    assert coords.shape == (5, 2)
    # On the first principal axis the two directions fall on opposite sides.
    assert np.sign(coords[0, 0]) == np.sign(coords[2, 0]) != np.sign(coords[1, 0])


def test_project_2d_pads_when_there_is_one_axis():
    assert analysis.project_2d(np.array([[1.0, 0.0], [2.0, 0.0]])).shape == (2, 2)


# --- Fig. 9: attribute regions -------------------------------------------------------------------


def test_attribute_map_peaks_are_fractions_at_cell_centres():
    maps = np.zeros((2, 4, 8))
    maps[0, 0, 7] = 1.0  # top right
    maps[1, 3, 0] = 1.0  # bottom left
    peaks = analysis.attribute_map_peaks(maps)
    assert peaks[0] == pytest.approx((0.125, 0.9375))
    assert peaks[1] == pytest.approx((0.875, 0.0625))


# --- Fig. 7: localization ------------------------------------------------------------------------


def test_localization_curves_by_hand():
    gts = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([[0, 0, 10, 10]])]
    dets = [
        [Detection((0, 0, 10, 10), 0.9), Detection((22, 22, 32, 32), 0.5)],  # exact; IoU 0.47
        [Detection((50, 50, 60, 60), 0.8)],  # a false positive, the face is missed
    ]
    c = analysis.localization_curves(dets, gts, iou_thresholds=(0.3, 0.5, 0.9))
    assert c["images"] == 2 and c["faces"] == 3
    np.testing.assert_allclose(c["recall"], [2 / 3, 1 / 3, 1 / 3])
    # Score order 0.9 (TP), 0.8 (FP), 0.5 (FP at IoU 0.5): one of three faces at 0.5 FPPI.
    assert c["tpr_at_0.1_fppi"] == pytest.approx(1 / 3)
    assert c["tpr_at_1_fppi"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(c["fppi"], [0.0, 0.0, 0.5, 1.0])
    assert c["score_cuts"][0] is None  # +inf is not JSON


# --- annotate output -----------------------------------------------------------------------------


def test_annotation_summary_counts_rows_faces_and_errors():
    paths = ["a.jpg", "a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    status = ["ok", "ok", "no_face", "error", "error", "ok"]
    scores = np.array([[1.0, -1.0], [2.0, np.nan], [np.nan] * 2, [np.nan] * 2, [np.nan] * 2,
                       [-1.0, -3.0]])
    errors = np.array([None, None, None, "corrupt or truncated image: 5 bytes left",
                       "corrupt or truncated image: bad crc", None], dtype=object)
    s = analysis.annotation_summary(paths, status, scores, ["Male", "Smiling"], errors)
    assert (s["rows"], s["images"], s["faces"], s["no_face"], s["errors"]) == (6, 5, 3, 1, 2)
    assert s["faces_per_image"] == {"0": 1, "1": 1, "2": 1}  # b; e; a (c, d did not decode)
    assert s["prevalence"] == {"Male": pytest.approx(2 / 3), "Smiling": 0.0}  # NaN left out
    assert s["error_messages"] == {"corrupt or truncated image": 2}
