"""Image bytes -> uint8 RGB array (H, W, 3), the one decoder every stage uses.

Untrusted files come in by the million, so decoding is defensive: the pixel count is checked
from the header before any pixel is decoded (decompression bombs), every PIL failure becomes an
``ImageDecodeError`` with a short reason, and nothing here touches PIL's process-wide settings
(``Image.MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``), so it is safe from many threads.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from faceattr_ray.errors import DataError

# PIL's own bomb limit (89,478,485 pixels, about a 9459x9459 image), read once at import.
DEFAULT_MAX_PIXELS: int = int(Image.MAX_IMAGE_PIXELS or 89_478_485)
# We refuse oversized images ourselves (below), so PIL's warning on open is only noise; set once
# at import, never per call (warnings.catch_warnings is not thread-safe).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


# Raster formats we open. Others PIL knows (EPS via Ghostscript, PDF, ...) are refused: inputs
# are untrusted and those plugins run external code or are rarely exercised.
Image.init()  # register every plugin once, here, so open(formats=...) finds them
FORMATS: tuple[str, ...] = tuple(
    f for f in ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP", "TIFF", "PPM") if f in Image.OPEN
)


class ImageDecodeError(DataError):
    """The bytes are not an image we can decode; the message is a short reason."""


def decode_image(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """Decode image bytes to an RGB uint8 array (H, W, 3), EXIF orientation applied.

    Grayscale, 16-bit, CMYK, palette and alpha images all become RGB (alpha is composited on
    white); an animated image gives its first frame. Raises ``ImageDecodeError`` for empty,
    truncated or unrecognised bytes and for images over ``max_pixels`` (default: PIL's limit).
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        # Image.open reads only the header: the size check below happens before decoding.
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            _checked_size(img, limit)
            img.load()
            ImageOps.exif_transpose(img, in_place=True)  # in place: no copy when upright
            return _to_rgb(img)
    except Exception as e:
        raise _decode_error(e) from None


def _checked_size(img: Image.Image, limit: int) -> tuple[int, int]:
    """The header's (width, height), refused over ``limit`` pixels: Image.open reads only the
    header, so this happens before any pixel is decoded."""
    width, height = img.size
    if width * height > limit:
        raise ImageDecodeError(
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of {limit:,}"
        )
    if width < 1 or height < 1:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    return width, height


def _decode_error(e: Exception) -> Exception:
    """What to raise for a failure of PIL on untrusted bytes: a short `ImageDecodeError`
    (anything else, a bug of ours, passes unchanged)."""
    if isinstance(e, ImageDecodeError):
        return e
    if isinstance(e, Image.DecompressionBombError):  # PIL refuses > 2x its own limit on open
        return ImageDecodeError(f"image is too large: {e}")
    if isinstance(e, UnidentifiedImageError):
        return ImageDecodeError("not a recognised image format")
    if isinstance(e, (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError)):
        # Truncated or corrupt streams surface as any of these, depending on the plugin.
        return ImageDecodeError(f"corrupt or truncated image: {str(e) or type(e).__name__}")
    return e


# Draft decoding (issue 20): a JPEG is decoded at 1/2, 1/4 or 1/8 of its size straight from the
# DCT when that still leaves the caller's ``min_side`` on the long side; a 12 MP photo decoded at
# 1/4 costs a fraction of a full decode, and the cascade never reads it larger anyway.
DRAFT_FORMATS = ("JPEG", "MPO")
_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that turn the image by 90 degrees


def decode_reduced(data: bytes, max_side: int, min_side: int,
                   max_pixels: int | None = None) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode for a reader that needs at most ``max_side`` and at least ``min_side`` pixels on
    the long side: returns the RGB uint8 image and (W, H), the original's size after EXIF
    rotation (``ImageOps.exif_transpose``). A caller maps boxes back by the returned width over W.

    A JPEG is decoded in draft mode at the largest reduction (1/2, 1/4, 1/8) whose long side
    stays at least ``min_side``. When that draft is already within ``[min_side, max_side]`` it is
    returned as decoded (``ceil(W / k) x ceil(H / k)``): resizing it to ``max_side`` would only
    resample pixels the reader does not need, and cost a third of the drafted decode (a 12 MP
    photo drafted to 1000x750 and stretched to 1024x768). Otherwise (other formats, small
    images, a draft still too large) the image is shrunk to ``round(W * s) x round(H * s)``,
    ``s = min(1, max_side / max(W, H))``, as a full decode shrunk to ``max_side`` would be. The
    pixel limit applies to the header's size, before any decoding. Errors as `decode_image`.
    """
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as img:
            width, height = _checked_size(img, limit)
            turned = img.getexif().get(0x0112) in _SWAPS_SIDES
            full = (height, width) if turned else (width, height)
            scale = min(1.0, max_side / max(full))
            target = (max(1, round(full[0] * scale)), max(1, round(full[1] * scale)))
            k = 1
            if img.format in DRAFT_FORMATS and scale < 1.0:
                k = next((k for k in (8, 4, 2) if max(width, height) // k >= min_side), 1)
                if k > 1:  # PIL takes the largest reduction that keeps at least this size
                    img.draft(None, (width // k, height // k))
            img.load()
            ImageOps.exif_transpose(img, in_place=True)
            rgb = _to_rgb_image(img)
            as_drafted = k > 1 and min_side <= max(rgb.size) <= max_side
            if rgb.size != target and not as_drafted:
                rgb = rgb.resize(target, Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8).copy(), full
    except Exception as e:
        raise _decode_error(e) from None


def load_image(path: str, max_pixels: int | None = None) -> np.ndarray:
    """Read a local path or a URI (s3://, gs://, file://) and decode it like ``decode_image``."""
    from faceattr_ray.data.sources import read_bytes

    try:
        data = read_bytes(path)
    except DataError as e:
        raise ImageDecodeError(str(e)) from None
    try:
        return decode_image(data, max_pixels=max_pixels)
    except ImageDecodeError as e:
        raise ImageDecodeError(f"{path}: {e}") from None


class DecodedCache:
    """Decoded images kept in memory, for training loops that read the same files every epoch
    (the aligned faces: a JPEG decode is about a third of what a child process spends making
    an ANet batch). Arrays are handed out read-only, so no caller can change what the next one
    reads; once ``max_bytes`` are held, further paths are decoded on every read, as without a
    cache. One per process (a module global: the batch process and each Ray worker own one)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes, self.bytes = int(max_bytes), 0
        self._images: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._images)

    def load(self, path: str) -> np.ndarray:
        """`load_image`, from memory when this path was read before."""
        image = self._images.get(path)
        if image is None:
            image = load_image(path)
            if self.bytes + image.nbytes <= self.max_bytes:
                image.flags.writeable = False
                self._images[path] = image
                self.bytes += image.nbytes
        return image


_CACHES: dict[int, DecodedCache] = {}


def load_image_cached(path: str, max_mb: float) -> np.ndarray:
    """`load_image` through this process's `DecodedCache` of ``max_mb`` MiB (0: no cache, a
    fresh writable array every time; a cached array is read-only)."""
    if max_mb <= 0:
        return load_image(path)
    max_bytes = int(max_mb * 2**20)
    if max_bytes not in _CACHES:
        _CACHES[max_bytes] = DecodedCache(max_bytes)
    return _CACHES[max_bytes].load(path)


def _to_rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(_to_rgb_image(img), dtype=np.uint8).copy()


def _to_rgb_image(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_high_depth_to_rgb(img))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def _high_depth_to_rgb(img: Image.Image) -> np.ndarray:
    # PIL's convert("RGB") clips 16-bit values at 255 (a white image); scale the range instead.
    arr = np.asarray(img)
    if img.mode == "F":
        arr = arr.astype(np.float64)
        scale = 255.0 if np.nanmax(arr, initial=0.0) <= 1.0 else 1.0
        gray = np.clip(np.nan_to_num(arr) * scale, 0, 255)
    else:
        # 16-bit PNG/TIFF data (mode "I" too: PIL widens 16-bit grayscale PNG to it).
        gray = np.clip(arr.astype(np.float64), 0, 65535) / 257.0
    gray = np.rint(gray).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)
