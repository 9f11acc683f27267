"""Generated datasets in CelebA layout, for tests, the demo and localization: scenes of drawn
people (people.py) on backgrounds (backgrounds.py), written with their labels and boxes.

Layouts written (the CelebA reader reads them unchanged):
- ``write_aligned``: ``img_align_celeba/`` face crops (default 89x109, like celeba-mini),
  ``list_attr_celeba.txt``, ``identity_CelebA.txt``, ``list_eval_partition.txt`` (split by
  identity, 80/10/10).
- ``write_wild`` (and ``paste.paste_faces``, real faces): ``img_celeba/`` scenes with one or
  several people, the same three files for the dominant (largest) face, plus
  ``list_bbox_celeba.txt`` (face, x_1 y_1 width height), ``list_headshoulder_bbox.txt`` (head and
  shoulders, same format), ``list_faces_all.txt`` (every person: NAME, face box, head-shoulder box,
  identity) and ``list_distractors.txt`` (non-human faces: NAME, box, kind). ``read_all_faces``
  reads the last two.
- ``write_backgrounds`` / ``write_distractors``: images with no human face.
- ``masks=True`` (aligned and wild): ``parts/NAME.png``, every pixel's face part (`parts.PARTS`;
  the drawer paints them, people.py). Real faces pasted by ``paste.paste_faces`` get none: no
  one drew them, so their parts are not known.
"""

from __future__ import annotations

import math
import os

import numpy as np
from PIL import Image, ImageFilter

from faceattr_ray.attributes import CELEBA_40
from faceattr_ray.crops import ALIGNED_FACE_BOX
from faceattr_ray.data.backgrounds import DISTRACTOR_KINDS, draw_distractor, make_background
from faceattr_ray.data.people import (
    BUST,
    Identity,
    Person,
    make_identity,
    render_person,
    sample_attributes,
)
from faceattr_ray.errors import DataError

ALIGNED_SIZE = (89, 109)  # (W, H) of celeba-mini's crops
PARTS_DIR = "parts"  # face-part label PNGs of generated people (write_parts)
# Where the face sits inside a CelebA aligned crop, as fractions (x1, y1, x2, y2) of W and H.
ALIGNED_FACE_REGION = ALIGNED_FACE_BOX  # where aligned crops hold the face (crops.py)

# --- scenes ----------------------------------------------------------------------------------


def render_aligned(
    ident: Identity, attrs: dict[str, bool], size: tuple[int, int], rng: np.random.Generator,
    labels: Image.Image | None = None,
) -> tuple[np.ndarray, Person]:
    """A CelebA-style aligned crop (face centred, about half the width) of one person;
    ``labels`` (an "L" image of ``size``) receives its face parts (`people.render_person`)."""
    w, h = size
    canvas = make_background(size, rng, clutter=int(rng.integers(2, 8))).filter(
        ImageFilter.GaussianBlur(2)
    )
    fw = w * rng.uniform(0.46, 0.54) / ident.face_width_gain
    face_h = fw * ident.face_width_gain * ident.face_aspect
    cy = h * ALIGNED_FACE_REGION[3] - face_h / 2 + rng.uniform(-0.02, 0.02) * h
    center = (w / 2 + rng.uniform(-0.03, 0.03) * w, cy)
    person = render_person(
        canvas,
        ident,
        attrs,
        center,
        fw,
        float(rng.uniform(-6, 6)),
        rng,
        light=(float(rng.uniform(0.8, 1.15)), float(rng.uniform(-0.2, 0.2))),
        labels=labels,
    )
    return np.asarray(canvas), person


def render_scene(
    identities: list[Identity],
    size: tuple[int, int],
    rng: np.random.Generator,
    distractors: int = 0,
    min_face: float = 16.0,
    max_face: float | None = None,
    background: Image.Image | None = None,
    labels: Image.Image | None = None,
) -> tuple[np.ndarray, list[Person], list]:
    """People (one per identity given; larger ones drawn later, in front) on a cluttered scene.

    No person's head and shoulders cover another face or a distractor. Returns the image, the
    people drawn, largest face first (one is skipped when no free spot is found) and the
    distractors as (box, kind). ``labels`` (an "L" image of ``size``) receives every person's
    face parts, later people over earlier ones as drawn.
    """
    w, h = size
    canvas = background.copy() if background is not None else make_background(size, rng)
    max_face = max_face or 0.4 * min(w, h)
    min_face = min(min_face, max_face)
    taken: list[tuple] = []  # faces and distractors: nothing may be drawn over them
    others: list = []
    for _ in range(distractors):
        dw = log_uniform(rng, min_face, max_face)
        dh = dw * rng.uniform(0.9, 1.2)
        box = free_spot(rng, size, dw, dh, lambda b: b, taken)
        if box is not None:
            kind = str(rng.choice(DISTRACTOR_KINDS))
            draw_distractor(canvas, box, kind, rng)
            taken.append(box)
            others.append((box, kind))
    widths = sorted(log_uniform(rng, min_face, max_face) for _ in identities)
    people = []
    for ident, fw in zip(identities, widths, strict=True):
        attrs = sample_attributes(ident, rng)
        face_w = fw * ident.face_width_gain
        face_h = fw * ident.face_aspect

        def footprint(b, face_w=face_w, face_h=face_h):  # head, hat and shoulders around a face
            cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
            return (cx - 1.5 * face_w, cy - face_h, cx + 1.5 * face_w, cy + BUST * face_h)

        box = free_spot(rng, size, face_w, face_h, footprint, taken)
        if box is None:
            continue
        center = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        light = (float(rng.uniform(0.75, 1.2)), float(rng.uniform(-0.3, 0.3)))
        p = render_person(canvas, ident, attrs, center, fw, float(rng.uniform(-12, 12)), rng, light,
                          labels=labels)
        people.append(p)
        taken.append(p.face_box)
    people.sort(key=lambda p: -(p.face_box[2] - p.face_box[0]) * (p.face_box[3] - p.face_box[1]))
    return np.asarray(canvas), people, others


def log_uniform(rng, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def free_spot(rng, size, bw, bh, footprint, taken, tries: int = 30):
    """A box of bw x bh inside the image whose footprint(box) overlaps nothing in ``taken``."""
    w, h = size
    for _ in range(tries):
        x = rng.uniform(1, max(1.0, w - bw - 1))
        y = rng.uniform(1, max(1.0, h - bh - 1))
        box = (x, y, x + bw, y + bh)
        if all(_overlap(footprint(box), t) == 0 for t in taken):
            return box
    return None


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


# --- writing datasets ------------------------------------------------------------------------


def _partition_of(index: int, seed: int) -> int:
    """Identity-level split, 80/10/10, stable for a given seed."""
    u = np.random.default_rng([seed, 11, index]).random()
    return 0 if u < 0.8 else (1 if u < 0.9 else 2)


def _labels_line(name: str, attrs: dict[str, bool]) -> str:
    return name + " " + " ".join(" 1" if attrs[n] else "-1" for n in CELEBA_40)


def _box_ints(box, size) -> tuple[int, int, int, int]:
    """x1, y1, w, h as integers, clipped to the image."""
    w, h = size
    x1, y1 = max(0, int(math.floor(box[0]))), max(0, int(math.floor(box[1])))
    x2, y2 = min(w, int(math.ceil(box[2]))), min(h, int(math.ceil(box[3])))
    return x1, y1, max(0, x2 - x1), max(0, y2 - y1)


def write_lists(out: str, rows: list[dict], with_boxes: bool, size) -> None:
    """CelebA's text files for ``rows`` (name, attrs, identity, partition, people, others)."""
    with open(os.path.join(out, "list_attr_celeba.txt"), "w") as f:
        f.write(f"{len(rows)}\n{' '.join(CELEBA_40)}\n")
        f.writelines(_labels_line(r["name"], r["attrs"]) + "\n" for r in rows)
    with open(os.path.join(out, "identity_CelebA.txt"), "w") as f:
        f.writelines(f"{r['name']} {r['identity']}\n" for r in rows)
    with open(os.path.join(out, "list_eval_partition.txt"), "w") as f:
        f.writelines(f"{r['name']} {r['partition']}\n" for r in rows)
    if not with_boxes:
        return
    for fname, key in (
        ("list_bbox_celeba.txt", "face_box"),
        ("list_headshoulder_bbox.txt", "headshoulder_box"),
    ):
        with open(os.path.join(out, fname), "w") as f:
            f.write(f"{len(rows)}\nimage_id x_1 y_1 width height\n")
            for r in rows:
                f.write(
                    r["name"]
                    + " "
                    + " ".join(str(v) for v in _box_ints(getattr(r["people"][0], key), size))
                    + "\n"
                )
    with open(os.path.join(out, "list_faces_all.txt"), "w") as f:
        f.write("image_id x_1 y_1 width height hs_x_1 hs_y_1 hs_width hs_height identity\n")
        for r in rows:
            for p in r["people"]:
                vals = _box_ints(p.face_box, size) + _box_ints(p.headshoulder_box, size)
                f.write(f"{r['name']} {' '.join(str(v) for v in vals)} {p.identity}\n")
    with open(os.path.join(out, "list_distractors.txt"), "w") as f:
        f.write("image_id x_1 y_1 width height kind\n")
        for r in rows:
            for box, kind in r.get("others", []):
                f.write(f"{r['name']} {' '.join(str(v) for v in _box_ints(box, size))} {kind}\n")


def save_image(img: np.ndarray | Image.Image, path: str) -> None:
    im = img if isinstance(img, Image.Image) else Image.fromarray(img)
    im.save(path, quality=94)


def write_aligned(
    out: str, count: int, identities: int = 20, seed: int = 0, size: tuple[int, int] = ALIGNED_SIZE,
    masks: bool = False,
) -> str:
    """Aligned face crops in CelebA layout (``img_align_celeba/``); returns ``out``.
    ``masks``: also each image's face parts as ``PARTS_DIR/NAME.png`` (`write_parts`)."""
    _check_counts(count, identities)
    img_dir = os.path.join(out, "img_align_celeba")
    os.makedirs(img_dir, exist_ok=True)
    people = [make_identity(i, seed) for i in range(identities)]
    order = np.random.default_rng([seed, 3]).permutation(count) % identities
    rows = []
    for k in range(count):
        rng = np.random.default_rng([seed, 1, k])
        ident = people[int(order[k])]
        attrs = sample_attributes(ident, rng)
        labels = _label_canvas(size, masks)
        img, _ = render_aligned(ident, attrs, size, rng, labels=labels)
        name = f"{k + 1:06d}.jpg"
        save_image(img, os.path.join(img_dir, name))
        write_parts(out, name, labels)
        rows.append(
            {
                "name": name,
                "attrs": attrs,
                "identity": ident.index,
                "partition": _partition_of(ident.index, seed),
            }
        )
    write_lists(out, rows, with_boxes=False, size=size)
    return out


def write_wild(
    out: str,
    count: int,
    identities: int = 20,
    seed: int = 0,
    size: tuple[int, int] = (256, 192),
    max_people: int = 3,
    distractor_rate: float = 0.3,
    min_face: float = 16.0,
    max_face: float | None = None,
    masks: bool = False,
) -> str:
    """In-the-wild scenes in CelebA layout (``img_celeba/`` plus box files); returns ``out``.
    ``masks``: also every person's face parts as ``PARTS_DIR/NAME.png`` (`write_parts`).

    Every image has 1..``max_people`` people from one split's identities (so splits stay
    identity-disjoint); the attribute/identity/box files describe the largest face.
    """
    _check_counts(count, identities)
    img_dir = os.path.join(out, "img_celeba")
    os.makedirs(img_dir, exist_ok=True)
    people = [make_identity(i, seed) for i in range(identities)]
    pools = {p: [i for i in people if _partition_of(i.index, seed) == p] for p in (0, 1, 2)}
    rows = []
    for k in range(count):
        rng = np.random.default_rng([seed, 2, k])
        partition = _pick_partition(rng, pools)
        pool = pools[partition]
        n = int(rng.integers(1, max_people + 1))
        chosen = [
            pool[int(i)] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)
        ]
        nd = int(rng.random() < distractor_rate) + int(rng.random() < distractor_rate / 3)
        img, drawn, others = [], [], []
        for _ in range(5):  # retry in the rare case nobody fit
            labels = _label_canvas(size, masks)
            img, drawn, others = render_scene(
                chosen, size, rng, distractors=nd, min_face=min_face, max_face=max_face,
                labels=labels,
            )
            if drawn:
                break
        if not drawn:
            raise RuntimeError(f"could not place a face in a {size} image; use a larger size")
        name = f"{k + 1:06d}.jpg"
        save_image(img, os.path.join(img_dir, name))
        write_parts(out, name, labels)
        rows.append(
            {
                "name": name,
                "attrs": drawn[0].attributes,
                "identity": drawn[0].identity,
                "partition": partition,
                "people": drawn,
                "others": others,
            }
        )
    write_lists(out, rows, with_boxes=True, size=size)
    return out


def _label_canvas(size: tuple[int, int], masks: bool) -> Image.Image | None:
    return Image.new("L", size, 0) if masks else None


def write_parts(out: str, name: str, labels: Image.Image | None) -> None:
    """``labels`` (face parts, `parts.PARTS` indices) as ``out/PARTS_DIR/<stem>.png``: one label
    PNG per image, the layout `parsing.read_label_pngs` reads. Nothing when ``labels`` is None."""
    if labels is None:
        return
    folder = os.path.join(out, PARTS_DIR)
    os.makedirs(folder, exist_ok=True)
    labels.save(os.path.join(folder, os.path.splitext(name)[0] + ".png"))


def _check_counts(count: int, identities: int) -> None:
    if count < 0 or identities < 1:
        raise DataError(f"need count >= 0 and identities >= 1 (got {count} and {identities})")


def _pick_partition(rng, pools) -> int:
    p = int(rng.choice(3, p=[0.8, 0.1, 0.1]))
    return p if pools[p] else next(q for q in (0, 1, 2) if pools[q])


def write_backgrounds(
    out: str, count: int, seed: int = 0, size: tuple[int, int] = (256, 192), prefix: str = "bg"
) -> list[str]:
    """Cluttered images with no face of any kind; returns their paths."""
    os.makedirs(out, exist_ok=True)
    paths = []
    for k in range(count):
        path = os.path.join(out, f"{prefix}_{k + 1:06d}.jpg")
        save_image(make_background(size, np.random.default_rng([seed, 4, k])), path)
        paths.append(path)
    return paths


def write_distractors(
    out: str, count: int, seed: int = 0, size: tuple[int, int] = (256, 192)
) -> list[str]:
    """Cluttered images each holding 1-3 non-human faces (cats, smileys, robots), no person."""
    os.makedirs(out, exist_ok=True)
    paths = []
    for k in range(count):
        rng = np.random.default_rng([seed, 5, k])
        img, _, _ = render_scene([], size, rng, distractors=int(rng.integers(1, 4)))
        path = os.path.join(out, f"distractor_{k + 1:06d}.jpg")
        save_image(img, path)
        paths.append(path)
    return paths


def read_all_faces(root: str) -> dict[str, list[dict]]:
    """``list_faces_all.txt`` and ``list_distractors.txt`` of a generated root: for each image
    name, its people ({"face": x1,y1,x2,y2, "headshoulder": ..., "identity"}) and distractors
    ({"box", "kind"}) under the keys "faces" and "distractors"."""
    out: dict[str, dict] = {}
    path = os.path.join(root, "list_faces_all.txt")
    if not os.path.exists(path):
        raise DataError(f"missing file: {path}")
    with open(path) as f:
        for n, ln in enumerate(f.read().splitlines()[1:], start=2):
            parts = ln.split()
            if not parts:
                continue
            if len(parts) != 10:
                raise DataError(f"{path}:{n}: expected 10 fields, got {len(parts)}")
            v = [int(x) for x in parts[1:]]
            entry = out.setdefault(parts[0], {"faces": [], "distractors": []})
            entry["faces"].append(
                {
                    "face": (v[0], v[1], v[0] + v[2], v[1] + v[3]),
                    "headshoulder": (v[4], v[5], v[4] + v[6], v[5] + v[7]),
                    "identity": v[8],
                }
            )
    dpath = os.path.join(root, "list_distractors.txt")
    if os.path.exists(dpath):
        with open(dpath) as f:
            for ln in f.read().splitlines()[1:]:
                parts = ln.split()
                if len(parts) == 6:
                    v = [int(x) for x in parts[1:5]]
                    entry = out.setdefault(parts[0], {"faces": [], "distractors": []})
                    entry["distractors"].append(
                        {"box": (v[0], v[1], v[0] + v[2], v[1] + v[3]), "kind": parts[5]}
                    )
    return out
