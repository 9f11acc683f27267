"""Decoding for the cascade (`decode_reduced`, issue 20): JPEGs in draft mode, boxes in the
original's frame after EXIF rotation, the pixel limit on the header's size, and the cascade's
boxes on a draft-decoded 12 MP photo equal to those of a full decode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageOps
from PIL.JpegImagePlugin import JpegImageFile

from faceattr_ray.crops import box_iou
from faceattr_ray.data.decode import ImageDecodeError, decode_image, decode_reduced
from faceattr_ray.pipeline.annotate import WORK_MAX_SIDE, WORK_MIN_SIDE


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def shrunk_full_decode(data: bytes, size: tuple[int, int]) -> np.ndarray:
    """The peer: decode in full (EXIF applied), then shrink, as annotate did before draft mode."""
    return np.asarray(Image.fromarray(decode_image(data)).resize(size, Image.Resampling.BILINEAR))


def astronaut_12mp() -> bytes:
    """A 4000x3000 JPEG of a real photo with faces: scikit-image's astronaut, 2400 px, on a
    grey canvas."""
    from faceattr_ray.data.sample_photos import sample_photo_paths

    photo = Image.open(sample_photo_paths(no_people=False)["astronaut.png"]).convert("RGB")
    canvas = Image.new("RGB", (4000, 3000), (90, 90, 90))
    canvas.paste(photo.resize((2400, 2400), Image.Resampling.BILINEAR), (800, 300))
    return encode(canvas, "JPEG", quality=90)


@pytest.fixture(scope="module")
def photo_12mp() -> bytes:
    return astronaut_12mp()


def test_a_12mp_jpeg_is_drafted_at_a_quarter_and_read_at_that_size(photo_12mp, monkeypatch):
    drafts = []
    real = JpegImageFile.draft
    monkeypatch.setattr(JpegImageFile, "draft",
                        lambda self, mode, size: drafts.append(size) or real(self, mode, size))
    work, full = decode_reduced(photo_12mp, WORK_MAX_SIDE, WORK_MIN_SIDE)
    assert full == (4000, 3000)
    assert drafts == [(1000, 750)]  # 1/4: the largest reduction that keeps >= 960 px
    # 1000 px lies within [WORK_MIN_SIDE, WORK_MAX_SIDE]: the draft is the work image, pixel for
    # pixel what libjpeg gives at a quarter, not stretched to 1024 px.
    assert work.shape == (750, 1000, 3)
    monkeypatch.setattr(JpegImageFile, "draft", real)
    with Image.open(io.BytesIO(photo_12mp)) as img:
        img.draft("RGB", (1000, 750))
        np.testing.assert_array_equal(work, np.asarray(img.convert("RGB")))
    peer = shrunk_full_decode(photo_12mp, (1000, 750))
    assert np.abs(work.astype(int) - peer).mean() < 2.0  # same picture, other road


def test_a_draft_below_the_working_size_is_never_stretched():
    # 1920x1080 (a 2 MP phone frame): half is 960x540, at least WORK_MIN_SIDE, so it is kept.
    # Stretched to 1024x576 it would cost more than the drafted decode itself (bench above).
    rng = np.random.default_rng(1)
    data = encode(Image.fromarray(rng.integers(0, 255, (1080, 1920, 3), np.uint8)), "JPEG")
    work, full = decode_reduced(data, WORK_MAX_SIDE, WORK_MIN_SIDE)
    assert full == (1920, 1080) and work.shape == (540, 960, 3)
    # 6000x4000: a quarter is 1500 px, over WORK_MAX_SIDE, so the draft is shrunk to 1024.
    data = encode(Image.new("RGB", (6000, 4000), (120, 80, 40)), "JPEG")
    work, full = decode_reduced(data, WORK_MAX_SIDE, WORK_MIN_SIDE)
    assert full == (6000, 4000) and work.shape == (683, 1024, 3)


def test_small_images_and_other_formats_are_not_drafted(monkeypatch):
    drafts = []
    monkeypatch.setattr(JpegImageFile, "draft", lambda self, mode, size: drafts.append(size))
    rng = np.random.default_rng(0)
    small = encode(Image.fromarray(rng.integers(0, 255, (480, 640, 3), np.uint8)), "JPEG")
    work, full = decode_reduced(small, WORK_MAX_SIDE, WORK_MIN_SIDE)
    assert full == (640, 480) and work.shape == (480, 640, 3) and not drafts
    # 1600x1200: half would be 800 < 960 px, so no draft; shrunk after a full decode.
    mid = encode(Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), np.uint8)), "JPEG")
    work, full = decode_reduced(mid, WORK_MAX_SIDE, WORK_MIN_SIDE)
    assert full == (1600, 1200) and work.shape == (768, 1024, 3) and not drafts
    png = encode(Image.fromarray(rng.integers(0, 255, (1200, 1600, 3), np.uint8)), "PNG")
    work, full = decode_reduced(png, WORK_MAX_SIDE, WORK_MIN_SIDE)
    assert full == (1600, 1200) and work.shape == (768, 1024, 3)
    np.testing.assert_array_equal(work, shrunk_full_decode(png, (1024, 768)))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_originals_keep_their_frame(orientation):
    # 800x400, left half red, right half blue, a green square top left: turns show.
    arr = np.zeros((400, 800, 3), np.uint8)
    arr[:, :400] = (255, 0, 0)
    arr[:, 400:] = (0, 0, 255)
    arr[:60, :60] = (0, 255, 0)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95)
    turned = orientation in (6, 8)
    work, full = decode_reduced(data, max_side=200, min_side=100)  # draft at 1/8: 100 px
    assert full == ((400, 800) if turned else (800, 400))
    assert work.shape == ((100, 50, 3) if turned else (50, 100, 3))
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    peer = np.asarray(upright.resize(work.shape[1::-1], Image.Resampling.BILINEAR))
    assert np.abs(work.astype(int) - peer).mean() < 4.0


def test_the_pixel_limit_applies_to_the_header_size(photo_12mp):
    # The drafted image is 1000x750 = 0.75 MP, under a 1 MP limit; the file is 12 MP: refused.
    with pytest.raises(ImageDecodeError, match="4000x3000 = 12,000,000 pixels, over the limit"):
        decode_reduced(photo_12mp, WORK_MAX_SIDE, WORK_MIN_SIDE, max_pixels=1_000_000)
    with pytest.raises(ImageDecodeError, match="corrupt or truncated"):
        decode_reduced(photo_12mp[: len(photo_12mp) // 3], WORK_MAX_SIDE, WORK_MIN_SIDE)
    with pytest.raises(ImageDecodeError, match="empty"):
        decode_reduced(b"", WORK_MAX_SIDE, WORK_MIN_SIDE)


@pytest.mark.parametrize("framed", [False, True])
def test_cascade_boxes_on_a_drafted_12mp_photo_equal_a_full_decodes(photo_12mp, framed):
    """The bundled model on the same photo decoded both ways: every face found in one is found
    in the other, the LNets' box corners within 4 pixels of the 4000-pixel original (one pixel
    of the 1000-pixel work image; the astronaut's face is about 500 pixels wide there, so under
    1% of it) and scores within 0.01. The peer is shrunk to the drafted size (1000x750), so only
    the road to the pixels differs: libjpeg's reduced inverse DCT against Pillow's bilinear
    filter, which blur differently (mean difference 0.33 grey levels; measured 0.88 px at the
    work scale on the worst corner). Framed by ANet, the
    boxes overlap at IoU >= 0.7: framing keeps the crop ANet reads most confidently, and two
    crops read almost alike can swap places on a pixel's difference (one sideways move of a
    tenth of the width, IoU 0.82, on a find beside the astronaut's face)."""
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.bundled import model_path
    from faceattr_ray.predictor import Predictor

    work, (w, _) = decode_reduced(photo_12mp, WORK_MAX_SIDE, WORK_MIN_SIDE)
    peer = shrunk_full_decode(photo_12mp, work.shape[1::-1])
    predictor = Predictor(load_bundle(model_path()), "cpu", "lnet", all_faces=True,
                          **({} if framed else {"frame_zooms": ()}))
    # Fewer scales and proposals than the bundle's (its faces are >= 60 work pixels): seconds.
    predictor.localizer.min_face, predictor.localizer.max_proposals = 60.0, 4
    drafted, full = predictor.predict([work, peer])
    assert len(drafted.faces) >= 1 and len(drafted.faces) == len(full.faces)
    scale = w / work.shape[1]
    for face in drafted.faces:
        match = min(full.faces, key=lambda f: np.abs(np.subtract(f.box, face.box)).max())
        if framed:
            assert box_iou(np.array([match.box]), np.array([face.box]))[0, 0] >= 0.7
        else:
            assert np.abs(np.subtract(match.box, face.box)).max() * scale <= 4.0
        assert abs(match.score - face.score) <= 0.01
