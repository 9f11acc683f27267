"""Found boxes framed by the attribute network's confidence (localizers/framing.py, Predictor)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from faceattr_ray.crops import expand_box
from faceattr_ray.localizers import Detection, FramedLocalizer
from faceattr_ray.localizers.framing import DEFAULT_ZOOMS, attribute_confidence


class FixedLocalizer:
    def __init__(self, detections):
        self.detections = detections

    def localize(self, images):
        return self.detections


def width_crop(image, box, side):
    """A stand-in crop that carries the box's width in its pixels."""
    return np.full((side, side, 3), min(255, round(box[2] - box[0])), np.uint8)


def scorer_peaking_at(width: float):
    """Attribute scores largest (in RMS) for crops of boxes ``width`` wide, as ANet's are for
    crops framed by its training rule."""
    def score(crops):
        w = crops[:, 0, 0, 0].astype(np.float64)
        peak = np.exp(-8 * np.log(w / width) ** 2)
        return np.stack([2 * peak, -3 * peak, 0.5 + 0 * peak], axis=1)
    return score


def test_confidence_is_the_root_mean_square_of_the_scores():
    assert attribute_confidence(np.array([[3.0, -4.0], [0.0, 0.0]])) == pytest.approx(
        [math.sqrt(12.5), 0.0])


def test_each_box_takes_the_zoom_the_scorer_reads_most_confidently():
    """Boxes 100 px wide around faces that need 120 and 80: each becomes the nearest zoom's box
    about the same centre; scores, order and count stay the localizer's."""
    found = [[Detection((100.0, 50.0, 200.0, 170.0), 0.9), Detection((10.0, 10.0, 110.0, 130.0),
                                                                      0.7)],
             [], [Detection((0.0, 0.0, 100.0, 100.0), 0.6)]]
    images = [np.zeros((300, 300, 3), np.uint8)] * 3
    framer = FramedLocalizer(FixedLocalizer(found), scorer_peaking_at(120), width_crop, 16)
    out = framer.localize(images)
    assert [len(d) for d in out] == [2, 0, 1]
    assert [d.score for d in out[0] + out[2]] == [0.9, 0.7, 0.6]
    nearest = min(DEFAULT_ZOOMS, key=lambda z: abs(math.log(100 * z / 120)))
    for before, after in zip(found[0] + found[2], out[0] + out[2], strict=True):
        assert after.box == pytest.approx(expand_box(before.box, nearest))
        assert (after.box[0] + after.box[2]) / 2 == pytest.approx((before.box[0] + before.box[2]) / 2)
    shrink = FramedLocalizer(FixedLocalizer(found), scorer_peaking_at(80), width_crop, 16)
    assert shrink.localize(images)[0][0].box[2] - shrink.localize(images)[0][0].box[0] == (
        pytest.approx(100 * min(DEFAULT_ZOOMS, key=lambda z: abs(math.log(100 * z / 80)))))
    # nothing found: nothing scored
    calls = []
    empty = FramedLocalizer(FixedLocalizer([[], []]), lambda c: calls.append(c), width_crop, 16)
    assert empty.localize(images[:2]) == [[], []] and calls == []
    with pytest.raises(ValueError, match="positive"):
        FramedLocalizer(FixedLocalizer(found), scorer_peaking_at(80), width_crop, 16, (0.0, 1.0))


def centre_crop(image, box, side):
    """A stand-in crop that carries the box's width and centre in its pixels."""
    x1, y1, x2, y2 = box
    values = [x2 - x1, (x1 + x2) / 2, (y1 + y2) / 2]
    return np.stack([np.full((side, side), v, np.float64) for v in values], axis=-1)


def scorer_peaking_at_box(width: float, cx: float, cy: float):
    """Scores largest for crops of boxes ``width`` wide centred on (``cx``, ``cy``)."""
    def score(crops):
        w, x, y = (crops[:, 0, 0, k] for k in range(3))
        peak = np.exp(-8 * np.log(w / width) ** 2 - ((x - cx) ** 2 + (y - cy) ** 2) / 200.0)
        return np.stack([2 * peak, -3 * peak], axis=1)
    return score


def test_after_the_zoom_the_centre_moves_up_or_down_then_sideways_where_read_more_confidently():
    """A box found 100 px wide, centred 20 px above and 10 px left of a 100 px face: the zoom
    stays 1, then the move of 0.2 box heights down and 0.1 widths right puts the box on the
    face; with no moves the centre stays; a box already on the face is not moved."""
    face = (100.0, 100.0, 200.0, 200.0)
    found = [[Detection((90.0, 80.0, 190.0, 180.0), 0.9), Detection(face, 0.8)]]
    images = [np.zeros((300, 300, 3), np.uint8)]
    score = scorer_peaking_at_box(100, 150, 150)
    moved = FramedLocalizer(FixedLocalizer(found), score, centre_crop, 4, (0.8, 1.0, 1.25),
                            shifts_y=(-0.2, -0.1, 0.1, 0.2), shifts_x=(-0.1, 0.1))
    (off, read_off), (on, read_on) = moved.frame_scored(images, found)[0]
    assert off.box == pytest.approx(face) and on.box == pytest.approx(face)
    assert [off.score, on.score] == [0.9, 0.8]
    # the confidence is the zoom's, before the move (what the floor reads)
    assert read_off == pytest.approx(np.sqrt(6.5) * np.exp(-500 / 200.0))
    assert read_on == pytest.approx(np.sqrt(6.5))
    # the two now frame one face: the better-scored stays
    assert [d.score for d in moved.localize(images)[0]] == [0.9]
    still = FramedLocalizer(FixedLocalizer(found), score, centre_crop, 4, (0.8, 1.0, 1.25))
    assert [d for d, _ in still.frame_scored(images, found)[0]][0].box == pytest.approx(
        found[0][0].box)


@pytest.fixture(scope="module")
def tiny_bundle():
    from faceattr_ray.presets import build_bundle

    return build_bundle("wild-smoke", seed=0, threshold=0.0)


def test_predictor_frames_found_boxes_as_the_bundle_says_and_can_be_told_not_to(tiny_bundle):
    """`Predictor(frame_zooms=...)` re-sizes each found box by one of the zooms about its centre
    (the attribute scores then describe that crop); the zoom 1 alone changes nothing; the
    bundle's "predict": {"frame_zooms"} is the default and () turns it off; the localize-only
    part builds ANet for it; aligned crops are never framed."""
    from faceattr_ray.predictor import Predictor

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    plain = Predictor(tiny_bundle, "cpu", frame_zooms=())
    found = plain.localize(images)
    assert sum(map(len, found)) > 0
    same = Predictor(tiny_bundle, "cpu", frame_zooms=(1.0,)).localize(images)
    assert np.allclose([d.box for ds in same for d in ds], [d.box for ds in found for d in ds],
                       atol=1e-9)
    zooms = (0.8, 1.0, 1.25)
    framed = Predictor(tiny_bundle, "cpu", frame_zooms=zooms)
    for before, after in zip(found, framed.localize(images), strict=True):
        assert [d.score for d in after] == [d.score for d in before]
        for b, a in zip(before, after, strict=True):
            z = (a.box[2] - a.box[0]) / (b.box[2] - b.box[0])
            assert min(abs(z - zz) for zz in zooms) < 1e-6
            assert a.box == pytest.approx(expand_box(b.box, z), abs=1e-4)
    result = framed.predict(images)
    assert [f.box for r in result for f in r.faces] == [
        d.box for ds in framed.localize(images) for d in ds]
    configured = dataclasses.replace(tiny_bundle, config={
        **tiny_bundle.config, "predict": {"flip": False, "frame_zooms": list(zooms)}})
    assert Predictor(configured, "cpu").framer.zooms == zooms
    assert Predictor(configured, "cpu").framer.shifts_y == ()  # no moves unless the bundle says
    moving = dataclasses.replace(tiny_bundle, config={**tiny_bundle.config, "predict": {
        "frame_zooms": list(zooms), "frame_shifts_y": [-0.1, 0.1], "frame_shifts_x": [0.1]}})
    assert (Predictor(moving, "cpu").framer.shifts_y, Predictor(moving, "cpu").framer.shifts_x) == (
        (-0.1, 0.1), (0.1,))
    assert Predictor(configured, "cpu", frame_zooms=()).framer is None
    localize_only = Predictor(configured, "cpu", parts="localize")
    assert localize_only.anet is not None and localize_only.framer is not None
    assert Predictor(configured, "cpu", parts="describe").framer is None
    assert Predictor(configured, "cpu", localizer="full").framer is None


def test_two_finds_of_one_face_that_frame_to_the_same_box_are_one_face():
    """A face found twice (its whole and, slightly off, a part of it): once framed, both boxes
    cover the face, and only the better-scored one is kept (nms_iou=None keeps both)."""
    found = [[Detection((100.0, 100.0, 180.0, 180.0), 0.6),
              Detection((95.0, 98.0, 185.0, 188.0), 0.9),
              Detection((300.0, 300.0, 380.0, 380.0), 0.5)]]
    images = [np.zeros((400, 400, 3), np.uint8)]
    scorer = scorer_peaking_at(90)
    out = FramedLocalizer(FixedLocalizer(found), scorer, width_crop, 16).localize(images)[0]
    assert [d.score for d in out] == [0.9, 0.5]  # the localizer's order, the duplicate gone
    both = FramedLocalizer(FixedLocalizer(found), scorer, width_crop, 16, nms_iou=None)
    assert len(both.localize(images)[0]) == 3


def test_boxes_read_below_the_confidence_floor_are_dropped_and_the_rest_framed_as_before():
    """A box 90 px wide around a face that needs 90 is read at full confidence; one 30 px wide
    (texture the localizer mistook for a face, 0.58x-1.19x of it never near 90) stays below a
    floor between the two and is dropped; without a floor both stay, framed alike."""
    found = [[Detection((0.0, 0.0, 90.0, 90.0), 0.5), Detection((200.0, 0.0, 230.0, 30.0), 0.9)]]
    images = [np.zeros((300, 300, 3), np.uint8)]
    scorer = scorer_peaking_at(90)
    plain = FramedLocalizer(FixedLocalizer(found), scorer, width_crop, 16)
    scored = plain.frame_scored(images, found)[0]
    face, texture = scored[0][1], scored[1][1]
    assert face == pytest.approx(attribute_confidence(scorer(width_crop(None, (0, 0, 90, 90),
                                                                          16)[None]))[0])
    assert texture < face / 2
    floored = FramedLocalizer(FixedLocalizer(found), scorer, width_crop, 16,
                              min_confidence=(face + texture) / 2)
    assert floored.localize(images) == [[scored[0][0]]]
    assert plain.localize(images) == [[d for d, _ in scored]]
    assert plain.select(scored, min_confidence=(face + texture) / 2) == [scored[0][0]]


def test_the_confidence_floor_is_a_quantile_of_the_found_faces_confidence():
    """On validation scenes with known boxes: the floor is the asked quantile of what ANet reads
    on the detections that match a face at the threshold; detections under the threshold or off
    every face do not set it, and the share of those off-face ones it drops is reported."""
    from faceattr_ray.evaluation.localization_metrics import confidence_floor

    truth = [np.array([[0, 0, 100, 100], [200, 200, 300, 300]]), np.zeros((0, 4))]
    scored = [[(Detection((0.0, 0.0, 100.0, 100.0), 0.9), 5.0),
               (Detection((205.0, 205.0, 300.0, 300.0), 0.8), 3.0),
               (Detection((500.0, 0.0, 550.0, 50.0), 0.95), 2.0),   # off every face
               (Detection((210.0, 200.0, 300.0, 300.0), 0.1), 0.5)],  # under the threshold
              [(Detection((0.0, 0.0, 50.0, 50.0), 0.7), 4.0)]]        # a face-free scene
    out = confidence_floor(scored, truth, threshold=0.5, quantile=0.5)
    assert out["faces"] == 2
    assert out["min_confidence"] == pytest.approx(4.0)  # median of 5 and 3
    assert out["others_dropped"] == pytest.approx(0.5)  # 2.0 dropped, 4.0 kept
    assert confidence_floor(scored, truth, threshold=0.5, quantile=0.0)["min_confidence"] == 3.0
    assert confidence_floor(scored, truth, threshold=0.99, quantile=0.5)["min_confidence"] is None


def test_predictor_drops_framed_boxes_below_the_bundles_floor(tiny_bundle):
    """The bundle's "predict": {"frame_min_confidence"} is the Predictor's floor: one above
    every face's confidence leaves no face, none leaves them all (and the results follow)."""
    from faceattr_ray.predictor import Predictor, framed_localizer

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(2)]
    config = {**tiny_bundle.config, "predict": {"frame_zooms": [0.8, 1.0, 1.25]}}
    open_floor = Predictor(dataclasses.replace(tiny_bundle, config=config), "cpu")
    assert open_floor.framer.min_confidence is None
    found = open_floor.localize(images)
    assert sum(map(len, found)) > 0
    high = dataclasses.replace(tiny_bundle, config={
        **config, "predict": {**config["predict"], "frame_min_confidence": 1e9}})
    closed = Predictor(high, "cpu")
    assert closed.framer.min_confidence == 1e9
    assert closed.localize(images) == [[], []]
    assert all(not r.faces for r in closed.predict(images))
    lnet = Predictor(high, "cpu", parts="localize", frame_zooms=()).localizer
    assert framed_localizer(high, lnet).min_confidence == 1e9
    assert framed_localizer(high, lnet, floor=False).min_confidence is None
