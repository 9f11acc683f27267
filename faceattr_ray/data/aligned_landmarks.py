"""Where the eyes, nose and mouth of an aligned CelebA face are, measured from the faces.

CelebA's aligned crops are made by a similarity transform that brings five landmarks near fixed
positions, so the mean of many aligned faces is itself a face whose eyes, nostrils and lips are
dark blobs at those positions. `mean_face_landmarks` finds the blobs with a difference of
Gaussians (fine blur minus coarse blur: negative where a small region is darker than its
surroundings) inside a search window around each part's rough place, and takes the
darkness-weighted centroid there. `face_landmarks` does the same on one face, its windows
centred on given priors: a per-face estimate that follows the face.

`ALIGNED_LANDMARKS` were measured this way on the mean of all 7,984 celeba-mini faces
(`../shared/data/celeba-mini`, 89 x 109, half CelebA's 178 x 218; `tests/test_aligned_landmarks`
remeasures them when the data is there). Coordinates are continuous: pixel i spans [i, i + 1).
The nose is measured at the nostrils (the tip is not darker than its surroundings), so its y is
about 2 px below the tip; the mouth at the centre of the dark line between the lips.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

ALIGNED_SIZE = (89, 109)  # (W, H) of the crops the positions below were measured on
ALIGNED_LANDMARKS: dict[str, tuple[float, float]] = {
    "left_eye": (34.6, 55.5), "right_eye": (54.4, 55.5), "nostrils": (44.6, 69.4),
    "mouth": (44.7, 76.6),
}
# Rough places to search at 89 x 109 (x, y) and the half sizes (rx, ry) of each window; "peak"
# takes the darkest point's neighbourhood (an eye is one blob), "mass" the centroid of all the
# darkness in the window (two nostrils, a mouth line with dark corners).
_SEARCH = {
    "left_eye": ((34.0, 55.0), (8, 7), "peak"), "right_eye": ((55.0, 55.0), (8, 7), "peak"),
    "nostrils": ((44.5, 69.0), (7, 4), "mass"), "mouth": ((44.5, 76.5), (10, 5), "mass"),
}


def to_gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, np.float64)
    return image.mean(axis=2) if image.ndim == 3 else image


def mean_face(images) -> np.ndarray:
    """The pixelwise mean (grey levels) of equally sized aligned faces."""
    total, n = None, 0
    for image in images:
        g = to_gray(image)
        total = g if total is None else total + g
        n += 1
    if total is None:
        raise ValueError("mean_face: no images")
    return total / n


def darkness(gray: np.ndarray) -> np.ndarray:
    """How much darker each pixel is than its surroundings (>= 0), at the scale of an eye in a
    89-px-wide face (the blurs scale with the width)."""
    s = gray.shape[1] / ALIGNED_SIZE[0]
    dog = ndimage.gaussian_filter(gray, 1.0 * s) - ndimage.gaussian_filter(gray, 4.0 * s)
    return np.clip(-dog, 0, None)


def _window_centroid(dark: np.ndarray, centre: tuple[float, float], half: tuple[float, float],
                     mode: str) -> tuple[float, float] | None:
    """The darkness-weighted centroid in the window around ``centre``; "mass" recentres the
    window sideways on it a few times (a pair of nostrils or a mouth line cut by the window's
    edge would pull the centroid back towards the prior; not up or down, where the next part
    is near), "peak" keeps only the darkest point's 5 x 5 neighbourhood."""
    h, w = dark.shape
    found = None
    for _ in range(3 if mode == "mass" else 1):
        x0 = max(0, int(round(centre[0] - half[0])))
        x1 = min(w, int(round(centre[0] + half[0])) + 1)
        y0 = max(0, int(round(centre[1] - half[1])))
        y1 = min(h, int(round(centre[1] + half[1])) + 1)
        if x1 <= x0 or y1 <= y0:
            return None
        sub = dark[y0:y1, x0:x1]
        if sub.max() < 0.5:  # nothing half a grey level darker than its surroundings
            return None
        if mode == "peak":
            iy, ix = np.unravel_index(int(sub.argmax()), sub.shape)
            ya, yb = max(0, iy - 2), min(sub.shape[0], iy + 3)
            xa, xb = max(0, ix - 2), min(sub.shape[1], ix + 3)
            x0, y0, sub = x0 + xa, y0 + ya, sub[ya:yb, xa:xb]
        ys, xs = np.mgrid[y0:y0 + sub.shape[0], x0:x0 + sub.shape[1]]
        total = sub.sum()
        found = float((xs * sub).sum() / total) + 0.5, float((ys * sub).sum() / total) + 0.5
        centre = (found[0], centre[1])
    return found


def face_landmarks(gray: np.ndarray, priors: dict[str, tuple[float, float]] | None = None,
                   radius: float = 1.0) -> dict[str, tuple[float, float] | None]:
    """Left eye, right eye, nostrils and mouth of one face (or a mean face): the dark blob in a
    window around each prior (default `_SEARCH`'s places, scaled to the image), the eyes'
    windows' size times ``radius`` (the nostrils' and mouth's windows must hold both nostrils
    and both corners). None where the window holds nothing darker than its surroundings."""
    h, w = gray.shape
    sx, sy = w / ALIGNED_SIZE[0], h / ALIGNED_SIZE[1]
    dark = darkness(gray)
    out = {}
    for key, (place, half, mode) in _SEARCH.items():
        centre = priors[key] if priors else (place[0] * sx, place[1] * sy)
        r = radius if mode == "peak" else 1.0
        out[key] = _window_centroid(dark, centre, (half[0] * sx * r, half[1] * sy * r), mode)
    return out


def mean_face_landmarks(mean: np.ndarray) -> dict[str, tuple[float, float]]:
    """`face_landmarks` of a mean face; ValueError when a part is not found."""
    found = face_landmarks(mean)
    missing = [k for k, v in found.items() if v is None]
    if missing:
        raise ValueError(f"mean face: no dark blob for {missing}")
    return found  # type: ignore[return-value]


def scaled_landmarks(width: int, height: int) -> dict[str, tuple[float, float]]:
    """`ALIGNED_LANDMARKS` in a ``width`` x ``height`` aligned crop."""
    sx, sy = width / ALIGNED_SIZE[0], height / ALIGNED_SIZE[1]
    return {k: (x * sx, y * sy) for k, (x, y) in ALIGNED_LANDMARKS.items()}
