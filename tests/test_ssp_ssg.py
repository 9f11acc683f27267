"""The SSP+SSG family: the network's two uses of the part maps, its bundle and Predictor, the
parsing and joint jobs (in-process and on Ray Train, with resume)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from faceattr_ray.bundle import load_bundle, save_bundle
from faceattr_ray.cli import main
from faceattr_ray.data.synthetic import write_aligned
from faceattr_ray.models import SSPSSGConfig, SSPSSGNet, part_weights
from faceattr_ray.predictor import Predictor
from faceattr_ray.presets import build_bundle
from faceattr_ray.train import api

TINY = {"input_size": 32, "channels": [4, 8, 8, 8], "parsing": {"channels": [8, 16, 16]}}


@pytest.mark.parametrize("ssp,ssg", [(True, True), (True, False), (False, True), (False, False)])
def test_features_and_localization_maps_add_up_to_the_scores(ssp, ssg):
    torch.manual_seed(0)
    net = SSPSSGNet(SSPSSGConfig.from_dict({**TINY, "ssp": ssp, "ssg": ssg,
                                            "num_attributes": 3})).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = net.patch_features(x)
    assert feats.shape == (2, 1, net.config.feature_dim) == (2, 1, 8 * (7 if ssp else 1))
    head = net.attribute_head
    maps = net.localization_maps(x, head.weight)
    assert maps.shape == (2, 3, 4, 4)
    scores = net.attribute_logits(feats[:, 0])
    assert torch.allclose(maps.sum(dim=(2, 3)) + head.bias, scores, atol=1e-5)
    with pytest.raises(ValueError, match="face crops must be"):
        net.patch_features(torch.zeros(1, 3, 30, 30))


def test_ssp_pools_inside_each_part_and_ssg_gates_by_part():
    net = SSPSSGNet(SSPSSGConfig.from_dict(TINY)).eval()
    feats = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    probs = torch.zeros(1, 7, 4, 4)
    probs[0, 3, :2] = 1.0   # "eyes": the top half
    probs[0, 6, 2:] = 1.0   # "mouth": the bottom half
    pooled = net.pool(feats, probs).view(7, 2)
    assert torch.allclose(pooled[3], feats[0, :, :2].mean(dim=(1, 2)))
    assert torch.allclose(pooled[6], feats[0, :, 2:].mean(dim=(1, 2)))
    assert pooled[0].abs().sum() == 0  # an absent part pools nothing
    # SSG: the second block sees the first block's map once per part, times that part's map
    x = torch.randn(1, 3, 32, 32)
    only_eyes = torch.zeros(1, 7, 32, 32)
    only_eyes[:, 3] = 1.0
    seen = {}
    net.conv2.register_forward_pre_hook(lambda m, i: seen.update(input=i[0]))
    net.trunk(x, only_eyes)
    per_part = seen["input"].view(1, 7, 4, 16, 16)
    assert per_part[:, 3].abs().sum() > 0 and per_part[:, [0, 1, 2, 4, 5, 6]].abs().sum() == 0
    w = part_weights(torch.randn(5, 7 * 8), 7)
    assert w.shape == (5, 7) and torch.allclose(w.sum(1), torch.ones(5))


def test_bundle_round_trip_and_predictor(tmp_path):
    bundle = build_bundle("tiny", attributes=["A", "B"])
    torch.manual_seed(1)
    bundle.anet = SSPSSGNet(SSPSSGConfig.from_dict({**TINY, "num_attributes": 2})).eval()
    bundle.lnet_o = bundle.lnet_s = None
    save_bundle(tmp_path / "m", bundle)
    loaded = load_bundle(tmp_path / "m")
    assert isinstance(loaded.anet, SSPSSGNet) and loaded.anet.config.ssp
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(loaded.anet.patch_features(x), bundle.anet.patch_features(x))
    images = [np.random.default_rng(k).integers(0, 255, (50, 40, 3), np.uint8) for k in range(3)]
    results = Predictor(loaded, localizer="full", with_features=True).predict(images)
    assert [len(r.faces) for r in results] == [1, 1, 1]
    assert results[0].faces[0].attributes.shape == (2,)
    assert results[0].faces[0].features.shape == (loaded.anet.config.feature_dim,)


@pytest.mark.slow
def test_parsing_job_learns_generated_parts(tmp_path):
    """A few epochs in-process on drawn faces: pixel accuracy on held-apart identities beats
    labelling everything with the commonest part (the job does learn the parts)."""
    root = write_aligned(str(tmp_path / "gen"), 120, 30, seed=4, masks=True)
    net, metrics, _ = api.train_parsing(root, ssp_ssg=TINY, epochs=4, batch_size=16, lr=0.01,
                                        optimizer="adamw", weight_decay=0.0, local=True)
    from faceattr_ray.data.parsing import load_pair, parsing_rows
    from faceattr_ray.models import Preprocess

    rows = parsing_rows(root, "val") + parsing_rows(root, "test")
    masks = np.stack([load_pair(r, 32)[1] for r in rows])
    majority = np.bincount(masks.ravel()).max() / masks.size
    assert metrics["val_accuracy"] > majority + 0.08, (metrics, majority)
    # where the true masks are known, the predicted skin and hair sit where the drawn ones
    # are (this tiny net, 4 epochs at 32 px, does not resolve eyes or mouth; bench/parsing.py
    # measures those on a real-sized one)
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.data.parsing import load_mask
    from faceattr_ray.data.parts import HAIR, SKIN
    from faceattr_ray.evaluation.parsing_checks import predict_parts

    predicted = predict_parts(net, Preprocess(), [load_image(r["path"]) for r in rows])
    for part in (SKIN, HAIR):
        gaps = []
        for p, r in zip(predicted, rows, strict=True):
            got, want = np.argwhere(p == part), np.argwhere(load_mask(r) == part)
            if len(got) and len(want):
                gaps.append(np.hypot(*(got.mean(0) - want.mean(0))))
        assert len(gaps) >= len(rows) // 2 and np.median(gaps) < 8.0, (part, gaps)  # px


def test_cli_parsing_then_ssp_ssg_ablations_then_evaluate(tmp_path, capsys):
    root = write_aligned(str(tmp_path / "gen"), 24, 6, seed=1, masks=True)
    parsing = str(tmp_path / "parsing")
    assert main(["train", "parsing", "--data", root, "--out", parsing, "--smoke-test"]) == 0
    assert load_bundle(parsing).config["training"]["trained"] == ["parsing"]
    dims = {}
    for parts in ("ssp,ssg", "ssp", "ssg"):
        out = str(tmp_path / parts.replace(",", "_"))
        assert main(["train", "ssp-ssg", "--data", root, "--parsing-data", root, "--init", parsing,
                     "--parts", parts, "--out", out, "--smoke-test"]) == 0
        bundle = load_bundle(out)
        dims[parts] = bundle.anet.config.feature_dim
        assert bundle.heads["weight"].shape == (40, dims[parts])
    assert dims == {"ssp,ssg": 7 * 8, "ssp": 7 * 8, "ssg": 8}
    # the parsing network came from --init, unchanged in shape
    assert main(["evaluate", "--model", str(tmp_path / "ssp_ssg"), "--celeba-root", root,
                 "--split", "all"]) == 0
    assert "mean" in capsys.readouterr().out
    anet_bundle = str(tmp_path / "anet")
    assert main(["train", "finetune", "--data", root, "--nets", "anet", "--out", anet_bundle,
                 "--smoke-test"]) == 0
    assert main(["train", "ssp-ssg", "--data", root, "--init", anet_bundle, "--out",
                 str(tmp_path / "x"), "--smoke-test"]) == 2
    assert "not an SSP+SSG bundle" in capsys.readouterr().err


@pytest.mark.slow
def test_joint_job_on_ray_train_writes_checkpoints(local_ray, tmp_path):
    # One fit (each costs ~50 s of Ray start-up here): the joint job runs in the shared Ray
    # Train loop, whose resume and restart test_train checks on ANet.
    root = write_aligned(str(tmp_path / "gen"), 24, 6, seed=2, masks=True)
    results = tmp_path / "results"
    net, metrics, cfg = api.finetune_ssp_ssg(
        root, epochs=1, ssp_ssg=TINY, parsing_data=root, batch_size=8, lr=0.01, seed=0,
        storage_path=str(results), run_name="joint", limit=16)
    assert metrics["epoch"] == 0 and metrics["start_epoch"] == 0
    assert isinstance(net, SSPSSGNet) and cfg["job"] == "finetune-ssp-ssg"
    states = list(results.rglob("state.pt"))
    assert len(states) == 1  # the epoch's checkpoint, where a re-run would resume from
    saved = torch.load(states[0], weights_only=True)
    assert saved["epoch"] == 0 and "optimizer" in saved
    for key, value in net.state_dict().items():
        assert torch.equal(saved["model"][f"net.{key}"], value), key


@pytest.mark.slow
def test_reproduce_family_ssp_ssg_smoke(local_ray, tmp_path):
    import json

    root = write_aligned(str(tmp_path / "root"), count=80, identities=20, seed=0)
    out = str(tmp_path / "out")
    assert main(["reproduce", "--celeba-root", root, "--out", out, "--smoke-test",
                 "--family", "ssp-ssg"]) == 0
    with open(os.path.join(out, "report", "report.json")) as f:
        report = json.load(f)
    assert report["family"] == "ssp-ssg" and report["test"]["images"] > 0
    assert list(report["stage_seconds"]) == ["data", "lnets", "parsing_data", "parsing",
                                             "ssp_ssg_finetune", "heads", "calibrate", "evaluate"]
    bundle = load_bundle(os.path.join(out, "model"))
    assert isinstance(bundle.anet, SSPSSGNet) and bundle.lnet_o is not None
    assert bundle.heads["weight"].shape == (40, bundle.anet.config.feature_dim)


def test_report_shows_part_weights_and_localization_maps_for_ssp_ssg_only(tmp_path):
    from faceattr_ray.evaluation.report import ReportInputs, build_report

    root = write_aligned(str(tmp_path / "gen"), 10, 4, seed=3)
    bundle = build_bundle("tiny")
    torch.manual_seed(2)
    bundle.anet = SSPSSGNet(SSPSSGConfig.from_dict({**TINY, "num_attributes": 40})).eval()
    save_bundle(tmp_path / "ssp", bundle)
    report = build_report(ReportInputs(str(tmp_path / "ssp"), root, split="all"),
                          str(tmp_path / "out"))
    weights = report["sections"]["part_weights"]
    assert weights["status"] == "ok" and weights["faces"] == 10
    for entry in weights["attributes"].values():
        assert sum(entry["contribution_share"].values()) == pytest.approx(1.0, abs=1e-6)
        assert sum(entry["weight_share"].values()) == pytest.approx(1.0, abs=1e-6)
    maps = report["sections"]["localization_maps"]
    assert maps["status"] == "ok" and maps["map_size"] == [4, 4]
    for section in (weights, maps):
        assert os.path.exists(tmp_path / "out" / section["figures"][0]["file"])
    html = (tmp_path / "out" / "index.html").read_text()
    assert 'id="part_weights" data-status="ok"' in html
    anet = build_report(ReportInputs(str(tmp_path / "anet_in"), root, split="all"),
                        str(tmp_path / "out2")) if save_bundle(
        tmp_path / "anet_in", build_bundle("tiny")) is None else None
    assert anet["sections"]["part_weights"]["status"] == "absent"
    assert "ANet" in anet["sections"]["localization_maps"]["reason"]


def test_landmark_check_passes_parts_in_place_and_fails_them_moved():
    from faceattr_ray.data.parts import EYES, MOUTH, NOSE, SKIN
    from faceattr_ray.evaluation.parsing_checks import expected_positions, landmark_check

    w, h = 89, 109
    want = expected_positions(w, h)
    assert want["left_eye"] == pytest.approx((34.6, 55.5))  # measured on the mean face

    def face(shift: int) -> np.ndarray:
        labels = np.full((h, w), SKIN, np.uint8)
        for key, part in (("left_eye", EYES), ("right_eye", EYES), ("mouth", MOUTH)):
            x, y = (round(v - 0.5) for v in want[key])
            labels[y - 1 + shift:y + 2 + shift, x - 2:x + 3] = part
        x = round(want["nose"][0] - 0.5)
        labels[int(want["left_eye"][1]) + 3 + shift:int(want["nose"][1]) + shift, x - 1:x + 2] = NOSE
        return labels

    ok = landmark_check([face(0)] * 3, tolerance=2.0)
    assert ok["all_four_within"] == 1.0 and ok["mouth"]["median_px"] < 1.0
    moved = landmark_check([face(8)] * 3, tolerance=2.0)
    assert moved["left_eye"]["within"] == moved["mouth"]["within"] == moved["nose"]["within"] == 0
    empty = landmark_check([np.zeros((h, w), np.uint8)], tolerance=2.0)
    assert empty["mouth"]["missing"] == 1.0



def test_joint_job_makes_wild_crops_of_aligned_rows_only_when_training(tmp_path):
    """With ``wild`` (as reproduce sets it) an aligned face row becomes a face found in a photo
    for the SSP+SSG job too; validation rows and parsing rows stay as they were."""
    from PIL import Image

    from faceattr_ray.train.ssp_ssg import IGNORE, joint_transform

    root = write_aligned(str(tmp_path / "root"), count=4, identities=2, seed=0)
    backgrounds = []
    for k in range(2):
        path = str(tmp_path / f"bg{k}.jpg")
        Image.fromarray(np.full((150, 200, 3), 40 + 100 * k, np.uint8)).save(path)
        backgrounds.append(path)
    from faceattr_ray.crops import ALIGNED_FACE_BOX

    cfg = api._ssp_ssg_config("finetune-ssp-ssg", root, TINY,
                              preprocess={"face_box": list(ALIGNED_FACE_BOX)}, wild={"share": 1.0, "face_px": [24, 40], "backgrounds": backgrounds})
    paths = sorted(str(p) for p in (tmp_path / "root" / "img_align_celeba").iterdir())[:3]
    batch = {"path": np.array(paths), "box": np.full((3, 4), np.nan), "label": np.zeros((3, 40)),
             "mask": np.array(["", "", ""]), "layout": np.array(["", "", ""])}
    rng = np.random.default_rng(0)
    val = joint_transform(batch, cfg, False, rng)
    train = joint_transform(batch, cfg, True, rng)
    no_wild = joint_transform(batch, {**cfg, "wild": None}, True, np.random.default_rng(0))
    assert train["image"].shape == val["image"].shape == (3, 32, 32, 3)
    assert (train["mask"] == IGNORE).all() and (val["mask"] == IGNORE).all()
    # A face pasted 24-40 px wide on a flat background and framed again: far from the aligned
    # crop, which the no-wild rows stay close to (a flip at most).
    def gap(a):
        flipped = val["image"][:, :, ::-1]
        return np.minimum(np.abs(a.astype(float) - val["image"]).mean(axis=(1, 2, 3)),
                          np.abs(a.astype(float) - flipped).mean(axis=(1, 2, 3)))
    assert (gap(no_wild["image"]) < 1.0).all()
    assert (gap(train["image"]) > 10.0).all()
