"""Landmarks measured from faces (mean face, per face), pseudo part masks placed by them, faces
moved by known amounts, and the checks that tell a parsing that follows the face from a
fixed template."""

from __future__ import annotations

import os

import numpy as np
import pytest

from faceattr_ray.data.aligned_landmarks import (
    ALIGNED_LANDMARKS,
    face_landmarks,
    mean_face,
    mean_face_landmarks,
    to_gray,
)
from faceattr_ray.data.parts import EYES, MOUTH

CELEBA_MINI = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                           "celeba-mini")


def blob_face(offset: tuple[float, float] = (0.0, 0.0), w: int = 89, h: int = 109
              ) -> np.ndarray:
    """A grey face with dark Gaussian blobs at ALIGNED_LANDMARKS (+ offset): two eyes, two
    nostrils either side of the nose, a mouth line."""
    ys, xs = np.mgrid[0:h, 0:w] + 0.5
    img = np.full((h, w), 170.0)

    def blob(x, y, sx, sy, depth):
        return depth * np.exp(-((xs - x - offset[0]) ** 2 / (2 * sx ** 2)
                                + (ys - y - offset[1]) ** 2 / (2 * sy ** 2)))

    lm = ALIGNED_LANDMARKS
    for key in ("left_eye", "right_eye"):
        img -= blob(*lm[key], 2.0, 1.3, 90)
    nx, ny = lm["nostrils"]
    img -= blob(nx - 3.5, ny, 1.2, 1.0, 40) + blob(nx + 3.5, ny, 1.2, 1.0, 40)
    img -= blob(*lm["mouth"], 6.0, 1.2, 70)
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def test_mean_face_landmarks_find_dark_blobs_where_they_are():
    found = mean_face_landmarks(mean_face([blob_face()] * 3))
    for key, (x, y) in ALIGNED_LANDMARKS.items():
        assert found[key] == pytest.approx((x, y), abs=0.3), key
    moved = face_landmarks(to_gray(blob_face((2.0, -1.0))))
    assert moved["left_eye"] == pytest.approx((ALIGNED_LANDMARKS["left_eye"][0] + 2,
                                               ALIGNED_LANDMARKS["left_eye"][1] - 1), abs=0.3)
    assert face_landmarks(np.full((109, 89), 128.0))["mouth"] is None  # nothing dark: None


@pytest.mark.skipif(not os.path.isdir(CELEBA_MINI), reason="needs ../shared/data/celeba-mini")
def test_the_stored_positions_are_those_of_celeba_minis_mean_face():
    from faceattr_ray.data.decode import load_image

    folder = os.path.join(CELEBA_MINI, "img_align_celeba")
    names = sorted(os.listdir(folder))[::8]  # 998 of the 7,984: the mean is already stable
    found = mean_face_landmarks(mean_face(load_image(os.path.join(folder, n)) for n in names))
    for key, (x, y) in ALIGNED_LANDMARKS.items():
        assert found[key] == pytest.approx((x, y), abs=0.6), key


def test_move_face_moves_image_mask_and_point_alike():
    from faceattr_ray.data.face_jitter import move_face, moved_point

    img = np.zeros((109, 89, 3), np.uint8)
    mask = np.zeros((109, 89), np.uint8)
    img[50:54, 30:34] = 255
    mask[50:54, 30:34] = EYES
    moved, mmask = move_face(img, mask, 1.1, 5.0, -3.0)
    assert moved.shape == img.shape and mmask.shape == mask.shape
    want = moved_point((32.0, 52.0), (89, 109), 1.1, 5.0, -3.0)
    ys, xs = np.nonzero(mmask == EYES)
    assert (xs.mean() + 0.5, ys.mean() + 0.5) == pytest.approx(want, abs=0.6)
    ys, xs = np.nonzero(moved[..., 0] > 127)
    assert (xs.mean() + 0.5, ys.mean() + 0.5) == pytest.approx(want, abs=0.6)
    assert set(np.unique(mmask)) <= {0, EYES}  # nearest neighbour: no new labels
    # turned too (clockwise on screen): the spot goes where moved_point says, and the border
    # is filled (reflected), not black
    turned, _ = move_face(np.maximum(img, 20), None, 0.9, -2.0, 4.0, angle=12.0)
    want = moved_point((32.0, 52.0), (89, 109), 0.9, -2.0, 4.0, angle=12.0)
    ys, xs = np.nonzero(turned[..., 0] > 127)
    assert (xs.mean() + 0.5, ys.mean() + 0.5) == pytest.approx(want, abs=0.6)
    assert turned.min() >= 20


def test_photo_texture_changes_the_background_not_the_mask():
    from faceattr_ray.data.face_jitter import photo_texture

    rng = np.random.default_rng(0)
    img = np.full((40, 30, 3), 200, np.uint8)
    mask = np.zeros((40, 30), np.uint8)
    mask[10:30, 8:22] = 2
    photo = rng.integers(0, 255, (64, 80, 3)).astype(np.uint8)
    out = photo_texture(img, mask, [photo], rng)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out[mask == 0].astype(float) - 200).mean() > 20  # a photo, not the drawing


def test_pseudo_mask_follows_each_face_and_the_template_does_not():
    from faceattr_ray.data.pseudo_parts import pseudo_mask, template_mask
    from faceattr_ray.evaluation.parsing_checks import part_centroids

    for dx, dy in ((0.0, 0.0), (3.0, 2.0), (-3.0, -2.0)):
        m = pseudo_mask(blob_face((dx, dy)))
        c = part_centroids(m)
        assert c["left_eye"][0] + 0.5 == pytest.approx(ALIGNED_LANDMARKS["left_eye"][0] + dx,
                                                       abs=0.7)
        assert c["mouth"][1] + 0.5 == pytest.approx(ALIGNED_LANDMARKS["mouth"][1] + dy, abs=0.7)
    t = template_mask(109, 89)
    assert (t == MOUTH).any() and part_centroids(t)["right_eye"] is not None


def test_checks_pass_the_template_aligned_and_fail_it_moved():
    """`real_face_checks` on blob faces: the template passes as aligned, misses the faces moved
    by 8 px and does not follow them (r 0); a parsing that reads the blobs follows (r ~ 1)."""
    from faceattr_ray.data.pseudo_parts import pseudo_mask, template_mask
    from faceattr_ray.evaluation.parsing_checks import real_face_checks

    faces = [blob_face()] * 12
    template = real_face_checks(lambda ims: [template_mask(*im.shape[:2]) for im in ims],
                                faces, tolerance=3.0, shift=8.0)
    assert template["aligned"]["all_four_within"] == 1.0
    assert template["moved"]["left_eye"]["within"] < 0.6
    assert abs(template["following"]["mean_r"]) < 1e-9
    reader = real_face_checks(lambda ims: [pseudo_mask(im) for im in ims], faces,
                              tolerance=3.0, shift=2.5, scale=(1.0, 1.0))
    assert reader["moved"]["left_eye"]["within"] == 1.0
    assert reader["following"]["mean_r"] > 0.9


FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "parsing_real_pseudo")


def _fixture_parser():
    """The small parsing network `bench/parsing_transfer.py`'s real-pseudo arm trained
    (fixtures/parsing_real_pseudo.json says how; 49k weights stored in float16)."""
    import json

    import torch
    from safetensors.torch import load_file

    from faceattr_ray.evaluation.parsing_checks import predict_parts
    from faceattr_ray.models import Preprocess, SSPSSGConfig, SSPSSGNet

    with open(FIXTURE + ".json") as f:
        cfg = json.load(f)
    net = SSPSSGNet(SSPSSGConfig.from_dict({"input_size": cfg["input_size"],
                                            "parsing": cfg["parsing"], "num_attributes": 1}))
    state = {k: v.float() if v.is_floating_point() else v
             for k, v in load_file(FIXTURE + ".safetensors").items()}
    net.parsing.load_state_dict(state)
    pre = Preprocess.from_dict(cfg["preprocess"])
    with torch.inference_mode():
        return lambda ims: predict_parts(net.eval(), pre, ims)


@pytest.mark.skipif(not os.path.isdir(CELEBA_MINI), reason="needs ../shared/data/celeba-mini")
def test_small_parsing_net_finds_real_eyes_nose_mouth_and_follows_moved_faces():
    """On 24 real val faces (never trained on), as aligned and moved by known random amounts
    (scale 0.9-1.1, up to 6 px): the regions sit near the measured landmarks in both, and move
    with the face. The fixed template passes the aligned check but not the moved one, so this
    cannot pass by a learnt fixed place; a network that finds no parts fails both."""
    from faceattr_ray.data.celeba import read_celeba
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.data.pseudo_parts import template_mask
    from faceattr_ray.evaluation.parsing_checks import real_face_checks

    paths = list(read_celeba(CELEBA_MINI, split="val").paths)[:24]
    faces = [load_image(str(p)) for p in paths]
    net = real_face_checks(_fixture_parser(), faces, tolerance=4.0, shift=6.0)
    template = real_face_checks(lambda ims: [template_mask(*im.shape[:2]) for im in ims],
                                faces, tolerance=4.0, shift=6.0)
    for name in ("aligned", "moved"):
        for key in ("left_eye", "right_eye", "nose", "mouth"):
            assert net[name][key]["within"] >= 0.5, (name, key, net[name][key])
    assert net["moved"]["all_four_within"] > template["moved"]["all_four_within"] + 0.15
    assert net["following"]["mean_r"] > 0.4
