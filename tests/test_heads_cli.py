"""`faceattr-ray train heads`: features Parquet + any label table -> heads in a bundle."""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faceattr_ray.cli import main

F = 16
NAMES = ["Asian", "Flash", "Smiling"]  # a new attribute set: two names CelebA lacks


def _labels_and_features(n=240, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, F)).astype(np.float32)
    w = np.random.default_rng(7).normal(size=(3, F))
    y = z @ w.T + rng.normal(scale=0.5, size=(n, 3)) > 0
    return z, y


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory):
    from faceattr_ray.bundle import Bundle, save_bundle
    from faceattr_ray.models import ANet, ANetConfig

    path = tmp_path_factory.mktemp("base") / "bundle"
    anet = ANet(ANetConfig(channels=(4, 4, 4, 4), feature_dim=F, num_attributes=2))
    save_bundle(path, Bundle(None, {}, ["Male", "Young"], None, None, anet))
    return str(path)


def write_inputs(tmp_path, layout="mean", n=240, dim=F):
    """Features as the annotate job writes them (plus extra rows), labels in mixed encodings."""
    z, y = _labels_and_features(n)
    patches = 2
    x = np.repeat(z[:, None, :], patches, 1) + np.float32(0.1) * np.arange(patches)[None, :, None]
    if dim != F:
        x = np.zeros((n, patches, dim), np.float32)
    paths = [f"/data/images/{i:05d}.jpg" for i in range(n)]
    rows = {
        "path": paths + ["/data/images/no_face.jpg", "/data/images/extra.jpg"],
        "status": ["ok"] * n + ["no_face", "ok"],
        "face_index": [0] * n + [None, 0],
    }
    feats = [list(v) for v in x.mean(1)] + [None, list(np.ones(dim, np.float32))]
    columns = {**rows, "features": pa.array(feats, pa.list_(pa.float32()))}
    if layout == "flat":
        columns["patch_features"] = pa.array(
            [list(v.ravel()) for v in x] + [None, list(np.ones(2 * dim, np.float32))],
            pa.list_(pa.float32()))
        columns["patches"] = [patches] * (n + 2)
    elif layout == "nested":
        columns["patch_features"] = pa.array(
            [[list(p) for p in v] for v in x] + [None, [list(np.ones(dim))] * 2],
            pa.list_(pa.list_(pa.float32())))
    features = tmp_path / "features.parquet"
    pq.write_table(pa.table(columns), features)
    # The table names images by file name only (joined by basename), has one image the
    # features lack, and writes each attribute its own way: -1/1, 0/1, true/false, blanks.
    lines = ["path,Asian,Flash,Smiling"]
    for i in range(n):
        a = "1" if y[i, 0] else "-1"
        f = "" if i % 10 == 0 else ("1" if y[i, 1] else "0")
        s = "true" if y[i, 2] else "false"
        lines.append(f"{i:05d}.jpg,{a},{f},{s}")
    lines.append("missing.jpg,1,1,true")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(lines) + "\n")
    return str(features), str(labels), y


def train(features, labels, out, *extra):
    return main(["train", "heads", "--features", features, "--labels", labels, "--out", out,
                 *extra])


@pytest.mark.parametrize("layout", ["mean", "flat", "nested"])
def test_train_heads_into_a_copy_of_the_base_bundle(tmp_path, base_bundle, capsys, layout):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.heads import LinearHeads

    features, labels, y = write_inputs(tmp_path, layout)
    out = str(tmp_path / "out")
    assert train(features, labels, out, "--base-model", base_bundle) == 0
    text = capsys.readouterr().out
    assert "matched 240 (240 by file name)" in text
    assert "unmatched: 1 feature rows, 1 label rows" in text
    assert "labels missing among matched: Flash 24" in text
    bundle = load_bundle(out)
    assert bundle.attributes == NAMES
    heads = LinearHeads.from_arrays(bundle.attributes, bundle.heads)
    z, _ = _labels_and_features()
    assert ((heads.decision_function(z) > 0) == y).mean() > 0.9
    info = bundle.config["heads_training"]
    assert info["join"]["matched"] == 240 and len(info["C"]) == 3
    assert info["join"]["images_with_features"] == 240


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lfwa_plus_protocol_ray_solver_matches_liblinear(tmp_path, base_bundle, capsys,
                                                         monkeypatch):
    import json

    import faceattr_ray.heads.features

    # Several Ray Data blocks, one of them holding only the row without a face.
    monkeypatch.setattr(faceattr_ray.heads.features, "RAY_BATCH_ROWS", 200)
    features, labels, _ = write_inputs(tmp_path, "flat", n=600)
    results = {}
    for solver in ("liblinear", "ray"):
        out = str(tmp_path / solver)
        assert train(features, labels, out, "--base-model", base_bundle, "--solver", solver,
                     "--protocol", "lfwa-plus", "--num-cpus", "4") == 0
        text = capsys.readouterr().out
        assert "tested on the rest (400 images)" in text and "mean balanced accuracy" in text
        with open(f"{out}/config.json") as f:
            results[solver] = json.load(f)["heads_training"]["test"]
    import ray

    ray.shutdown()
    a = results["liblinear"]["mean"]["balanced_accuracy"]
    b = results["ray"]["mean"]["balanced_accuracy"]
    assert a > 0.85 and abs(a - b) <= 0.005


def test_dimension_mismatch_with_the_base_model_is_a_clear_error(tmp_path, base_bundle, capsys):
    features, labels, _ = write_inputs(tmp_path, dim=8)
    assert train(features, labels, str(tmp_path / "out"), "--base-model", base_bundle) == 2
    err = capsys.readouterr().err
    assert "features have dimension 8" in err and "makes 16" in err and features in err


def test_without_base_model_out_must_be_a_bundle(tmp_path, base_bundle, capsys):
    features, labels, _ = write_inputs(tmp_path)
    assert train(features, labels, str(tmp_path / "new")) == 2
    assert "--base-model" in capsys.readouterr().err
    # An existing bundle is updated in place.
    import shutil

    out = str(tmp_path / "existing")
    shutil.copytree(base_bundle, out)
    assert train(features, labels, out, "--C", "0.1") == 0


def test_bad_label_value_names_the_file_and_line(tmp_path, base_bundle, capsys):
    features, labels, _ = write_inputs(tmp_path)
    with open(labels, "a") as f:
        f.write("x.jpg,2,1,1\n")
    assert train(features, labels, str(tmp_path / "o"), "--base-model", base_bundle) == 2
    assert f"{labels}:243" in capsys.readouterr().err
