"""bench/localization.py --smoke-test: the whole benchmark path in seconds, on generated data."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_smoke_test_prints_the_setting_and_a_json_of_rates(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "localization.py"), "--smoke-test",
         "--data", "generated", "--workdir", str(tmp_path / "work"), "--figures", "1"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("setting: generated people")
    result = json.loads(lines[-1])
    for key in ("lnet_recall_iou50", "cascade_recall_iou50", "lnet_tpr_fppi01",
                "cascade_tpr_fppi01", "lnet_recall_iou50_any", "cascade_recall_iou50_any",
                "lnet_raw_maps_recall_iou50", "calibration_balanced_accuracy",
                "lnet_hs_holds_face", "lnet_hs_area_share", "lnet_peak_in_face"):
        assert 0.0 <= result[key] <= 1.0, key
    assert result["lnet_fppi"] >= 0 and result["cascade_fppi"] >= 0
    # Recall can only fall as the required overlap rises.
    for name in ("lnet_recall_vs_iou", "cascade_recall_vs_iou"):
        curve = [result[name][t] for t in sorted(result[name], key=float)]
        assert curve == sorted(curve, reverse=True)
    assert result["data"] == "generated" and result["test_images"] > 0
    assert result["test_backgrounds"] > 0 and result["train_images"] > result["test_images"]
    assert set(result["seconds"]) >= {"data_s", "train_lnet_o_s", "train_lnet_s_s", "test_s"}
    # --workdir keeps a bundle with the calibrated threshold and a figure.
    from faceattr_ray.bundle import load_bundle

    bundle = load_bundle(str(tmp_path / "work" / "bundle"))
    assert bundle.threshold == pytest.approx(result["threshold"], abs=1e-6)
    assert any(f.startswith("figure_") for f in os.listdir(tmp_path / "work"))
