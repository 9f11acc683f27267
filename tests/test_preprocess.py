"""One preprocessing object: training writes it into the bundle, inference reads it back, so a
bundle crops and normalises a face exactly as the training step did."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from faceattr_ray.models import Preprocess

# Not the defaults: a different colour normalisation and more context around the face.
CUSTOM = {"mean": [0.3, 0.4, 0.5], "std": [0.2, 0.25, 0.3], "face_context": 1.6}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny bundle fine-tuned (in-process, 2 steps a net) with CUSTOM preprocessing on
    generated people in the wild (face boxes known)."""
    from faceattr_ray.data.synthetic import write_wild
    from faceattr_ray.train import api

    tmp = tmp_path_factory.mktemp("preprocess")
    root = write_wild(str(tmp / "wild"), 12, identities=4, seed=0, size=(128, 96))
    nets, _, cfg = api.finetune(root, smoke_test=True, headshoulder="boxes",
                                preprocess=CUSTOM)
    out = str(tmp / "bundle")
    api.save_job_bundle(out, nets, cfg)
    return root, out, cfg


def _training_input(cfg: dict) -> tuple[dict, torch.Tensor]:
    """The first training row of ANet's job and the normalised tensor its step trains on
    (evaluation transform: the centre patch of the face crop, no flip)."""
    from faceattr_ray.train.common import batch_to_device, rows_to_batch
    from faceattr_ray.train.finetune import ANET_JOB

    row = next(r for r in ANET_JOB.rows(cfg, "train") if not np.isnan(r["box"]).any())
    batch = ANET_JOB.transform(rows_to_batch([row]), cfg, False, np.random.default_rng(0))
    return row, batch_to_device(batch, torch.device("cpu"), cfg)["image"][0]


def _predictor_input(bundle, row: dict) -> torch.Tensor:
    """What Predictor feeds ANet for the same image and face box, cut to the centre patch."""
    from faceattr_ray.data.decode import load_image
    from faceattr_ray.localizers import Detection
    from faceattr_ray.predictor import Predictor

    predictor = Predictor(bundle, "cpu", parts="describe")
    crops = predictor.face_crops([load_image(row["path"])],
                                 [[Detection(tuple(row["box"]), 1.0)]])
    x = predictor.crop_tensor(crops)[0]
    a = bundle.anet.config
    y0 = (a.grid // 2) * a.patch_stride
    return x[:, y0:y0 + a.patch_size, y0:y0 + a.patch_size]


def test_bundle_carries_the_preprocessing_training_used(trained):
    _, out, cfg = trained
    with open(os.path.join(out, "config.json")) as f:
        written = json.load(f)["preprocess"]
    assert written == cfg["preprocess"] == Preprocess.from_dict(CUSTOM).to_dict()


def test_predictor_gives_anet_the_tensor_the_training_step_gave_it(trained):
    from faceattr_ray.bundle import load_bundle

    _, out, cfg = trained
    bundle = load_bundle(out)
    row, train_x = _training_input(cfg)
    assert torch.equal(_predictor_input(bundle, row), train_x)
    # The check can fail: the same bundle read with the default preprocessing differs.
    bundle.config = {**bundle.config, "preprocess": Preprocess().to_dict()}
    assert not torch.allclose(_predictor_input(bundle, row), train_x, atol=1e-3)


def test_localizer_reads_with_the_trained_normalisation(trained):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.localizers import LNetLocalizer

    _, out, _ = trained
    pre = Preprocess.from_dict(CUSTOM)
    options = LNetLocalizer.from_bundle(load_bundle(out)).options()
    assert options["mean"] == pre.mean and options["std"] == pre.std
    assert options["crop_size"] == pre.lnet_s_size
    assert options["short_side"] == pre.lnet_o_short_side


def test_aligned_crops_are_taken_whole_without_context():
    image = np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)
    pre = Preprocess(face_context=2.0)
    whole = pre.face_crop(image, None, 16)
    assert np.array_equal(whole, pre.face_crop(image, [np.nan] * 4, 16))
    assert not np.array_equal(whole, pre.face_crop(image, (0, 0, 30, 40), 16))  # 2x context


def test_old_and_bad_preprocess_configs():
    old = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "lnet_s_size": 227}
    assert Preprocess.from_dict(old) == Preprocess()
    with pytest.raises(ValueError, match="unknown keys"):
        Preprocess.from_dict({"context": 1.2})
    with pytest.raises(ValueError, match="std"):
        Preprocess.from_dict({"std": [0, 1, 1]})


def test_bundle_with_a_bad_preprocess_is_refused(tmp_path):
    from faceattr_ray.bundle import load_bundle, save_bundle
    from faceattr_ray.errors import BundleError
    from faceattr_ray.presets import build_bundle

    save_bundle(tmp_path, build_bundle("tiny"))
    config = json.loads((tmp_path / "config.json").read_text())
    config["preprocess"]["mean"] = [0.5, 0.5]
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="config.json: bad preprocess"):
        load_bundle(tmp_path)


def test_the_framing_rule_round_trips_through_a_bundle(tmp_path):
    """A bundle that frames found faces as aligned crops do (``face_box``) keeps that rule, and
    Predictor cuts a tight face box exactly as the rule says, for any localizer's box."""
    from faceattr_ray.bundle import load_bundle, save_bundle
    from faceattr_ray.crops import ALIGNED_FACE_BOX, crop_resize, frame_face
    from faceattr_ray.localizers import Detection
    from faceattr_ray.predictor import Predictor
    from faceattr_ray.presets import build_bundle

    bundle = build_bundle("tiny")
    bundle.config["preprocess"] = Preprocess(face_box=ALIGNED_FACE_BOX).to_dict()
    save_bundle(str(tmp_path / "m"), bundle)
    loaded = load_bundle(str(tmp_path / "m"))
    assert Preprocess.of(loaded).face_box == ALIGNED_FACE_BOX
    image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    box = (100.0, 60.0, 156.0, 120.0)  # a tight face box, as a localizer reports it
    predictor = Predictor(loaded, "cpu", localizer="cascade")
    side = predictor.crop_side
    got = predictor.face_crops([image], [[Detection(box, 1.0)]])[0]
    np.testing.assert_array_equal(got, crop_resize(image, frame_face(box), (side, side)))
    # The rule puts the box where an aligned crop holds its face.
    x1, y1, x2, y2 = frame_face(box)
    fx1, fy1, fx2, fy2 = ALIGNED_FACE_BOX
    assert (box[0] - x1) / (x2 - x1) == pytest.approx(fx1)
    assert (box[3] - y1) / (y2 - y1) == pytest.approx(fy2)
    # Without face_box the older context rule stays (old bundles read as before).
    assert Preprocess().frame(box) != frame_face(box)


def test_normalisation_is_the_formula_in_one_pass():
    """`normalize` computes (x / 255 - mean) / std as one multiply-add (issue 20: a third of
    the float passes); equal to the formula to float rounding, channels last in memory (the
    layout the convolutions read), for a batch and for a read-only single image."""
    from faceattr_ray.models.preprocess import normalize, to_tensor

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 17, 23, 3), dtype=np.uint8)
    mean, std = CUSTOM["mean"], CUSTOM["std"]
    want = (torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255
            - torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)) \
        / torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    got = normalize(images, mean, std)
    assert got.dtype == torch.float32 and got.shape == (3, 3, 17, 23)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(got.double(), want, atol=1e-6, rtol=0)
    single = images[1].copy()
    single.flags.writeable = False
    assert torch.equal(to_tensor([single], mean=mean, std=std), got[1:2])


@pytest.mark.parametrize("scale", [1.27, 0.9, 0.45, 0.32])
def test_pyramid_resize_agrees_with_pillow(scale):
    """`resize_rgb` (an image pyramid's levels) runs torch's uint8 antialiased bilinear kernel,
    3-4x faster than Pillow's; within one grey level of Pillow's exact filter (no
    ``reducing_gap`` shortcut) at the pyramid's scales, including read-only input."""
    from PIL import Image

    from faceattr_ray.localizers.base import resize_rgb

    rng = np.random.default_rng(1)
    # a smooth image plus noise, like a photo rather than white noise
    yy, xx = np.mgrid[0:120, 0:160]
    base = np.stack([xx * 1.5, yy * 2.0, (xx + yy) * 0.9], -1)
    image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    image.flags.writeable = False
    w, h = round(160 * scale), round(120 * scale)
    got = resize_rgb(image, w, h)
    want = np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
    assert got.shape == (h, w, 3) and got.dtype == np.uint8 and got.flags.c_contiguous
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert resize_rgb(image, 160, 120) is image  # same size: nothing done
