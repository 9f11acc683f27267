"""The face head that the confidence floor reads (heads/face.py), and the threshold and floor
chosen together on validation scenes (evaluation.localization_metrics)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from faceattr_ray.evaluation.localization_metrics import choose_threshold_and_floor
from faceattr_ray.heads.face import face_head_scores, face_labels, fit_face_head
from faceattr_ray.localizers import Detection, FramedLocalizer


def test_labels_come_from_the_best_overlap_with_a_pasted_face():
    assert face_labels(np.array([0.0, 0.29, 0.3, 0.49, 0.5, 0.9])).tolist() == [0, 0, -1, -1, 1, 1]


def test_the_head_scores_as_scikit_learns_standardised_logistic_regression():
    """The standardisation is folded into the stored weights exactly: the head's score is the
    decision function of scikit-learn's pipeline (scaler + class-balanced logistic regression)
    fit on the rows it keeps; left-out rows (-1) do not move it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    faces = rng.normal(1.0, 1.0, (60, 5)) * [1, 10, 0.1, 1, 3]
    others = rng.normal(0.0, 1.0, (240, 5)) * [1, 10, 0.1, 1, 3]
    half_on = rng.normal(50.0, 1.0, (30, 5))
    x = np.r_[faces, others, half_on]
    labels = np.r_[np.ones(60), np.zeros(240), -np.ones(30)].astype(int)
    head = fit_face_head(x, labels, C=0.1)
    peer = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000,
                                                              class_weight="balanced"))
    peer.fit(x[:300], labels[:300])
    probe = rng.normal(0.5, 2.0, (50, 5))
    assert face_head_scores(probe, head) == pytest.approx(peer.decision_function(probe),
                                                          abs=1e-6)
    assert (head["faces"], head["others"], len(head["weight"])) == (60, 240, 5)
    assert (face_head_scores(faces, head) > 0).mean() > 0.7
    assert (face_head_scores(others, head) < 0).mean() > 0.7
    with pytest.raises(ValueError, match="faces and non-faces"):
        fit_face_head(others, np.zeros(240, int))


def _scene(face_boxes, finds):
    """One validation scene: true boxes and framed finds as (Detection, read)."""
    return (np.array(face_boxes, float).reshape(-1, 4),
            [(Detection(tuple(map(float, box)), score), read) for box, score, read in finds])


def test_threshold_and_floor_chosen_together_spend_the_budget_on_more_faces():
    """Four scenes. Face finds score 0.9 or 0.4 and read 5; false finds score 0.95 or 0.5 and
    read 1 (texture), except one that reads like a face (5). A threshold alone must stay above
    0.95 to keep false detections within 0.25 per scene and so finds no face; with a floor at
    the faces' reading the texture goes, and the lowest threshold within budget is 0.4 (every
    face, the one face-like false find: 0.25 per scene)."""
    scenes = [
        _scene([[0, 0, 100, 100]], [((0, 0, 100, 100), 0.9, 5.0), ((300, 0, 350, 50), 0.95, 1.0)]),
        _scene([[0, 0, 100, 100]], [((0, 0, 100, 100), 0.4, 5.0), ((300, 0, 350, 50), 0.5, 1.0)]),
        _scene([], [((300, 0, 350, 50), 0.95, 1.0), ((100, 100, 150, 150), 0.45, 5.0)]),
        _scene([[0, 0, 100, 100]], [((0, 0, 100, 100), 0.9, 5.0)]),
    ]
    truths = [t for t, _ in scenes]
    scored = [s for _, s in scenes]
    framer = FramedLocalizer(None, None, None, 8)
    chosen = choose_threshold_and_floor(scored, truths, framer.select, 0.25, 0.0)
    assert chosen["threshold"] == pytest.approx(0.4)
    assert chosen["confidence_floor"]["min_confidence"] == pytest.approx(5.0)
    assert (chosen["recall"], chosen["false_per_image"]) == (1.0, 0.25)
    stricter = choose_threshold_and_floor(scored, truths, framer.select, 0.0, 0.0)
    assert stricter["threshold"] == pytest.approx(0.5)  # below it the face-like find counts
    assert (stricter["recall"], stricter["false_per_image"]) == (pytest.approx(2 / 3), 0.0)
    none = choose_threshold_and_floor([[(Detection((300.0, 0.0, 350.0, 50.0), 0.9), 5.0)]],
                                      [np.zeros((0, 4))], framer.select, 0.0, 0.0)
    assert none["recall"] == 0.0 and none["threshold"] > 0.9


def test_the_floor_reads_the_face_head_when_the_framer_has_one():
    """Two finds that ANet's attribute heads read equally: the face head tells them apart, and
    the floor, in its units, keeps only the one it scores as a face (read on the framed crop)."""
    found = [[Detection((0.0, 0.0, 90.0, 90.0), 0.5), Detection((200.0, 0.0, 290.0, 90.0), 0.9)]]
    images = [np.zeros((300, 300, 3), np.uint8)]

    def crop(image, box, side):  # carries the box's left edge
        return np.full((side, side, 3), min(255, round(box[0])), np.uint8)

    def same(crops):
        return np.ones((len(crops), 3))

    def face_scores(crops):
        return np.where(crops[:, 0, 0, 0] < 100, 2.0, -2.0)

    framer = FramedLocalizer(None, same, crop, 8, (1.0,), face_scores=face_scores,
                             min_confidence=0.0)
    scored = framer.frame_scored(images, found)[0]
    assert [read for _, read in scored] == [2.0, -2.0]
    assert framer.frame(images, found) == [[found[0][0]]]
    assert FramedLocalizer(None, same, crop, 8, (1.0,), min_confidence=0.0).frame(
        images, found) == found  # the attribute confidence alone keeps both


def test_a_bundle_with_a_face_head_frames_with_it_and_one_without_still_loads():
    """`Predictor.face_scores` is the stored head on the crops' patch-mean ANet features; a
    bundle's framer reads it when "predict" has "face_head", and a bundle without one frames
    as before (the attribute confidence)."""
    from faceattr_ray.predictor import Predictor
    from faceattr_ray.presets import build_bundle

    bundle = build_bundle("wild-smoke", seed=0, threshold=0.0)
    zooms = {"frame_zooms": [0.9, 1.0, 1.1]}
    plain = dataclasses.replace(bundle, config={**bundle.config, "predict": zooms})
    assert Predictor(plain, "cpu").framer.face_scores is None
    dim = bundle.anet.config.feature_dim
    head = {"weight": list(np.linspace(-1, 1, dim)), "bias": 0.5}
    with_head = dataclasses.replace(bundle, config={**bundle.config,
                                                    "predict": {**zooms, "face_head": head}})
    predictor = Predictor(with_head, "cpu")
    crops = np.random.default_rng(0).integers(0, 255, (3, predictor.crop_side,
                                                      predictor.crop_side, 3), dtype=np.uint8)
    expected = predictor.mean_features(crops) @ np.asarray(head["weight"]) + 0.5
    assert predictor.framer.face_scores(crops) == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="no face head"):
        Predictor(plain, "cpu").face_scores(crops)
