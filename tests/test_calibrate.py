"""Threshold calibration (paper Fig. 3b) and `faceattr-ray calibrate` on a tiny bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from faceattr_ray.calibrate import calibrate_threshold, plot_score_histograms


def brute_force_best_balanced_accuracy(faces, backgrounds) -> float:
    grid = np.linspace(min(faces.min(), backgrounds.min()) - 1, max(faces.max(), backgrounds.max()) + 1, 20001)
    acc = 0.5 * ((faces[None] >= grid[:, None]).mean(1) + (backgrounds[None] < grid[:, None]).mean(1))
    return float(acc.max())


def test_separable_scores_give_the_midpoint_of_the_gap():
    threshold, stats = calibrate_threshold([5.0, 6.0, 7.5], [1.0, 2.0, 3.0, 3.5])
    assert threshold == pytest.approx((3.5 + 5.0) / 2)
    assert stats["separable"] and stats["margin"] == pytest.approx(1.5)
    assert stats["face_recall"] == 1.0 and stats["background_rejection"] == 1.0


def test_inseparable_scores_give_the_best_balanced_accuracy():
    rng = np.random.default_rng(0)
    faces = rng.normal(3.0, 1.0, 300)
    backgrounds = rng.normal(1.5, 1.0, 1000)  # unequal counts: balanced, not raw, accuracy
    threshold, stats = calibrate_threshold(faces, backgrounds)
    assert not stats["separable"]
    best = brute_force_best_balanced_accuracy(faces, backgrounds)
    assert stats["balanced_accuracy"] == pytest.approx(best, abs=1e-9)
    assert 1.5 < threshold < 3.0  # between the two means, as for equal-variance Gaussians


def test_single_overlap_by_hand():
    # Cut at 3.5 misses no face and passes one background of four: balanced accuracy 7/8.
    threshold, stats = calibrate_threshold([3.0, 4.0, 5.0], [1.0, 2.0, 2.5, 4.5])
    assert threshold == pytest.approx(2.75)
    assert stats["balanced_accuracy"] == pytest.approx(0.5 * (1.0 + 0.75))


def test_degenerate_inputs():
    threshold, stats = calibrate_threshold([1.0, 1.0], [1.0])
    assert np.isfinite(threshold) and stats["balanced_accuracy"] == 0.5
    with pytest.raises(ValueError):
        calibrate_threshold([], [1.0])
    with pytest.raises(ValueError):
        calibrate_threshold([np.nan], [1.0])


def test_histogram_plot_is_written(tmp_path):
    path = tmp_path / "hist.png"
    plot_score_histograms([5, 6, 7], [1, 2, 3], 4.0, str(path))
    with Image.open(path) as png:
        assert png.size[0] > 100 and png.size[1] > 100


def tiny_bundle(path):
    from faceattr_ray.bundle import Bundle, save_bundle
    from faceattr_ray.models import ANet, LNet
    from faceattr_ray.presets import preset_configs

    torch.manual_seed(0)
    lnet_cfg, anet_cfg = preset_configs("cpu", 1)
    bundle = Bundle(path=None, config={}, attributes=["Smiling"], lnet_o=LNet(lnet_cfg),
                    lnet_s=LNet(lnet_cfg), anet=ANet(anet_cfg))
    save_bundle(path, bundle)
    return bundle


def test_cli_stores_the_threshold_in_the_bundle(tmp_path):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.calibrate import max_window_scores
    from faceattr_ray.cli import main
    from faceattr_ray.localizers import LNetLocalizer

    model = tmp_path / "bundle"
    tiny_bundle(model)
    rng = np.random.default_rng(0)
    for kind, count in (("faces", 3), ("backgrounds", 4)):
        (tmp_path / kind).mkdir()
        for i in range(count):
            pixels = rng.integers(0, 255, (60 + 10 * i, 80, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / kind / f"{i}.png")
    code = main(["calibrate", "--model", str(model), "--faces", str(tmp_path / "faces"),
                 "--backgrounds", str(tmp_path / "backgrounds"), "--device", "cpu"])
    assert code == 0
    assert (model / "threshold.png").stat().st_size > 1000

    bundle = load_bundle(model)
    # Compare with the peer: the scores the localizer gives, calibrated directly.
    loc = LNetLocalizer(bundle.lnet_o, bundle.lnet_s, threshold=None)
    faces = max_window_scores(loc, sorted(str(p) for p in (tmp_path / "faces").iterdir()))
    backgrounds = max_window_scores(loc, sorted(str(p) for p in (tmp_path / "backgrounds").iterdir()))
    expected, _ = calibrate_threshold(faces, backgrounds)
    assert bundle.threshold == pytest.approx(expected, rel=1e-5)
    assert bundle.config["localizer"]["calibration"]["faces"] == 3
    json.dumps(bundle.config)  # the stats stay plain JSON


def test_cli_reports_missing_images(tmp_path, capsys):
    from faceattr_ray.cli import main

    model = tmp_path / "bundle"
    tiny_bundle(model)
    (tmp_path / "empty").mkdir()
    code = main(["calibrate", "--model", str(model), "--faces", str(tmp_path / "empty"),
                 "--backgrounds", str(tmp_path / "empty")])
    assert code == 2
    assert "no face images found" in capsys.readouterr().err
