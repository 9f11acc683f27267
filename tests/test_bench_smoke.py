"""Every script in bench/ (the figures of the README come from them) runs end to end with
--smoke-test, so none can break unnoticed. Seconds each, except the two that start Ray pipelines
or Ray Train, and the last line of each is its JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Helpers that bench scripts import start with "_" (bench/_corpus.py) and are not scripts.
SCRIPTS = sorted(f for f in os.listdir(os.path.join(ROOT, "bench"))
                 if f.endswith(".py") and not f.startswith("_"))


def _smoke(script: str, *args: str) -> list[str]:
    """Run ``bench/SCRIPT --smoke-test ARGS`` with this checkout first on the path; its stdout
    lines."""
    env = {**os.environ, "PYTHONPATH": ROOT, "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", script), "--smoke-test",
                           *args], capture_output=True, text=True, timeout=600, cwd=ROOT,
                          env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def test_every_bench_script_has_a_smoke_test_here():
    tested = {"annotate.py", "celeba_recipe.py", "flops.py", "heads.py", "lnet_loop.py",
              "localization.py", "one_pass.py", "parsing.py", "parsing_transfer.py", "prefetch.py", "ssp_ssg.py",
              "train_throughput.py",
              "wild_attributes.py"}
    assert set(SCRIPTS) == tested
    for script in SCRIPTS:
        with open(os.path.join(ROOT, "bench", script)) as f:
            assert "--smoke-test" in f.read(), script


def test_flops():
    result = json.loads(_smoke("flops.py")[-1])
    assert all(v > 0 for v in result.values())
    one_pass = next(v for k, v in result.items() if "one pass" in k)
    naive = next(v for k, v in result.items() if "patch by patch" in k)
    assert one_pass < naive


def test_one_pass():
    result = json.loads(_smoke("one_pass.py")[-1])
    assert result["patches"] == 25 and result["max_abs_diff"] < 1e-4
    assert result["one_pass_ms"] > 0 and result["patch_by_patch_ms"] > 0


def test_heads():
    result = json.loads(_smoke("heads.py")[-1])
    assert result["rows"] == 800 and result["attributes"] == 3
    assert abs(result["accuracy_diff_points"]) < 1.0  # both solvers solve the same problem


def test_celeba_recipe():
    lines = _smoke("celeba_recipe.py")
    result = json.loads(lines[-1])
    assert result["setting"] == "smoke"
    for key in ("val_head", "val_svm_cv", "test_svm", "test_head", "test_majority"):
        assert 0.0 <= result["figures"][key] <= 1.0, key
    assert any("TEST" in line for line in lines)


@pytest.mark.slow
def test_annotate():
    result = json.loads(_smoke("annotate.py")[-1])
    keys = ("network_flop_efficiency", "pipeline_flop_efficiency", "steady_ratio",
            "whole_run_ratio", "decode_12mp_speedup", "driver_rss_1m_over_100k", "machine_gflops")
    assert all(result[k] is not None and result[k] > 0 for k in keys), result
    # The steady state is timed from the batches leaving the actor: at least two of them.
    assert result["pipeline_timed_batches"] >= 2 and math.isfinite(result["steady_ratio"])
    assert result["pipeline_images_per_s"] > 0 and result["bare_images_per_s"] > 0
    assert result["split_pools_images_per_s"] > 0 and min(result["driver_rss_mb"]) > 0
    # The pipeline's bound: decoding and the networks sharing the cores without loss can
    # never beat the networks alone.
    assert 0 < result["pipeline_bound_images_per_s"] <= result["network_images_per_s"]
    assert result["decode_ms_per_image"] > 0
    # Where the cores went while the pipeline ran (Linux, from /proc): the model actor and
    # the driver did work, and the roles never add up to more than the cores could give (a
    # process counted under two roles, or twice in one, would).
    use = result["pipeline_core_use"]
    if sys.platform.startswith("linux"):
        assert use["model_actor"] > 0 and use["driver"] > 0
        busy = sum(use[k] for k in ("model_actor", "ray_tasks", "ray_services", "driver", "other"))
        assert busy <= 1.1 * use["cores"] * use["wall_s"]
    # The matmul rate is measured beside each figure it divides (these machines' rate moves
    # 2x within a minute): before, between and after the two network rounds, and around the
    # pipeline; the network efficiency is the median of 8 alternating turns' own ratios.
    samples, turns = result["machine_gflops_samples"], result["network_turn_efficiency"]
    assert len(samples) == 4 and min(samples) > 0 and len(turns) == 8 and min(turns) > 0
    assert turns == sorted(turns)
    assert result["network_flop_efficiency"] == pytest.approx((turns[3] + turns[4]) / 2, abs=2e-3)
    # bf16 autocast is measured where the CPU computes bf16 natively, against both matmul
    # rates (its own is several times fp32's on AMX), and never as the fp32 efficiency.
    bf16 = result["network_bf16"]
    if bf16 is not None:
        assert bf16["images_per_s"] > 0 and bf16["speedup"] > 0
        assert bf16["over_bf16_matmul"] > 0 and bf16["machine_bf16_gflops"] > 0
    # The convolutions alone: a share of the loop's time, and a bound the network figure
    # stays under (it spends time outside the convolutions too; noise allowed for).
    assert 0 < result["convolution_time_share"] <= 1 and result["convolution_flop_efficiency"] > 0
    assert result["convolution_bound_flop_efficiency"] >= result["convolution_flop_efficiency"]


def test_the_convolutions_rate_counts_the_flops_flopcountermode_counts(tmp_path, monkeypatch):
    """bench/annotate.py's convolution figures read torch.profiler's FLOPs; its peer, the
    FlopCounterMode count the network figure divides (`cascade_flops`), gives the same total."""
    from faceattr_ray.bundle import load_bundle, save_bundle
    from faceattr_ray.predictor import Predictor
    from faceattr_ray.presets import build_bundle

    monkeypatch.syspath_prepend(os.path.join(ROOT, "bench"))
    spec = importlib.util.spec_from_file_location("bench_annotate",
                                                  os.path.join(ROOT, "bench", "annotate.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    save_bundle(str(tmp_path / "m"), build_bundle("tiny", seed=0))
    predictor = Predictor(load_bundle(str(tmp_path / "m")), "cpu", "lnet")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(3)]
    conv = bench.convolution_rate(predictor, images)
    assert conv["flops"] == pytest.approx(bench.cascade_flops(predictor, images) * len(images))
    assert 0.5 < conv["flop_share"] <= 1 and 0 < conv["time_share"] <= 1 and conv["gflops"] > 0


def test_the_steady_state_is_timed_from_the_actors_batch_clock(tmp_path, monkeypatch):
    """bench/annotate.py's steady state: images after the first batch over the time from the
    first batch leaving the actor to the last (`BatchClock` lines), not output files' times."""
    from faceattr_ray.pipeline.annotate import BatchClock, read_batch_clock

    monkeypatch.syspath_prepend(os.path.join(ROOT, "bench"))
    spec = importlib.util.spec_from_file_location("bench_annotate",
                                                  os.path.join(ROOT, "bench", "annotate.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    log = str(tmp_path / "clock")
    assert read_batch_clock(log) == [] and bench.steady_rate([]) is None
    BatchClock(None).tick(3)  # no file asked for: nothing written
    clock = BatchClock(log)
    for images in (4, 4, 2):
        clock.tick(images)
        time.sleep(0.01)
    ticks = read_batch_clock(log)
    assert [n for _, n in ticks] == [4, 4, 2]
    assert bench.steady_rate(ticks) == pytest.approx(6 / (ticks[-1][0] - ticks[0][0]))
    assert bench.steady_rate(ticks[:1]) is None  # one batch: no steady state to time


def test_annotate_cuda_without_a_gpu_is_one_line():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the bench would run")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "annotate.py"),
                           "--device", "cuda"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "bench/annotate.py: --device cuda: no CUDA GPU here (torch.cuda.is_available() is False)"]


def test_annotate_benches_the_bundled_model_unless_told_otherwise():
    """Its figures are those of the model `faceattr-ray annotate` runs by default; a preset
    that does not exist is a one-line usage error, before any work."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "annotate.py"),
                           "--preset", "nope"], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "annotate.py: error: --preset: unknown preset 'nope'; choose one of (")
    assert "default: the bundled model" in " ".join(subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "annotate.py"), "--help"],
        capture_output=True, text=True, timeout=120, cwd=ROOT).stdout.split())


@pytest.mark.slow
def test_prefetch_compares_the_three_loops_on_the_reproduce_recipe():
    lines = _smoke("prefetch.py", "--rounds", "1")
    assert lines[-5].startswith("setting: anet fine-tuning in-process, reproduce's recipe")
    result = json.loads(lines[-1])
    assert result["process"] > 0 and result["thread"] > 0 and result["plain"] > 0
    assert result["speedup"] == pytest.approx(result["process"] / result["plain"], abs=1e-3)


def test_lnet_loop_times_each_setting_of_the_scene_loop_for_both_lnets():
    lines = _smoke("lnet_loop.py", "--rounds", "1")
    assert lines[-8].startswith("setting: reproduce's LNet loop")
    result = json.loads(lines[-1])
    assert set(result["stages"]) == {"o", "s"}
    for rates in result["stages"].values():
        assert set(rates) == {"fp32", "bf16-cl", "bf16-cl-process"} and min(rates.values()) > 0
    for stage, rates in result["stages"].items():
        assert result["speedup"][stage] == pytest.approx(
            rates["bf16-cl-process"] / rates["fp32"], abs=2e-3)


def test_prefetch_compares_two_shares_of_wild_crops():
    # How many epochs fit reproduce's budget depends on the share: wild crops cost more to make.
    result = json.loads(_smoke("prefetch.py", "--wild-shares", "0.5", "0.25", "--rounds", "1")[-1])
    assert result["share 0.5"] > 0 and result["share 0.25"] > 0 and "process" not in result
    assert result["speedup"] == pytest.approx(result["share 0.25"] / result["share 0.5"], abs=1e-3)


def test_prefetch_compares_openmp_wait_policies_each_in_its_own_process():
    # OpenMP reads the policy when torch loads: one fresh run per policy (the bench checks
    # that each ran under its own)
    lines = _smoke("prefetch.py", "--wait-policies", "unset", "PASSIVE", "--rounds", "1")
    result = json.loads(lines[-1])
    assert set(result["wait_policies"]) == {"unset", "PASSIVE"}
    assert min(result["wait_policies"].values()) > 0
    assert result["speedup"] == pytest.approx(
        result["wait_policies"]["PASSIVE"] / result["wait_policies"]["unset"], abs=1e-3)


def test_train_throughput():
    result = json.loads(_smoke("train_throughput.py")[-1])
    assert result["workers"]["1"]["images_per_s"] > 0 and result["workers"]["1"]["epoch_images"]


def test_localization_prints_the_setting_and_a_json_of_rates():
    lines = _smoke("localization.py")
    assert lines[0].startswith("setting: model ")
    result = json.loads(lines[-1])
    for loc in ("lnet", "cascade"):
        for key in ("recall_iou50", "tpr_fppi01", "tpr_fppi1"):
            assert 0.0 <= result[f"photos_{loc}_{key}"] <= 1.0, key
        assert result[f"photos_{loc}_false_per_image"] >= 0
        # TPR can only grow as more false positives are allowed.
        assert result[f"photos_{loc}_tpr_fppi01"] <= result[f"photos_{loc}_tpr_fppi1"]
        # portraits: no face has a neighbour, so there is no crowded recall to print
        assert result[f"photos_{loc}_crowded_faces"] == 0
        assert f"photos_{loc}_recall_crowded" not in result


def test_localization_reads_with_other_options_than_the_bundles():
    # How a reading variant (pyramid step, zooms ...) is measured without a new bundle.
    # --why-missed: every photo face is counted once, and those found are the framed recall
    lines = _smoke("localization.py", "--localizer-options", '{"scale_step": 2.0}',
                   "--why-missed")
    assert 'localizer options {"scale_step": 2.0}' in lines[0]
    result = json.loads(lines[-1])
    assert 0.0 <= result["photos_lnet_recall_iou50"] <= 1.0
    reasons = {k: v for k, v in result.items() if k.startswith("photos_missed_")}
    assert len(reasons) == 6 and sum(reasons.values()) >= 1
    assert reasons["photos_missed_found"] / sum(reasons.values()) == pytest.approx(
        result["photos_framed_recall_iou50"], abs=1e-3)


@pytest.mark.parametrize("split", ["test", "val"])
def test_wild_attributes_prints_aligned_and_wild_means(tmp_path, split):
    # Paths that do not exist: generated faces and backgrounds, nothing outside the repository.
    # val: the scenes a recipe is chosen on, of faces the test figure never uses.
    lines = _smoke("wild_attributes.py", "--celeba-root", str(tmp_path / "none"),
                   "--backgrounds", str(tmp_path / "none"), "--split", split)
    assert any(line.startswith("setting: 4 scenes") and f"of the {split} faces" in line
               for line in lines)
    result = json.loads(lines[-1])
    assert result["scenes"] == 4 and result["faces"] > 0
    assert 0 <= result["matched"] <= result["faces"] and result["false_detections"] >= 0
    for key in ("aligned_mean", "boxes_mean"):
        assert 0.0 <= result["all_faces"][key] <= 1.0, key
    if result["matched"]:  # a random bundle rarely finds a face; when it does, the figures add up
        assert result["gap"] == pytest.approx(result["aligned_mean"] - result["wild_mean"])
    else:
        assert result["wild_mean"] is None and result["gap"] is None


def test_parsing_prints_iou_per_part_and_the_landmark_check():
    result = json.loads(_smoke("parsing.py")[-1])
    assert len(result["generated"]["iou"]) == 7 and 0 <= result["generated"]["mean_iou"] <= 1
    for key in ("left_eye", "right_eye", "nose", "mouth"):
        for name in ("aligned", "moved"):
            assert 0 <= result["real_landmarks"][name][key]["within"] <= 1


def test_parsing_transfer_scores_every_arm_aligned_and_moved():
    result = json.loads(_smoke("parsing_transfer.py")[-1])
    rows = {r["arm"]: r for r in result["results"]}
    assert list(rows) == ["drawn", "drawn-photo", "real-pseudo", "template", "blobs"]
    # the template sits on the mean face's landmarks: it passes as aligned, never follows
    assert rows["template"]["aligned"]["all_four_within"] == 1.0
    assert abs(rows["template"]["following"]["mean_r"]) < 1e-9
    for row in rows.values():
        assert 0 <= row["moved"]["all_four_within"] <= 1 and len(row["generated_iou"]) == 7


@pytest.mark.slow
def test_ssp_ssg_compares_the_five_models():
    result = json.loads(_smoke("ssp_ssg.py")[-1])
    assert [r["model"] for r in result["models"]] == ["ssp+ssg", "anet", "ssp", "ssg", "neither"]
    assert all(0 <= r["mean_accuracy"] <= 1 and r["train_s"] > 0 for r in result["models"])

