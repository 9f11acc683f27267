"""Part masks for real aligned faces that have none: a prior placed by each face's own pixels.

For every face, `aligned_landmarks.face_landmarks` finds its eyes, nostrils and mouth as the
dark blobs nearest where the alignment puts them (windows of a few pixels, so a face whose eye
sits 3 px off gets its eye label 3 px off); the eyes, brows, nose and mouth are drawn there as
ellipses of the mean face's part sizes. Background, hair and skin come from a coarse map (a
parsing network's prediction, its small parts turned to skin) or, without one, from a fixed
head shape. The masks are noisy labels, not truth: a network trained on them *moved about*
(`face_jitter.move_face`) must find the parts by their look, and `bench/parsing_transfer.py`
checks that it does on faces moved by known amounts, where a template cannot pass.
"""

from __future__ import annotations

import numpy as np

from faceattr_ray.data.aligned_landmarks import (
    ALIGNED_SIZE,
    face_landmarks,
    scaled_landmarks,
    to_gray,
)
from faceattr_ray.data.parts import BACKGROUND, BROWS, EYES, HAIR, MOUTH, NOSE, SKIN

# Half sizes (x, y) at 89 x 109 of the parts drawn, and the brows' height above the eyes;
# read off the mean face (an eye's dark blob is about 8 x 4 px, the lips' dark band 16 px).
EYE_HALF = (4.0, 2.0)
BROW_HALF = (5.5, 1.5)
BROW_ABOVE = 6.5
MOUTH_HALF = (8.0, 3.0)
NOSE_HALF_X = 3.0
SEARCH_RADIUS = 0.6  # of face_landmarks' windows: the eye search stays below the brows


def _ellipse(shape: tuple[int, int], centre: tuple[float, float], half: tuple[float, float]
             ) -> np.ndarray:
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]] + 0.5
    return ((xs - centre[0]) / half[0]) ** 2 + ((ys - centre[1]) / half[1]) ** 2 <= 1.0


def head_shape(height: int, width: int) -> np.ndarray:
    """A fixed background / hair / skin map of an aligned face (used when no coarse map)."""
    sx, sy = width / ALIGNED_SIZE[0], height / ALIGNED_SIZE[1]
    out = np.full((height, width), BACKGROUND, np.uint8)
    out[_ellipse(out.shape, (44.5 * sx, 52 * sy), (31 * sx, 42 * sy))] = HAIR
    out[_ellipse(out.shape, (44.5 * sx, 66 * sy), (22 * sx, 29 * sy))] = SKIN
    return out


def pseudo_mask(image: np.ndarray, coarse: np.ndarray | None = None,
                landmarks: dict | None = None) -> np.ndarray:
    """(H, W) part labels of one aligned face (module docstring). ``landmarks``: the face's own
    (left_eye, right_eye, nostrils, mouth) if already known, else found here."""
    gray = to_gray(image)
    h, w = gray.shape
    sx, sy = w / ALIGNED_SIZE[0], h / ALIGNED_SIZE[1]
    prior = scaled_landmarks(w, h)
    found = landmarks or face_landmarks(gray, prior, SEARCH_RADIUS)
    lm = {k: found.get(k) or prior[k] for k in prior}
    out = head_shape(h, w) if coarse is None else np.asarray(coarse, np.uint8).copy()
    out[np.isin(out, (EYES, BROWS, NOSE, MOUTH))] = SKIN
    eye_y = (lm["left_eye"][1] + lm["right_eye"][1]) / 2
    nose_top = eye_y + 2 * sy
    nose_half_y = max((lm["nostrils"][1] - nose_top) / 2, 2 * sy)
    out[_ellipse(out.shape, (lm["nostrils"][0], nose_top + nose_half_y),
                 (NOSE_HALF_X * sx, nose_half_y))] = NOSE
    for eye in ("left_eye", "right_eye"):
        x, y = lm[eye]
        out[_ellipse(out.shape, (x, y - BROW_ABOVE * sy), (BROW_HALF[0] * sx,
                                                           BROW_HALF[1] * sy))] = BROWS
        out[_ellipse(out.shape, (x, y), (EYE_HALF[0] * sx, EYE_HALF[1] * sy))] = EYES
    out[_ellipse(out.shape, lm["mouth"], (MOUTH_HALF[0] * sx, MOUTH_HALF[1] * sy))] = MOUTH
    return out


def template_mask(height: int, width: int) -> np.ndarray:
    """The same drawing at the mean face's positions for every face: the fixed template a
    parsing must beat by following the face."""
    return pseudo_mask(np.zeros((height, width)), head_shape(height, width),
                       landmarks=scaled_landmarks(width, height))


def write_pseudo_root(celeba_root: str, out: str, split: str = "train",
                      limit: int | None = None, coarse=None) -> str:
    """A parsing root in the generated layout (`data.parsing`) over a CelebA-layout root's
    aligned faces: its files linked (no image copied), ``parts/<stem>.png`` = `pseudo_mask`
    of each face of ``split`` (the first ``limit``). ``coarse``: None or a function of a list
    of images giving their coarse label maps."""
    import os

    from PIL import Image

    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.decode import load_image

    os.makedirs(os.path.join(out, "parts"), exist_ok=True)
    for name in os.listdir(celeba_root):
        if not os.path.exists(os.path.join(out, name)):
            os.symlink(os.path.abspath(os.path.join(celeba_root, name)), os.path.join(out, name))
    paths = list(read_celeba(celeba_root, split=split).paths)[:limit]
    for start in range(0, len(paths), 256):
        chunk = paths[start:start + 256]
        images = [load_image(str(p)) for p in chunk]
        maps = coarse(images) if coarse is not None else [None] * len(images)
        for path, image, c in zip(chunk, images, maps, strict=True):
            stem = os.path.splitext(os.path.basename(str(path)))[0]
            Image.fromarray(pseudo_mask(image, c)).save(os.path.join(out, "parts", stem + ".png"))
    return out
