"""A small face-parsing network: an encoder-decoder (U-Net style) that labels every pixel of a
face crop with one of the seven face parts (background, hair, skin, eyes, brows, nose, mouth).

Kalayeh et al. (CVPR 2017) run such a network beside the attribute network; theirs is a large
encoder-decoder trained on Helen. This one is sized to train on a CPU: each level is a 3x3
convolution, batch norm and ReLU, halved by max-pooling on the way down and doubled by bilinear
upsampling on the way up, with the encoder's map of the same size concatenated (skip
connections keep the thin parts, eyes and brows, sharp).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NUM_PARTS = 7  # data.parts.PARTS (models sit below data in the layering, so the count is here)


@dataclass
class ParsingConfig:
    channels: tuple = (16, 32, 48)  # encoder levels; the decoder mirrors them
    num_parts: int = NUM_PARTS

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels)}

    @classmethod
    def from_dict(cls, d: dict | None) -> ParsingConfig:
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"ParsingConfig: unknown keys {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    @property
    def divisor(self) -> int:
        """The input side must be a multiple of this (one halving per level below the top)."""
        return 2 ** (len(self.channels) - 1)


def conv_block(cin: int, cout: int) -> nn.Sequential:
    """3x3 convolution (same size), batch norm, ReLU: the unit of both SSP+SSG networks."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class ParsingNet(nn.Module):
    def __init__(self, config: ParsingConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ParsingConfig()
        if len(config.channels) < 2:
            raise ValueError("ParsingConfig: channels needs at least 2 levels")
        ch = list(config.channels)
        self.down = nn.ModuleList([conv_block(3, ch[0])] +
                                  [conv_block(a, b) for a, b in zip(ch, ch[1:], strict=False)])
        # up[i] takes the level below (ch[i + 1]) upsampled, joined with encoder level i
        self.up = nn.ModuleList([conv_block(ch[i + 1] + ch[i], ch[i]) for i in range(len(ch) - 1)])
        self.classify = nn.Conv2d(ch[0], config.num_parts, 1)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) normalised crops -> (N, parts, S, S) part logits."""
        d = self.config.divisor
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-1] % d or x.shape[-2] % d:
            raise ValueError(f"ParsingNet: input must be (N, 3, H, W) with H, W multiples of "
                             f"{d}, got {tuple(x.shape)}")
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for i in reversed(range(len(self.up))):
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = self.up[i](torch.cat([x, skips[i]], dim=1))
        return self.classify(x)

    def probabilities(self, x: Tensor) -> Tensor:
        """(N, parts, S, S): softmax over the parts at every pixel."""
        return self.forward(x).softmax(dim=1)
