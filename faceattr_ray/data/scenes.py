"""In-the-wild training scenes made on the fly: real faces pasted onto real face-free photos.

The LNets learn to find faces from image-level tags only (paper section 2.1): one bit "a face is
present" plus the attribute tags, never a box. What makes that work on real photos (measured,
README "Localization"): real backgrounds (generated ones teach "real texture = face"), a paste
without an edge to cheat on (a soft elliptical mask that reaches zero inside the crop), new
scenes every step (a fixed set of a few thousand is memorised), and scenes with no face as the
negatives. The boxes of the pasted faces are kept with each scene only to *measure* localization;
no training loss reads them.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from faceattr_ray.crops import ALIGNED_FACE_BOX, crop_resize, frame_face
from faceattr_ray.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# The part of the aligned crop that is pasted: face, hair and a little neck, inside an ellipse
# so that the mask is zero well before the crop's rectangular border.
PASTE_ELLIPSE = (0.06, 0.04, 0.94, 0.98)
BACKGROUND_LONG_SIDE = 640  # backgrounds are kept in memory at this size


# --- backgrounds --------------------------------------------------------------------------------


def list_backgrounds(folder: str) -> tuple[list[str], list[str]]:
    """Readable image files of a folder of face-free photos (sorted) and the files skipped."""
    if not os.path.isdir(folder):
        raise DataError(f"--backgrounds {folder}: not a folder")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    return readable_backgrounds([os.path.join(folder, n) for n in names])


def readable_backgrounds(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """(readable, skipped): every file is decoded (reduced, cheap); one that fails is skipped
    and counted, not fatal: a user's folder may hold a broken download."""
    good, bad = [], []
    for path in paths:
        try:
            load_background(path)
            good.append(path)
        except Exception:  # noqa: BLE001 - any unreadable file is skipped and counted
            bad.append(path)
    if not good:
        raise DataError(f"backgrounds: no readable images ({len(bad)} unreadable)")
    return good, bad


def split_backgrounds(paths: Sequence[str], val_share: float = 0.25) -> tuple[list[str], list[str]]:
    """Train and validation backgrounds, chosen by a hash of the file name: stable when files are
    added, and the same on every machine. At least one of each when there are two or more."""
    def key(p: str) -> float:
        return int(hashlib.sha1(os.path.basename(p).encode()).hexdigest()[:8], 16) / 16**8

    ranked = sorted(paths, key=key)
    n_val = min(len(ranked) - 1, max(1, round(val_share * len(ranked)))) if len(ranked) > 1 else 0
    val = set(ranked[:n_val])
    return [p for p in paths if p not in val], [p for p in paths if p in val]


def load_background(path: str, long_side: int = BACKGROUND_LONG_SIDE) -> np.ndarray:
    """A background photo as RGB uint8, its long side reduced to at most ``long_side``."""
    with Image.open(path) as img:
        img.draft("RGB", (long_side, long_side))  # JPEG: decode at reduced size
        img = img.convert("RGB")
        scale = long_side / max(img.size)
        if scale < 1:
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.Resampling.BILINEAR, reducing_gap=2.0)
        return np.asarray(img).copy()


# --- the paste ----------------------------------------------------------------------------------


def soft_ellipse_mask(width: int, height: int, ellipse: Sequence[float] = PASTE_ELLIPSE,
                      feather: float = 0.25) -> np.ndarray:
    """(height, width) float32 alpha in [0, 1]: 1 inside the ellipse's core, falling smoothly to
    exactly 0 at the ellipse, which lies inside the rectangle, so the paste has no hard edge.
    ``feather`` is the share of the radius over which alpha falls."""
    x0, y0, x1, y1 = ellipse
    cx, cy = (x0 + x1) / 2 * width, (y0 + y1) / 2 * height
    rx, ry = (x1 - x0) / 2 * width, (y1 - y0) / 2 * height
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    r = np.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2)
    return _smoothstep((1.0 - r) / feather)


def soft_rect_mask(width: int, height: int, feather: float = 0.12) -> np.ndarray:
    """(height, width) float32 alpha: 1 in the middle, falling smoothly to 0 at the rectangle's
    border over ``feather`` of the short side. Pastes a whole aligned crop (face, hair, neck,
    shoulders and its own photo's surroundings, as faces come in real photos) without an edge."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    to_border = np.minimum(np.minimum(xs, width - 1 - xs), np.minimum(ys, height - 1 - ys))
    return _smoothstep(to_border / max(1.0, feather * min(width, height)))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)  # no kink where it reaches 0 or 1


def rotated_box(box: Sequence[float], centre: tuple[float, float], degrees: float) -> np.ndarray:
    """The axis-aligned box of the ellipse inscribed in ``box`` after rotating it by ``degrees``
    (counter-clockwise, as PIL rotates) about ``centre``: a tilted face's tight box."""
    x1, y1, x2, y2 = box
    a, b = (x2 - x1) / 2, (y2 - y1) / 2
    t = math.radians(degrees)
    mx, my = (x1 + x2) / 2 - centre[0], (y1 + y2) / 2 - centre[1]
    # Image y points down, so a counter-clockwise turn on screen is clockwise in (x, y).
    nx = centre[0] + mx * math.cos(t) + my * math.sin(t)
    ny = centre[1] - mx * math.sin(t) + my * math.cos(t)
    hw = math.sqrt((a * math.cos(t)) ** 2 + (b * math.sin(t)) ** 2)
    hh = math.sqrt((a * math.sin(t)) ** 2 + (b * math.cos(t)) ** 2)
    return np.array([nx - hw, ny - hh, nx + hw, ny + hh], np.float32)


def _jitter_colour(img: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(1 - 0.4 * strength, 1 + 0.3 * strength))
    img = ImageEnhance.Contrast(img).enhance(rng.uniform(1 - 0.4 * strength, 1 + 0.3 * strength))
    img = ImageEnhance.Color(img).enhance(rng.uniform(1 - 0.5 * strength, 1 + 0.3 * strength))
    if rng.random() < 0.5 * strength:  # colour cast: tungsten, shade, flash
        gains = rng.uniform(1 - 0.12 * strength, 1 + 0.12 * strength, 3)
        img = Image.fromarray(np.clip(np.asarray(img) * gains, 0, 255).astype(np.uint8))
    return img


def degrade_image(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0,
                  grey_share: float | None = None) -> np.ndarray:
    """What real photos do to a picture, at random: blur, sensor noise, JPEG, grey, low light.
    Geometry is unchanged, so boxes and labels stay valid. ``grey_share``: the chance of grey
    (default 0.15 x strength); the random draws are the same whatever it is, so two shares
    give the same pictures but for which of them are grey."""
    out = Image.fromarray(img)
    if rng.random() < 0.3 * strength:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    if rng.random() < (0.15 * strength if grey_share is None else grey_share):
        out = out.convert("L").convert("RGB")
    a = np.asarray(out)
    if rng.random() < 0.3 * strength:
        a = np.clip(a + rng.normal(0, rng.uniform(2, 10), a.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.5 * strength:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, "JPEG", quality=int(rng.integers(30, 92)))
        a = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return np.ascontiguousarray(a)


@dataclass
class Scene:
    image: np.ndarray  # (H, W, 3) uint8
    boxes: np.ndarray  # (k, 4) float32 tight face boxes, x1 y1 x2 y2 (for measuring only)
    labels: np.ndarray  # (k, A) float32 0/1 attribute labels of each face (NaN = unknown)
    face_index: np.ndarray  # (k,) int64: which source face each one is


class SceneMaker:
    """Draws scenes: a random crop of a real background with 0..``max_faces`` faces pasted.

    ``faces``: (N, h, w, 3) uint8 aligned crops (CelebA framing); ``labels``: (N, A) 0/1.
    Each face is scaled so its tight box is ``face_px`` wide (log-uniform), flipped, turned up to
    ``max_rotation`` degrees, colour-jittered, and pasted where it covers no other face: with a
    soft ellipse around face and hair, or (``context_share`` of them) whole, with its neck,
    shoulders and surroundings, under a feathered rectangle. Up to ``distractors`` patches of
    other backgrounds are pasted first with the same masks, so a paste's outline never tells a
    face. The whole scene is then degraded (``degrade_image``).

    A paste reaches beyond its face box (hair, and whole: neck and surroundings), so it can
    hide a face pasted before it. ``max_hidden``: a paste may cover at most this share of
    an earlier face's box (scenes whose boxes are the truth: a hidden face is no face to
    find); None lets it (training scenes: their face-present tag is right either way).
    """

    def __init__(self, faces: np.ndarray, labels: np.ndarray, backgrounds: Sequence[np.ndarray],
                 size: tuple[int, int] = (128, 128), face_px: tuple[float, float] = (24, 64),
                 max_faces: int = 3, empty_share: float = 0.4, max_rotation: float = 20.0,
                 degrade: float = 1.0, context_share: float = 0.0, distractors: int = 0,
                 max_hidden: float | None = None, grey_share: float | None = None) -> None:
        if len(faces) == 0 or len(backgrounds) == 0:
            raise DataError("scenes need at least one face and one background")
        self.faces, self.labels = faces, np.asarray(labels, np.float32)
        self.backgrounds = list(backgrounds)
        self.width, self.height = size
        self.face_px, self.max_faces = face_px, max_faces
        self.empty_share, self.max_rotation, self.degrade = empty_share, max_rotation, degrade
        self.context_share, self.distractors = context_share, distractors
        self.max_hidden = max_hidden
        self.grey_share = grey_share  # of degraded pictures (`degrade_image`'s default if None)
        self._masks: dict[tuple[str, int, int], np.ndarray] = {}  # (shape, h, w) -> alpha

    def degraded(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``image`` degraded as this maker's scenes are (`degrade_image`)."""
        return degrade_image(image, rng, self.degrade, self.grey_share)

    def background(self, rng: np.random.Generator,
                   size: tuple[int, int] | None = None) -> np.ndarray:
        """A random crop of a random background photo, ``size`` (w, h; default the scene's)."""
        width, height = size or (self.width, self.height)
        bg = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        h, w = bg.shape[:2]
        # A crop of 25%..100% of the photo's short side, so textures appear at many scales.
        side = min(h, w) * rng.uniform(0.25, 1.0)
        cw = min(w, side * max(1.0, width / height))
        ch = min(h, cw * height / width)
        x, y = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
        img = Image.fromarray(bg).resize((width, height), Image.Resampling.BILINEAR,
                                         box=(x, y, x + cw, y + ch), reducing_gap=2.0)
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return np.asarray(_jitter_colour(img, rng, 0.5))

    def __call__(self, rng: np.random.Generator, num_faces: int | None = None) -> Scene:
        canvas = self.background(rng).astype(np.float32)
        fh, fw = self.faces.shape[1:3]
        for _ in range(int(rng.integers(0, self.distractors + 1)) if self.distractors else 0):
            self._paste(canvas, rng, [], self.background(rng, (fw, fh)))
        if num_faces is None:
            num_faces = 0 if rng.random() < self.empty_share else int(rng.integers(1, self.max_faces + 1))
        boxes, labels, index, taken = [], [], [], []
        for _ in range(num_faces):
            placed = self._paste(canvas, rng, taken)
            if placed is None:
                continue
            i, box = placed
            boxes.append(box)
            labels.append(self.labels[i])
            index.append(i)
        image = self.degraded(np.clip(canvas, 0, 255).astype(np.uint8), rng)
        a = self.labels.shape[1]
        return Scene(image, np.array(boxes, np.float32).reshape(-1, 4),
                     np.array(labels, np.float32).reshape(-1, a), np.array(index, np.int64))

    def _alpha(self, shape: str, height: int, width: int) -> np.ndarray:
        """The paste mask as uint8, made once per shape and size (a portrait's face need not
        be one of ``faces``: its mask was made anew on every paste, about 1 ms of a 5-6 ms
        wild crop; the scenes are unchanged)."""
        key = (shape, height, width)
        if key not in self._masks:
            mask = soft_rect_mask(width, height) if shape == "rect" else soft_ellipse_mask(width, height)
            self._masks[key] = (mask * 255).astype(np.uint8)
        return self._masks[key]

    def _paste(self, canvas: np.ndarray, rng: np.random.Generator, taken: list,
               src: np.ndarray | None = None,
               face_px: tuple[float, float] | None = None) -> tuple | None:
        """Paste a face (``src``, else a random one of ``faces``) ``face_px`` wide (default the
        maker's range) where its face box overlaps no face in ``taken`` (and, with
        ``max_hidden``, its pixels hide none); (index or -1, tight box) or None."""
        i = int(rng.integers(len(self.faces))) if src is None else -1
        src = self.faces[i] if src is None else src
        height, width = canvas.shape[:2]
        fh, fw = src.shape[:2]
        fx0, _, fx1, _ = ALIGNED_FACE_BOX
        lo, hi = face_px or self.face_px
        face_w = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        scale = face_w / ((fx1 - fx0) * fw)
        cw, ch = max(4, round(fw * scale)), max(4, round(fh * scale))
        if cw > width or ch > height:
            return None
        placed = self._position(rng, taken, width - cw, height - ch, (cw, ch))
        if placed is None:
            return None
        x, y, face = placed
        img = Image.fromarray(src)
        # (no draw when context_share is 0: scenes made before it existed stay the same)
        shape = "rect" if self.context_share and rng.random() < self.context_share else "ellipse"
        alpha = Image.fromarray(self._alpha(shape, fh, fw))
        if rng.random() < 0.5:
            img, alpha = (im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in (img, alpha))
        img = _jitter_colour(img, rng, 1.0)
        angle = float(rng.uniform(-self.max_rotation, self.max_rotation))
        img = img.resize((cw, ch), Image.Resampling.BILINEAR, reducing_gap=2.0)
        alpha = alpha.resize((cw, ch), Image.Resampling.BILINEAR)
        if abs(angle) > 0.5:
            img = img.rotate(angle, Image.Resampling.BILINEAR)
            alpha = alpha.rotate(angle, Image.Resampling.BILINEAR)
        a = np.asarray(alpha, np.float32)[..., None] / 255.0
        if self.max_hidden is not None:  # move the paste until it hides no earlier face
            for _ in range(20):
                if all(_hidden_share(a[..., 0], x, y, t) <= self.max_hidden for t in taken):
                    break
                placed = self._position(rng, taken, width - cw, height - ch, (cw, ch))
                if placed is None:
                    return None
                x, y, face = placed
            else:
                return None
        region = canvas[y : y + ch, x : x + cw]
        region[:] = region * (1 - a) + np.asarray(img, np.float32) * a
        box = rotated_box(face, (x + cw / 2, y + ch / 2), angle)
        taken.append(tuple(box))
        return i, box

    @staticmethod
    def _position(rng: np.random.Generator, taken: list, max_x: int, max_y: int,
                  size: tuple[int, int]) -> tuple | None:
        """A top-left corner for an aligned crop of ``size`` whose face box overlaps no face in
        ``taken`` (20 tries): (x, y, face box) or None."""
        cw, ch = size
        fx0, fy0, fx1, fy1 = ALIGNED_FACE_BOX
        for _ in range(20):
            x, y = int(rng.integers(0, max_x + 1)), int(rng.integers(0, max_y + 1))
            face = (x + fx0 * cw, y + fy0 * ch, x + fx1 * cw, y + fy1 * ch)
            if all(_overlap(face, t) < 0.15 for t in taken):
                return x, y, face
        return None

    def portrait(self, face: np.ndarray, rng: np.random.Generator, face_px: tuple[float, float],
                 faces_wide: tuple[float, float] = (3.5, 4.0)) -> tuple[np.ndarray, np.ndarray]:
        """An aligned crop alone, ``face_px`` wide, on a background ``faces_wide`` face widths
        wide, degraded: (image, its tight box). What a face found in the wild looks like."""
        lo, hi = face_px
        face_w = math.exp(rng.uniform(math.log(lo), math.log(hi)))
        side = int(round(face_w * rng.uniform(*faces_wide)))
        canvas = self.background(rng, (side, side)).astype(np.float32)
        placed = None
        while placed is None:  # always fits: the canvas is larger than the face's crop
            placed = self._paste(canvas, rng, [], face, (face_w, face_w))
        image = self.degraded(np.clip(canvas, 0, 255).astype(np.uint8), rng)
        return image, placed[1]


def jitter_box(box: Sequence[float], rng: np.random.Generator, shift: float = 0.1,
               scale: float = 0.15) -> tuple[float, float, float, float]:
    """A box as a localizer finds it: centre off by up to ``shift`` box sizes, each side's
    length off by a factor up to 1 +/- ``scale``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    cx = (x1 + x2) / 2 + rng.uniform(-shift, shift) * w
    cy = (y1 + y2) / 2 + rng.uniform(-shift, shift) * h
    s = math.exp(rng.uniform(math.log(1 - scale), math.log(1 + scale)))
    w *= s * math.exp(rng.uniform(-scale / 2, scale / 2))
    h *= s * math.exp(rng.uniform(-scale / 2, scale / 2))
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _overlap(a, b) -> float:
    """Intersection over the smaller box's area (a face may not hide under another)."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / small


def _hidden_share(alpha: np.ndarray, x: int, y: int, box) -> float:
    """Share of ``box`` (x1, y1, x2, y2) that a paste's ``alpha`` (h, w; 0..1) put at (x, y)
    covers: its alpha summed over the box over the box's area."""
    x1, y1, x2, y2 = (float(v) for v in box)
    area = max((x2 - x1) * (y2 - y1), 1e-6)
    h, w = alpha.shape
    c0, r0 = max(int(math.floor(x1)) - x, 0), max(int(math.floor(y1)) - y, 0)
    c1, r1 = min(int(math.ceil(x2)) - x, w), min(int(math.ceil(y2)) - y, h)
    if c1 <= c0 or r1 <= r0:
        return 0.0
    return min(float(alpha[r0:r1, c0:c1].sum()) / area, 1.0)


def image_tags(scene: Scene, num_attributes: int) -> tuple[float, np.ndarray]:
    """A scene's image-level targets: face present (0/1) and each attribute's tag, which is
    present if any face in the scene has it (NaN for a scene without faces: no attribute loss)."""
    if len(scene.boxes) == 0:
        return 0.0, np.full(num_attributes, np.nan, np.float32)
    return 1.0, np.nanmax(scene.labels, axis=0)


def portrait_maker(backgrounds: Sequence[str], context_share: float = 0.0) -> SceneMaker:
    """A maker with no faces of its own, for `SceneMaker.portrait` / `wild_face_window` of
    faces the caller gives: the background photos are decoded once."""
    return SceneMaker(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 1), np.float32),
                      [load_background(p) for p in backgrounds], context_share=context_share)


def wild_face_window(face: np.ndarray, maker: SceneMaker, rng: np.random.Generator, size: int,
                     face_px: tuple[float, float] = (24, 110),
                     face_box: tuple[float, float, float, float] = ALIGNED_FACE_BOX) -> np.ndarray:
    """An aligned crop as ANet sees it when a localizer finds it in a photo: pasted small on a
    real background (turned, recoloured, degraded), found with a localizer's box errors, and
    cut out by the framing rule at ANet's window size. Labels stay valid: nothing is mirrored
    that an attribute depends on, and the face stays whole."""
    image, box = maker.portrait(face, rng, face_px)
    window = frame_face(jitter_box(box, rng), face_box)
    return crop_resize(image, window, (size, size))
