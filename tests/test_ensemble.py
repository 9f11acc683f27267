"""Several ANets read as one (`models.AttributeEnsemble`): what a user reads from an ensemble
bundle is what averaging its members would give, through the bundle format, `Predictor`
(folded batch norm, bf16) and reproduce's training stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from faceattr_ray.attributes import CELEBA_40
from faceattr_ray.bundle import load_bundle, save_bundle
from faceattr_ray.errors import RecipeError
from faceattr_ray.models import ANet, ANetConfig, AttributeEnsemble, attribute_network
from faceattr_ray.predictor import Predictor
from faceattr_ray.presets import architecture, build_bundle


def trained_like(seed: int) -> ANet:
    """A smoke ANet with batch-norm statistics and heads that are not the defaults, so folding
    and averaging have something to get wrong."""
    torch.manual_seed(seed)
    net = ANet(ANetConfig.from_dict({**architecture("wild-smoke")["anet"], "num_attributes": 40}))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
        net.attribute_head.bias.uniform_(-1, 1)
    return net.eval()


def saved_runs(folder) -> list[str]:
    """Two bundles as two earlier runs leave them (smoke networks, ANets of seeds 0 and 1)."""
    paths = []
    for k in (0, 1):
        bundle = build_bundle("wild-smoke", seed=k)
        bundle.anet = trained_like(k)
        save_bundle(folder / f"run{k}", bundle)
        paths.append(str(folder / f"run{k}"))
    return paths


def crops(n: int, side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, side, side, 3), dtype=np.uint8)


def test_ensemble_features_sit_side_by_side_and_its_tag_layer_averages_the_members_logits():
    a, b = trained_like(0), trained_like(1)
    both = AttributeEnsemble([a, b]).eval()
    side = both.config.window_size
    x = torch.from_numpy(crops(3, side)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        fa, fb, f = a.patch_features(x), b.patch_features(x), both.patch_features(x)
        assert f.shape == (3, a.config.grid ** 2, 2 * a.config.feature_dim)
        torch.testing.assert_close(f, torch.cat([fa, fb], -1))
        torch.testing.assert_close(both.patch_features_naive(x), f, rtol=1e-4, atol=1e-4)
        mean_logits = (a.attribute_logits(fa.mean(1)) + b.attribute_logits(fb.mean(1))) / 2
        torch.testing.assert_close(both.attribute_logits(f.mean(1)), mean_logits)
    assert both.config.feature_dim == 2 * a.config.feature_dim


def test_members_that_read_other_crops_or_score_other_attributes_are_refused():
    a = trained_like(0)
    wider = ANet(ANetConfig.from_dict({**architecture("wild-smoke")["anet"], "grid": 3,
                                       "num_attributes": 40}))
    fewer = ANet(ANetConfig.from_dict({**architecture("wild-smoke")["anet"], "num_attributes": 5}))
    with pytest.raises(ValueError, match="window_size|grid"):
        AttributeEnsemble([a, wider])
    with pytest.raises(ValueError, match="num_attributes"):
        AttributeEnsemble([a, fewer])
    with pytest.raises(ValueError, match="at least 2"):
        AttributeEnsemble([a])
    with pytest.raises(ValueError, match="not ensembles"):
        AttributeEnsemble([AttributeEnsemble([a, trained_like(1)]), a])


def test_an_ensemble_bundle_round_trips_and_predicts_the_mean_of_its_members(tmp_path):
    """Saved and loaded (safetensors, no pickle), an ensemble bundle scores face crops with the
    mean of what each member's own bundle scores, through `Predictor` as annotate and evaluate
    run it (batch norm folded), and its features are the members' side by side."""
    members = [trained_like(0), trained_like(1)]
    singles = []
    for k, net in enumerate(members):
        bundle = build_bundle("wild-smoke", seed=k)
        bundle.anet = net
        save_bundle(tmp_path / f"single{k}", bundle)
        singles.append(load_bundle(tmp_path / f"single{k}"))
    combined = build_bundle("wild-smoke", seed=0)
    combined.anet = AttributeEnsemble(members)
    save_bundle(tmp_path / "both", combined)
    loaded = load_bundle(tmp_path / "both")
    assert isinstance(loaded.anet, AttributeEnsemble)
    assert loaded.config["anet"]["family"] == "ensemble"
    assert loaded.attributes == list(CELEBA_40)
    faces = crops(4, loaded.anet.config.window_size, seed=3)
    scores, feats = Predictor(loaded, localizer="full", with_features=True).describe(faces)
    parts = [Predictor(s, localizer="full", with_features=True).describe(faces) for s in singles]
    np.testing.assert_allclose(scores, (parts[0][0] + parts[1][0]) / 2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(feats, np.concatenate([parts[0][1], parts[1][1]], 1),
                               rtol=1e-4, atol=1e-4)
    # and bf16, as annotate runs on a CPU that computes it, keeps every clear decision
    low, _ = Predictor(loaded, localizer="full", precision="bf16").describe(faces)
    clear = np.abs(scores) > 0.1
    assert clear.mean() > 0.5 and (np.sign(low[clear]) == np.sign(scores[clear])).all()


def test_a_bundle_config_rebuilds_the_ensemble_it_describes():
    both = AttributeEnsemble([trained_like(0), trained_like(1)])
    rebuilt = attribute_network(both.config.to_dict())
    assert isinstance(rebuilt, AttributeEnsemble) and len(rebuilt.members) == 2
    assert rebuilt.config == both.config
    assert set(rebuilt.state_dict()) == set(both.state_dict())


def test_reproduce_trains_each_member_from_its_own_seed_and_reads_them_as_one(tmp_path,
                                                                           monkeypatch):
    from faceattr_ray import reproduce
    from faceattr_ray.train import api

    recipe = reproduce.resolve_recipe(
        True, '{"anet_members": 2, "anet_pretrain": {"epochs": 0}}')
    monkeypatch.setattr(reproduce, "train_scene_lnets",
                        lambda *a, **k: ({"lnet_o": None, "lnet_s": None}, {}))
    seeds = []

    def fake_finetune(root, **kwargs):
        seeds.append(kwargs["seed"])
        return {"anet": trained_like(kwargs["seed"])}, {"anet": {}}, {}

    monkeypatch.setattr(api, "finetune", fake_finetune)
    nets, _ = reproduce.train_networks("root", None, str(tmp_path / "work"), recipe,
                                       reproduce.Timer(), seed=7)
    assert seeds == [7, 8]
    assert isinstance(nets["anet"], AttributeEnsemble) and len(nets["anet"].members) == 2
    with pytest.raises(RecipeError, match="members"):
        reproduce.train_networks("root", None, str(tmp_path / "work"),
                                 reproduce.merge(recipe, {"anet_members": 0}),
                                 reproduce.Timer(), seed=7)


def test_fine_tuning_an_ensemble_as_one_anet_is_refused_with_what_to_do_instead():
    from faceattr_ray.train import api

    both = AttributeEnsemble([trained_like(0), trained_like(1)])
    with pytest.raises(ValueError, match="fine-tune each member"):
        api.finetune("root", nets=("anet",), init={"anet": both}, local=True)


def test_reproduce_reads_earlier_runs_anets_as_one_in_place_of_training(tmp_path, monkeypatch):
    """``anet_init``: bundles whose ANets to take as they are (one, or several as an
    ensemble), with their attributes and preprocessing; ANet is not trained."""
    from faceattr_ray import reproduce
    from faceattr_ray.train import api

    paths = saved_runs(tmp_path)
    monkeypatch.setattr(reproduce, "train_scene_lnets",
                        lambda *a, **k: ({"lnet_o": None, "lnet_s": None}, {}))
    monkeypatch.setattr(api, "finetune", lambda *a, **k: pytest.fail("ANet was trained"))
    monkeypatch.setattr(api, "pretrain_anet", lambda *a, **k: pytest.fail("ANet was trained"))
    recipe = reproduce.merge(reproduce.resolve_recipe(True, None), {"anet_init": paths})
    nets, cfg = reproduce.train_networks("root", None, str(tmp_path / "work"), recipe,
                                         reproduce.Timer(), seed=0)
    assert isinstance(nets["anet"], AttributeEnsemble)
    for member, k in zip(nets["anet"].members, (0, 1), strict=True):
        torch.testing.assert_close(member.fc.weight, trained_like(k).fc.weight)
    assert cfg["attributes"] == list(CELEBA_40) and cfg["preprocess"] == load_bundle(
        paths[0]).config["preprocess"]
    one, _ = reproduce.train_networks("root", None, str(tmp_path / "work"),
                                      reproduce.merge(recipe, {"anet_init": paths[0]}),
                                      reproduce.Timer(), seed=0)
    assert isinstance(one["anet"], ANet)
    other = build_bundle("wild-smoke", attributes=["Smiling", "Male"], seed=2)
    save_bundle(tmp_path / "other", other)
    with pytest.raises(RecipeError, match="other attributes"):
        reproduce.train_networks("root", None, str(tmp_path / "work"),
                                 reproduce.merge(recipe, {"anet_init": [paths[0],
                                                                        str(tmp_path / "other")]}),
                                 reproduce.Timer(), seed=0)


def test_the_recipe_bench_reads_several_bundles_as_one_ensemble(tmp_path):
    """`bench/celeba_recipe.py --crossfit --model A B` measures the ensemble reproduce would
    build from those runs' ANets (the choice of ``anet_members`` is made on val with it), and
    caches its features apart from either member's."""
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location(
        "bench_celeba_recipe", os.path.join(root, "bench", "celeba_recipe.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    paths = saved_runs(tmp_path)
    one, key_one = bench.load_models(paths[:1])
    both, key_both = bench.load_models(paths)
    assert isinstance(one.anet, ANet) and isinstance(both.anet, AttributeEnsemble)
    assert key_both.startswith(key_one) and key_both != key_one
    assert both.heads is None  # the members' tag layers, averaged, score it
    # a finished bundle's heads (fit on val) never stand in for the tag layer: they would leak
    # val into the figures that choose on val
    finished = load_bundle(paths[0])
    finished.heads = {"weight": np.ones((40, 16), np.float32), "bias": np.zeros(40, np.float32)}
    save_bundle(tmp_path / "finished", finished)
    read, _ = bench.load_models([str(tmp_path / "finished")])
    weight, _, kind = read.head_arrays()
    assert kind == "anet attribute layer"
    np.testing.assert_array_equal(weight, read.anet.attribute_head.weight.detach().numpy())
