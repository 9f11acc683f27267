"""decode_image / load_image on every kind of bad input that issue 7 lists, and on good ones."""

from __future__ import annotations

import io
import os
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image, ImageOps

from faceattr_ray.data.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image, load_image
from faceattr_ray.errors import DataError


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def halves(w: int = 40, h: int = 20) -> Image.Image:
    """Left half red, right half blue: orientation mistakes show."""
    arr = np.zeros((h, w, 3), np.uint8)
    arr[:, : w // 2] = (255, 0, 0)
    arr[:, w // 2 :] = (0, 0, 255)
    return Image.fromarray(arr)


def test_error_is_a_data_error():
    assert issubclass(ImageDecodeError, DataError)


@pytest.mark.parametrize("data, reason", [
    (b"", "empty"),
    (os.urandom(4096), "not a recognised image"),
    (b"hello, I am a text file pretending to be a PNG\n" * 20, "not a recognised image"),
])  # fmt: skip
def test_unreadable_bytes(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode_image(data)


def test_truncated_jpeg():
    rng = np.random.default_rng(0)
    data = encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageDecodeError, match="truncated|corrupt"):
        decode_image(data[: len(data) // 2])


def test_sixteen_bit_png_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 64 * 8).reshape(8, 64).astype(np.uint16)
    out = decode_image(encode(Image.fromarray(ramp), "PNG"))
    assert out.dtype == np.uint8 and out.shape == (8, 64, 3)
    expected = np.rint(ramp / 257.0).astype(np.uint8)
    assert np.abs(out[..., 0].astype(int) - expected).max() <= 1
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255 and 100 < out[4, 32, 0] < 155


def test_grayscale_becomes_three_equal_channels():
    gray = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    out = decode_image(encode(gray, "PNG"))
    assert out.shape == (16, 16, 3)
    assert (out[..., 0] == np.asarray(gray)).all() and (out[..., 0] == out[..., 2]).all()


def test_cmyk_jpeg_is_rgb():
    red = Image.new("RGB", (32, 32), (220, 30, 30))
    out = decode_image(encode(red.convert("CMYK"), "JPEG", quality=95))
    assert out.shape == (32, 32, 3)
    assert np.abs(out.reshape(-1, 3).mean(0) - (220, 30, 30)).max() < 12


def test_rgba_is_composited_on_white():
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 255)  # opaque red
    arr[0, 1] = (255, 0, 0, 0)  # fully transparent: white
    arr[0, 2] = (255, 0, 0, 128)  # half: pink
    out = decode_image(encode(Image.fromarray(arr, "RGBA"), "PNG"))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert abs(int(out[0, 2, 1]) - 127) <= 2 and out[0, 2, 0] == 255


def test_palette_png_with_and_without_transparency():
    pal = halves().convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
    out = decode_image(encode(pal, "PNG"))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, -1]) == (0, 0, 255)
    transparent_index = pal.getpixel((0, 0))
    out = decode_image(encode(pal, "PNG", transparency=transparent_index))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, -1]) == (0, 0, 255)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((0, 200, 0), (200, 0, 0), (0, 0, 200))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    out = decode_image(data)
    assert out.shape == (10, 10, 3) and out[5, 5, 1] > 150 and out[5, 5, 0] < 50


def test_one_pixel_image():
    out = decode_image(encode(Image.new("RGB", (1, 1), (1, 2, 3)), "PNG"))
    assert out.shape == (1, 1, 3) and tuple(out[0, 0]) == (1, 2, 3)


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's calling card)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # pytest resets filters
def test_pixel_limit_is_checked_before_decoding():
    start = time.perf_counter()
    with pytest.raises(ImageDecodeError, match="too large|over the limit"):
        decode_image(png_declaring(50_000, 50_000))  # 2.5e9 pixels: 7.5 GB if decoded
    with pytest.raises(ImageDecodeError, match="over the limit"):
        decode_image(png_declaring(10_000, 9_000))  # just over PIL's limit, under its 2x hard stop
    assert time.perf_counter() - start < 2.0
    assert DEFAULT_MAX_PIXELS == 89_478_485


def test_custom_limit_and_large_valid_image():
    big = Image.new("RGB", (4000, 3000), (10, 120, 200))
    data = encode(big, "JPEG", quality=80)
    out = decode_image(data)  # 12 Mpx: under the default limit
    assert out.shape == (3000, 4000, 3)
    with pytest.raises(ImageDecodeError, match="4000x3000"):
        decode_image(data, max_pixels=10_000_000)
    before = Image.MAX_IMAGE_PIXELS
    decode_image(encode(Image.new("RGB", (50, 50)), "PNG"), max_pixels=100_000_000)
    assert before == Image.MAX_IMAGE_PIXELS  # the per-call limit never touches PIL's global


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_applied(orientation):
    img = halves(40, 20)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    out = decode_image(data)
    # Peer: PIL's own exif_transpose of the same file.
    ref = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert out.shape == ref.shape and np.array_equal(out, ref)
    assert out.shape == ((20, 40, 3) if orientation == 3 else (40, 20, 3))
    if orientation == 6:  # rotate 90 degrees clockwise to display: the red left half goes on top
        assert out[2, 10, 0] > 200 and out[-3, 10, 2] > 200


def test_load_image_paths_with_odd_names(tmp_path):
    for name in ("with space.png", "ünïcödé 顔.png", "a,b,c.png"):
        path = tmp_path / name
        halves().save(path)
        assert load_image(str(path)).shape == (20, 40, 3)
    assert load_image((tmp_path / "a,b,c.png").as_uri()).shape == (20, 40, 3)  # file:// URI


def test_load_image_errors_name_the_file(tmp_path):
    link = tmp_path / "broken.jpg"
    link.symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        load_image(str(link))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="empty.jpg: empty"):
        load_image(str(empty))


def test_thread_safe_decoding():
    rng = np.random.default_rng(1)
    blobs = [
        encode(Image.fromarray(rng.integers(0, 255, (48, 40, 3), dtype=np.uint8)), "PNG")
        for _ in range(24)
    ]
    blobs += [b"", b"junk" * 10]
    serial = [_try(b) for b in blobs]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(_try, blobs * 4))
    for i, got in enumerate(threaded):
        want = serial[i % len(blobs)]
        assert type(got) is type(want)
        if isinstance(want, np.ndarray):
            assert np.array_equal(got, want)


def _try(data: bytes):
    try:
        return decode_image(data, max_pixels=10_000)
    except ImageDecodeError as e:
        return e


def test_only_raster_formats_are_opened():
    # PDF/EPS plugins can run external programs (Ghostscript): untrusted inputs never reach them.
    with pytest.raises(ImageDecodeError, match="not a recognised image format"):
        decode_image(encode(Image.new("RGB", (8, 8)), "PDF"))
    for fmt in ("TIFF", "WEBP", "BMP", "PPM"):
        assert decode_image(encode(Image.new("RGB", (8, 6), (9, 8, 7)), fmt)).shape == (6, 8, 3)


def test_decoded_cache_decodes_each_file_once_hands_out_read_only_arrays_and_stops_at_its_cap(
        tmp_path, monkeypatch):
    """Training reads the same faces every epoch: the cache decodes each once, keeps at most
    its cap (then decodes as before), and no caller can change what the next one reads; a wild
    crop (the ANet recipe's other reader of these arrays) works on a read-only face."""
    import faceattr_ray.data.decode as decode
    from faceattr_ray.data.scenes import SceneMaker, wild_face_window

    paths = []
    for k in range(3):
        path = tmp_path / f"{k}.png"
        Image.fromarray(np.full((40, 32, 3), 60 * k, np.uint8)).save(path)
        paths.append(str(path))
    calls = []
    real = decode.load_image
    monkeypatch.setattr(decode, "load_image", lambda p: calls.append(p) or real(p))
    cache = decode.DecodedCache(max_bytes=2 * 40 * 32 * 3)  # room for two of the three
    first = [cache.load(p) for p in paths]
    again = [cache.load(p) for p in paths]
    assert calls == paths + paths[2:]  # the third did not fit: decoded on every read
    assert again[0] is first[0] and again[1] is first[1] and len(cache) == 2
    assert cache.bytes == 2 * 40 * 32 * 3
    for image, k in zip(again, range(3), strict=True):
        assert np.array_equal(image, np.full((40, 32, 3), 60 * k, np.uint8))
    with pytest.raises(ValueError, match="read-only"):
        again[0][0, 0, 0] = 1
    assert again[2].flags.writeable  # not cached: the caller's own array
    # 0 MiB: no cache, a fresh writable array every call
    a, b = decode.load_image_cached(paths[0], 0), decode.load_image_cached(paths[0], 0)
    assert a is not b and a.flags.writeable
    backgrounds = [np.random.default_rng(0).integers(0, 255, (96, 96, 3), dtype=np.uint8)]
    maker = SceneMaker(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 1)), backgrounds)
    window = wild_face_window(first[0], maker, np.random.default_rng(0), 32, (16, 24))
    assert window.shape == (32, 32, 3)
