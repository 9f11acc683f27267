"""Localization: window scoring, density peaks, the LNet cascade's geometry, the baselines."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch
from PIL import Image

from faceattr_ray.crops import box_iou
from faceattr_ray.localizers import CascadeLocalizer, Detection, FullImageLocalizer, LNetLocalizer
from faceattr_ray.localizers.drawing import draw_cascade, draw_response_overlay
from faceattr_ray.localizers.peaks import density_peaks, region_windows
from faceattr_ray.localizers.windows import above_baseline, best_window, nms, score_windows

# --- window scoring ------------------------------------------------------------------------------


def test_best_window_is_exactly_the_blob():
    m = np.zeros((13, 13))
    m[3:7, 2:6] = 1.0
    box, score = best_window(m)
    assert box == (2, 3, 6, 7)  # x1, y1, x2, y2 in cells, exclusive end
    assert score == pytest.approx(16 / 16**0.5)


def test_uniform_blob_beats_a_single_hot_pixel_but_not_a_much_hotter_one():
    m = np.zeros((20, 20))
    m[2:8, 2:8] = 1.0  # 36 cells of 1: score 6
    m[15, 15] = 4.0
    assert best_window(m)[0] == (2, 2, 8, 8)
    m[15, 15] = 9.0  # one cell hotter than the blob's whole evidence
    assert best_window(m)[0] == (15, 15, 16, 16)


def test_normalisation_extremes_show_why_alpha_is_one_half():
    m = np.full((16, 16), 0.2)
    m[4:10, 4:10] = 1.0
    m[13, 13] = 1.5
    assert best_window(m, alpha=1.0)[0] == (13, 13, 14, 14)  # the mean: a lone hot cell wins
    assert best_window(m, alpha=0.0)[0] == (0, 0, 16, 16)  # the sum: the whole map wins
    assert best_window(m, alpha=0.5)[0] == (4, 4, 10, 10)  # the blob, with its own extent


def test_window_scores_equal_brute_force_sums():
    rng = np.random.default_rng(0)
    m = rng.random((7, 9))
    boxes, scores = score_windows(m, alpha=0.5, max_aspect=100)
    assert len(boxes) == (7 * 8 // 2) * (9 * 10 // 2)  # every window on a small map
    for (x1, y1, x2, y2), s in zip(boxes.astype(int), scores, strict=True):
        area = (x2 - x1) * (y2 - y1)
        assert s == pytest.approx(m[y1:y2, x1:x2].sum() / area**0.5)
    assert best_window(m, max_aspect=100)[1] == pytest.approx(scores.max())


def test_window_scoring_is_fast_on_large_maps():
    rng = np.random.default_rng(1)
    m = rng.random((100, 100)) * 0.2
    m[20:50, 30:60] += 1.0
    start = time.perf_counter()
    box, _ = best_window(m)
    elapsed = time.perf_counter() - start
    assert box_iou([box], [(30, 20, 60, 50)])[0, 0] > 0.9
    assert elapsed < 1.0, f"best_window on 100x100 took {elapsed:.2f}s"


def test_empty_and_torch_maps():
    assert best_window(np.zeros((5, 8))) == ((0.0, 0.0, 8.0, 5.0), 0.0)  # nothing responds
    t = torch.zeros(6, 6)
    t[1:3, 1:3] = 2.0
    assert best_window(t)[0] == (1, 1, 3, 3)


def test_nms_keeps_the_best_of_overlapping_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    keep = nms(boxes, np.array([0.5, 0.9, 0.7]), iou_threshold=0.3)
    assert keep.tolist() == [1, 2]


# --- density peaks -------------------------------------------------------------------------------


def two_blobs() -> np.ndarray:
    m = np.zeros((13, 20))
    m[2:6, 2:6] = 1.0  # weaker
    m[7:11, 12:17] = 1.5  # stronger and larger: the dominant face
    return m


def test_density_peaks_denser_blob_wins_and_regions_split_the_map():
    peaks = density_peaks(two_blobs())
    assert len(peaks.centers) == 2
    r, c = peaks.centers[0]
    assert 7 <= r < 11 and 12 <= c < 17
    assert peaks.d[0] > peaks.d[1]
    assert (peaks.labels[7:11, 12:17] == 0).all() and (peaks.labels[2:6, 2:6] == 1).all()


def test_denser_region_beats_a_hotter_single_cell():
    m = np.zeros((13, 13))
    m[1:6, 1:6] = 1.0  # mass 25
    m[10, 10] = 5.0  # mass 5
    assert density_peaks(m).labels[3, 3] == 0


def test_dominant_and_all_regions():
    m = two_blobs()
    # One window spanning both faces would score higher than either alone if they were closer;
    # the pruning keeps the dominant region only.
    (box,), = [[b for b, _ in region_windows(m, max_regions=1)]]
    assert box == (12, 7, 17, 11)
    both = [b for b, _ in region_windows(m, max_regions=None)]
    assert both == [(12, 7, 17, 11), (2, 2, 6, 6)]


def test_two_close_faces_in_one_window_are_pruned_to_one():
    m = np.zeros((13, 13))
    m[3:9, 1:5] = 1.0
    m[3:9, 7:11] = 0.9
    merged, _ = best_window(m)
    assert merged == (1, 3, 11, 9)  # the plain best window covers both faces
    assert region_windows(m)[0][0] == (1, 3, 5, 9)  # density peaks keep the stronger one


def test_plateau_has_one_peak():
    peaks = density_peaks(np.ones((6, 6)))
    assert len(peaks.centers) == 1 and (peaks.labels == 0).all()


# --- the LNet cascade with controlled fake networks ---------------------------------------------


class FixedMap(torch.nn.Module):
    """A stand-in LNet whose averaged response map is given; records the inputs it saw."""

    def __init__(self, m: np.ndarray):
        super().__init__()
        self.m = torch.as_tensor(m, dtype=torch.float32)
        self.shapes: list[tuple[int, ...]] = []

    def response_map(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return self.m.expand(x.shape[0], *self.m.shape).clone()


class Brightness(torch.nn.Module):
    """A stand-in LNet that responds to bright pixels, 16x16 pixels per cell like AlexNet's C5."""

    def response_map(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.nn.functional.avg_pool2d(x.mean(1, keepdim=True), 16)).squeeze(1)


def test_cascade_maps_boxes_back_to_original_pixels_exactly():
    map_o = np.zeros((10, 20))
    map_o[2:6, 4:10] = 1.0  # head-shoulders: cells x 4..10, y 2..6
    map_s = np.zeros((10, 10))
    map_s[0:5, 5:10] = 1.0  # face: top-right quarter of the crop
    image = np.zeros((200, 400, 3), np.uint8)  # H=200, W=400
    loc = LNetLocalizer(FixedMap(map_o), FixedMap(map_s), threshold=None, short_side=100,
                        head_shoulder_margin=0.0)
    trace = loc.localize_traced([image])[0]
    # LNet_o saw 100x200 (short side 100): a cell is 10 px there, 20 px in the original.
    assert loc.lnet_o.shapes == [(1, 3, 100, 200)]
    assert loc.lnet_s.shapes == [(1, 3, 227, 227)]
    assert trace.head_shoulders == [(80.0, 40.0, 200.0, 120.0)]
    # Crop 120x80 px over a 10x10 map: 12 x 8 px per cell.
    (det,) = trace.detections
    assert det.box == pytest.approx((140.0, 40.0, 200.0, 80.0))
    assert det.score == pytest.approx(25 / 5)


def test_cascade_finds_a_bright_square_in_a_real_sized_image():
    image = np.full((300, 500, 3), 20, np.uint8)
    image[100:220, 200:300] = 255
    loc = LNetLocalizer(Brightness(), Brightness(), threshold=None)
    (det,) = loc.localize([image])[0]
    assert box_iou([det.box], [(200, 100, 300, 220)])[0, 0] > 0.75


def test_threshold_applies_to_the_face_score():
    map_s = np.zeros((13, 13))
    map_s[4:8, 4:8] = 1.0  # score 4
    image = np.zeros((64, 64, 3), np.uint8)
    on = LNetLocalizer(FixedMap(np.ones((4, 4))), FixedMap(map_s), threshold=3.9)
    off = LNetLocalizer(FixedMap(np.ones((4, 4))), FixedMap(map_s), threshold=4.1)
    assert len(on.localize([image])[0]) == 1
    assert off.localize([image]) == [[]]


def test_all_faces_returns_every_face_above_threshold():
    map_s = np.zeros((13, 13))
    map_s[1:5, 1:5] = 1.0
    map_s[8:12, 7:12] = 1.5
    image = np.zeros((100, 100, 3), np.uint8)
    one = LNetLocalizer(FixedMap(np.ones((5, 5))), FixedMap(map_s), threshold=1.0)
    many = LNetLocalizer(FixedMap(np.ones((5, 5))), FixedMap(map_s), threshold=1.0, all_faces=True)
    (dominant,) = one.localize([image])[0]
    found = many.localize([image])[0]
    assert len(found) == 2
    assert found[0].box == dominant.box and found[0].score > found[1].score
    too_high = LNetLocalizer(FixedMap(np.ones((5, 5))), FixedMap(map_s), threshold=5.0,
                             all_faces=True)
    assert len(too_high.localize([image])[0]) == 1  # only the stronger face passes


def test_all_faces_finds_two_people_through_both_stages():
    map_o = np.zeros((10, 20))
    map_o[2:8, 1:5] = 1.0  # person 1
    map_o[2:8, 13:18] = 0.9  # person 2
    map_s = np.zeros((10, 10))
    map_s[2:6, 3:7] = 1.0  # a face in the middle of each head-shoulder crop
    image = np.zeros((100, 200, 3), np.uint8)
    kw = dict(threshold=1.0, short_side=100, head_shoulder_margin=0.0)
    many = LNetLocalizer(FixedMap(map_o), FixedMap(map_s), all_faces=True, **kw).localize([image])[0]
    one = LNetLocalizer(FixedMap(map_o), FixedMap(map_s), **kw).localize([image])[0]
    # Person 1 at (10, 20, 50, 80): 4 x 6 px per LNet_s cell; person 2 at (130, 20, 180, 80).
    np.testing.assert_allclose(sorted(d.box for d in many), [(22, 32, 38, 56), (145, 32, 165, 56)])
    assert len(one) == 1


def test_batches_group_same_size_images_and_match_one_by_one():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
              for h, w in [(120, 90), (120, 90), (50, 300), (120, 90)]]
    lnet_o, lnet_s = Brightness(), Brightness()
    calls = []
    original = lnet_o.response_map  # count the batches LNet_o sees
    lnet_o.response_map = lambda x: (calls.append(x.shape[0]), original(x))[1]
    loc = LNetLocalizer(lnet_o, lnet_s, threshold=None)
    together = loc.localize(images)
    assert sorted(calls) == [1, 3]  # one batch of the three 120x90 images, one of the strip
    alone = [loc.localize([im])[0] for im in images]
    for a, b in zip(together, alone, strict=True):
        assert a[0].box == pytest.approx(b[0].box, abs=1e-4)
        assert a[0].score == pytest.approx(b[0].score, rel=1e-4)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 1), (2, 3, 1), (5, 2000, 3), (3000, 7, 3),
                                   (40, 30, 4), (1200, 1600, 3)])
def test_any_input_size_gives_a_box_inside_the_image(shape):
    image = np.full(shape, 200, np.uint8)
    loc = LNetLocalizer(Brightness(), Brightness(), threshold=None)
    (det,) = loc.localize([image])[0]
    h, w = shape[:2]
    x1, y1, x2, y2 = det.box
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


def test_empty_inputs():
    loc = LNetLocalizer(Brightness(), Brightness(), threshold=None)
    assert loc.localize([]) == []
    assert loc.localize([np.zeros((0, 10, 3), np.uint8)]) == [[]]
    assert FullImageLocalizer().localize([np.zeros((0, 0, 3), np.uint8)]) == [[]]
    assert CascadeLocalizer().localize([np.zeros((0, 5, 3), np.uint8), np.zeros((10, 10, 3), np.uint8)]) == [[], []]


def test_real_lnet_runs_through_the_cascade():
    from faceattr_ray.models import LNet
    from faceattr_ray.presets import preset_configs

    torch.manual_seed(0)
    lnet = LNet(preset_configs("cpu", 40)[0])
    loc = LNetLocalizer(lnet, lnet, threshold=None)
    dets = loc.localize([np.zeros((20, 20, 3), np.uint8), np.full((180, 240, 3), 90, np.uint8)])
    for (det,), (h, w) in zip(dets, [(20, 20), (180, 240)], strict=True):
        assert 0 <= det.box[0] < det.box[2] <= w and 0 <= det.box[1] < det.box[3] <= h


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_gpu_gives_the_cpu_boxes():
    from faceattr_ray.models import LNet
    from faceattr_ray.presets import preset_configs

    torch.manual_seed(0)
    lnet = LNet(preset_configs("cpu", 40)[0])
    images = [np.random.default_rng(i).integers(0, 255, (160, 200, 3), dtype=np.uint8) for i in range(3)]
    cpu = LNetLocalizer(lnet, lnet, threshold=None).localize(images)
    gpu = LNetLocalizer(lnet, lnet, threshold=None, device="cuda").localize(images)
    for (a,), (b,) in zip(cpu, gpu, strict=True):
        assert box_iou([a.box], [b.box])[0, 0] > 0.95
        assert a.score == pytest.approx(b.score, rel=1e-2)


# --- baselines -----------------------------------------------------------------------------------


def test_cascade_finds_the_astronauts_face():
    from skimage import data

    (det,) = CascadeLocalizer().localize([data.astronaut()])[0]
    # The face in the 512x512 photo: about x 175-270, y 65-165.
    assert box_iou([det.box], [(175, 65, 270, 165)])[0, 0] > 0.6
    assert det.score >= 4


def test_cascade_localizer_pickles_after_use():
    import pickle

    from skimage import data

    loc = CascadeLocalizer()
    first = loc.localize([data.astronaut()])
    assert pickle.loads(pickle.dumps(loc)).localize([data.astronaut()]) == first


def test_cascade_scales_boxes_of_downsized_photos_back():
    from skimage import data

    big = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024)))
    (det,) = CascadeLocalizer(max_side=512).localize([big])[0]
    assert box_iou([det.box], [(350, 130, 540, 330)])[0, 0] > 0.6


def test_full_image_localizer():
    (det,) = FullImageLocalizer().localize([np.zeros((218, 178, 3), np.uint8)])[0]
    assert det == Detection((0.0, 0.0, 178.0, 218.0), 1.0)


# --- figure --------------------------------------------------------------------------------------


def test_overlay_png_is_written_with_the_images_aspect(tmp_path):
    image = np.full((150, 400, 3), 128, np.uint8)
    m = np.zeros((9, 25))
    m[2:6, 10:15] = 1.0
    path = tmp_path / "overlay.png"
    draw_response_overlay(image, m, [Detection((160, 30, 240, 100), 2.5)], str(path),
                          extra_boxes=[(140, 20, 260, 120)])
    with Image.open(path) as png:
        w, h = png.size
    assert abs(w / h - 400 / 150) < 0.02


def test_localizer_draws_its_own_figure(tmp_path):
    image = np.full((240, 320, 3), 10, np.uint8)
    image[60:160, 100:200] = 250
    loc = LNetLocalizer(Brightness(), Brightness(), threshold=None)
    trace = loc.draw(image, str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").stat().st_size > 1000
    assert trace.response_o is not None and len(trace.head_shoulders) == 1


# --- the map's baseline --------------------------------------------------------------------------


def floor_and_face() -> np.ndarray:
    m = np.full((13, 17), 0.3)  # attribute-trained C5 maps respond a little everywhere
    m[4:8, 6:10] = 1.0
    return m


def test_a_response_floor_makes_the_raw_best_window_the_whole_map():
    m = floor_and_face()
    assert best_window(m)[0] == (0, 0, 17, 13)  # 0.3 * sqrt(221) beats the face's 4.0
    assert best_window(above_baseline(m))[0] == (6, 4, 10, 8)
    assert (above_baseline(m, None) == m).all()


def test_localizer_subtracts_the_baseline_unless_told_not_to():
    image = np.zeros((130, 170, 3), np.uint8)
    kw = dict(threshold=None, short_side=130, head_shoulder_margin=0.0)
    (face,) = LNetLocalizer(FixedMap(floor_and_face()), FixedMap(floor_and_face()), **kw
                            ).localize([image])[0]
    (raw,) = LNetLocalizer(FixedMap(floor_and_face()), FixedMap(floor_and_face()),
                           baseline=None, **kw).localize([image])[0]
    # LNet_o: cells 6..10 x 4..8 of 10 px = (60, 40, 100, 80); LNet_s: the same share of that.
    expected = (60 + 40 * 6 / 17, 40 + 40 * 4 / 13, 60 + 40 * 10 / 17, 40 + 40 * 8 / 13)
    assert face.box == pytest.approx(expected)
    # On the raw maps LNet_o takes the whole image and LNet_s a window far larger than the face.
    assert box_iou([raw.box], [expected])[0, 0] < 0.1


# --- `faceattr-ray localize` ---------------------------------------------------------------------


def test_draw_cascade_puts_both_stages_side_by_side(tmp_path):
    image = np.full((120, 200, 3), 30, np.uint8)
    image[30:90, 60:120] = 240
    loc = LNetLocalizer(Brightness(), Brightness(), threshold=None)
    trace = loc.localize_traced([image])[0]
    draw_cascade(image, trace, str(tmp_path / "two.png"), max_side=400)
    with Image.open(tmp_path / "two.png") as png:
        w, h = png.size
        pixels = np.asarray(png.convert("RGB"))
    assert abs(w / h - 2 * 200 / 120) < 0.03  # two panels of the image's aspect
    assert not np.array_equal(pixels[:, : w // 2], pixels[:, w // 2 :])  # different maps


@pytest.fixture
def tiny_bundle(tmp_path) -> str:
    from faceattr_ray.bundle import save_bundle
    from faceattr_ray.presets import build_bundle

    path = str(tmp_path / "bundle")
    save_bundle(path, build_bundle("tiny", seed=0))
    return path


def test_cli_localize_writes_a_figure_and_the_boxes_of_each_image(tmp_path, tiny_bundle, capsys):
    from faceattr_ray.cli import main

    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    (inputs / "b").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (150, 220, 3), dtype=np.uint8)).save(inputs / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (90, 60, 3), dtype=np.uint8)).save(inputs / "b" / "a.png")
    out = tmp_path / "out"
    assert main(["localize", str(inputs), "--model", tiny_bundle, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row, (h, w) in zip(rows, [(150, 220), (90, 60)], strict=True):
        (face,) = row["faces"]  # no threshold in the bundle: the best window of each image
        x1, y1, x2, y2 = face["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert os.path.exists(row["figure"]) and row["path"] in printed
        with Image.open(row["figure"]) as png:
            assert abs(png.size[0] / png.size[1] - 2 * w / h) < 0.05
    assert {os.path.basename(r["figure"]) for r in rows} == {"a.png", "a_1.png"}  # no overwrite


def test_cli_localize_threshold_all_faces_and_unreadable_files(tmp_path, tiny_bundle, capsys):
    from faceattr_ray.cli import main

    good = tmp_path / "good.png"
    Image.fromarray(np.full((100, 100, 3), 128, np.uint8)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    rc = main(["localize", str(good), str(bad), "--model", tiny_bundle, "--out", str(out),
               "--threshold", "1e9", "--all-faces"])
    assert rc == 1  # one unreadable file; the other image is still done
    captured = capsys.readouterr()
    assert "bad.jpg" in captured.err and "no face above the threshold" in captured.out
    (row,) = [json.loads(line) for line in (out / "boxes.jsonl").read_text().splitlines()]
    assert row["faces"] == [] and os.path.exists(row["figure"])
    assert main(["localize", str(good), "--model", str(tmp_path / "missing"),
                 "--out", str(out)]) == 2


def test_from_bundle_reads_threshold_options_and_preprocessing():
    from faceattr_ray.errors import BundleError
    from faceattr_ray.models import Preprocess
    from faceattr_ray.presets import build_bundle

    bundle = build_bundle("tiny", threshold=0.7)
    bundle.config["preprocess"] = Preprocess(mean=(0.1, 0.2, 0.3), lnet_s_size=131).to_dict()
    bundle.config["localizer"] = {"options": {"baseline": None, "alpha": 0.6}}
    loc = LNetLocalizer.from_bundle(bundle, device="cpu")
    assert loc.threshold == 0.7 and loc.baseline is None and loc.alpha == 0.6
    assert loc.mean == (0.1, 0.2, 0.3) and loc.crop_size == 131
    assert LNetLocalizer.from_bundle(bundle, threshold=None).threshold is None
    assert LNetLocalizer.from_bundle(bundle, baseline=0.3).baseline == 0.3  # caller wins
    bundle.lnet_s = None
    with pytest.raises(BundleError, match="no LNets"):
        LNetLocalizer.from_bundle(bundle)
