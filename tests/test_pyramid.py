"""The pyramid localizer of face-tag LNets (localizers/pyramid.py) and its calibration."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from faceattr_ray.evaluation.localization_metrics import calibrate_geometry, choose_threshold
from faceattr_ray.localizers.pyramid import PyramidLNetLocalizer, cell_centre


class BrightSpot(nn.Module):
    """A stand-in LNet whose face map is a blob detector at stride 8: the mean brightness of a
    32-pixel square around each cell minus that of the 64-pixel square around it. A bright
    square about 32 pixels wide is a 'face' wherever it is; it peaks at its centre, at the
    scale where it is that wide."""

    def face_map(self, x: torch.Tensor) -> torch.Tensor:
        g = x.mean(1, keepdim=True)
        inner = nn.functional.avg_pool2d(g, 32, 8, padding=12, count_include_pad=True)
        outer = nn.functional.avg_pool2d(g, 64, 8, padding=28, count_include_pad=True)
        h, w = min(inner.shape[2], outer.shape[2]), min(inner.shape[3], outer.shape[3])
        return 30.0 * (inner[:, 0, :h, :w] - outer[:, 0, :h, :w]) - 5.0


def _image(h: int, w: int, box) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img


def _localizer(**kw) -> PyramidLNetLocalizer:
    net = BrightSpot()
    # mean 0, std 1: the network sees [0, 1] pixels, so "bright" means > 0.5
    return PyramidLNetLocalizer(net, kw.pop("lnet_s", None), threshold=None, all_faces=True,
                                mean=(0, 0, 0), std=(1, 1, 1), **kw)


@pytest.mark.parametrize("h, w", [(150, 200), (600, 800), (375, 500)])
def test_multiscale_reading_maps_centres_back_to_the_original_pixels(h, w):
    # The same square, at the same place relative to the image, at three image sizes.
    side = round(0.16 * w)
    x1, y1 = round(0.55 * w), round(0.3 * h)
    image = _image(h, w, (x1, y1, x1 + side, y1 + side))
    props = _localizer(min_face=16, canonical=32.0).proposals(image)
    assert len(props) >= 1
    cx, cy = props[0, 0], props[0, 1]
    # Within half a C5 cell of the finest scale that read it, in original pixels.
    assert abs(cx - (x1 + side / 2)) < 0.06 * w
    assert abs(cy - (y1 + side / 2)) < 0.06 * h


def test_scales_cover_small_faces_to_the_whole_photo():
    loc = _localizer(canonical=36.0, min_face=20.0)
    scales = loc.scales(375, 500)
    assert scales[0] == pytest.approx(36 / 20)  # a 20-pixel face reaches the working size
    assert min(scales) <= 36 / 375 * 1.42  # ... and so does a face filling the short side
    assert all(a > b for a, b in zip(scales, scales[1:], strict=False))
    # A huge photo is read only at scales that keep it under max_side.
    assert max(loc.scales(4000, 6000)) * 6000 <= loc.max_side


def test_cell_centres_follow_the_stride():
    assert cell_centre(0) == pytest.approx(3.5)
    assert cell_centre(10) - cell_centre(9) == pytest.approx(8.0)


def test_geometry_and_threshold_from_scenes_with_known_boxes():
    # Squares of several sizes: the calibrated geometry maps found widths to the true boxes.
    rng = np.random.default_rng(0)
    images, boxes = [], []
    for _ in range(6):
        side = int(rng.integers(30, 60))
        x1, y1 = int(rng.integers(0, 300 - side)), int(rng.integers(0, 200 - side))
        images.append(_image(220, 320, (x1, y1, x1 + side, y1 + side)))
        boxes.append(np.array([[x1, y1, x1 + side, y1 + side]], np.float32))
    images.append(np.zeros((220, 320, 3), np.uint8))  # no face
    boxes.append(np.zeros((0, 4), np.float32))
    loc = _localizer(min_face=24, canonical=32.0)
    g = calibrate_geometry(loc, images, boxes)
    assert g["paired"] == 6
    loc.geometry = g["geometry"]
    chosen = choose_threshold(loc, images, boxes, max_false_per_image=1.0, iou=0.3)
    assert chosen["false_per_image"] <= 1.0
    assert chosen["recall"] >= 0.5


def test_refine_radius_keeps_a_proposal_on_its_own_face_beside_a_brighter_one():
    # Two faces side by side, as in a group photo: LNet_s's window around the dim one holds
    # the bright one too. Searching the whole window moves the proposal onto the neighbour
    # (which another proposal holds, so one face is lost to NMS); within half a face width of
    # the window's centre it stays.
    image = np.zeros((160, 320, 3), np.uint8)
    image[64:96, 100:132] = 170  # dim face, centre (116, 80)
    image[64:96, 140:172] = 255  # bright neighbour, centre (156, 80)
    proposal = np.array([[116.0, 80.0, 32.0, 0.9]])
    options = {"lnet_s": BrightSpot(), "window_faces": 3.5, "zooms": (1.0,)}
    anywhere = _localizer(**options).refine(image, proposal)
    near = _localizer(**options, refine_radius=0.5).refine(image, proposal)
    assert abs(anywhere[0, 0] - 156) < 8
    assert abs(near[0, 0] - 116) < 8 and abs(near[0, 1] - 80) < 8
    assert _localizer(refine_radius=0.5).options()["refine_radius"] == 0.5


class LopsidedSpot(BrightSpot):
    """`BrightSpot` whose map peaks one cell (8 pixels) right of the square's centre: a net
    that reads a face and its mirror image differently."""

    def face_map(self, x: torch.Tensor) -> torch.Tensor:
        m = super().face_map(x)
        return torch.cat([m[..., :1], m[..., :-1]], dim=-1)


@pytest.mark.parametrize("w", [320, 317])  # a multiple of the stride, and not
def test_flipped_proposals_treat_a_face_and_its_mirror_image_alike(w):
    """With ``flip_proposals`` LNet_o's map is averaged with its mirror image's, mapped back
    onto the same cells: a mirrored photo gets the mirrored proposal (within half a cell: the
    mirror's cells sample the photo at other pixels when its width is no multiple of 8). A net
    that leans one way is off by twice its lean between the two without it."""
    image = _image(160, w, (150, 60, 182, 92))  # a 32-pixel square, centre x 165.5
    mirrored = np.ascontiguousarray(image[:, ::-1])

    def centres(net: nn.Module, flip: bool) -> tuple[float, float]:
        loc = PyramidLNetLocalizer(net, None, threshold=None, all_faces=True, mean=(0, 0, 0),
                                   std=(1, 1, 1), min_face=32, canonical=32.0,
                                   flip_proposals=flip)
        return loc.proposals(image)[0, 0], w - 1 - loc.proposals(mirrored)[0, 0]

    a, b = centres(BrightSpot(), False)
    assert abs(a - b) < 2  # a symmetric net needs no flip
    a, b = centres(LopsidedSpot(), False)
    assert abs(a - b) > 10  # 8 pixels right in each: 16 apart once mirrored back
    a, b = centres(LopsidedSpot(), True)
    assert abs(a - b) < 4 and abs((a + b) / 2 - 165.5) < 4
    assert _localizer(flip_proposals=True).options()["flip_proposals"] is True


def test_the_recipe_sets_how_the_pyramid_localizer_reads_its_lnets():
    from faceattr_ray.reproduce import RECIPE
    from faceattr_ray.train.lnet_scenes import pyramid_reading

    reading = pyramid_reading(RECIPE["lnets"])
    lo, hi = RECIPE["lnets"]["face_px"]
    assert reading["canonical"] == pytest.approx((lo * hi) ** 0.5)
    assert reading["max_proposals"] == RECIPE["lnets"]["max_proposals"]
    assert "refine_radius" not in reading  # off in RECIPE: the localizer's default, None
    turned_on = pyramid_reading({**RECIPE["lnets"], "refine_radius": 0.5,
                                 "flip_proposals": True})
    assert _localizer(**turned_on).refine_radius == 0.5
    assert _localizer(**turned_on).flip_proposals is True
    assert reading.get("flip_proposals", False) is RECIPE["lnets"]["flip_proposals"]
    # training reads proposals as before (hard negatives, the draw choice): flip is a reading
    # choice, so the LNets a recipe trains do not depend on it
    assert "flip_proposals" not in pyramid_reading({**RECIPE["lnets"], "flip_proposals": True},
                                                   flip=False)
