"""The mixed corpus of `bench/annotate.py`: photos as users have them, generated on the fly.

Generated people (`data.synthetic.render_scene`) on real face-free photos
(``../shared/data/backgrounds``; generated backgrounds when that folder is absent), at 640x480,
1600x1200 and 4000x3000, as JPEG (quality 90, with mild sensor-like noise so a 12 MP file is as
busy as a phone's, a few MB) and some PNG; some carry an EXIF rotation (the pixels stored
turned, the tag turning them back), some have no one in them. A helper module, not a bench
script (its name starts with "_").
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

SIZES = ((640, 480), (1600, 1200), (4000, 3000))
BACKGROUNDS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..",
                           "shared", "data", "backgrounds")


def kind(k: int) -> dict:
    """What image ``k`` of the corpus is: size, format, EXIF-rotated, with people."""
    size = SIZES[k % 3]
    return {"size": size, "png": k % 8 == 3 and size != SIZES[2], "rotated": k % 5 == 2,
            "people": k % 6 != 5}


def make_mixed_corpus(out: str, count: int, seed: int = 0,
                      sizes: tuple = SIZES) -> list[str]:
    """``count`` distinct images in ``out`` (see the module doc); their paths."""
    from faceattr_ray.data.backgrounds import background_from, make_background
    from faceattr_ray.data.people import make_identity
    from faceattr_ray.data.scenes import list_backgrounds
    from faceattr_ray.data.synthetic import render_scene

    os.makedirs(out, exist_ok=True)
    folder = os.path.normpath(BACKGROUNDS)
    # readable image files only: the folder also holds LICENSES/ and a README
    photos = list_backgrounds(folder)[0] if os.path.isdir(folder) else []
    people = [make_identity(i, seed) for i in range(8)]
    paths = []
    for k in range(count):
        spec = kind(k)
        w, h = sizes[SIZES.index(spec["size"])]
        rng = np.random.default_rng([seed, k])
        bg = (background_from(photos[k % len(photos)], (w, h), rng) if photos
              else make_background((w, h), rng))
        if spec["people"]:
            chosen = [people[int(i)] for i in rng.choice(len(people), int(rng.integers(1, 4)),
                                                         replace=False)]
            short = min(w, h)
            img, _, _ = render_scene(chosen, (w, h), rng, background=bg, min_face=0.05 * short,
                                     max_face=0.3 * short)
        else:
            img = np.asarray(bg.convert("RGB"))
        noise = rng.integers(-8, 9, img.shape, dtype=np.int16)
        img = Image.fromarray(np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8))
        name = f"{k:04d}-{w}x{h}{'-rot' if spec['rotated'] else ''}"
        if spec["png"]:
            path = os.path.join(out, name + ".png")
            img.save(path)
        elif spec["rotated"]:  # stored turned; orientation 6 (turn 90 clockwise) undoes it
            exif = Image.Exif()
            exif[0x0112] = 6
            path = os.path.join(out, name + ".jpg")
            img.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif.tobytes())
        else:
            path = os.path.join(out, name + ".jpg")
            img.save(path, quality=90)
        paths.append(path)
    return paths


def link_images(out: str, unique: list[str], count: int) -> list[str]:
    """``count`` files named apart, content cycling through ``unique`` (hard links: no
    copies), extension kept."""
    os.makedirs(out, exist_ok=True)
    paths = []
    for i in range(count):
        src = unique[i % len(unique)]
        path = os.path.join(out, f"{i:07d}{os.path.splitext(src)[1]}")
        os.link(src, path)
        paths.append(path)
    return paths
