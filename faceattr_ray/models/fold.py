"""Batch norm folded into the convolution before it, for inference.

In eval mode a batch norm is a per-channel affine map, so ``bn(conv(x))`` is one convolution
with rescaled kernels and a new bias: the same outputs (to float rounding) without the
normalisation pass over every map. On 2 CPU cores that pass was a small share and the bundled
model measured the same speed folded or not (bench/annotate.py, README); it costs nothing and
removes a pass on any device.
Folded: every ``Conv2d`` followed by a ``BatchNorm2d`` in an ``nn.Sequential`` (the "wild" LNets,
the parsing and SSP+SSG blocks) and ANet's ``convK``/``bnK`` pairs, its locally shared C3 and C4
included (one scale per output channel, the same for every bank).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from faceattr_ray.models.anet import ANet
from faceattr_ray.models.layers import LocallySharedConv2d


def fold_batch_norm(net: nn.Module) -> nn.Module:
    """An eval-mode copy of ``net`` with each batch norm folded into its convolution (and
    replaced by ``nn.Identity``). ``net`` itself is left as it was (bundles keep their
    weights); a network without batch norm comes back as an equal copy."""
    net = copy.deepcopy(net).eval()
    for module in net.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    module[i], module[i + 1] = fuse_conv_bn_eval(conv, bn), nn.Identity()
        if isinstance(module, ANet):
            for k in (1, 2, 3, 4):
                conv, bn = getattr(module, f"conv{k}"), getattr(module, f"bn{k}")
                if not isinstance(bn, nn.BatchNorm2d):
                    continue
                if isinstance(conv, LocallySharedConv2d):
                    _fold_banks(conv, bn)
                else:
                    setattr(module, f"conv{k}", fuse_conv_bn_eval(conv, bn))
                setattr(module, f"bn{k}", nn.Identity())
    return net


@torch.no_grad()
def _fold_banks(conv: LocallySharedConv2d, bn: nn.BatchNorm2d) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (C_out,)
    conv.weight.mul_(scale.view(1, -1, 1, 1, 1))
    conv.bias.copy_((conv.bias - bn.running_mean) * scale + bn.bias)
