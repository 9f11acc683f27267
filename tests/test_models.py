"""LNet (AlexNet-compatible C1-C5, heads), ANet (locally shared C3/C4) and one-pass features."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from faceattr_ray.errors import BundleError
from faceattr_ray.models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ANet,
    ANetConfig,
    LNet,
    LNetConfig,
    LocallySharedConv2d,
    c5_size,
    load_alexnet_weights,
    response_maps,
    to_tensor,
)

TINY_LNET = LNetConfig(channels=(8, 16, 16, 16, 8), num_attributes=5, head_hidden=16,
                       num_classes=0)


def tiny_anet(**kw) -> ANetConfig:
    base = dict(patch_size=32, grid=3, patch_stride=4, channels=(4, 6, 8, 8), cells=(2, 2),
                feature_dim=16, num_attributes=3, kernels=(5, 3, 3, 3))
    base.update(kw)
    return ANetConfig(**base)


# --- LNet -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alexnet_file(tmp_path_factory):
    torch.manual_seed(123)
    net = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path_factory.mktemp("alexnet") / "alexnet.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_torchvision_alexnet_weights_give_the_same_c5_and_logits(alexnet_file):
    net, path = alexnet_file
    lnet = LNet(LNetConfig()).eval()
    load_alexnet_weights(lnet, path)
    x = torch.randn(2, 3, 227, 227)
    with torch.inference_mode():
        expected_c5 = net.features[:12](x)
        assert torch.equal(lnet.c5(x), expected_c5)
        # The full ImageNet classifier loads too: LNet+ equals torchvision's AlexNet.
        assert torch.allclose(lnet.classify(x), net(x), atol=1e-5)
        assert torch.allclose(lnet.response_map(x), expected_c5.mean(1))


def test_alexnet_weights_into_a_narrow_lnet_is_a_clear_error(alexnet_file, tmp_path):
    _, path = alexnet_file
    with pytest.raises(BundleError, match="features.0.weight"):
        load_alexnet_weights(LNet(TINY_LNET), path)
    with pytest.raises(BundleError, match="not found"):
        load_alexnet_weights(LNet(TINY_LNET), tmp_path / "nope.pth")


def test_lnet_takes_any_size_down_to_its_minimum():
    lnet = LNet(TINY_LNET).eval()
    with torch.inference_mode():
        for h, w in [(31, 31), (100, 57), (227, 300)]:
            m = lnet.response_map(torch.randn(1, 3, h, w))
            assert m.shape == (1, *c5_size(h, w))
        with pytest.raises(ValueError, match="smaller than 31"):
            lnet.c5(torch.randn(1, 3, 30, 64))


def test_response_maps_of_mixed_sizes_equal_one_by_one():
    lnet = LNet(TINY_LNET).eval()
    images = [torch.randn(3, 64, 80), torch.randn(3, 100, 40), torch.randn(3, 64, 80)]
    with torch.inference_mode():
        maps = response_maps(lnet, images)
        for im, m in zip(images, maps, strict=True):
            assert torch.allclose(m, lnet.response_map(im[None])[0], atol=1e-6)


def test_attribute_maps_equal_the_fc_head_at_the_pooled_size():
    torch.manual_seed(0)
    lnet = LNet(TINY_LNET).eval()
    with torch.inference_mode():
        x = torch.randn(2, 3, 227, 227)
        maps = lnet.attribute_maps(x)
        assert maps.shape == (2, 5, 1, 1)
        assert torch.allclose(maps[:, :, 0, 0], lnet(x), atol=1e-5)
        # Larger inputs: a map of logits, one per 6x6 window of the pooled C5 map.
        h, w = c5_size(300, 400)
        pooled = ((h - 3) // 2 + 1, (w - 3) // 2 + 1)
        maps = lnet.attribute_maps(torch.randn(1, 3, 300, 400))
        assert maps.shape == (1, 5, pooled[0] - 5, pooled[1] - 5)


def test_global_max_head_reads_the_face_wherever_it_is():
    """The global-max head (Oquab et al.) gives the same logits when the content moves, its
    logits are linear in the channel maxima, and a bad name is a clear error."""
    torch.manual_seed(0)
    cfg = LNetConfig(**{**TINY_LNET.to_dict(), "channels": (8, 16, 16, 16, 8),
                        "head_pool": "global_max"})
    lnet = LNet(cfg).eval()
    assert isinstance(lnet.head[-1], torch.nn.Linear) and lnet.head[-1].in_features == 8
    patch = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        scenes = []
        for y, x in [(192, 192), (256, 320)]:  # far from the border, C5 stride (16) apart
            scene = torch.zeros(1, 3, 512, 576)
            scene[..., y:y + 64, x:x + 64] = patch
            scenes.append(lnet(scene))
        assert torch.allclose(scenes[0], scenes[1], atol=1e-5)
        x = torch.randn(2, 3, 227, 227)
        maps = lnet.attribute_maps(x)
        assert maps.shape == (2, 5, *c5_size(227, 227))
        # Linear in the channel maxima: the exact logits from C5, and each position's logits.
        c5 = lnet.c5(x)
        fc = lnet.head[-1]
        assert torch.allclose(lnet(x), c5.amax(dim=(2, 3)) @ fc.weight.T + fc.bias, atol=1e-5)
        assert torch.allclose(maps[:, :, 2, 3], c5[:, :, 2, 3] @ fc.weight.T + fc.bias, atol=1e-5)
    with pytest.raises(ValueError, match="head_pool"):
        LNetConfig(head_pool="mean")
    # Old bundles (no head_pool key) keep the paper's FC head.
    old = {k: v for k, v in TINY_LNET.to_dict().items() if k != "head_pool"}
    assert LNetConfig.from_dict(old).head_pool == "fc"


def test_cpu_preset_is_narrow_and_has_no_classifier():
    from faceattr_ray.presets import preset_configs

    cfg = preset_configs("cpu", 40)[0]
    assert cfg.channels == (32, 96, 160, 128, 128) and cfg.num_classes == 0
    assert LNet(cfg).classifier is None
    assert LNetConfig.from_dict(cfg.to_dict()) == cfg


# --- Locally shared convolution ----------------------------------------------------------------


@pytest.mark.parametrize("cells,size,k", [((2, 2), 12, 3), ((3, 2), 13, 2), ((1, 1), 7, 3)])
def test_each_cell_equals_a_plain_convolution_with_its_filters(cells, size, k):
    torch.manual_seed(0)
    layer = LocallySharedConv2d(5, 7, k, cells)
    x = torch.randn(2, 5, size, size + 2)
    out = layer(x)
    oh, ow = size - k + 1, size + 2 - k + 1
    assert out.shape == (2, 7, oh, ow)
    ch, cw = oh // cells[0], ow // cells[1]
    for i in range(cells[0]):
        for j in range(cells[1]):
            bank = i * cells[1] + j
            region = x[:, :, i * ch:i * ch + ch + k - 1, j * cw:j * cw + cw + k - 1]
            expected = F.conv2d(region, layer.weight[bank], layer.bias[bank])
            got = out[:, :, i * ch:(i + 1) * ch, j * cw:(j + 1) * cw]
            assert torch.allclose(got, expected, atol=1e-5)


def test_locally_shared_rejects_maps_the_cells_do_not_divide():
    with pytest.raises(ValueError, match="do not divide"):
        LocallySharedConv2d(3, 4, 3, (2, 2))(torch.randn(1, 3, 9, 9))


# --- ANet and one-pass features ------------------------------------------------------------------


@pytest.mark.parametrize("cfg,batch", [
    (tiny_anet(), 1),
    (tiny_anet(grid=5), 3),
    (tiny_anet(grid=2, patch_stride=8), 2),
    (tiny_anet(grid=1), 2),
    (tiny_anet(cells=(2, 1), patch_stride=12), 2),
    (tiny_anet(patch_size=40, kernels=(3, 3, 3, 4), cells=(3, 3), grid=4), 2),
    (ANetConfig(num_identities=7), 2),  # the default geometry
])
def test_one_pass_equals_patch_by_patch(cfg, batch):
    torch.manual_seed(1)
    net = ANet(cfg).eval()
    windows = torch.randn(batch, 3, cfg.window_size, cfg.window_size)
    with torch.inference_mode():
        fast = net.patch_features(windows)
        slow = net.patch_features_naive(windows)
    assert fast.shape == (batch, cfg.grid ** 2, cfg.feature_dim)
    assert (fast - slow).abs().max().item() <= 1e-4
    assert slow.abs().max() > 0  # not trivially zero after the ReLUs


@pytest.mark.parametrize("cfg", [tiny_anet(batch_norm=True, grid=5),
                                 ANetConfig(batch_norm=True, dropout=0.3)])
def test_one_pass_equals_patch_by_patch_with_batch_norm(cfg):
    """Batch norm (eval mode, trained statistics) keeps one pass equal to patch by patch."""
    torch.manual_seed(2)
    net = ANet(cfg)
    with torch.no_grad():  # statistics far from the fresh (0, 1) ones, scales of both signs
        for bn in (net.bn1, net.bn2, net.bn3, net.bn4):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(-1.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    net.eval()
    windows = torch.randn(2, 3, cfg.window_size, cfg.window_size)
    with torch.inference_mode():
        fast = net.patch_features(windows)
        slow = net.patch_features_naive(windows)
    assert (fast - slow).abs().max().item() <= 1e-4
    assert slow.abs().max() > 0
    plain = ANet(ANetConfig())  # off by default: old bundles' tensors still match
    assert not any("bn" in k for k in plain.state_dict())


def test_one_pass_of_no_windows_is_empty():
    cfg = tiny_anet()
    with torch.inference_mode():
        out = ANet(cfg).eval().patch_features(torch.zeros(0, 3, cfg.window_size, cfg.window_size))
    assert out.shape == (0, cfg.grid ** 2, cfg.feature_dim)


def test_patch_order_is_row_major_lattice():
    cfg = tiny_anet()
    net = ANet(cfg).eval()
    windows = torch.randn(1, 3, cfg.window_size, cfg.window_size)
    y, x = net.patch_offsets()[5]  # row 1, column 2
    assert (y, x) == (4, 8)
    with torch.inference_mode():
        one = net(windows[:, :, y:y + cfg.patch_size, x:x + cfg.patch_size])
        assert torch.allclose(net.patch_features(windows)[:, 5], one, atol=1e-5)


def test_anet_heads_and_gradients():
    net = ANet(tiny_anet(num_identities=4))
    feats = net(torch.randn(3, 3, 32, 32))
    assert net.attribute_logits(feats).shape == (3, 3)
    assert net.identity_logits(feats).shape == (3, 4)
    net.identity_logits(feats).sum().backward()
    assert net.conv3.weight.grad is not None and net.conv3.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="no identity head"):
        ANet(tiny_anet()).identity_logits(feats)


@pytest.mark.parametrize("kw,match", [
    (dict(patch_stride=6), "multiple of 4"),
    (dict(cells=(3, 3)), "do not divide"),
    (dict(patch_size=12), "too small"),
])
def test_bad_anet_geometry_is_a_clear_error(kw, match):
    with pytest.raises(ValueError, match=match):
        ANet(tiny_anet(**kw))


def test_anet_config_round_trip_and_window_size():
    cfg = ANetConfig()
    assert cfg.window_size == 64 + 4 * 4
    assert ANetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="window"):
        ANet(tiny_anet()).patch_features(torch.randn(1, 3, 33, 33))


# --- Preprocessing -------------------------------------------------------------------------------


def test_to_tensor_normalises_and_resizes():
    img = np.full((10, 20, 3), 255, dtype=np.uint8)
    t = to_tensor([img, img])
    assert t.shape == (2, 3, 10, 20) and t.dtype == torch.float32
    expected = (1.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(t[0, :, 0, 0], expected)
    assert to_tensor(img, size=(5, 8)).shape == (1, 3, 5, 8)
    with pytest.raises(ValueError, match="different sizes"):
        to_tensor([img, img[:5]])


def test_face_tag_lnet_maps_and_image_logits():
    """The "wild" LNet: stride 8, one score map per tag (face first), image logit = map max."""
    from faceattr_ray.models import LNet, LNetConfig
    from faceattr_ray.presets import architecture

    net = LNet(LNetConfig.from_dict({**architecture("wild-smoke")["lnet"],
                                     "num_attributes": 5})).eval()
    x = torch.randn(2, 3, 64, 96)
    maps = net.attribute_maps(x)
    assert maps.shape == (2, 6, 8, 12)  # 1 face tag + 5 attributes, stride 8
    torch.testing.assert_close(net(x), maps.amax(dim=(2, 3)))
    torch.testing.assert_close(net.face_map(x), maps[:, 0])
    with pytest.raises(ValueError, match="no face tag"):
        LNet(LNetConfig(num_attributes=5)).face_map(x)
    with pytest.raises(ValueError, match="pooled map"):
        LNetConfig(arch="fcn", head_pool="fc", num_classes=0)
    with pytest.raises(ValueError, match="arch"):
        LNetConfig(arch="resnet")


# --- batch norm folded for inference ------------------------------------------------------------


def _trained_statistics(net: torch.nn.Module, seed: int = 4) -> torch.nn.Module:
    """Batch norms with statistics and scales far from the fresh ones (both signs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in net.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                c = bn.num_features
                bn.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
                bn.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                bn.weight.copy_(torch.rand(c, generator=g) * 3 - 1.5)
                bn.bias.copy_(torch.rand(c, generator=g) - 0.5)
    return net.eval()


def test_folded_batch_norm_gives_the_same_outputs_and_leaves_the_original_alone():
    from faceattr_ray.models import SSPSSGConfig, SSPSSGNet
    from faceattr_ray.models.fold import fold_batch_norm
    from faceattr_ray.presets import architecture

    torch.manual_seed(0)
    anet = _trained_statistics(ANet(tiny_anet(batch_norm=True)))
    lnet = _trained_statistics(LNet(LNetConfig.from_dict(
        {**architecture("wild-smoke")["lnet"], "num_attributes": 5})))
    ssp = _trained_statistics(SSPSSGNet(SSPSSGConfig.from_dict(
        {**architecture("ssp-ssg-smoke")["ssp_ssg"], "num_attributes": 5})))
    cases = [(anet, lambda n: n.patch_features(torch.randn(2, 3, 40, 40,
                                                           generator=torch.Generator().manual_seed(1)))),
             (lnet, lambda n: n.attribute_maps(torch.randn(2, 3, 64, 96,
                                                           generator=torch.Generator().manual_seed(2)))),
             (ssp, lambda n: n.patch_features(torch.randn(2, 3, 32, 32,
                                                          generator=torch.Generator().manual_seed(3))))]
    for net, run in cases:
        before = {k: v.clone() for k, v in net.state_dict().items()}
        folded = fold_batch_norm(net)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
        with torch.inference_mode():
            want, got = run(net), run(folded)
        assert want.abs().max() > 0.1
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
        for k, v in net.state_dict().items():  # the bundle's network is untouched
            assert torch.equal(v, before[k]), k
    plain = ANet(tiny_anet())  # no batch norm: an equal copy
    torch.testing.assert_close(fold_batch_norm(plain).state_dict(), plain.state_dict())
