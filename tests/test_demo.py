"""`faceattr-ray demo` end to end, as a user runs it: a fresh process, its own local Ray."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow.dataset as pads
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


def test_demo_annotates_real_photos_and_generated_people_with_the_bundled_model(tmp_path):
    from faceattr_ray.crops import box_iou
    from faceattr_ray.data.sample_photos import NO_PEOPLE, PEOPLE, sample_photo_paths

    out = tmp_path / "demo-out"
    env = dict(os.environ, RAY_DATA_DISABLE_PROGRESS_BARS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "faceattr_ray.cli", "demo", "--out", str(out), "--images", "2",
         "--num-cpus", "4"],
        capture_output=True, text=True, timeout=280, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    images = sorted(os.listdir(out / "images"))
    photos = set(sample_photo_paths())
    assert photos <= set(PEOPLE) | set(NO_PEOPLE) and {"astronaut.png", "camera.png"} <= photos
    assert set(images) == photos | {"people_001.jpg", "people_002.jpg"}
    table = pads.dataset(str(out / "annotations"), format="parquet").to_table().to_pandas()
    assert set(table["path"].map(os.path.basename)) == set(images)  # every image has rows
    assert set(table["status"]) <= {"ok", "no_face"}  # all readable: no error rows
    per_image = table.groupby("path")["status"].agg(list)
    for statuses in per_image:  # an image is either its faces (ok) or a single no_face row
        assert statuses == ["no_face"] or set(statuses) == {"ok"}
    # The bundled model's box sits on the astronaut's face (a hand-drawn box).
    astronaut = table[(table["path"].map(os.path.basename) == "astronaut.png")
                      & (table["status"] == "ok")]
    assert len(astronaut) >= 1
    ious = box_iou(np.stack(astronaut["box"].to_numpy()), np.array([PEOPLE["astronaut.png"][2][0]]))
    assert ious.max() >= 0.5
    # The summary names each image and where the table and the overlay are.
    for name in images:
        assert name in proc.stdout
    assert f"table    {out / 'annotations'}" in proc.stdout
    assert f"overlay  {out / 'overlay.png'}" in proc.stdout
    assert (out / "overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
