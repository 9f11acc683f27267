"""A manifest as annotate's input is streamed (issue 20): the same table as annotating the
folder, whatever the manifest's format; repeated entries give one row; corrupt files are error
rows; --limit stops early and a rerun finishes the rest without duplicates or gaps."""

from __future__ import annotations

import csv
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_annotate import model, read_rows, scenes  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> tuple[str, list[str]]:
    """A folder of scenes plus a corrupt JPEG; (folder, its files sorted)."""
    folder = tmp_path_factory.mktemp("photos")
    paths = scenes(folder / "scenes", 5)
    bad = os.path.join(os.path.dirname(paths[0]), "corrupt.jpg")
    with open(bad, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not a jpeg after all")
    return os.path.dirname(paths[0]), sorted([*paths, bad])


def write_manifests(folder: str, paths: list[str]) -> dict[str, str]:
    """The same entries as .txt, .csv and .parquet, relative to the manifest, one repeated."""
    names = [os.path.relpath(p, folder) for p in paths] + [os.path.relpath(paths[0], folder)]
    out = {}
    out["txt"] = os.path.join(folder, "list.txt")
    with open(out["txt"], "w") as f:
        f.write("# streamed\n" + "\n".join(names) + "\n")
    out["csv"] = os.path.join(folder, "list.csv")
    with open(out["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "path"])
        w.writerows(enumerate(names))
    out["parquet"] = os.path.join(folder, "list.parquet")
    pq.write_table(pa.table({"path": names}), out["parquet"], row_group_size=2)
    return out


def by_path(output: str) -> dict[str, dict]:
    rows = read_rows(output)
    table = {r["path"]: r for r in rows}
    assert len(table) == len(rows)  # one row per image (dominant face): no duplicates
    return table


def test_streamed_manifests_give_the_folders_table(local_ray, model, photos, tmp_path):  # noqa: F811
    from faceattr_ray.pipeline.annotate import (
        AnnotateOptions,
        annotate,
        plan_annotate,
        read_batch_clock,
    )
    from faceattr_ray.pipeline.manifest import pending_entries

    folder, paths = photos
    annotate([folder], model, str(tmp_path / "folder"), AnnotateOptions(batch_size=2))
    want = by_path(str(tmp_path / "folder"))
    assert sorted(want) == paths
    assert want[os.path.join(folder, "corrupt.jpg")]["status"] == "error"
    manifests = write_manifests(str(tmp_path), paths)
    for fmt, manifest in manifests.items():
        plan = plan_annotate([manifest], model, str(tmp_path / fmt), AnnotateOptions())
        assert plan.pending is None and plan.manifest == manifest  # streamed, not listed
        assert plan.inputs == len(paths) + 1  # entries, the repeated one included
        # What the pipeline's read task streams: the formats differ only in how entries are
        # read, so each gives the same paths (in order, the repeat dropped); one format then
        # runs through Ray below, and its table must be the folder's.
        stream = [p for t in pending_entries(manifest, [], rows=2) for p in t["path"].to_pylist()]
        assert stream == paths, fmt
    clock = str(tmp_path / "clock")
    annotate([manifests["parquet"]], model, str(tmp_path / "parquet"),
             AnnotateOptions(batch_size=2, timing_log=clock))
    got = by_path(str(tmp_path / "parquet"))
    assert sorted(got) == sorted(want)
    for path, row in want.items():
        other = got[path]
        assert other["status"] == row["status"], path
        if row["status"] == "ok":
            np.testing.assert_allclose(other["box"], row["box"], atol=1e-3)
            assert other["face_score"] == pytest.approx(row["face_score"], abs=1e-5)
    # The actor logged each batch as it left (bench/annotate.py's steady state): every input.
    ticks = read_batch_clock(clock)
    assert len(ticks) >= 3 and sum(n for _, n in ticks) == len(paths)


def test_limit_then_rerun_finishes_a_streamed_manifest_exactly(local_ray, model, photos,  # noqa: F811
                                                                tmp_path):
    from faceattr_ray.pipeline.annotate import AnnotateOptions, annotate

    _, paths = photos
    manifest = write_manifests(str(tmp_path), paths)["csv"]
    out = str(tmp_path / "out")
    first = annotate([manifest], model, out, AnnotateOptions(batch_size=2, limit=3))
    assert first["images"] == first["processed"] == 3
    assert sorted(by_path(out)) == paths[:3]  # the manifest's order (here, sorted)
    second = annotate([manifest], model, out, AnnotateOptions(batch_size=2))
    assert second["processed"] == len(paths) - 3 and second["images"] == len(paths)
    assert sorted(by_path(out)) == paths  # every input once: no duplicates, no gaps
    third = annotate([manifest], model, out, AnnotateOptions(batch_size=2))
    assert third["processed"] == 0 and third["images"] == len(paths)


def test_the_stream_keeps_order_drops_repeats_and_done_paths_and_stops_at_the_limit(tmp_path):
    """`pending_entries`, what the read task runs, without Ray."""
    from faceattr_ray.pipeline.manifest import check_manifest, pending_entries

    names = [f"img{i:03d}.jpg" for i in range(50)]
    manifest = tmp_path / "list.txt"
    manifest.write_text("\n".join([*names, names[3], "# note", "", names[7]]) + "\n")
    assert check_manifest(str(manifest)) == 52  # entries, repeats included
    full = [str(tmp_path / n) for n in names]
    done = tmp_path / "done.parquet"
    pq.write_table(pa.table({"path": full[:5] + full[10:12]}), done)
    tables = list(pending_entries(str(manifest), [str(done)], rows=8))
    got = [p for t in tables for p in t["path"].to_pylist()]
    assert got == full[5:10] + full[12:]  # in order, each once, done ones skipped
    assert max(t.num_rows for t in tables) <= 8
    limited = [p for t in pending_entries(str(manifest), [str(done)], rows=8, limit=6)
               for p in t["path"].to_pylist()]
    assert limited == got[:6]
