"""`faceattr-ray reproduce`: the protocol end to end (--smoke-test) on a tiny generated root;
its bundle goes through the real annotate pipeline and `evaluate`."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pyarrow.dataset as pads
import pytest

from faceattr_ray.attributes import CELEBA_40

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def run(local_ray, tmp_path_factory):
    """One smoke run, shared by the tests below: (root, out, stdout of the command)."""
    from faceattr_ray.cli import main
    from faceattr_ray.data.synthetic import write_aligned

    tmp = tmp_path_factory.mktemp("reproduce")
    root = write_aligned(str(tmp / "root"), count=120, identities=30, seed=0)
    out = str(tmp / "out")
    assert main(["reproduce", "--celeba-root", root, "--out", out, "--smoke-test"]) == 0
    return root, out


def test_smoke_run_writes_report_with_table_plots_and_stage_times(run):
    root, out = run
    report_dir = os.path.join(out, "report")
    with open(os.path.join(report_dir, "report.json")) as f:
        report = json.load(f)
    assert 0.0 <= report["mean_accuracy"] <= 1.0
    assert report["test"]["split"] == "test" and report["test"]["images"] > 0
    assert 0.5 <= report["majority_baseline"] <= 1.0
    assert report["paper_mean_accuracy"] == pytest.approx(0.873, abs=0.001)
    stages = report["stage_seconds"]
    assert list(stages) == ["data", "anet_pretrain", "lnets", "anet_finetune", "heads",
                            "calibrate", "evaluate"]
    # Every stage took time, and the stages add up to no more than the whole run.
    assert all(v > 0 for v in stages.values()), stages
    assert sum(stages.values()) <= report["total_seconds"] + 0.5
    # Heads: fitted on val only, with held-out val identities choosing C and the head.
    assert report["heads"]["val_images_fit"] > 0 and report["heads"]["val_images_held"] > 0
    assert set(report["heads"]["choice"].values()) <= {"svm", "anet"}
    with open(os.path.join(report_dir, "table.md")) as f:
        table = f.read()
    assert "| attribute | ours | majority | paper |" in table
    assert all(f"| {name} |" in table for name in CELEBA_40) and "**mean**" in table
    with open(os.path.join(report_dir, "accuracy.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    # Localization figures on scenes of test faces on held-apart backgrounds.
    loc = report["localization_test"]
    assert loc["scenes"] > 0 and loc["faces"] > 0
    assert 0.0 <= loc["recall_iou50"] <= 1.0 and loc["false_per_image"] >= 0


def test_bundle_has_svm_heads_and_a_threshold_and_evaluate_agrees(run, tmp_path):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.cli import main

    root, out = run
    model = os.path.join(out, "model")
    bundle = load_bundle(model)
    assert bundle.attributes == list(CELEBA_40)
    assert bundle.heads is not None and bundle.heads["weight"].shape == (40, 16)
    assert bundle.threshold is not None and np.isfinite(bundle.threshold)
    assert bundle.lnet_o is not None and bundle.lnet_s is not None
    # operating points chosen on the held-out val identities, stored in the config
    points = bundle.config["operating_points"]
    assert len(points["thresholds"]["balanced"]) == 40 and "held out" in points["chosen_on"]
    # `evaluate` on the test split gives the very figure the report printed.
    metrics_path = str(tmp_path / "metrics.json")
    assert main(["evaluate", "--model", model, "--celeba-root", root, "--json",
                 metrics_path]) == 0
    with open(metrics_path) as f:
        metrics = json.load(f)
    with open(os.path.join(out, "report", "report.json")) as f:
        report = json.load(f)
    assert metrics["mean"]["accuracy"] == pytest.approx(report["mean_accuracy"])


def test_annotate_pipeline_accepts_the_bundle(run, tmp_path):
    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate

    root, out = run
    faces = os.path.join(root, "img_align_celeba")
    inputs = sorted(os.path.join(faces, f) for f in os.listdir(faces))[:6]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    output = str(tmp_path / "annotations")
    summary = annotate([*inputs, str(broken)], os.path.join(out, "model"), output,
                       AnnotateOptions(batch_size=4))
    table = pads.dataset(output, format="parquet").to_table().to_pandas()
    assert summary["images"] == 7 and set(table["path"]) == {*inputs, str(broken)}
    assert set(table["status"]) <= {"ok", "no_face", "error"}
    assert table.loc[table["path"] == str(broken), "status"].tolist() == ["error"]
    assert all(name in table.columns for name in CELEBA_40)
    # The job applies the threshold reproduce calibrated: in the footer and in every row.
    with open(os.path.join(out, "report", "report.json")) as f:
        threshold = json.load(f)["calibration"]["threshold"]
    meta = pads.dataset(output, format="parquet").schema.metadata
    assert json.loads(meta[b"faceattr_ray.model"])["threshold"] == threshold
    assert (table.loc[table["status"] == "ok", "face_score"] >= np.float32(threshold)).all()


def test_annotate_localizer_is_the_one_reproduce_calibrated(run):
    """The threshold is only right for the cascade it was set on: annotate's localizer, with
    its threshold off, picks the very threshold reproduce stored on the same val scenes."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.evaluation.localization_metrics import (
        choose_threshold,
        choose_threshold_and_floor,
        every_detection,
    )
    from faceattr_ray.localizers import LNetLocalizer
    from faceattr_ray.predictor import Predictor, framed_localizer
    from faceattr_ray.reproduce import (
        face_head_recipe,
        resolve_recipe,
        scene_backgrounds,
        validation_scenes,
    )

    root, out = run
    with open(os.path.join(out, "report", "report.json")) as f:
        stored = json.load(f)["calibration"]
    bundle = load_bundle(os.path.join(out, "model"))
    annotating = Predictor(bundle, "cpu", localizer="lnet").localizer  # as AnnotateActor builds
    assert bundle.threshold == annotating.threshold == stored["threshold"]
    assert annotating.options() == LNetLocalizer.from_bundle(bundle).options()
    # LNet_s reads as many of LNet_o's proposals per photo as the recipe says
    assert annotating.max_proposals == resolve_recipe(True, None)["lnets"]["max_proposals"]
    assert annotating.geometry == stored["geometry"]  # the calibrated box shape is read back
    # the confidence floor set on the same scenes is the one annotate's framing applies
    floor = stored["confidence_floor"]
    smoke = resolve_recipe(True, None)
    assert floor["quantile"] == (face_head_recipe(smoke)["quantile"]
                                 if floor.get("reads") == "face head"
                                 else smoke["frame_confidence_quantile"])
    assert bundle.config["predict"]["frame_min_confidence"] == floor["min_confidence"]
    framer = Predictor(bundle, "cpu", localizer="lnet").framer
    assert framer is not None and framer.min_confidence == floor["min_confidence"]
    recipe = resolve_recipe(True, None)
    # and it frames with the recipe's zooms and centre moves, as the floor was set
    assert (framer.shifts_y, framer.shifts_x) == (tuple(recipe["frame_shifts_y"]),
                                                  tuple(recipe["frame_shifts_x"]))
    assert framer.shifts_y
    _, held, _ = scene_backgrounds(None, os.path.join(out, "work"), recipe, 0)
    scenes = validation_scenes(root, "val", held, recipe, recipe["scenes"]["count"], 0,
                               recipe["scenes"]["calibration_context_share"])
    annotating.threshold = None
    images, boxes = [s.image for s in scenes], [s.boxes for s in scenes]
    if floor.get("reads") == "face head":  # threshold and floor chosen together on it
        assert framer.face_scores is not None
        unfloored = framed_localizer(bundle, annotating, floor=False)
        scored = unfloored.frame_scored(images, every_detection(annotating, images))
        again = choose_threshold_and_floor(scored, boxes, unfloored.select,
                                           face_head_recipe(recipe)["max_false_per_image"],
                                           floor["quantile"])
        stored_floor = floor["min_confidence"]  # None when no face was found at any threshold
        assert again["confidence_floor"]["min_confidence"] == (
            None if stored_floor is None else pytest.approx(stored_floor, rel=1e-5, abs=1e-6))
    else:
        again = choose_threshold(annotating, images, boxes,
                                 recipe["scenes"]["max_false_per_image"])
    assert again["threshold"] == pytest.approx(stored["threshold"], rel=1e-6, abs=1e-9)
    assert again["recall"] == stored["recall"]


def test_calibrate_scenes_recalibrates_a_bundle_without_retraining(run, tmp_path, capsys):
    """`faceattr-ray calibrate-scenes` writes a copy of the bundle calibrated as reproduce
    calibrates it (threshold, floor and, when its train scenes give faces and others, the
    face head), with the networks untouched; a card's localization figures are measured
    again with the new calibration."""
    from faceattr_ray.bundle import load_bundle, save_bundle
    from faceattr_ray.cli import main

    root, out = run
    model = str(tmp_path / "carded")  # the run's model with a card whose figures are stale
    shutil.copytree(os.path.join(out, "model"), model)
    carded = load_bundle(model)
    carded.config["card"] = {"name": "stale", "figures": {"scene_recall_iou50": -1.0}}
    save_bundle(model, carded)
    backgrounds = os.path.join(out, "work", "backgrounds")
    copy = str(tmp_path / "copy")
    recipe = json.dumps({"scenes": {"count": 6, "test_count": 4},
                         "frame_face_head": {"scenes": 6}})
    assert main(["calibrate-scenes", "--model", model, "--celeba-root", root, "--backgrounds",
                 backgrounds, "--out", copy, "--recipe", recipe]) == 0
    said = capsys.readouterr().out
    assert f"saved to {copy}" in said
    before, after = load_bundle(model), load_bundle(copy)
    figures = after.config["card"]["figures"]
    assert 0.0 <= figures["scene_recall_iou50"] <= 1.0 and figures["scenes"] == 4
    assert figures["scene_figures_by"] == "calibrate-scenes"
    assert before.config["card"]["figures"]["scene_recall_iou50"] == -1.0  # --out: a copy
    assert after.threshold is not None
    for name in ("lnet_o", "lnet_s", "anet"):
        a, b = getattr(before, name).state_dict(), getattr(after, name).state_dict()
        assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    calibration = after.config["localizer"]["calibration"]
    head = after.config["predict"].get("face_head")
    if head is not None:
        assert calibration["confidence_floor"]["reads"] == "face head"
        assert len(head["weight"]) == after.anet.config.feature_dim
    else:
        assert "face head not fit" in said
    plain = str(tmp_path / "plain")
    assert main(["calibrate-scenes", "--model", model, "--celeba-root", root, "--backgrounds",
                 backgrounds, "--out", plain, "--recipe",
                 json.dumps({"scenes": {"count": 6, "test_count": 4}, "frame_face_head": None})]) == 0
    plain_bundle = load_bundle(plain)
    assert "face_head" not in plain_bundle.config["predict"]
    assert (plain_bundle.config["localizer"]["calibration"]["confidence_floor"]["reads"]
            == "attribute confidence")
    # the head learns only from finds scoring at least "min_score": none reach 1.01
    capsys.readouterr()
    assert main(["calibrate-scenes", "--model", model, "--celeba-root", root, "--backgrounds",
                 backgrounds, "--out", str(tmp_path / "none"), "--recipe",
                 json.dumps({"scenes": {"count": 6, "test_count": 4},
                             "frame_face_head": {"scenes": 6, "min_score": 1.01}})]) == 0
    assert "face head not fit: 0 faces and 0 others" in capsys.readouterr().out
    assert "face_head" not in load_bundle(str(tmp_path / "none")).config["predict"]


def test_recipe_overrides_merge_key_by_key(tmp_path):
    from faceattr_ray.reproduce import RECIPE, resolve_recipe

    recipe = resolve_recipe(False, '{"anet_finetune": {"epochs": 3}, "heads": {"C": [1.0]}}')
    assert recipe["anet_finetune"]["epochs"] == 3
    assert recipe["anet_finetune"]["lr"] == RECIPE["anet_finetune"]["lr"]  # kept
    assert recipe["heads"]["C"] == [1.0] and recipe["heads"]["solver"] == RECIPE["heads"]["solver"]
    path = tmp_path / "r.json"
    path.write_text('{"lnets": {"steps_o": 7}}')
    assert resolve_recipe(True, str(path))["lnets"]["steps_o"] == 7
    assert RECIPE["anet_finetune"]["epochs"] != 3  # the module's recipe is untouched


def test_held_out_val_part_is_identity_disjoint():
    from faceattr_ray.heads import TRAIN, VAL
    from faceattr_ray.reproduce import _holdout_codes

    identity = np.repeat(np.arange(20), 3)
    codes = _holdout_codes(identity, len(identity), 0.3, seed=0)
    assert set(identity[codes == VAL]).isdisjoint(identity[codes == TRAIN])
    assert len(set(identity[codes == VAL])) == 6


@pytest.mark.parametrize("family", ["anet", "ssp-ssg"])
@pytest.mark.parametrize("given_lnets", [False, True])
def test_attribute_network_gets_its_wild_crops_whether_lnets_are_trained_or_given(
        tmp_path, monkeypatch, given_lnets, family):
    """The in-the-wild half of the attribute network's crops must not depend on where the
    LNets came from (a run with ``lnets.init`` once fine-tuned ANet on aligned crops only), nor
    on the family (SSP+SSG once trained on aligned crops only and lost 5 points on found faces)."""
    from faceattr_ray import reproduce
    from faceattr_ray.bundle import save_bundle
    from faceattr_ray.presets import build_bundle
    from faceattr_ray.train import api

    recipe = reproduce.resolve_recipe(True, None)
    recipe["family"] = family
    recipe["anet_finetune"]["wild"] = {"share": 0.5, "face_px": [24, 64]}
    recipe["ssp_ssg"]["finetune"]["wild"] = {"share": 0.5, "face_px": [24, 64]}
    recipe["ssp_ssg"]["parsing_data"] = "parts"
    recipe["anet_pretrain"]["epochs"] = 0
    if given_lnets:
        save_bundle(str(tmp_path / "given"), build_bundle("wild-smoke", seed=0))
        recipe["lnets"]["init"] = str(tmp_path / "given")
    else:
        monkeypatch.setattr(reproduce, "train_scene_lnets",
                            lambda *a, **k: ({"lnet_o": None, "lnet_s": None}, {}))
    seen = {}

    def fake_finetune(root, **kwargs):
        seen.update(kwargs)
        return {"anet": None}, {"anet": {}}, {}

    def fake_joint(root, **kwargs):
        seen.update(kwargs)
        return None, {}, {}

    monkeypatch.setattr(api, "finetune", fake_finetune)
    monkeypatch.setattr(api, "train_parsing", lambda *a, **k: (None, {}, {}))
    monkeypatch.setattr(api, "finetune_ssp_ssg", fake_joint)
    reproduce.train_networks("root", None, str(tmp_path / "work"), recipe, reproduce.Timer(),
                             seed=0, backgrounds=["a.jpg", "b.jpg"])
    assert seen["wild"] == {"share": 0.5, "face_px": [24, 64], "backgrounds": ["a.jpg", "b.jpg"]}


@pytest.mark.parametrize(("native", "on_cpu", "expected"), [
    (True, True, {"precision": "bf16", "channels_last": True, "epochs": 5}),
    (False, True, {"epochs": 3}), (True, False, {"epochs": 3})])
def test_native_bf16_options_apply_only_in_process_on_a_cpu_that_computes_bf16(
        monkeypatch, native, on_cpu, expected):
    """ANet's (and the LNets') "native_bf16" block replaces its options only where bf16 pays (a CPU with AVX-512
    BF16 or AMX, training in this process), and scales whatever epochs the recipe sets (the
    same minutes buy more); elsewhere the recipe trains as written (float32, its own epochs).
    The block itself never reaches the training job; the demo's toy and a recipe that sets the
    block to null train alike everywhere."""
    from faceattr_ray import demo, reproduce, runtime

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    block = {"precision": "bf16", "channels_last": True, "epoch_scale": 1.62}
    options = reproduce.for_this_cpu({"epochs": 3, "lr": 0.1, "native_bf16": block}, on_cpu)
    assert "native_bf16" not in options and options["lr"] == 0.1
    assert {k: options.get(k) for k in expected} == expected
    if len(expected) == 1:
        assert "precision" not in options and "channels_last" not in options
    assert block["epoch_scale"] == 1.62  # the recipe's block is not consumed
    # RECIPE's own: 58 float32 epochs, 94 in bf16
    assert reproduce.for_this_cpu(reproduce.RECIPE["anet_finetune"], on_cpu)["epochs"] == (
        94 if native and on_cpu else 58)
    off = reproduce.resolve_recipe(False, '{"anet_finetune": {"native_bf16": null}}')
    assert reproduce.for_this_cpu(off["anet_finetune"], on_cpu)["epochs"] == 58
    assert reproduce.for_this_cpu(demo.DEMO_RECIPE["anet_finetune"], on_cpu)["epochs"] == 8
    # the LNets (always trained in this process): bf16 with scenes from a child process and
    # more LNet_s draws to choose from, or as written
    lnets = reproduce.for_this_cpu(reproduce.RECIPE["lnets"], True)
    assert ((lnets["o_draws"], lnets["s_draws"], lnets.get("precision", "fp32"),
             lnets.get("prefetch", "thread"))
            == ((2, 2, "bf16", "process") if native else (1, 2, "fp32", "thread")))


def test_the_lnet_s_draw_finding_most_calibration_faces_is_kept(monkeypatch):
    """With two LNet_s draws, `train_scene_lnets` reads each over the calibration scenes (held
    backgrounds) and keeps the one with the higher recall at the false-detection budget; the
    recalls are reported. Without held backgrounds the first draw is kept."""
    from faceattr_ray import reproduce
    from faceattr_ray.train import lnet_scenes

    draws = [object(), object()]
    monkeypatch.setattr(reproduce, "split_faces", lambda *a: (None, np.zeros((1, 40))))
    monkeypatch.setattr(lnet_scenes, "train_lnets",
                        lambda *a, **k: ("lnet_o", list(draws), {"lnet_o_seconds": 1.0}))
    monkeypatch.setattr(reproduce, "calibration_scenes", lambda *a: ([], []))
    recall = {id(draws[0]): 0.3, id(draws[1]): 0.8}
    # what each draw finds stands for it; its recall is read off that
    monkeypatch.setattr(reproduce, "calibration_detections", lambda loc, *a: ({}, loc.lnet_s))
    monkeypatch.setattr("faceattr_ray.evaluation.localization_metrics.choose_threshold",
                        lambda *a, detections, **k: {"recall": recall[id(detections)]})
    monkeypatch.setattr("faceattr_ray.localizers.pyramid.PyramidLNetLocalizer.__init__",
                        lambda self, o, s, *a, **k: setattr(self, "lnet_s", s))
    recipe = reproduce.resolve_recipe(True, None)
    nets, info = reproduce.train_scene_lnets("root", [], recipe, 0, None, ["held.jpg"])
    assert nets == {"lnet_o": "lnet_o", "lnet_s": draws[1]}
    assert info["s_draws_val_recall"] == [0.3, 0.8]
    nets, info = reproduce.train_scene_lnets("root", [], recipe, 0, None, None)
    assert nets["lnet_s"] is draws[0] and "s_draws_val_recall" not in info


def test_with_two_lnet_o_draws_the_best_pair_is_kept_with_its_own_lnet_o(monkeypatch):
    """"o_draws": 2 trains the LNet stage twice (seeds seed and seed + 1), each LNet_o with its
    own LNet_s draws; the pair that finds the most calibration faces is kept whole (an LNet_s
    never goes with another draw's LNet_o); the stage seconds add up."""
    from faceattr_ray import reproduce
    from faceattr_ray.train import lnet_scenes

    seeds: list[int] = []

    def stage(faces, labels, images, config, options, seed, log):
        seeds.append(seed)
        return f"o{seed}", [f"s{seed}.{k}" for k in range(options["s_draws"])], \
            {"lnet_o_seconds": 1.0, "lnet_s_seconds": 2.0, "hard_negatives": 10 + seed}

    monkeypatch.setattr(reproduce, "split_faces", lambda *a: (None, np.zeros((1, 40))))
    monkeypatch.setattr(lnet_scenes, "train_lnets", stage)
    monkeypatch.setattr(reproduce, "calibration_scenes", lambda *a: ([], []))
    recall = {"s5.0": 0.5, "s5.1": 0.2, "s6.0": 0.4, "s6.1": 0.7}
    monkeypatch.setattr(reproduce, "calibration_detections", lambda loc, *a: ({}, loc.pair))
    monkeypatch.setattr("faceattr_ray.evaluation.localization_metrics.choose_threshold",
                        lambda *a, detections, **k: {"recall": recall[detections[1]]})
    monkeypatch.setattr("faceattr_ray.localizers.pyramid.PyramidLNetLocalizer.__init__",
                        lambda self, o, s, *a, **k: setattr(self, "pair", (o, s)))
    recipe = reproduce.merge(reproduce.resolve_recipe(True, None),
                             {"lnets": {"o_draws": 2, "s_draws": 2, "native_bf16": None}})
    nets, info = reproduce.train_scene_lnets("root", [], recipe, 5, None, ["held.jpg"])
    assert seeds == [5, 6]
    assert nets == {"lnet_o": "o6", "lnet_s": "s6.1"}
    assert info["s_draws_val_recall"] == [0.5, 0.2, 0.4, 0.7]
    assert info["lnet_o_seconds"] == 2.0 and info["lnet_s_seconds"] == 4.0


def test_anet_gets_the_recipes_minutes_left_after_the_stages_around_it(monkeypatch):
    """`reproduce`'s budget (60 minutes in RECIPE): ANet trains in what is left after the
    stages before it, less ``minutes_after_anet`` for those after it (and the face head's fit
    when the recipe asks for one), shared among the members still to train; never below 0; no
    budget when the recipe sets none."""
    from faceattr_ray import reproduce

    timer = reproduce.Timer()
    monkeypatch.setattr(timer, "elapsed", lambda: 600.0)  # the LNets took 10 minutes
    recipe = {"minutes": 60, "minutes_after_anet": 9}
    assert reproduce.anet_minutes(recipe, timer) == pytest.approx(41.0)
    assert reproduce.anet_minutes(recipe, timer, members_left=2) == pytest.approx(20.5)
    assert reproduce.anet_minutes({**recipe, "minutes": 15}, timer) == 0.0
    assert reproduce.anet_minutes({**recipe, "minutes": None}, timer) is None
    # asking for a face head reserves its fit's minutes too
    head = {**recipe, "minutes_face_head": 12, "frame_face_head": {}}
    assert reproduce.anet_minutes(head, timer) == pytest.approx(29.0)
    assert reproduce.anet_minutes({**head, "frame_face_head": None}, timer) == pytest.approx(41.0)
    assert (reproduce.RECIPE["minutes"], reproduce.RECIPE["minutes_after_anet"],
            reproduce.RECIPE["minutes_face_head"]) == (60, 10, 17)
    # the command frames with a face head, so its fit's minutes are reserved by default
    assert reproduce.face_head_recipe(reproduce.RECIPE) == reproduce.FACE_HEAD
    assert reproduce.anet_minutes(reproduce.RECIPE, timer) == pytest.approx(23.0)
