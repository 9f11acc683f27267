"""`evaluate` on a photo folder with face boxes and per-face labels (issue 16): on a constructed
case whose outcome is known, matches, match counts, false detections and attribute accuracy are
counted as documented; `--localizer boxes` describes the given boxes, framed by the bundle's
preprocessing; bad input is a one-line error."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from faceattr_ray.cli import main
from faceattr_ray.errors import DataError
from faceattr_ray.evaluation.evaluate import evaluate_photos, read_photo_labels
from faceattr_ray.localizers import Detection
from faceattr_ray.models import Preprocess
from faceattr_ray.predictor import Predictor

# The model's order differs from the labels' on purpose: columns must be matched by name.
MODEL_ATTRIBUTES = ["Smiling", "Eyeglasses", "Male", "Bald"]
SIZES = {"a.png": (160, 120), "b.png": (140, 110), "c.png": (100, 90), "d.png": (120, 100)}
F0, F1, F2, F3 = [10, 10, 50, 60], [80, 20, 130, 80], [20, 20, 70, 80], [30, 30, 80, 90]
LABELS = {
    # f0: Eyeglasses not given (unknown); f1: never matched; c.png: no face at all.
    "a.png": [{"box": F0, "Male": 1, "Smiling": 0},
              {"box": F1, "Male": 0, "Smiling": 1, "Eyeglasses": 1}],
    "b.png": [{"box": F2, "Male": 1, "Smiling": 1, "Eyeglasses": -1, "Not_A_Model_Attr": 1}],
    "c.png": [],
    "d.png": [{"box": F3, "Male": 0, "Smiling": 0}],
}
# Per photo, the detections the stubbed localizer returns: (box, face score, scores in
# MODEL_ATTRIBUTES order). In a.png a duplicate of f0 with a lower score must lose f0 to the
# better-scored d0 though it overlaps more (one-to-one, by score), and a box over f1 at
# IoU < 0.5 does not match. False detections score high so that counting them would show.
DETECTIONS = {
    "a.png": [([12, 12, 52, 62], 2.0, [1.0, 1.0, 1.0, 0.0]),   # d0 -> f0
              ([100, 90, 150, 118], 1.5, [9.0, 9.0, 9.0, 9.0]),  # false: nothing there
              ([110, 50, 150, 100], 0.5, [9.0, 9.0, 9.0, 9.0]),  # false: IoU with f1 < 0.5
              (F0, 0.1, [9.0, 9.0, 9.0, 9.0])],                  # false: f0 already taken
    "b.png": [([22, 18, 72, 78], 1.0, [0.5, 0.0, -1.0, 0.0])],  # d4 -> f2
    "c.png": [([10, 10, 40, 40], 1.0, [9.0, 9.0, 9.0, 9.0])],    # false: no face in c.png
    "d.png": [],                                                  # f3 missed
}


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    from faceattr_ray.bundle import save_bundle
    from faceattr_ray.presets import build_bundle

    path = tmp_path_factory.mktemp("model") / "bundle"
    save_bundle(path, build_bundle("wild-smoke", attributes=MODEL_ATTRIBUTES))
    return str(path)


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name, (w, h) in SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / name)
    labels = root / "labels.json"
    labels.write_text(json.dumps(LABELS))
    return str(root), str(labels)


@pytest.fixture
def stubbed(monkeypatch):
    """The localizer returns DETECTIONS (photos told apart by their size), and "ANet" scores
    each face by its box, so every outcome is known in advance."""
    by_size = {(h, w): DETECTIONS[n] for n, (w, h) in SIZES.items()}
    scores = {tuple(map(float, box)): s for dets in DETECTIONS.values() for box, _, s in dets}

    def localize(self, images):
        return [[Detection(tuple(map(float, b)), s) for b, s, _ in by_size[im.shape[:2]]]
                for im in images]

    def face_crops(self, images, detections):  # the boxes stand in for the crops
        return np.array([d.box for dets in detections for d in dets], np.float64).reshape(-1, 4)

    def describe(self, crops):
        return np.array([scores[tuple(c)] for c in crops], np.float32).reshape(-1, 4), None

    monkeypatch.setattr(Predictor, "localize", localize)
    monkeypatch.setattr(Predictor, "face_crops", face_crops)
    monkeypatch.setattr(Predictor, "describe", describe)


def test_read_photo_labels_parses_values_and_unknowns(photos):
    table, names = read_photo_labels(photos[1])
    assert names == ["Male", "Smiling", "Eyeglasses", "Not_A_Model_Attr"]
    boxes, labels = table["a.png"]
    np.testing.assert_array_equal(boxes, [F0, F1])
    np.testing.assert_array_equal(labels[0, :2], [1, 0])
    assert np.isnan(labels[0, 2]) and np.isnan(labels[0, 3])  # not given = unknown
    np.testing.assert_array_equal(table["b.png"][1], [[1, 1, 0, 1]])  # -1 = absent
    assert table["c.png"][0].shape == (0, 4) and table["c.png"][1].shape == (0, 4)


def test_matches_counts_false_detections_and_accuracy(model, photos, stubbed):
    m = evaluate_photos(model, photos[0], photos[1], localizer="lnet")
    assert (m["photos"], m["faces"], m["detections"]) == (4, 4, 6)
    assert (m["matched"], m["missed"], m["false_detections"]) == (2, 2, 4)
    assert m["match_rate"] == 0.5 and m["false_per_photo"] == 1.0
    assert m["per_photo"]["a.png"] == {"faces": 2, "detections": 4, "matched": 1,
                                       "false_detections": 3}
    assert m["per_photo"]["d.png"] == {"faces": 1, "detections": 0, "matched": 0,
                                       "false_detections": 0}
    acc = {n: (a["count"], a["accuracy"]) for n, a in m["attributes"].items()}
    # Male: f0 right (+1 vs 1), f2 wrong (-1 vs 1). Smiling: f0 wrong (+1 vs 0), f2 right.
    # Eyeglasses: f0 unknown (left out, though d0 says +1), f2 right (score 0 = absent vs -1).
    assert acc == {"Smiling": (2, 0.5), "Eyeglasses": (1, 1.0), "Male": (2, 0.5)}
    assert m["mean"]["accuracy"] == pytest.approx(2 / 3)
    assert m["missing_attributes"] == ["Not_A_Model_Attr"]


def test_stricter_iou_loses_the_shifted_match(model, photos, stubbed):
    # d4 overlaps f2 at IoU about 0.87; at 0.9 it no longer matches and is a false detection.
    m = evaluate_photos(model, photos[0], photos[1], localizer="lnet", iou=0.9)
    assert m["per_photo"]["b.png"]["matched"] == 0 and m["matched"] == 1
    assert m["false_detections"] == 5


def test_boxes_mode_describes_the_given_boxes_framed_by_the_bundle(model, photos, monkeypatch):
    def no_localizer(self, images):
        raise AssertionError("--localizer boxes must not run a localizer")

    seen = []
    real_describe = Predictor.describe

    def describe(self, crops):
        seen.append((self, crops))
        return real_describe(self, crops)

    monkeypatch.setattr(Predictor, "localize", no_localizer)
    monkeypatch.setattr(Predictor, "describe", describe)
    m = evaluate_photos(model, photos[0], photos[1], localizer="boxes", batch_size=16)
    assert (m["matched"], m["faces"], m["false_detections"]) == (4, 4, 0)
    assert m["threshold"] is None and m["localizer"] == "boxes"
    # One batch: the crops are each given box in file order, framed by the bundle's
    # Preprocess (what annotate does with a localizer's box), not the whole photo.
    (predictor, crops), = seen
    preprocess = Preprocess.of(predictor.bundle)
    expected = []
    for name in LABELS:
        image = np.asarray(Image.open(f"{photos[0]}/{name}").convert("RGB"))
        expected += [preprocess.face_crop(image, f["box"], predictor.crop_side)
                     for f in LABELS[name]]
    np.testing.assert_array_equal(crops, np.stack(expected))


def test_missing_photo_and_unpredicted_labels_are_data_errors(model, photos, tmp_path):
    labels = tmp_path / "l.json"
    labels.write_text(json.dumps({"a.png": [], "gone.png": [[1, 1, 5, 5]]}))
    with pytest.raises(DataError, match="gone.png"):
        evaluate_photos(model, photos[0], str(labels))
    labels.write_text(json.dumps({"a.png": [{"box": F0, "Not_A_Model_Attr": 1}]}))
    with pytest.raises(DataError, match="predicts none"):
        evaluate_photos(model, photos[0], str(labels))


def test_cli_boxes_mode_writes_json(model, photos, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", model, "--photos", photos[0], "--labels", photos[1],
                 "--localizer", "boxes", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert (m["matched"], m["faces"], m["false_detections"]) == (4, 4, 0)
    assert set(m["attributes"]) == {"Smiling", "Eyeglasses", "Male"}
    assert "matched 4 of 4 faces" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    ('{"a.png": [', "not valid JSON"),
    ('["a.png"]', "expected a JSON object"),
    ('{"a.png": [{"box": [1, 2, 3]}]}', "a box is [x1, y1, x2, y2]"),
    ('{"a.png": [{"box": [5, 5, 1, 9]}]}', "x2 > x1"),
    ('{"a.png": [{"box": [1, 1, 9, 9], "Male": "yes"}]}', "a label is 1, 0, -1"),
    ('{"a.png": [{"Male": 1}]}', 'no "box"'),
])
def test_cli_bad_labels_file_is_one_line(model, photos, tmp_path, capsys, text, message):
    labels = tmp_path / "bad.json"
    labels.write_text(text)
    assert main(["evaluate", "--model", model, "--photos", photos[0],
                 "--labels", str(labels)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("faceattr-ray evaluate: error: ")
    assert message in err[0]


@pytest.mark.parametrize("flags, message", [
    (["--celeba-root", "x", "--localizer", "boxes"], "--localizer boxes needs --photos"),
    (["--photos", "x"], "--photos needs --labels"),
    (["--celeba-root", "x", "--labels", "l.json"], "--labels goes with --photos"),
])
def test_cli_flag_combinations_are_one_line(flags, message, capsys):
    assert main(["evaluate", "--model", "m", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_cli_photos_and_celeba_root_exclude_each_other(capsys):
    with pytest.raises(SystemExit) as e:
        main(["evaluate", "--model", "m", "--celeba-root", "x", "--photos", "y"])
    assert e.value.code == 2
    assert "not allowed with" in capsys.readouterr().err
