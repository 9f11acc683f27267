"""Real group photos with hand-drawn face boxes, fetched from the package registry (issue 15).

dlib's source release 19.5.0 on PyPI carries, in its documentation, the example set of its
face detector: 9 photos of people from PASCAL VOC 2011 (group photos and portraits, 332-500 px,
43 faces of 37-109 px) with face boxes drawn by hand in dlib's imglab XML (training.xml and
testing.xml; both are read: we train nothing on them). These are the photos issue 15 asks for:
real group photos and portraits, faces 30-120 px in ~500x375 images. The set only measures:
nothing is chosen on it (README, *Localization in the wild*).

The release is 46 MB from files.pythonhosted.org (the registry pip uses), checked against its
SHA-256 before anything is read. The photos are PASCAL VOC's (Flickr images under their owners'
terms, for research use), the boxes dlib's (Boost Software License): they are kept in the folder
the caller names and never committed here.

    python bench/localization.py --pascal-faces ~/.cache/faceattr-ray/pascal-faces
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import xml.etree.ElementTree as ET

URL = ("https://files.pythonhosted.org/packages/82/68/"
       "3c471ddd73afb1378eee507d765bf186e724e8bc81eb44501a99345d89c7/dlib-19.5.0.tar.gz")
SHA256 = "b5896c7a51992441eac605395e07f2b31548376cadc1f392d93f69c821e6552e"
MEMBER_DIR = "dlib-19.5.0/docs/docs/cache/examples/faces/"
BOX_FILES = ("training.xml", "testing.xml")


def imglab_boxes(xml_text: str | bytes) -> dict[str, list[list[int]]]:
    """file name -> face boxes [x1, y1, x2, y2] of one imglab XML; boxes marked ignore='1'
    (faces the annotator left out: too small, cut off) are dropped."""
    boxes: dict[str, list[list[int]]] = {}
    for image in ET.fromstring(xml_text).iter("image"):
        kept = boxes.setdefault(os.path.basename(image.get("file")), [])
        for box in image.iter("box"):
            if box.get("ignore") == "1":
                continue
            left, top, width, height = (int(box.get(k)) for k in ("left", "top", "width",
                                                                   "height"))
            kept.append([left, top, left + width, top + height])
    return boxes


def fetch(dest: str, url: str = URL, sha256: str = SHA256) -> tuple[str, str]:
    """The photos in ``dest`` and their boxes JSON (``dest/boxes.json``, the format of
    `bench/localization.py --boxes`), downloaded and unpacked on the first call only.
    Raises RuntimeError when the download's SHA-256 is not ``sha256``."""
    boxes_path = os.path.join(dest, "boxes.json")
    if os.path.isfile(boxes_path):
        return dest, boxes_path
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pascal-faces-") as work:
        archive = os.path.join(work, "release.tar.gz")
        with urllib.request.urlopen(url, timeout=120) as response, open(archive, "wb") as f:
            shutil.copyfileobj(response, f)
        digest = hashlib.sha256()
        with open(archive, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != sha256:
            raise RuntimeError(f"{url}: SHA-256 {digest.hexdigest()} is not the expected "
                               f"{sha256}; nothing was unpacked")
        boxes: dict[str, list[list[int]]] = {}
        photos: dict[str, bytes] = {}
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name[len(MEMBER_DIR):]
                if not member.isfile() or not member.name.startswith(MEMBER_DIR) or "/" in name:
                    continue
                data = tar.extractfile(member).read()
                if name in BOX_FILES:
                    for photo, found in imglab_boxes(data).items():
                        boxes.setdefault(photo, []).extend(found)
                elif name.lower().endswith(".jpg"):
                    photos[name] = data
    missing = sorted(set(boxes) - set(photos))
    if not boxes or missing:
        raise RuntimeError(f"{url}: no boxes, or boxes for photos it lacks: {missing}")
    for name in boxes:  # only the annotated photos: the others have faces nobody boxed
        with open(os.path.join(dest, name), "wb") as f:
            f.write(photos[name])
    with open(boxes_path, "w") as f:
        json.dump(boxes, f, indent=1, sort_keys=True)
    return dest, boxes_path
