"""Real faces on backgrounds: aligned crops of any CelebA-layout root pasted into scenes with
known boxes, written in CelebA layout (`synthetic.write_lists`). What `reproduce` trains the
LNets on."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from faceattr_ray.attributes import CELEBA_40
from faceattr_ray.data.backgrounds import background_from, make_background
from faceattr_ray.data.people import Person
from faceattr_ray.data.synthetic import (
    ALIGNED_FACE_REGION,
    free_spot,
    log_uniform,
    save_image,
    write_lists,
)
from faceattr_ray.errors import DataError


def paste_faces(
    src_root: str,
    out: str,
    count: int,
    seed: int = 0,
    size: tuple[int, int] = (256, 192),
    max_people: int = 2,
    backgrounds: list[str] | None = None,
    min_face: float = 20.0,
    max_face: float | None = None,
    face_region: tuple[float, float, float, float] = ALIGNED_FACE_REGION,
) -> str:
    """Paste aligned crops from any CelebA-layout root onto backgrounds, in CelebA layout.

    Each crop is scaled, softened at its edge (an elliptical mask) and placed where it does not
    cover another face. The face box is ``face_region`` of the crop; the head-shoulder box is the
    crop. Labels, identity and split come from the source image, and faces in one image come
    from one split, so splits stay identity-disjoint.
    """
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.decode import load_image

    src = read_celeba(src_root)
    part = src.partition if src.partition is not None else np.zeros(len(src), dtype=np.int64)
    ident = src.identity if src.identity is not None else np.arange(len(src))
    by_split = {p: np.flatnonzero(part == p) for p in (0, 1, 2)}
    if not len(src):
        raise DataError(f"{src_root}: no images to paste")
    img_dir = os.path.join(out, "img_celeba")
    os.makedirs(img_dir, exist_ok=True)
    w, h = size
    max_face = max_face or 0.35 * min(w, h)
    fx0, fy0, fx1, fy1 = face_region
    rows = []
    for k in range(count):
        rng = np.random.default_rng([seed, 6, k])
        p = int(rng.choice(3, p=[0.8, 0.1, 0.1]))
        if not len(by_split[p]):
            p = next(q for q in (0, 1, 2) if len(by_split[q]))
        idx = rng.choice(
            by_split[p],
            size=min(int(rng.integers(1, max_people + 1)), len(by_split[p])),
            replace=False,
        )
        if backgrounds:
            canvas = background_from(backgrounds[int(rng.integers(len(backgrounds)))], size, rng)
        else:
            canvas = make_background(size, rng)
        placed: list[Person] = []
        taken: list[tuple] = []
        for i in idx:
            crop = Image.fromarray(load_image(src.paths[int(i)]))
            face_w = log_uniform(rng, min(min_face, max_face), max_face)
            scale = face_w / ((fx1 - fx0) * crop.width)
            cw, ch = max(2, round(crop.width * scale)), max(2, round(crop.height * scale))
            spot = free_spot(rng, size, cw, ch, lambda b: b, taken)
            if spot is None:
                continue
            x, y = int(spot[0]), int(spot[1])
            crop = crop.resize((cw, ch), Image.BILINEAR)
            canvas.paste(crop, (x, y), _soft_ellipse((cw, ch)))
            face = (x + fx0 * cw, y + fy0 * ch, x + fx1 * cw, y + fy1 * ch)
            attrs = {n: bool(v > 0.5) for n, v in zip(src.names, src.labels[int(i)], strict=True)}
            placed.append(Person(int(ident[int(i)]), attrs, face, (x, y, x + cw, y + ch)))
            taken.append((x, y, x + cw, y + ch))
        if not placed:
            continue
        placed.sort(key=lambda q: -(q.face_box[2] - q.face_box[0]))
        name = f"{len(rows) + 1:06d}.jpg"
        save_image(canvas, os.path.join(img_dir, name))
        rows.append(
            {
                "name": name,
                "attrs": _full_attrs(placed[0].attributes),
                "identity": placed[0].identity,
                "partition": p,
                "people": placed,
                "others": [],
            }
        )
    write_lists(out, rows, with_boxes=True, size=size)
    return out


def _full_attrs(attrs: dict[str, bool]) -> dict[str, bool]:
    """Source labels on CelebA's 40 names (names the source lacks are written absent)."""
    return {n: bool(attrs.get(n, False)) for n in CELEBA_40}


def _soft_ellipse(size: tuple[int, int]) -> Image.Image:
    w, h = size
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse([0.04 * w, 0.02 * h, 0.96 * w, 1.1 * h], fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(1.0, 0.04 * w)))
