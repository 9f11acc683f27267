"""`faceattr-ray annotate` refuses bad input before any work: one line naming what is wrong,
nothing written, and Ray never started (the checks need no cluster, so this file starts none)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from faceattr_ray.bundle import save_bundle
from faceattr_ray.cli import main
from faceattr_ray.presets import build_bundle


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("bundle") / "model")
    save_bundle(path, build_bundle("tiny", attributes=["Smiling", "Male"]))
    return path


@pytest.fixture
def photos(tmp_path) -> str:
    folder = tmp_path / "photos"
    folder.mkdir()
    image = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    for name in ("a.jpg", "b.png"):
        Image.fromarray(image).save(folder / name)
    return str(folder)


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if the command starts (or joins) Ray."""
    import faceattr_ray.runtime

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started before the input was checked")

    monkeypatch.setattr(faceattr_ray.runtime, "init_ray", refuse)


def _listing(folder: str) -> dict[str, int]:
    return {name: os.path.getsize(os.path.join(folder, name)) for name in os.listdir(folder)}


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("resume", ["auto", "never"])
def test_output_folder_holding_other_files_is_refused_and_left_alone(model, photos, tmp_path,
                                                                     capsys, no_ray, resume):
    before = _listing(photos)
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.new("RGB", (30, 30)).save(inputs / "x.jpg")
    # A user's photo folder, and the input folder itself, as --output.
    for output, inp in ((photos, str(inputs)), (photos, photos)):
        rc = main(["annotate", inp, "--model", model, "--output", output, "--resume", resume])
        assert rc == 2
        line = _one_line_error(capsys)
        assert line.startswith("faceattr-ray annotate: error: ") and photos in line
        assert "not annotate results" in line and "a.jpg" in line
        assert _listing(photos) == before  # nothing written, nothing deleted


def test_output_that_is_a_file_is_refused(model, photos, tmp_path, capsys, no_ray):
    target = os.path.join(photos, "a.jpg")
    assert main(["annotate", photos, "--model", model, "--output", target]) == 2
    assert "must be a folder" in _one_line_error(capsys)


@pytest.mark.parametrize("flag,value", [
    ("--actors", "-1"), ("--actors", "0"), ("--batch-size", "0"), ("--num-gpus", "-1"),
    ("--decode-cpus", "0"), ("--max-pixels", "0"), ("--num-cpus", "0"), ("--batch-size", "x"),
    ("--limit", "0"), ("--limit", "-3"), ("--precision", "fp8"),
])
def test_every_numeric_flag_out_of_range_is_a_one_line_error(model, photos, tmp_path, capsys,
                                                             no_ray, flag, value):
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_:
        main(["annotate", photos, "--model", model, "--output", out, flag, value])
    assert exit_.value.code == 2
    line = _one_line_error(capsys)
    assert line.startswith(f"faceattr-ray annotate: error: argument {flag}: ")
    assert not os.path.exists(out)


def test_missing_inputs_and_bad_models_are_found_before_ray(model, photos, tmp_path, capsys,
                                                           no_ray):
    out = str(tmp_path / "out")
    assert main(["annotate", str(tmp_path / "nope"), "--model", model, "--output", out]) == 2
    assert "input not found" in _one_line_error(capsys)
    assert main(["annotate", photos, "--model", str(tmp_path), "--output", out]) == 2
    assert "config.json: not found" in _one_line_error(capsys)
    no_lnets = build_bundle("tiny")
    no_lnets.lnet_o = no_lnets.lnet_s = None
    save_bundle(tmp_path / "anet_only", no_lnets)
    assert main(["annotate", photos, "--model", str(tmp_path / "anet_only"),
                 "--output", out]) == 2
    assert "no LNets" in _one_line_error(capsys)
    # A streamed manifest is checked before Ray too, in one pass: an empty entry names its line.
    (tmp_path / "list.csv").write_text(f"path\n{photos}/a.jpg\n\"\"\n")
    assert main(["annotate", str(tmp_path / "list.csv"), "--model", model, "--output", out]) == 2
    assert "list.csv:3: empty path" in _one_line_error(capsys)
    (tmp_path / "list.parquet").write_bytes(b"PAR1 not really")
    assert main(["annotate", str(tmp_path / "list.parquet"), "--model", model,
                 "--output", out]) == 2
    assert "not a readable Parquet file" in _one_line_error(capsys)
    assert main(["extract-features", photos, "--model", model, "--output", photos]) == 2
    assert "not annotate results" in _one_line_error(capsys)
    assert not os.path.exists(out)


def test_library_options_are_checked_too():
    from faceattr_ray.errors import DataError
    from faceattr_ray.pipeline.annotate import AnnotateOptions

    for bad in ({"actors": -1}, {"batch_size": 0}, {"num_gpus": -0.5}, {"decode_cpus": 0},
                {"stages": "three"}, {"localizer": "eyes"}, {"limit": 0},
                {"precision": "int8"}):
        with pytest.raises(DataError, match="--"):
            AnnotateOptions(**bad).check()
    AnnotateOptions(actors=2, num_gpus=0.5).check()


def test_an_output_folder_of_results_is_accepted(tmp_path):
    from faceattr_ray.pipeline.annotate import check_output

    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(b"")
    (folder / "_SUMMARY.json").write_text("{}")
    check_output(str(folder))
    check_output(str(tmp_path / "new"))  # created by the job
