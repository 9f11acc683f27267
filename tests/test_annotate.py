"""The annotate job end to end on a local Ray: row accounting, bad input, resume, actor kill."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from test_decode import encode, png_declaring  # the bad-input builders the decoder is tested with

from faceattr_ray.bundle import save_bundle
from faceattr_ray.presets import build_bundle

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("bundle") / "model")
    save_bundle(path, build_bundle("tiny", attributes=["Smiling", "Eyeglasses", "Male"]))
    return path


def scenes(folder, count: int, seed: int = 0) -> list[str]:
    from faceattr_ray.data.synthetic import write_wild

    write_wild(str(folder), count=count, identities=4, seed=seed, size=(96, 80))
    img_dir = os.path.join(str(folder), "img_celeba")
    return sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir))


def write_bad_inputs(folder) -> dict[str, str]:
    """One file per kind of awkward input; returns {file name: 'error' or 'decodes'}."""
    os.makedirs(folder, exist_ok=True)
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8))
    jpeg = encode(rgb, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees: a 60x40 file shows as 40x60
    files = {
        "zero.jpg": (b"", "error"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "error"),
        "random.jpg": (np.random.default_rng(1).bytes(500), "error"),
        "text.png": (b"this is not an image\n", "error"),
        "bomb.png": (png_declaring(50000, 50000), "error"),
        "sixteen.png": (encode(Image.fromarray(np.full((30, 30), 40000, np.uint16)), "PNG"),
                        "decodes"),
        "gray.jpg": (encode(rgb.convert("L"), "JPEG"), "decodes"),
        "cmyk.jpg": (encode(rgb.convert("CMYK"), "JPEG"), "decodes"),
        "rgba.png": (encode(rgb.convert("RGBA"), "PNG"), "decodes"),
        "palette.png": (encode(rgb.convert("P"), "PNG"), "decodes"),
        "animated.gif": (encode(rgb.convert("P"), "GIF", save_all=True,
                                append_images=[rgb.convert("P")]), "decodes"),
        "one.png": (encode(Image.new("RGB", (1, 1)), "PNG"), "decodes"),
        "large.jpg": (encode(Image.new("RGB", (4000, 3000), (90, 120, 150)), "JPEG"),
                      "decodes"),
        "rotated.jpg": (encode(rgb, "JPEG", exif=exif), "decodes"),
        "with space, comma é.jpg": (jpeg, "decodes"),
    }  # fmt: skip
    for name, (data, _) in files.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    os.symlink(os.path.join(folder, "gone.jpg"), os.path.join(folder, "broken-link.jpg"))
    expected = {name: outcome for name, (_, outcome) in files.items()}
    expected["broken-link.jpg"] = "error"
    return expected


def read_rows(output: str) -> list[dict]:
    import pyarrow.dataset as pads

    return pads.dataset(output, format="parquet").to_table().to_pylist()


def test_every_input_gets_a_row_and_bad_files_become_error_rows(local_ray, model, tmp_path):
    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate

    folder = tmp_path / "in"
    good = scenes(folder / "scenes", 6)
    expected = write_bad_inputs(folder / "bad")
    out = str(tmp_path / "out")
    summary = annotate([str(folder)], model, out, AnnotateOptions(batch_size=4))

    rows = read_rows(out)
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows) == len(good) + len(expected) == summary["images"]
    for name, outcome in expected.items():
        row = by_path[os.path.join(str(folder / "bad"), name)]
        if outcome == "error":
            assert row["status"] == "error" and row["error"], name
        else:
            assert row["status"] in ("ok", "no_face"), (name, row["error"])
    for path in good:
        assert by_path[path]["status"] in ("ok", "no_face")
    rotated = by_path[os.path.join(str(folder / "bad"), "rotated.jpg")]
    assert (rotated["image_width"], rotated["image_height"]) == (40, 60)
    large = by_path[os.path.join(str(folder / "bad"), "large.jpg")]
    assert (large["image_width"], large["image_height"]) == (4000, 3000)
    # Boxes are in the original image's pixels, even after the working-size shrink: the model
    # sees the image draft-decoded at a quarter (1000 px), and its box comes back scaled by
    # 4000 / 1000.
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.data.decode import decode_reduced
    from faceattr_ray.pipeline.annotate import WORK_MAX_SIDE, WORK_MIN_SIDE
    from faceattr_ray.predictor import Predictor

    with open(large["path"], "rb") as f:
        work, (w, _) = decode_reduced(f.read(), WORK_MAX_SIDE, WORK_MIN_SIDE)
    assert work.shape[1] == 1000 and w == 4000
    (face,) = Predictor(load_bundle(model), "cpu", "lnet").predict([work])[0].faces
    np.testing.assert_allclose(large["box"], np.array(face.box) * w / 1000, rtol=1e-4,
                               atol=0.05)
    x1, y1, x2, y2 = large["box"]
    assert 0 <= x1 < x2 <= 4000 and 0 <= y1 < y2 <= 3000
    assert summary["errors"] == sum(v == "error" for v in expected.values())
    with open(os.path.join(out, "_SUMMARY.json")) as f:
        assert json.load(f)["images"] == len(by_path)


def test_output_reads_back_in_pandas_and_duckdb_with_metadata(local_ray, model, tmp_path):
    import duckdb
    import pandas as pd

    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate

    paths = scenes(tmp_path / "in", 5)
    out = str(tmp_path / "out")
    annotate([str(tmp_path / "in")], model, out, AnnotateOptions(batch_size=2, all_faces=True))

    df = pd.read_parquet(out)
    assert set(df["path"]) == set(paths)
    assert {"Smiling", "Eyeglasses", "Male", "box", "face_score", "status"} <= set(df.columns)
    con = duckdb.connect()
    n_paths, n_rows = con.execute(
        f"SELECT count(DISTINCT path), count(*) FROM read_parquet('{out}/*.parquet')"
    ).fetchone()
    assert n_paths == len(paths) and n_rows == len(df)
    files = [f for f in os.listdir(out) if f.endswith(".parquet")]
    meta = pq.read_schema(os.path.join(out, files[0])).metadata
    assert json.loads(meta[b"faceattr_ray.attributes"]) == ["Smiling", "Eyeglasses", "Male"]
    assert b"faceattr_ray.version" in meta and b"faceattr_ray.model" in meta


def test_features_output_feeds_train_heads(local_ray, model, tmp_path):
    import pandas as pd

    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.cli import main
    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate

    paths = scenes(tmp_path / "in", 12)
    out = str(tmp_path / "feats")
    annotate([str(tmp_path / "in")], model, out, AnnotateOptions(batch_size=4, features=True))
    df = pd.read_parquet(out)
    assert len(df["features"].iloc[0]) == load_bundle(model).anet.config.feature_dim
    # A new attribute set, unknown to CelebA: one label per image, alternating.
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"path": paths, "Shiny": [i % 2 for i in range(len(paths))]}).to_csv(
        labels, index=False)
    new = str(tmp_path / "retrained")
    rc = main(["train", "heads", "--features", out, "--labels", str(labels), "--out", new,
               "--base-model", model, "--C", "1.0"])  # fmt: skip
    assert rc == 0
    retrained = load_bundle(new)
    assert retrained.attributes == ["Shiny"] and retrained.heads["weight"].shape[0] == 1


def _ray_processes_under(tmp: str) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if tmp.encode() in f.read():
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def _complete_files(out: str) -> int:
    """Parquet files in ``out`` that are whole (one still being written does not parse)."""
    n = 0
    for f in os.listdir(out) if os.path.isdir(out) else []:
        with contextlib.suppress(Exception):
            n += f.endswith(".parquet") and pq.read_metadata(os.path.join(out, f)) is not None
    return n


def test_killed_job_resumes_without_duplicates_or_gaps(model, tmp_path):
    # Enough images that the first written file comes well before the last, even on a busy box.
    paths = scenes(tmp_path / "in", 120)
    out = str(tmp_path / "out")
    ray_tmp = f"/tmp/fa-resume-{os.getpid()}"
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1", RAY_TMPDIR=ray_tmp)
    cmd = [sys.executable, "-m", "faceattr_ray.cli", "annotate", str(tmp_path / "in"),
           "--model", model, "--output", out, "--batch-size", "2", "--num-cpus", "4"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if _complete_files(out):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the job finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        for pid in _ray_processes_under(ray_tmp):  # the killed driver's own Ray, nothing else
            os.kill(pid, signal.SIGKILL)
    from faceattr_ray.pipeline.annotate import completed_paths

    partial = completed_paths(out)  # what the rerun will skip (a file cut short is dropped)
    assert 0 < len(partial) < len(paths)

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert "already done" in rerun.stdout
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(paths)  # each once: no duplicate, no gap


def _kill_actor_once(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first annotate actor process seen (Ray titles it after the class)."""
    while not stop.is_set() and not killed:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
            except OSError:
                continue
            if b"AnnotateActor" in cmdline and b"ray::" in cmdline:
                time.sleep(1.0)  # let it take work first, so the kill lands mid-run
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.1)


def test_actor_killed_mid_run_is_replaced_and_output_exact(local_ray, model, tmp_path):
    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate

    paths = scenes(tmp_path / "in", 40)
    out = str(tmp_path / "out")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_actor_once, args=(stop, killed), daemon=True)
    killer.start()
    try:
        annotate([str(tmp_path / "in")], model, out, AnnotateOptions(batch_size=2))
    finally:
        stop.set()
        killer.join()
    assert killed, "no actor process was found to kill"
    rows = read_rows(out)
    assert sorted(r["path"] for r in rows) == sorted(paths)
    assert all(r["status"] in ("ok", "no_face") for r in rows)


def test_split_pools_give_the_same_table_as_one_pool(local_ray, model, tmp_path):
    """`--stages split` (LNets | ANet + heads in two pools) changes where work runs, not results."""
    import pandas as pd

    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate

    folder = tmp_path / "in"
    scenes(folder / "scenes", 6)
    write_bad_inputs(folder / "bad")
    tables = {}
    for stages in ("one", "split"):
        out = str(tmp_path / stages)
        annotate([str(folder)], model, out, AnnotateOptions(batch_size=4, all_faces=True,
                                                            features=True, stages=stages))
        df = pd.read_parquet(out).sort_values(["path", "face_index"], na_position="first")
        tables[stages] = df.reset_index(drop=True)
    one, split = tables["one"], tables["split"]
    assert len(one) == len(split) and (one["status"] == "ok").sum() > 0
    _assert_same_image_results(model, sorted(str(p) for p in folder.rglob("*.*")))
    for col in ("path", "status", "error", "face_index", "image_width", "image_height"):
        assert one[col].equals(split[col]), col
    ok = one["status"] == "ok"
    np.testing.assert_allclose(np.stack(one.loc[ok, "box"]), np.stack(split.loc[ok, "box"]),
                               atol=1e-3)
    for col in ("face_score", "Smiling", "Eyeglasses", "Male"):
        np.testing.assert_allclose(one.loc[ok, col], split.loc[ok, col], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.stack(one.loc[ok, "features"]),
                               np.stack(split.loc[ok, "features"]), rtol=1e-5, atol=1e-5)


def _assert_same_image_results(model: str, paths: list[str]) -> None:
    """The per-image results behind the two tables, in-process: the same faces and the same
    image sizes (the working size the cascade saw) from one pool and from the split pools."""
    from faceattr_ray.pipeline.annotate import (
        AnnotateActor,
        DescribeActor,
        LocalizeActor,
        decode_batch,
    )

    batch = decode_batch({"path": np.array(paths)}, max_pixels=None)
    one = AnnotateActor(model, "lnet", all_faces=True, with_features=True).results(batch)
    middle = LocalizeActor(model, "lnet", all_faces=True)(batch)
    split = DescribeActor(model, "lnet", with_features=True).results(middle)
    assert sorted(one) == sorted(split) and len(one) > 0
    for i, a in one.items():
        b = split[i]
        assert (a.width, a.height) == (b.width, b.height) == (
            batch["work_width"][i], batch["work_height"][i]), paths[i]
        assert len(a.faces) == len(b.faces)
        for fa, fb in zip(a.faces, b.faces, strict=True):
            np.testing.assert_allclose(fa.box, fb.box, atol=1e-3)
            np.testing.assert_allclose(fa.attributes, fb.attributes, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(fa.features, fb.features, rtol=1e-5, atol=1e-5)


# What the actors' threads see: run in a fresh process whose OMP_NUM_THREADS is 1, as Ray sets
# it for a 1.5-CPU actor. OpenMP's thread count is per thread, and torch.get_num_threads()
# does not show what oneDNN's convolutions get, so this asks torch's OpenMP runtime itself.
_THREADS_SEEN = """
import ctypes, json, sys, threading
import numpy as np
import torch
from faceattr_ray.pipeline.annotate import AnnotateActor, LocalizeActor, decode_batch

omp = ctypes.CDLL(next(line.split()[-1] for line in open("/proc/self/maps")
                       if "libgomp" in line or "libiomp" in line))
model, paths = sys.argv[1], sys.argv[2:]
batch = decode_batch({"path": np.array(paths)}, max_pixels=None)
seen = {}
def bare():
    seen["a thread of its own"] = omp.omp_get_max_threads()
for actor, method in ((AnnotateActor(model, "lnet", False, False, threads=2), "predict"),
                      (LocalizeActor(model, "lnet", False, threads=2), "localize")):
    name = type(actor).__name__
    def spy(images, real=getattr(actor.predictor, method), name=name):
        seen[name] = omp.omp_get_max_threads()
        return real(images)
    setattr(actor.predictor, method, spy)
    def call(actor=actor, name=name):
        seen[name + " rows"] = len(actor(batch)["path"])
    for target in (bare, call):  # as Ray Data calls it: not the constructor's thread
        t = threading.Thread(target=target); t.start(); t.join()
print(json.dumps(seen))
"""


def test_actors_run_their_batches_on_the_threads_they_were_given(model, tmp_path):
    """Ray Data calls an actor's batches from another thread than its constructor's; there
    the convolutions must still get the actor's thread count, not Ray's OMP_NUM_THREADS (1),
    which ran them on one core of two (README, results: Speed and scale, twelfth round)."""
    paths = scenes(tmp_path / "scenes", 2)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", _THREADS_SEEN, model, *paths], env=env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["a thread of its own"] == 1  # what a batch's thread got before the fix
    assert seen["AnnotateActor"] == seen["LocalizeActor"] == 2
    assert seen["AnnotateActor rows"] == seen["LocalizeActor rows"] == 2
