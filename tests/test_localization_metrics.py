"""Localization metrics on hand-made cases whose answers are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from faceattr_ray.evaluation.localization_metrics import (
    box_iou,
    crowded,
    match_detections,
    recall_vs_iou,
    roc_curve,
    scene_scores,
    tpr_at_fppi,
)
from faceattr_ray.localizers import Detection


def test_box_iou_known_values():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 10, 20, 20], [2, 2, 4, 4], [3, 3, 3, 9]])
    assert box_iou(a, b)[0] == pytest.approx([1.0, 50 / 150, 0.0, 4 / 100, 0.0])
    assert box_iou(np.zeros((0, 4)), a).shape == (0, 1)


def test_matching_is_greedy_by_score_and_one_to_one():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10]])
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [50, 50, 60, 60]])
    scores = np.array([0.5, 0.9, 0.7, 0.8])
    # The 0.9 box takes the first face (IoU 9/11); the exact 0.5 box is then a duplicate.
    assert match_detections(boxes, scores, gt, 0.5).tolist() == [-1, 0, 1, -1]
    assert match_detections(boxes, scores, gt, 0.95).tolist() == [0, -1, 1, -1]
    assert match_detections(np.zeros((0, 4)), np.zeros(0), gt).tolist() == []
    assert match_detections(boxes, scores, np.zeros((0, 4))).tolist() == [-1] * 4


def hand_made_set():
    # Image 1: one face found (0.9) and a false positive (0.8).
    # Image 2: one face found late (0.6), one face missed, a false positive (0.7).
    # Image 3: no face, one false positive (0.3).
    detections = [
        [Detection((0, 0, 10, 10), 0.9), Detection((50, 50, 60, 60), 0.8)],
        (np.array([[0, 0, 20, 20], [100, 0, 110, 10]]), np.array([0.6, 0.7])),
        [Detection((5, 5, 9, 9), 0.3)],
    ]
    ground_truth = [
        np.array([[0, 0, 10, 10]]),
        np.array([[1, 1, 20, 20], [200, 200, 220, 220]]),
        np.zeros((0, 4)),
    ]
    return detections, ground_truth


def test_roc_curve_by_hand():
    fppi, tpr, cuts = roc_curve(*hand_made_set())
    # Score order: 0.9 TP, 0.8 FP, 0.7 FP, 0.6 TP, 0.3 FP; 3 faces, 3 images.
    assert cuts.tolist() == [np.inf, 0.9, 0.8, 0.7, 0.6, 0.3]
    assert fppi == pytest.approx([0, 0, 1 / 3, 2 / 3, 2 / 3, 1])
    assert tpr == pytest.approx([0, 1 / 3, 1 / 3, 1 / 3, 2 / 3, 2 / 3])


def test_tpr_at_fppi_by_hand():
    dets, gt = hand_made_set()
    assert tpr_at_fppi(dets, gt, fppi=0.1) == pytest.approx(1 / 3)
    assert tpr_at_fppi(dets, gt, fppi=0.0) == pytest.approx(1 / 3)
    assert tpr_at_fppi(dets, gt, fppi=2 / 3) == pytest.approx(2 / 3)


def test_tied_scores_form_one_operating_point():
    dets = [(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0.5, 0.5]))]
    fppi, tpr, _ = roc_curve(dets, [np.array([[0, 0, 10, 10]])])
    assert fppi.tolist() == [0, 1] and tpr.tolist() == [0, 1]
    assert tpr_at_fppi(dets, [np.array([[0, 0, 10, 10]])], fppi=0.5) == 0.0


def test_recall_vs_iou_by_hand():
    # One face per image; detections overlap it by IoU 1.0, 0.64 and 0.25.
    gt = [np.array([[0, 0, 10, 10]])] * 3
    dets = [[Detection((0, 0, 10, 10), 1.0)], [Detection((0, 0, 8, 8), 0.9)],
            [Detection((0, 0, 5, 5), 0.5)]]
    recall = recall_vs_iou(dets, gt, [0.1, 0.3, 0.5, 0.7, 0.9])
    assert recall == pytest.approx([1, 2 / 3, 2 / 3, 1 / 3, 1 / 3])
    # At a strict false-positive budget a looser overlap still counts only what the cut keeps.
    dets[0].append(Detection((90, 90, 99, 99), 2.0))  # a confident false positive
    assert recall_vs_iou(dets, gt, [0.5], fppi=0.1) == pytest.approx([0.0])
    # One false positive allowed in three images: the cut at 0.9 keeps both good boxes.
    assert recall_vs_iou(dets, gt, [0.5], fppi=0.34) == pytest.approx([2 / 3])
    assert recall_vs_iou(dets, gt, [0.2], fppi=0.34) == pytest.approx([1.0])  # 0.25 counts now
    assert recall_vs_iou(dets, gt, [0.2], fppi=0.1) == pytest.approx([0.0])


def test_length_mismatch_is_an_error():
    with pytest.raises(ValueError):
        roc_curve([[]], [np.zeros((0, 4)), np.zeros((0, 4))])


def test_crowded_faces_and_their_recall_by_hand():
    # Two faces shoulder to shoulder (centres 12 px apart, 10 px wide), one far away; a lone face
    # in the second image. Only the pair is crowded (1.5 widths = 15 px).
    pair_and_far = np.array([[0, 0, 10, 10], [12, 0, 22, 10], [100, 100, 110, 110]])
    assert crowded(pair_and_far).tolist() == [True, True, False]
    assert crowded(np.array([[0, 0, 10, 10], [12, 0, 22, 10]]), widths=1.0).tolist() == [False,
                                                                                         False]
    assert crowded(np.zeros((1, 4))).tolist() == [False] and len(crowded(np.zeros((0, 4)))) == 0
    # Found: one face of the pair and the far one; below the threshold: the pair's other face.
    dets = [[Detection((0, 0, 10, 10), 0.9), Detection((100, 100, 110, 110), 0.8),
             Detection((12, 0, 22, 10), 0.2)], [Detection((50, 50, 60, 60), 0.7)]]
    r = scene_scores(dets, [pair_and_far, np.array([[0, 0, 10, 10]])], threshold=0.5)
    assert r["recall_iou50"] == pytest.approx(2 / 4) and r["false_per_image"] == pytest.approx(0.5)
    assert r["crowded_faces"] == 2 and r["recall_crowded"] == pytest.approx(1 / 2)
    assert scene_scores(dets, [pair_and_far, np.array([[0, 0, 10, 10]])], None)[
        "recall_crowded"] == pytest.approx(1.0)
    lone = scene_scores([dets[1]], [np.array([[0, 0, 10, 10]])], threshold=0.5)
    assert lone["crowded_faces"] == 0 and lone["recall_crowded"] is None


def test_miss_reasons_name_the_first_step_that_lost_each_face():
    from faceattr_ray.evaluation.localization_metrics import miss_reasons

    def face(x):
        return (float(x), 0.0, x + 20.0, 20.0)

    truth = np.array([face(x) for x in (0, 100, 200, 300, 400, 500)])
    # (raw box, score, framed box, ANet's confidence)
    finds = [(face(0), 0.9, face(0), 5.0),            # found
             (face(200), 0.1, face(200), 5.0),        # below the threshold
             (face(300), 0.9, face(315), 5.0),        # framed off the face
             (face(400), 0.9, face(400), 1.0),        # read below the floor
             (face(500), 0.8, face(500), 5.0),        # ... suppressed by the next one
             ((495.0, -5.0, 525.0, 25.0), 0.95, (495.0, -5.0, 525.0, 25.0), 5.0)]
    found = [Detection(raw, score) for raw, score, _, _ in finds]
    scored = [(Detection(framed, score), read) for _, score, framed, read in finds]
    counts = miss_reasons(found, scored, truth, threshold=0.5, min_confidence=3.0, nms_iou=0.3)
    assert counts == {"found": 1, "nothing near": 1, "below threshold": 1, "framed off": 1,
                      "below floor": 1, "lost to NMS": 1}
    # no threshold and no floor: those faces are found, the others keep their reasons
    counts = miss_reasons(found, scored, truth, threshold=None, min_confidence=None)
    assert counts["found"] == 3 and counts["nothing near"] == 1 and counts["framed off"] == 1
    assert sum(miss_reasons(found, scored, np.zeros((0, 4)), 0.5, 3.0).values()) == 0
