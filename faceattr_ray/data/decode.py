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
            width, height = img.size
            if width * height > limit:
                raise ImageDecodeError(
                    f"image is {width}x{height} = {width * height:,} pixels, over the limit "
                    f"of {limit:,}"
                )
            if width < 1 or height < 1:
                raise ImageDecodeError(f"image has no pixels ({width}x{height})")
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageDecodeError:
        raise
    except Image.DecompressionBombError as e:  # PIL refuses > 2x its own limit on open
        raise ImageDecodeError(f"image is too large: {e}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as e:
        # Truncated or corrupt streams surface as any of these, depending on the plugin.
        reason = str(e) or type(e).__name__
        raise ImageDecodeError(f"corrupt or truncated image: {reason}") from None


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


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_rgb(img)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    rgb = img.convert("RGB")
    return np.asarray(rgb, dtype=np.uint8).copy()


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
