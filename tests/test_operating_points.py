"""Operating points in use: `calibrate-points` stores them in an existing bundle, annotate's
table gets decision and probability columns beside unchanged scores, a bundle without points
falls back to score > 0 with a note, and `evaluate` keeps its JSON keys (no Ray: the liblinear
solver, the table rows built directly)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from faceattr_ray.bundle import load_bundle, save_bundle
from faceattr_ray.errors import DataError
from faceattr_ray.presets import build_bundle

NAMES = ["Smiling", "Eyeglasses", "Male"]
LIBLINEAR = json.dumps({"heads": {"solver": "liblinear", "C": [0.1, 1.0]}})


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    from faceattr_ray.data.synthetic import write_aligned

    return write_aligned(str(tmp_path_factory.mktemp("root") / "faces"), count=120,
                         identities=30, seed=0)


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> str:
    """A bundle with no stored points (as every bundle before them)."""
    path = str(tmp_path_factory.mktemp("plain") / "model")
    save_bundle(path, build_bundle("tiny", attributes=NAMES))
    return path


@pytest.fixture(scope="module")
def pointed(root, plain, tmp_path_factory) -> str:
    """The plain bundle after `faceattr-ray calibrate-points` (heads refit, points stored)."""
    from faceattr_ray.cli import main

    out = str(tmp_path_factory.mktemp("pointed") / "model")
    assert main(["calibrate-points", "--model", plain, "--celeba-root", root, "--out", out,
                 "--recipe", LIBLINEAR, "--precision", "0.6", "0.9"]) == 0
    return out


def test_calibrate_points_stores_points_on_held_out_identities(pointed, plain):
    from faceattr_ray.heads.points import OperatingPoints

    bundle = load_bundle(pointed)
    pts = OperatingPoints.from_config(bundle.config, NAMES)
    assert pts.points() == ["zero", "accuracy", "balanced", "precision:0.6", "precision:0.9"]
    assert "held out" in pts.info["chosen_on"] and pts.info["images"] > 0
    assert bundle.heads is not None  # refit: SVM heads now
    assert bundle.config["predict"] == {"flip": False}
    assert load_bundle(plain).config.get("operating_points") is None  # --out: source untouched


def test_keep_heads_says_in_sample(pointed, root, tmp_path):
    from faceattr_ray.reproduce import calibrate_points, merge, resolve_recipe

    recipe = merge(resolve_recipe(False, LIBLINEAR), {})
    out = str(tmp_path / "kept")
    stored = calibrate_points(pointed, root, recipe, keep_heads=True, out=out)
    assert "in-sample" in stored["chosen_on"]
    np.testing.assert_array_equal(load_bundle(out).heads["weight"],
                                  load_bundle(pointed).heads["weight"])


def _rows(model: str, point: str | None, probabilities: bool = False):
    from faceattr_ray.pipeline.annotate import _TableRows
    from faceattr_ray.predictor import Face, ImageResult

    bundle = load_bundle(model)
    rows = _TableRows(bundle, "full", False, point, probabilities)
    scores = np.array([[-0.3, 0.2, 1.5], [0.05, -2.0, -0.01]], np.float32)
    batch = {"path": np.array(["a.jpg", "b.jpg"]), "image_width": np.array([10, 10]),
             "image_height": np.array([10, 10]), "status": np.array(["ok", "ok"]),
             "error": np.array(["", ""]), "scale": np.array([1.0, 1.0])}
    results = {i: ImageResult(10, 10, [Face((0, 0, 5, 5), 1.0, scores[i])]) for i in range(2)}
    return rows, rows.table(batch, results), scores


def test_operating_point_changes_decisions_never_scores(pointed):
    from faceattr_ray.heads.points import OperatingPoints

    pts = OperatingPoints.from_config(load_bundle(pointed).config, NAMES)
    _, plain_table, scores = _rows(pointed, None)
    assert not any(c.endswith("_present") for c in plain_table.column_names)
    for point in ("accuracy", "balanced", "precision:0.9", "zero"):
        rows, table, _ = _rows(pointed, point, probabilities=True)
        for j, name in enumerate(NAMES):
            # the scores are exactly those without a point
            assert table.column(name).to_pylist() == plain_table.column(name).to_pylist()
            t = pts.threshold(point)[j]
            want = [False, False] if np.isnan(t) else (scores[:, j] > t).tolist()
            assert table.column(name + "_present").to_pylist() == want
            np.testing.assert_allclose(table.column(name + "_probability").to_pylist(),
                                       pts.probabilities(scores)[:, j], rtol=1e-6)
        meta = json.loads(table.schema.metadata[b"faceattr_ray.operating_point"])
        assert meta["point"] == point and "note" not in meta or meta.get("unreachable")
    # a point the bundle lacks is refused, naming the ones it has
    with pytest.raises(DataError, match="not stored"):
        _rows(pointed, "precision:0.5")


def test_bundle_without_points_loads_and_uses_score_above_zero(plain):
    rows, table, scores = _rows(plain, "balanced")
    for j, name in enumerate(NAMES):
        assert table.column(name + "_present").to_pylist() == (scores[:, j] > 0).tolist()
    meta = json.loads(table.schema.metadata[b"faceattr_ray.operating_point"])
    assert meta["requested"] == "balanced" and meta["point"] == "zero"
    assert "no operating points" in meta["note"]
    with pytest.raises(DataError, match="calibration"):
        _rows(plain, "balanced", probabilities=True)


def test_annotate_refuses_a_bad_point_before_any_work(plain, tmp_path):
    from faceattr_ray.pipeline.annotate import AnnotateOptions, plan_annotate

    with pytest.raises(DataError, match="operating point"):
        plan_annotate([str(tmp_path)], plain, str(tmp_path / "out"),
                      AnnotateOptions(operating_point="precise"))


def test_evaluate_json_keeps_its_keys_and_reports_each_point(pointed, plain, root, tmp_path):
    from faceattr_ray.cli import main

    got = {}
    for name, model, point in (("pointed", pointed, "balanced"), ("plain", plain, "accuracy"),
                               ("zero", pointed, None)):
        path = str(tmp_path / f"{name}.json")
        args = ["evaluate", "--model", model, "--celeba-root", root, "--json", path]
        assert main(args + (["--operating-point", point] if point else [])) == 0
        with open(path) as f:
            got[name] = json.load(f)
    for m in got.values():
        assert {"accuracy", "balanced_accuracy", "average_precision"} <= set(m["mean"])
        assert {"accuracy", "balanced_accuracy", "average_precision"} <= set(
            m["attributes"]["Smiling"])
    assert list(got["pointed"]["points"]) == ["zero", "accuracy", "balanced", "precision:0.6",
                                              "precision:0.9"]
    # the table's figures are those of the point asked for
    assert got["pointed"]["mean"] == {k: v for k, v in got["pointed"]["points"]["balanced"][
        "mean"].items() if k != "unreachable"} | {"majority_baseline":
                                                  got["pointed"]["mean"]["majority_baseline"]}
    assert got["zero"]["mean"]["accuracy"] == got["pointed"]["points"]["zero"]["mean"]["accuracy"]
    assert "no operating points" in got["plain"]["operating_point"]["note"]
    assert list(got["plain"]["points"]) == ["zero"]
    assert os.path.isfile(str(tmp_path / "plain.json"))


def test_flip_scores_are_the_mean_of_both_views(plain):
    from faceattr_ray.predictor import Predictor

    bundle = load_bundle(plain)
    side = bundle.anet.config.window_size
    crops = np.random.default_rng(0).integers(0, 255, (3, side, side, 3), np.uint8)
    plain_p = Predictor(bundle, device="cpu", localizer="full", parts="describe")
    flip_p = Predictor(bundle, device="cpu", localizer="full", parts="describe", flip=True)
    assert not plain_p.flip and flip_p.flip
    both = (plain_p.describe(crops)[0] + plain_p.describe(crops[:, :, ::-1].copy())[0]) / 2
    np.testing.assert_allclose(flip_p.describe(crops)[0], both, rtol=1e-4, atol=1e-5)
    bundle.config = {**bundle.config, "predict": {"flip": True}}  # the bundle's own setting
    assert Predictor(bundle, device="cpu", localizer="full", parts="describe").flip


def test_report_section_tables_every_point_and_draws_reliability(tmp_path):
    from faceattr_ray.evaluation.evaluate import point_metrics
    from faceattr_ray.evaluation.report.page import _Page, _render_operating_points
    from faceattr_ray.evaluation.report.sections import section_operating_points
    from faceattr_ray.heads.points import choose_points

    rng = np.random.default_rng(0)
    y = (rng.random((200, 3)) < [0.5, 0.1, 0.3]).astype(np.float32)
    s = (2 * y - 1 + rng.normal(0, 1, y.shape)).astype(np.float32)
    config = {"operating_points": choose_points(s[:100], y[:100], NAMES).to_config()}
    m = point_metrics(y[100:], s[100:], NAMES, config)
    d = section_operating_points(m, y[100:], s[100:], NAMES, config, str(tmp_path))
    assert d["status"] == "ok" and os.path.isfile(tmp_path / d["figures"][0]["file"])
    rel = d["reliability"]
    assert sum(rel["count"]) == 300 and 0 <= rel["ece"] <= 1
    html = _render_operating_points(_Page({"s": d}), d, ("s",))
    assert html.count('data-path="s/points/balanced/mean/balanced_accuracy"') == 2
    assert section_operating_points(m, y, s, NAMES, {}, str(tmp_path))["status"] == "absent"
