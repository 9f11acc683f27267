"""Jitter of face crops: two ways to make part masks of one kind of face teach a network about
another, and the jitter of aligned crops when an attribute network trains on them.

- `move_face`: a known similarity transform (scale and turn about the centre, then a shift) of
  an image and its mask together, the border filled by reflection (no black frame to key on).
  Training with it means the parts must be found by how they look, not where the alignment puts
  them; checking with it (`bench/parsing.py --move`) tells a parsing that follows the face from a
  fixed template. `moved_point` moves a landmark the same way.
- `photo_texture`: drawn faces look like drawings (flat colours, clean edges) and photos do not,
  so the drawn face's background is replaced by a crop of a real photo and its hair and skin
  get the photo's fine texture (its high-pass, at a random strength); a random blur, noise and
  JPEG round trip follow. The masks do not change.
- `jitter_aligned`: an aligned training crop slightly zoomed, turned and recoloured, so the
  network does not learn the alignment's exact pixels (README, results: issue 19).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

from faceattr_ray.data.parts import BACKGROUND, HAIR, SKIN

_PHOTOS: dict[str, list[np.ndarray]] = {}
PHOTO_SIDE = 256  # photos are kept at this long side: texture at about a face crop's scale


def moved_point(point: tuple[float, float], size: tuple[int, int], scale: float, dx: float,
                dy: float, angle: float = 0.0) -> tuple[float, float]:
    """Where `move_face` takes ``point`` (continuous pixel coordinates) of a ``size`` (W, H)
    image."""
    cx, cy = size[0] / 2, size[1] / 2
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    x, y = point[0] - cx, point[1] - cy
    return cx + scale * (cos * x - sin * y) + dx, cy + scale * (sin * x + cos * y) + dy


def move_face(image: np.ndarray, mask: np.ndarray | None, scale: float, dx: float, dy: float,
              angle: float = 0.0) -> tuple[np.ndarray, np.ndarray | None]:
    """The image (and mask, by nearest neighbour) scaled by ``scale`` and turned by ``angle``
    degrees (clockwise on screen) about the centre, then shifted by (dx, dy) pixels, same size;
    what comes in from outside is the reflected border."""
    h, w = image.shape[:2]
    # the farthest output corner reads this far from the centre; the pad must reach it
    reach = (np.hypot(w, h) / 2 + np.hypot(dx, dy)) / scale
    pad = int(np.ceil(max(0.0, reach - min(w, h) / 2))) + 2
    # output p' reads input p = c + R(-angle) (p' - c - d) / scale, in the padded frame (+ pad)
    cos, sin = np.cos(np.radians(angle)) / scale, np.sin(np.radians(angle)) / scale
    ox, oy = w / 2 + dx, h / 2 + dy
    coeffs = (cos, sin, w / 2 + pad - (cos * ox + sin * oy),
              -sin, cos, h / 2 + pad - (-sin * ox + cos * oy))

    def warp(arr: np.ndarray, resample) -> np.ndarray:
        widths = ((pad, pad), (pad, pad)) + (((0, 0),) if arr.ndim == 3 else ())
        padded = Image.fromarray(np.pad(arr, widths, mode="symmetric"))
        return np.asarray(padded.transform((w, h), Image.AFFINE, coeffs, resample=resample))

    moved = warp(image, Image.BILINEAR)
    return moved, None if mask is None else warp(mask, Image.NEAREST)


def jitter_aligned(crop: np.ndarray, jitter: dict, rng: np.random.Generator) -> np.ndarray:
    """An aligned face crop zoomed by up to ``jitter["scale"]`` (a share either way) and turned
    by up to ``jitter["degrees"]`` about its centre, then its brightness, contrast and
    saturation each multiplied by 1 +- up to their share. Mild by design: nothing an attribute
    depends on is cut off or mirrored, and hair and lip colours stay what their tags say."""
    scale = 1.0 + rng.uniform(-1, 1) * jitter.get("scale", 0.0)
    angle = rng.uniform(-1, 1) * jitter.get("degrees", 0.0)
    if scale != 1.0 or angle != 0.0:  # batch makers call this per crop: no warp for nothing
        crop = move_face(crop, None, scale, 0.0, 0.0, angle)[0]
    out = crop.astype(np.float32)
    out *= 1.0 + rng.uniform(-1, 1) * jitter.get("brightness", 0.0)
    mean = out.mean()
    out = mean + (out - mean) * (1.0 + rng.uniform(-1, 1) * jitter.get("contrast", 0.0))
    grey = out.mean(axis=2, keepdims=True)
    out = grey + (out - grey) * (1.0 + rng.uniform(-1, 1) * jitter.get("saturation", 0.0))
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def load_photos(folder: str) -> list[np.ndarray]:
    """The readable images of a folder (`scenes.list_backgrounds`: unreadable files, such as
    licence texts, are skipped), at `PHOTO_SIDE` on the long side; read once per process."""
    from faceattr_ray.data.scenes import list_backgrounds, load_background

    if folder not in _PHOTOS:
        readable, _ = list_backgrounds(folder)
        _PHOTOS[folder] = [load_background(p, PHOTO_SIDE) for p in readable]
    return _PHOTOS[folder]


def _photo_crop(photos: list[np.ndarray], w: int, h: int, rng: np.random.Generator
                ) -> np.ndarray:
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    cw = rng.uniform(0.3, 1.0) * min(pw, ph * w / h)  # the crop has the image's shape
    ch = cw * h / w
    x0, y0 = rng.uniform(0, pw - cw), rng.uniform(0, ph - ch)
    crop = Image.fromarray(photo).resize((w, h), Image.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))
    return np.asarray(crop, np.float32)


def photo_texture(image: np.ndarray, mask: np.ndarray, photos: list[np.ndarray],
                  rng: np.random.Generator) -> np.ndarray:
    """A drawn face made more like a photo (module docstring); the mask stays valid."""
    h, w = image.shape[:2]
    out = np.asarray(image, np.float32).copy()
    bg = (mask == BACKGROUND)[..., None]
    out = np.where(bg, _photo_crop(photos, w, h, rng), out)
    texture = _photo_crop(photos, w, h, rng).mean(axis=2, keepdims=True)
    blurred = np.asarray(Image.fromarray(texture[..., 0].astype(np.uint8)).filter(
        ImageFilter.GaussianBlur(2.0)), np.float32)[..., None]
    strength = rng.uniform(0.0, 0.6)
    on = np.isin(mask, (HAIR, SKIN))[..., None]
    out = np.where(on, out + strength * (texture - blurred), out)
    out = np.clip(out + rng.normal(0, rng.uniform(0, 6), out.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(out)
    if rng.random() < 0.5:
        im = im.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    if rng.random() < 0.5:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(rng.integers(40, 90)))
        im = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(im)
