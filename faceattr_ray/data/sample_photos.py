"""Real photos that ship inside installed dependencies, with hand-drawn face boxes.

For the demo, the tests and the real-photo localization bench: no download, and the same
pictures on every machine. Boxes are tight face boxes (brow line or hairline to chin, cheek to
cheek), x1, y1, x2, y2 in the photo's pixels, drawn by hand on a 25-pixel grid.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
from PIL import Image

# name -> (package, path inside the package, face boxes)
PEOPLE = {
    "astronaut.png": ("skimage", "data/astronaut.png", [[174, 62, 264, 170]]),
    "camera.png": ("skimage", "data/camera.png", [[192, 110, 262, 196]]),
    "grace_hopper.jpg": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                         [[168, 135, 362, 318]]),
}
# Hand labels of those faces, in `evaluate --photos --labels` format (1 present, 0 absent).
LABELS = {
    "astronaut.png": {"Male": 0, "Smiling": 1, "Eyeglasses": 0, "Young": 1},
    "camera.png": {"Male": 1, "Smiling": 0, "Eyeglasses": 0, "Young": 1},
    "grace_hopper.jpg": {"Male": 0, "Smiling": 1, "Eyeglasses": 1, "Young": 0},
}
# Real photos without a person (a cat, a cup, a temple, a flower, a rocket): false positives.
NO_PEOPLE = {
    "chelsea.png": ("skimage", "data/chelsea.png"),
    "coffee.png": ("skimage", "data/coffee.png"),
    "rocket.jpg": ("skimage", "data/rocket.jpg"),
    "china.jpg": ("sklearn", "datasets/images/china.jpg"),
    "flower.jpg": ("sklearn", "datasets/images/flower.jpg"),
}


def _package_file(package: str, relative: str) -> str | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    return path if os.path.isfile(path) else None


def sample_photo_paths(people: bool = True, no_people: bool = True) -> dict[str, str]:
    """name -> path of each sample photo found in the installed packages."""
    chosen = {**(PEOPLE if people else {}), **(NO_PEOPLE if no_people else {})}
    out = {}
    for name, (package, relative, *_) in chosen.items():
        path = _package_file(package, relative)
        if path is not None:
            out[name] = path
    return out


def sample_boxes() -> dict[str, list[list[float]]]:
    """name -> hand-drawn face boxes (an empty list for the photos without people)."""
    return {**{n: [list(map(float, b)) for b in v[2]] for n, v in PEOPLE.items()},
            **{n: [] for n in NO_PEOPLE}}


def write_sample_photos(out: str, people: bool = True, no_people: bool = True) -> str:
    """Copy the sample photos into ``out`` as RGB files, with ``boxes.json`` beside them
    ({"file": [[x1, y1, x2, y2], ...]}, the format of ``bench/localization.py --boxes``) and
    ``labels.json`` (boxes with hand labels, the format of ``evaluate --photos --labels``)."""
    os.makedirs(out, exist_ok=True)
    boxes = sample_boxes()
    written = {}
    for name, path in sample_photo_paths(people, no_people).items():
        with Image.open(path) as im:
            im.convert("RGB").save(os.path.join(out, name))
        written[name] = boxes[name]
    with open(os.path.join(out, "boxes.json"), "w") as f:
        json.dump(written, f, indent=1)
    labels = {n: [{"box": b, **LABELS.get(n, {})} for b in boxes] for n, boxes in written.items()}
    with open(os.path.join(out, "labels.json"), "w") as f:
        json.dump(labels, f, indent=1)
    return out


def read_boxes(path: str) -> dict[str, np.ndarray]:
    """A boxes file: {"file.jpg": [[x1, y1, x2, y2], ...]} -> name -> (k, 4) array. A face entry
    may also be {"box": [...], ...labels} (the evaluate format)."""
    with open(path) as f:
        raw = json.load(f)
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a JSON object of file name -> list of boxes")
    out = {}
    for name, faces in raw.items():
        rows = [f["box"] if isinstance(f, dict) else f for f in faces]
        arr = np.asarray(rows, np.float64).reshape(-1, 4) if rows else np.zeros((0, 4))
        if len(arr) and not np.all(arr[:, 2:] > arr[:, :2]):
            raise ValueError(f"{path}: {name}: a box must be [x1, y1, x2, y2] with x2 > x1, y2 > y1")
        out[name] = arr
    return out
