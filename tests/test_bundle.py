"""Model bundles: round trip, and clear errors for damaged or foreign bundles."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from faceattr_ray.bundle import Bundle, load_bundle, save_bundle
from faceattr_ray.cli import main
from faceattr_ray.errors import BundleError
from faceattr_ray.models import ANet, ANetConfig, LNet, LNetConfig

NAMES = ["Smiling", "Male", "Eyeglasses"]


def make_bundle(with_heads: bool = True) -> Bundle:
    torch.manual_seed(0)
    lnet_cfg = LNetConfig(channels=(8, 16, 16, 16, 8), num_attributes=3, head_hidden=16,
                          num_classes=0)
    anet_cfg = ANetConfig(patch_size=32, grid=3, channels=(4, 6, 8, 8), feature_dim=16,
                          num_attributes=3, kernels=(5, 3, 3, 3))
    heads = None
    if with_heads:
        rng = np.random.default_rng(0)
        heads = {"weight": rng.normal(size=(3, 16)).astype(np.float32),
                 "bias": rng.normal(size=3).astype(np.float32)}
    return Bundle(path=None, config={"localizer": {"window_scales": [0.5, 1.0]}},
                  attributes=NAMES, lnet_o=LNet(lnet_cfg), lnet_s=LNet(lnet_cfg),
                  anet=ANet(anet_cfg), heads=heads, threshold=0.25)


@pytest.fixture
def saved(tmp_path):
    bundle = make_bundle()
    save_bundle(tmp_path / "b", bundle)
    return bundle, tmp_path / "b"


def test_round_trip_gives_the_same_outputs(saved):
    original, path = saved
    loaded = load_bundle(path)
    assert loaded.attributes == NAMES and loaded.threshold == 0.25
    assert loaded.config["localizer"]["window_scales"] == [0.5, 1.0]
    assert not loaded.anet.training and not loaded.lnet_o.training
    original.anet.eval()
    original.lnet_s.eval()
    with torch.inference_mode():
        w = torch.randn(2, 3, 40, 40)
        assert torch.equal(loaded.anet.patch_features(w), original.anet.patch_features(w))
        x = torch.randn(1, 3, 64, 64)
        assert torch.equal(loaded.lnet_s.response_map(x), original.lnet_s.response_map(x))
    for k, v in original.heads.items():
        np.testing.assert_array_equal(loaded.heads[k], v)


def test_global_max_lnets_round_trip_with_their_head(tmp_path):
    bundle = make_bundle()
    cfg = LNetConfig(channels=(8, 16, 16, 16, 8), num_attributes=3, num_classes=0,
                     head_pool="global_max")
    bundle.lnet_o, bundle.lnet_s = LNet(cfg), LNet(cfg)
    save_bundle(tmp_path / "b", bundle)
    loaded = load_bundle(tmp_path / "b")
    assert loaded.lnet_o.config.head_pool == "global_max"
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded.lnet_o(x), bundle.lnet_o.eval()(x))


def test_bundle_without_lnets_or_heads(tmp_path):
    b = make_bundle(with_heads=False)
    b.lnet_o = b.lnet_s = None
    b.threshold = None
    save_bundle(tmp_path, b)
    loaded = load_bundle(tmp_path)
    assert loaded.lnet_o is None and loaded.heads is None and loaded.threshold is None


def test_missing_file_names_it(saved):
    _, path = saved
    (path / "anet.safetensors").unlink()
    with pytest.raises(BundleError, match="anet.safetensors: missing"):
        load_bundle(path)


def test_corrupted_file_fails_its_hash(saved):
    _, path = saved
    data = bytearray((path / "lnet_o.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (path / "lnet_o.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="lnet_o.safetensors: sha256"):
        load_bundle(path)


def test_wrong_shape_names_file_and_tensor(saved):
    _, path = saved
    # A config that disagrees with the weights (e.g. edited by hand): wider C1.
    config = json.loads((path / "config.json").read_text())
    config["anet"]["channels"] = [5, 6, 8, 8]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"anet.safetensors: conv1.(weight|bias) has shape"):
        load_bundle(path)


def test_replaced_weights_with_a_matching_hash_still_need_the_right_keys(saved):
    _, path = saved
    save_file({"x": torch.zeros(2)}, path / "anet.safetensors")
    config = json.loads((path / "config.json").read_text())
    from faceattr_ray.bundle import sha256_file
    config["files"]["anet.safetensors"] = sha256_file(str(path / "anet.safetensors"))
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="do not match the anet config"):
        load_bundle(path)


@pytest.mark.parametrize("edit,match", [
    (lambda c: c.update(format_version=99), "format version 99"),
    (lambda c: c.update(format="something-else"), "not a faceattr-ray-bundle"),
])
def test_foreign_or_future_config_is_refused(saved, edit, match):
    _, path = saved
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=match):
        load_bundle(path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="config.json: not found"):
        load_bundle(tmp_path)
    (tmp_path / "config.json").write_text("{ nope")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path)


def test_heads_must_match_attributes(tmp_path):
    b = make_bundle()
    b.heads["weight"] = b.heads["weight"][:2]
    save_bundle(tmp_path, b)
    with pytest.raises(BundleError, match="heads.safetensors: weight"):
        load_bundle(tmp_path)


def test_info_prints_configs_attributes_and_flops(saved, capsys):
    _, path = saved
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Eyeglasses" in out and "GFLOPs" in out and "one pass" in out


def test_model_version_is_the_hash_of_the_weights(tmp_path):
    from faceattr_ray.pipeline.schema import model_version, table_metadata

    a, b = make_bundle(), make_bundle()
    b.heads["bias"] = b.heads["bias"] + 1.0
    save_bundle(tmp_path / "a", a)
    save_bundle(tmp_path / "b", b)
    va, vb = model_version(a.config), model_version(b.config)
    assert va.startswith("sha256:") and vb.startswith("sha256:") and va != vb
    assert model_version(load_bundle(tmp_path / "a").config) == va
    meta = json.loads(table_metadata(NAMES, a.config, a.threshold, "lnet")["faceattr_ray.model"])
    assert meta["version"] == va and meta["hashes"] == a.config["files"]
    assert meta["framing"] is None  # this bundle does not frame its boxes


def test_the_table_says_how_found_boxes_were_framed():
    """Framing settings live in the bundle's config, not its weights, so the model version
    cannot tell them apart: the footer records them (none for aligned crops, never framed)."""
    from faceattr_ray.bundled import model_path
    from faceattr_ray.pipeline.schema import table_metadata

    bundled = load_bundle(model_path())
    predict = bundled.config["predict"]
    meta = json.loads(table_metadata(NAMES, bundled.config, bundled.threshold, "lnet")[
        "faceattr_ray.model"])
    assert meta["framing"] == {"frame_zooms": predict["frame_zooms"],
                               "frame_shifts_y": predict["frame_shifts_y"],
                               "frame_shifts_x": predict["frame_shifts_x"],
                               "frame_min_confidence": predict["frame_min_confidence"]}
    assert meta["framing"]["frame_shifts_y"]  # the shipped model moves centres
    aligned = json.loads(table_metadata(NAMES, bundled.config, None, "full")["faceattr_ray.model"])
    assert aligned["framing"] is None
