"""The real group-photo set of `bench/localization.py --pascal-faces` (`bench/_pascal_faces.py`):
dlib's imglab boxes read as [x1, y1, x2, y2], ignored boxes and unboxed photos left out, the
download checked by SHA-256 before anything is unpacked, fetched once. Offline: the release is a
tarball the test builds, served from a file:// URL."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
spec = importlib.util.spec_from_file_location("pascal_faces",
                                              os.path.join(ROOT, "bench", "_pascal_faces.py"))
pascal_faces = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pascal_faces)

TRAINING = b"""<?xml version='1.0' encoding='ISO-8859-1'?>
<dataset><images>
  <image file='group.jpg'>
    <box top='90' left='194' width='37' height='37'/>
    <box top='10' left='20' width='12' height='12' ignore='1'/>
  </image>
</images></dataset>"""
TESTING = b"""<?xml version='1.0' encoding='ISO-8859-1'?>
<dataset><images>
  <image file='portrait.jpg'><box top='79' left='145' width='76' height='76'/></image>
  <image file='group.jpg'><box top='214' left='125' width='90' height='91'/></image>
</images></dataset>"""


def jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (375, 500, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def release(tmp_path) -> tuple[str, str]:
    """A release tarball with dlib's layout: two boxed photos, one unboxed, the two XML files,
    and a file elsewhere in the tree; its file:// URL and SHA-256."""
    path = tmp_path / "release.tar.gz"
    members = {"group.jpg": jpeg(0), "portrait.jpg": jpeg(1), "bald_guys.jpg": jpeg(2),
               "training.xml": TRAINING, "testing.xml": TESTING}
    with tarfile.open(path, "w:gz") as tar:
        for name, data in {**{pascal_faces.MEMBER_DIR + k: v for k, v in members.items()},
                           "dlib-19.5.0/README.txt": b"not a photo"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def test_imglab_boxes_become_corner_boxes_and_ignored_ones_are_dropped():
    assert pascal_faces.imglab_boxes(TRAINING) == {"group.jpg": [[194, 90, 231, 127]]}


def test_the_set_holds_the_boxed_photos_with_both_files_boxes(release, tmp_path):
    url, sha = release
    folder, boxes_path = pascal_faces.fetch(str(tmp_path / "set"), url=url, sha256=sha)
    with open(boxes_path) as f:
        boxes = json.load(f)
    assert boxes == {"group.jpg": [[194, 90, 231, 127], [125, 214, 215, 305]],
                     "portrait.jpg": [[145, 79, 221, 155]]}
    # the unboxed photo (faces nobody boxed would read as false detections) is left out
    assert sorted(os.listdir(folder)) == ["boxes.json", "group.jpg", "portrait.jpg"]
    with Image.open(os.path.join(folder, "group.jpg")) as im:
        assert im.size == (500, 375)
    # fetched once: a second call reads the folder and never opens the URL
    assert pascal_faces.fetch(folder, url="file:///nonexistent", sha256="0") == (folder,
                                                                                 boxes_path)


def test_a_download_with_another_sha256_is_refused_and_nothing_is_written(release, tmp_path):
    url, _ = release
    with pytest.raises(RuntimeError, match="SHA-256"):
        pascal_faces.fetch(str(tmp_path / "set"), url=url, sha256="0" * 64)
    assert os.listdir(tmp_path / "set") == []


def test_the_localization_bench_reads_the_set_as_its_pascal_rows(release, tmp_path):
    from test_bench_smoke import _smoke

    url, sha = release
    folder, _ = pascal_faces.fetch(str(tmp_path / "set"), url=url, sha256=sha)
    lines = _smoke("localization.py", "--pascal-faces", folder)
    assert "pascal 2 images / 3 faces" in lines[0]
    result = json.loads(lines[-1])
    for loc in ("lnet", "cascade"):
        assert 0.0 <= result[f"pascal_{loc}_recall_iou50"] <= 1.0
        assert result[f"pascal_{loc}_false_per_image"] >= 0
