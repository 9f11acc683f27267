"""Scenes for training the LNets from image-level tags (data/scenes.py, train/lnet_scenes.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from faceattr_ray.data.scenes import (
    SceneMaker,
    image_tags,
    jitter_box,
    list_backgrounds,
    rotated_box,
    soft_ellipse_mask,
    soft_rect_mask,
    split_backgrounds,
    wild_face_window,
)
from faceattr_ray.errors import RecipeError
from faceattr_ray.train.lnet_scenes import SceneBatches, SceneTrainConfig, tag_loss


def _faces(n: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Aligned-crop-sized 'faces': a bright ellipse on grey, so a paste is visible."""
    rng = np.random.default_rng(seed)
    faces = np.full((n, 109, 89, 3), 90, np.uint8)
    yy, xx = np.mgrid[0:109, 0:89]
    inside = ((xx - 44) / 25) ** 2 + ((yy - 62) / 30) ** 2 < 1
    faces[:, inside] = (230, 190, 160)
    labels = (rng.random((n, 40)) < 0.3).astype(np.float32)
    return faces, labels


def _backgrounds(n: int = 3) -> list[np.ndarray]:
    return [np.full((200, 300, 3), 20 * (k + 1), np.uint8) for k in range(n)]


@pytest.mark.parametrize("make_mask", [soft_ellipse_mask, soft_rect_mask])
def test_soft_mask_has_no_hard_edge(make_mask):
    mask = make_mask(89, 109)
    assert mask.max() == pytest.approx(1.0)
    # Zero along the whole rectangular border: the crop's edge never shows.
    border = np.r_[mask[0], mask[-1], mask[:, 0], mask[:, -1]]
    assert border.max() == 0.0
    # No step: neighbouring pixels differ by a small fraction of the full range.
    assert np.abs(np.diff(mask, axis=0)).max() < 0.2
    assert np.abs(np.diff(mask, axis=1)).max() < 0.2


def test_distractor_patches_are_not_faces():
    """Background patches pasted with the faces' own masks change the picture but add no face:
    the image-level tag stays 0 and no box appears, so a paste's outline cannot mean 'face'."""
    faces, labels = _faces()
    bgs = [np.full((200, 300, 3), 20, np.uint8), np.full((200, 300, 3), 220, np.uint8)]
    plain = SceneMaker(faces, labels, bgs, size=(96, 96), face_px=(20, 30))
    busy = SceneMaker(faces, labels, bgs, size=(96, 96), face_px=(20, 30), distractors=3,
                      context_share=0.5)
    changed = 0
    for k in range(12):
        a = plain(np.random.default_rng(k), num_faces=0)
        b = busy(np.random.default_rng(k), num_faces=0)
        assert len(b.boxes) == 0 and image_tags(b, 40)[0] == 0.0
        changed += int(np.abs(a.image.astype(int) - b.image.astype(int)).max() > 120)
    assert changed >= 6  # most scenes received a patch of the other background
    with_faces = busy(np.random.default_rng(0), num_faces=2)
    assert len(with_faces.boxes) == 2 and image_tags(with_faces, 40)[0] == 1.0


def test_negatives_carry_face_tag_zero_and_no_attribute_loss():
    faces, labels = _faces()
    maker = SceneMaker(faces, labels, _backgrounds(), size=(96, 96), face_px=(16, 28))
    rng = np.random.default_rng(0)
    empty = maker(rng, num_faces=0)
    face, tags = image_tags(empty, 40)
    assert face == 0.0 and np.isnan(tags).all() and len(empty.boxes) == 0
    two = maker(rng, num_faces=2)
    face, tags = image_tags(two, 40)
    assert face == 1.0
    np.testing.assert_array_equal(tags, two.labels.max(0))  # present if any face has it

    # The attribute part of the loss ignores rows without a face, whatever their logits say.
    logits = torch.zeros(2, 41)
    face_t = torch.tensor([0.0, 1.0])
    tags_t = torch.tensor(np.stack([np.full(40, np.nan), np.ones(40)]), dtype=torch.float32)
    base = tag_loss(logits, face_t, tags_t, 1.0)
    logits2 = logits.clone()
    logits2[0, 1:] = 50.0  # wild attribute logits on the face-free row
    assert tag_loss(logits2, face_t, tags_t, 1.0).item() == pytest.approx(base.item())


def test_training_batches_hold_both_kinds_for_both_stages():
    faces, labels = _faces()
    for stage, size in (("o", 64), ("s", 48)):
        maker = SceneMaker(faces, labels, _backgrounds(), size=(size, size), face_px=(14, 30))
        cfg = SceneTrainConfig(stage=stage, window_size=48, cut_share=0.2)
        images, face, tags = SceneBatches(maker, cfg, 40).batch(np.random.default_rng(1), 32)
        assert images.dtype == np.uint8 and images.shape[1:] == ((size, size, 3) if stage == "o" else (48, 48, 3))
        assert 0 < face.mean() < 1
        assert np.isnan(tags[face == 0]).all() and not np.isnan(tags[face == 1]).any()


def test_face_cut_windows_cut_a_face_and_stay_inside_their_canvas(monkeypatch):
    """LNet_s's cut negatives: a head-shoulder-sized window whose edge cuts the face (some of
    it inside, never most of it), cut from a canvas large enough that no edge is padded."""
    from faceattr_ray.train import lnet_scenes

    faces, labels = _faces()
    maker = SceneMaker(faces, labels, _backgrounds(), degrade=0.0)
    seen: dict = {}
    portrait, crop = maker.portrait, lnet_scenes.crop_window

    def recording_portrait(*args, **kwargs):
        image, box = portrait(*args, **kwargs)
        seen["canvas"], seen["face"] = image.shape[:2], box
        return image, box

    def recording_crop(image, box, out):
        seen["window"] = box
        return crop(image, box, out)

    monkeypatch.setattr(maker, "portrait", recording_portrait)
    monkeypatch.setattr(lnet_scenes, "crop_window", recording_crop)
    cut = 0
    for k in range(40):
        seen.clear()
        window = lnet_scenes.face_cut_window(maker, np.random.default_rng(k), 48)
        assert window.shape == (48, 48, 3) and window.dtype == np.uint8
        if "window" not in seen:
            continue  # no cut fitted the canvas: a face-free window instead
        cut += 1
        (h, w), (x1, y1, x2, y2), (wx1, wy1, wx2, wy2) = seen["canvas"], seen["face"], seen["window"]
        assert min(wx1, wy1) >= 0 and wx2 <= w and wy2 <= h  # inside: nothing padded
        side, fw = wx2 - wx1, x2 - x1
        assert 2.5 / 1.26 < side / fw < 2.5 * 1.26
        ix = max(0.0, min(x2, wx2) - max(x1, wx1))
        iy = max(0.0, min(y2, wy2) - max(y1, wy1))
        assert 0.2 < ix * iy / ((x2 - x1) * (y2 - y1)) <= 0.65  # part of the face, not most
    assert cut >= 30


def test_backgrounds_listing_skips_bad_files_with_a_count(tmp_path):
    for k in range(4):
        Image.new("RGB", (64, 48), (k * 40, 10, 10)).save(tmp_path / f"good{k}.jpg")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    good, bad = list_backgrounds(str(tmp_path))
    assert [os.path.basename(p) for p in good] == [f"good{k}.jpg" for k in range(4)]
    assert sorted(os.path.basename(p) for p in bad) == ["empty.jpg", "text.png"]
    train, val = split_backgrounds(good)
    assert len(val) == 1 and set(train) | set(val) == set(good) and not set(train) & set(val)
    # The split is by name: the same files give the same split in any order.
    assert split_backgrounds(list(reversed(good)))[1] == val


def test_scene_boxes_cover_the_pasted_faces():
    faces, labels = _faces()
    maker = SceneMaker(faces, labels, _backgrounds(), size=(160, 160), face_px=(30, 50),
                       max_rotation=0, degrade=0)
    scene = maker(np.random.default_rng(3), num_faces=1)
    (x1, y1, x2, y2), = scene.boxes
    inside = scene.image[int(y1) + 4:int(y2) - 4, int(x1) + 4:int(x2) - 4].astype(float)
    outside = np.ones(scene.image.shape[:2], bool)
    outside[max(0, int(y1) - 30):int(y2) + 30, max(0, int(x1) - 30):int(x2) + 30] = False
    # The bright face is inside its box; the dark background is all that lies well outside.
    assert inside.mean() > 2 * scene.image[outside].astype(float).mean()
    np.testing.assert_array_equal(scene.labels[0], labels[scene.face_index[0]])


def test_grey_share_turns_that_share_of_scenes_grey_and_nothing_else():
    """``grey_share`` sets how many training scenes are grey; the scenes are otherwise the same
    (same draws), so a recipe comparing two shares compares only that."""
    faces, labels = _faces()
    backgrounds = [np.dstack([np.full((200, 300), v, np.uint8) for v in (40, 120, 200)])]

    def grey(scene) -> bool:  # noise and JPEG after the grey leave a little colour
        spread = scene.image.max(2).astype(float) - scene.image.min(2)
        return bool(spread.mean() < 30)

    scenes = {share: [SceneMaker(faces, labels, backgrounds, size=(96, 96), face_px=(30, 50),
                                 grey_share=share)(np.random.default_rng(k)) for k in range(60)]
              for share in (None, 0.0, 0.5, 1.0)}
    counts = {share: sum(grey(s) for s in made) for share, made in scenes.items()}
    assert counts[0.0] == 0 and counts[1.0] == 60
    assert 4 <= counts[None] <= 16 and 20 <= counts[0.5] <= 40  # 0.15 and 0.5 of 60
    for a, b in zip(scenes[None], scenes[0.5], strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        if grey(a) == grey(b):
            np.testing.assert_array_equal(a.image, b.image)


def _covered_by_later_pastes(maker: SceneMaker, seed: int, scenes: int) -> list[float]:
    """Per face of ``scenes`` scenes: the share of its box whose pixels a later paste changed
    by more than 40 levels, read from the canvas itself (not from the maker's arithmetic)."""
    pastes: list = []
    paste = maker._paste

    def recording(canvas, rng, taken, src=None, face_px=None):
        before = canvas.copy()
        placed = paste(canvas, rng, taken, src, face_px)
        if placed is not None:
            pastes.append((placed[1], np.abs(canvas - before).max(2) > 40))
        return placed

    maker._paste = recording
    rng, shares = np.random.default_rng(seed), []
    for _ in range(scenes):
        pastes.clear()
        maker(rng)
        for k, (box, _) in enumerate(pastes):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            later = np.zeros(pastes[k][1].shape, bool)
            for _, changed in pastes[k + 1:]:
                later |= changed
            shares.append(float(later[max(y1, 0):y2, max(x1, 0):x2].mean()))
    return shares


def test_scenes_for_measuring_hide_no_face_under_a_later_paste():
    """A face pasted whole brings its hair and surroundings, which can cover a face pasted
    before it; scenes whose boxes are the truth (calibration, benches) keep every face visible,
    training scenes may hide one (their face-present tag is right either way)."""
    faces, labels = _faces()
    crowded = {"size": (160, 120), "face_px": (30, 45), "max_faces": 6, "empty_share": 0.0,
               "context_share": 1.0, "degrade": 0.0}
    hiding = _covered_by_later_pastes(SceneMaker(faces, labels, _backgrounds(), **crowded), 0, 30)
    assert max(hiding) > 0.5  # the crowd does hide faces without the rule
    kept = _covered_by_later_pastes(
        SceneMaker(faces, labels, _backgrounds(), **crowded, max_hidden=0.25), 0, 30)
    assert len(kept) > 40 and max(kept) <= 0.3  # the pixels' own count: a little edge, no face
    # without the rule the draws are those of before it existed (the LNets' training scenes)
    a = SceneMaker(faces, labels, _backgrounds(), **crowded)(np.random.default_rng(5))
    b = SceneMaker(faces, labels, _backgrounds(), **crowded, max_hidden=None)(
        np.random.default_rng(5))
    np.testing.assert_array_equal(a.image, b.image)


def test_rotation_moves_the_box_with_the_face():
    box = (40.0, 30.0, 60.0, 70.0)  # tall face centred at (50, 50)
    same = rotated_box(box, (50, 50), 0.0)
    np.testing.assert_allclose(same, box, atol=1e-5)
    turned = rotated_box(box, (50, 50), 90.0)  # a quarter turn: width and height swap
    np.testing.assert_allclose(turned, (30, 40, 70, 60), atol=1e-4)
    # Off-centre: the box's centre turns about the given centre (counter-clockwise on screen).
    moved = rotated_box((90.0, 40.0, 110.0, 60.0), (50, 50), 90.0)
    np.testing.assert_allclose([(moved[0] + moved[2]) / 2, (moved[1] + moved[3]) / 2], (50, 0),
                               atol=1e-4)


def test_wild_face_window_and_jitter():
    faces, labels = _faces()
    maker = SceneMaker(faces, labels, _backgrounds())
    rng = np.random.default_rng(0)
    win = wild_face_window(faces[0], maker, rng, 80)
    assert win.shape == (80, 80, 3) and win.dtype == np.uint8
    for _ in range(50):
        x1, y1, x2, y2 = jitter_box((100, 100, 140, 150), rng, shift=0.1, scale=0.15)
        assert abs((x1 + x2) / 2 - 120) <= 4.0 + 1e-6 and abs((y1 + y2) / 2 - 125) <= 5.0 + 1e-6
        assert 0.7 * 40 < x2 - x1 < 1.3 * 40


def test_several_lnet_s_draws_come_back_and_the_first_is_the_single_draw():
    """`train_lnets` with "s_draws": 2 trains LNet_s twice on the same LNet_o and hard
    negatives (seeds seed and seed + 1): the first draw has exactly the weights one draw gives,
    the second other weights; the caller (`reproduce`) chooses between them."""
    from faceattr_ray.models import LNetConfig
    from faceattr_ray.presets import architecture
    from faceattr_ray.reproduce import SMOKE
    from faceattr_ray.train.lnet_scenes import train_lnets

    faces, labels = _faces()
    config = LNetConfig.from_dict({**architecture("wild-smoke")["lnet"], "num_attributes": 40})
    recipe = {**SMOKE["lnets"], "lr": 0.003, "weight_decay": 1e-4}
    _, one, _ = train_lnets(faces, labels, _backgrounds(), config, recipe, seed=3, log=lambda m: None)
    _, two, _ = train_lnets(faces, labels, _backgrounds(), config, {**recipe, "s_draws": 2},
                            seed=3, log=lambda m: None)
    assert len(one) == 1 and len(two) == 2
    first, again, other = (dict(n.state_dict()) for n in (one[0], two[0], two[1]))
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_the_recipes_grey_share_reaches_the_lnets_training_scenes(monkeypatch):
    """RECIPE's ``lnets.grey_share`` is what `train_lnets` makes its scenes with."""
    from faceattr_ray.models import LNetConfig
    from faceattr_ray.presets import architecture
    from faceattr_ray.reproduce import SMOKE
    from faceattr_ray.train import lnet_scenes

    made = []

    class Recording(SceneMaker):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self.grey_share)

    monkeypatch.setattr(lnet_scenes, "SceneMaker", Recording)
    faces, labels = _faces()
    config = LNetConfig.from_dict({**architecture("wild-smoke")["lnet"], "num_attributes": 40})
    recipe = {**SMOKE["lnets"], "lr": 0.003, "weight_decay": 1e-4, "grey_share": 0.7}
    lnet_scenes.train_lnets(faces, labels, _backgrounds(), config, recipe, seed=3,
                            log=lambda m: None)
    assert made == [0.7]


def test_lnet_s_can_start_from_lnet_o():
    """"s_init": "lnet_o" starts every LNet_s draw from LNet_o's weights (with no steps they
    are LNet_o's exactly); by default LNet_s starts from its own random weights; any other
    value is refused before training, with an error the CLI prints as one line."""
    from faceattr_ray.models import LNetConfig
    from faceattr_ray.presets import architecture
    from faceattr_ray.reproduce import SMOKE
    from faceattr_ray.train.lnet_scenes import train_lnets

    faces, labels = _faces()
    config = LNetConfig.from_dict({**architecture("wild-smoke")["lnet"], "num_attributes": 40})
    recipe = {**SMOKE["lnets"], "lr": 0.003, "weight_decay": 1e-4, "steps_s": 0}
    lnet_o, (started,), _ = train_lnets(faces, labels, _backgrounds(), config,
                                        {**recipe, "s_init": "lnet_o"}, seed=3, log=lambda m: None)
    own = lnet_o.state_dict()
    assert all(torch.equal(own[k], v) for k, v in started.state_dict().items())
    _, (fresh,), _ = train_lnets(faces, labels, _backgrounds(), config, recipe, seed=3,
                                 log=lambda m: None)
    assert not all(torch.equal(own[k], v) for k, v in fresh.state_dict().items())
    with pytest.raises(RecipeError, match="s_init"):  # the CLI prints it as one line
        train_lnets(faces, labels, _backgrounds(), config, {**recipe, "s_init": "anet"}, seed=3,
                    log=lambda m: None)


def test_scenes_from_a_child_process_are_the_ones_a_thread_makes():
    """``prefetch: "process"`` makes each step's inputs in a child process (a thread cannot keep
    up with a bf16 step: README, issue 15): the same batches in the same order, since each
    step draws from its own seed; so an LNet trained either way has the same weights."""
    from faceattr_ray.models import LNetConfig
    from faceattr_ray.presets import architecture
    from faceattr_ray.train.lnet_scenes import batches_in_process, train_lnet

    faces, labels = _faces()
    maker = SceneMaker(faces, labels, _backgrounds(), size=(64, 64), face_px=(16, 40))
    cfg = SceneTrainConfig(stage="o", steps=3, batch_size=4, scene_size=64)
    batches = SceneBatches(maker, cfg, 40)
    seeds = [[0, step, 0] for step in range(3)]
    made = list(batches_in_process(batches, seeds, 4))
    assert len(made) == 3
    for seed, (images, face, tags) in zip(seeds, made, strict=True):
        want = batches.batch(np.random.default_rng(seed), 4)
        assert np.array_equal(images, want[0]) and np.array_equal(face, want[1])
        assert np.array_equal(tags, want[2], equal_nan=True)
    config = LNetConfig.from_dict({**architecture("wild-smoke")["lnet"], "num_attributes": 40})
    nets = [train_lnet(maker, SceneTrainConfig(stage="o", steps=3, batch_size=4, prefetch=p),
                       config, log=lambda m: None) for p in ("thread", "process")]
    a, b = (n.state_dict() for n in nets)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_lnet_trained_with_ema_decay_is_the_average_of_its_steps_weights():
    """``SceneTrainConfig(ema_decay=d)`` returns e_2 = d w_1 + (1 - d) w_2 after two steps,
    w_k being the weights of a plain run of k steps (the warm-up's rate and each step's scenes
    do not depend on the run's length), in NCHW as every reader expects."""
    from faceattr_ray.models import LNetConfig
    from faceattr_ray.presets import architecture
    from faceattr_ray.train.lnet_scenes import train_lnet

    faces, labels = _faces()
    maker = SceneMaker(faces, labels, _backgrounds(), size=(64, 64), face_px=(16, 40))
    config = LNetConfig.from_dict({**architecture("wild-smoke")["lnet"], "num_attributes": 40})

    def weights(steps: int, **options) -> dict:
        cfg = SceneTrainConfig(stage="o", steps=steps, batch_size=4, scene_size=64, **options)
        return train_lnet(maker, cfg, config, log=lambda m: None).state_dict()

    w1, w2 = weights(1), weights(2)
    averaged = weights(2, ema_decay=0.3, channels_last=True)
    for key, value in averaged.items():
        assert value.is_contiguous()
        if not value.is_floating_point():  # batch norm's step count
            continue
        assert torch.allclose(value, 0.3 * w1[key] + 0.7 * w2[key], atol=1e-5), key
    assert any(not torch.allclose(averaged[k], w2[k], atol=1e-5) for k in w2)
    with pytest.raises(ValueError, match="ema_decay"):
        SceneTrainConfig(ema_decay=1.5)


def test_bf16_channels_last_lnet_training_runs_in_bf16_and_returns_nchw_weights(monkeypatch):
    """`reproduce` trains the LNets in bf16 with channels-last kernels on CPUs that compute
    bf16: the forward pass really runs under bf16 autocast (and float32's does not), the
    returned kernels are NCHW again (what the localizer and the bundle read), its loss follows
    float32's, the run's thread count holds for its steps only, and a precision the scene loop
    cannot use is refused with a one-line error."""
    from faceattr_ray.models import LNet, LNetConfig
    from faceattr_ray.presets import architecture
    from faceattr_ray.train.lnet_scenes import train_lnet

    seen: list = []
    forward = LNet.forward

    def spy(self, x):
        if self.training:
            seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"),
                         x.is_contiguous(memory_format=torch.channels_last)))
        return forward(self, x)

    monkeypatch.setattr(LNet, "forward", spy)
    faces, labels = _faces()
    maker = SceneMaker(faces, labels, _backgrounds(), size=(64, 64), face_px=(16, 40))
    config = LNetConfig.from_dict({**architecture("wild-smoke")["lnet"], "num_attributes": 40})
    losses, threads = {}, torch.get_num_threads()
    for name, options in (("fp32", {}),
                          ("bf16", {"precision": "bf16", "channels_last": True, "threads": 1})):
        seen.clear()
        logs: list[str] = []
        net = train_lnet(maker, SceneTrainConfig(stage="o", steps=4, batch_size=8, **options),
                         config, log=logs.append)
        losses[name] = float(logs[-1].split("loss ")[1].split()[0])
        assert len(seen) == 4
        if name == "bf16":
            assert all(s == (True, torch.bfloat16, True) for s in seen)
        else:
            assert not any(s[0] for s in seen)
        assert all(w.is_contiguous() for w in net.parameters())
        assert torch.get_num_threads() == threads
    assert abs(losses["bf16"] - losses["fp32"]) <= 0.1 * losses["fp32"]
    with pytest.raises(ValueError, match="precision"):
        SceneTrainConfig(precision="auto")
    with pytest.raises(ValueError, match="prefetch must be one of"):
        SceneTrainConfig(prefetch="gpu")
