"""The GPU path's arithmetic checked on a CPU (issue 20): the bundled model under bf16 autocast
gives the fp32 boxes and attribute signs on a fixed set of real photos, and channels-last
changes nothing. (No GPU is lent to the sessions that wrote this: the CUDA path is fp16/bf16
autocast, channels-last, pinned copies, the same code these tests run, on another device.)

Tolerances, from what bf16's 8-bit mantissa gives here: the same faces, the LNets' box corners
within 2% of the face's width, face scores within 0.02, and at least 95% of the attribute signs
agreeing among the scores fp32 puts at least 0.1 from zero (signs closer to zero may flip).
Framed boxes (ANet's zoom and centre moves) overlap at IoU >= 0.7: framing keeps the crop ANet
reads most confidently, and two crops read almost alike may swap places (a neighbouring zoom
and move: IoU 0.74 on the astronaut's collar, a false find, with the bundle's 24 proposals).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceattr_ray.crops import box_iou
from faceattr_ray.data.sample_photos import sample_photo_paths


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    """The sample photos with people (the astronaut, the cameraman, Grace Hopper)."""
    paths = sample_photo_paths(no_people=False)
    return [np.asarray(Image.open(paths[n]).convert("RGB")) for n in sorted(paths)]


def predictor(**kw):
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.bundled import model_path
    from faceattr_ray.predictor import Predictor

    p = Predictor(load_bundle(model_path()), "cpu", "lnet", all_faces=True, **kw)
    p.localizer.max_proposals = 6  # fewer LNet_s windows than the bundle's 24: seconds
    return p


@pytest.mark.parametrize("framed", [False, True])
def test_bf16_autocast_gives_the_fp32_boxes_and_attribute_signs(photos, framed):
    import torch

    framing = {} if framed else {"frame_zooms": ()}
    fp32 = predictor(precision="fp32", **framing).predict(photos)
    bf16_predictor = predictor(precision="bf16", **framing)
    assert bf16_predictor.amp_dtype == torch.bfloat16
    bf16 = bf16_predictor.predict(photos)
    agree = total = 0
    for a, b in zip(fp32, bf16, strict=True):
        assert len(a.faces) == len(b.faces) >= 1
        for fa in a.faces:
            fb = min(b.faces, key=lambda f: np.abs(np.subtract(f.box, fa.box)).max())
            if framed:
                assert box_iou(np.array([fa.box]), np.array([fb.box]))[0, 0] >= 0.7
            else:
                width = fa.box[2] - fa.box[0]
                assert np.abs(np.subtract(fb.box, fa.box)).max() <= 0.02 * width
            assert abs(fb.score - fa.score) <= 0.02
            clear = np.abs(fa.attributes) >= 0.1
            agree += int((np.sign(fa.attributes[clear]) == np.sign(fb.attributes[clear])).sum())
            total += int(clear.sum())
    assert total > 0 and agree / total >= 0.95


def test_channels_last_and_precision_choices():
    import torch

    from faceattr_ray.runtime import amp_dtype

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert amp_dtype("auto", cpu) is None and amp_dtype("fp32", gpu) is None
    assert amp_dtype("fp16", cpu) == torch.float16 and amp_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        predictor(precision="fp8")
    p = predictor(channels_last=True)
    kernels = [w for net in p.networks() for w in net.parameters() if w.dim() == 4]
    assert kernels and all(w.is_contiguous(memory_format=torch.channels_last) for w in kernels)


def test_channels_last_gives_the_same_faces(photos):
    plain = predictor(channels_last=False).predict(photos[:1])[0].faces
    nhwc = predictor(channels_last=True).predict(photos[:1])[0].faces
    assert len(plain) == len(nhwc) >= 1
    for a, b in zip(plain, nhwc, strict=True):
        np.testing.assert_allclose(a.box, b.box, atol=1e-2)
        np.testing.assert_allclose(a.attributes, b.attributes, atol=1e-3)
