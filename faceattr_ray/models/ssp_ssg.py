"""The attribute network guided by face parsing (Kalayeh, Gong, Shah, CVPR 2017), small.

A parsing network (`ParsingNet`) gives every pixel of the face crop a probability for each of
the seven parts, and the attribute network uses those maps twice:

- SSG, segmentation-based gating: the first block's feature map is multiplied by each part's
  map, one branch per part, and the branches' convolutions are summed into the next block. A
  convolution summed over per-part inputs is one convolution over the parts' gated copies laid
  side by side on the channel axis, which is how it runs here (one conv, ``parts x C1`` in).
  A part's filters thus see only that part.
- SSP, segmentation-based pooling: the last block's features are averaged inside each part's
  map (weighted by its probability) instead of over the whole crop, and the seven per-part
  vectors are concatenated: the attribute layer has a separate weight for each part, which is
  what `part_weights` reads.

``ssp`` and ``ssg`` switch each off (SSP alone, SSG alone: the ablations). It is the same kind
of object as `ANet` to the rest of the system: ``patch_features`` of a face crop (one "patch",
the whole crop, one pass), ``attribute_head`` (a linear layer on those features), a config with
``window_size`` and ``feature_dim``; so a bundle can hold it where ANet goes and `Predictor`,
the SVM heads, evaluate and report use it unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceattr_ray.models.parsing import ParsingConfig, ParsingNet, conv_block

FAMILY = "ssp-ssg"


@dataclass
class SSPSSGConfig:
    family: str = FAMILY            # what the bundle reads to build this network, not ANet
    input_size: int = 64            # side of the face crop; a multiple of 8
    channels: tuple = (16, 32, 64, 96)  # the four attribute blocks (3x3 conv, BN, ReLU)
    ssp: bool = True
    ssg: bool = True
    parsing: dict = field(default_factory=lambda: ParsingConfig().to_dict())
    num_attributes: int = 40
    num_identities: int = 0         # no identity pre-training for this family (kept for the API)
    dropout: float = 0.0            # on the features before the attribute layer, training only

    # ANet's geometry, as the rest of the system reads it: one patch, the whole crop.
    @property
    def window_size(self) -> int:
        return self.input_size

    @property
    def patch_size(self) -> int:
        return self.input_size

    grid = 1
    patch_stride = 4

    @property
    def num_parts(self) -> int:
        return ParsingConfig.from_dict(self.parsing).num_parts

    @property
    def feature_dim(self) -> int:
        return self.channels[-1] * (self.num_parts if self.ssp else 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "channels": list(self.channels),
                "parsing": ParsingConfig.from_dict(self.parsing).to_dict()}

    @classmethod
    def from_dict(cls, d: dict) -> SSPSSGConfig:
        known = {f.name for f in fields(cls)}
        derived = {"window_size", "patch_size", "grid", "patch_stride", "feature_dim"}
        unknown = set(d) - known - derived
        if unknown:
            raise ValueError(f"SSPSSGConfig: unknown keys {sorted(unknown)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)

    def validate(self) -> None:
        if self.family != FAMILY:
            raise ValueError(f"SSPSSGConfig: family must be {FAMILY!r}, got {self.family!r}")
        if len(self.channels) != 4:
            raise ValueError("SSPSSGConfig: channels needs 4 entries")
        step = max(8, ParsingConfig.from_dict(self.parsing).divisor)
        if self.input_size < step or self.input_size % step:
            raise ValueError(f"SSPSSGConfig: input_size {self.input_size} must be a positive "
                             f"multiple of {step}")


def is_ssp_ssg(config: dict | None) -> bool:
    """Whether a network config (a bundle's "anet" entry) is this family's."""
    return isinstance(config, dict) and config.get("family") == FAMILY


class SSPSSGNet(nn.Module):
    def __init__(self, config: SSPSSGConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or SSPSSGConfig()
        config.validate()
        c1, c2, c3, c4 = config.channels
        parts = config.num_parts
        self.parsing = ParsingNet(ParsingConfig.from_dict(config.parsing))
        self.conv1 = conv_block(3, c1)
        self.conv2 = conv_block(c1 * (parts if config.ssg else 1), c2)  # SSG: a branch per part
        self.conv3 = conv_block(c2, c3)
        self.conv4 = conv_block(c3, c4)
        self.head_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.attribute_head = nn.Linear(config.feature_dim, config.num_attributes)
        self.identity_head = None
        self.freeze_parsing = False  # training option: the part maps carry no gradient

    # --- the two uses of the part maps --------------------------------------------------------

    def part_logits(self, x: Tensor) -> Tensor:
        """(N, parts, S, S) parsing logits of normalised face crops."""
        if self.freeze_parsing:
            with torch.no_grad():
                return self.parsing(x)
        return self.parsing(x)

    def trunk(self, x: Tensor, probs: Tensor) -> Tensor:
        """(N, C4, S/8, S/8): the attribute blocks, SSG-gated after the first when ``ssg``."""
        h = F.max_pool2d(self.conv1(x), 2)
        if self.config.ssg:
            gate = F.avg_pool2d(probs, 2)  # each part's share of every S/2 cell
            h = (h.unsqueeze(1) * gate.unsqueeze(2)).flatten(1, 2)  # (N, parts * C1, ...)
        h = F.max_pool2d(self.conv2(h), 2)
        h = F.max_pool2d(self.conv3(h), 2)
        return self.conv4(h)

    def pooling_weights(self, probs: Tensor, size: tuple[int, int]) -> Tensor:
        """(N, parts, h, w) weights that average a map inside each part (each sums to 1; a
        part absent from the crop gets zero weight, not a division by zero)."""
        m = F.adaptive_avg_pool2d(probs, size)
        return m / m.sum(dim=(2, 3), keepdim=True).clamp(min=1e-6)

    def pool(self, features: Tensor, probs: Tensor) -> Tensor:
        """(N, F): SSP (per-part averages, concatenated part by part) or a global average."""
        if not self.config.ssp:
            return features.mean(dim=(2, 3))
        w = self.pooling_weights(probs, features.shape[-2:])
        return torch.einsum("nphw,nchw->npc", w, features).flatten(1)

    def features_and_parts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, F) features and (N, parts, S, S) parsing logits in one pass (joint training)."""
        self._check(x)
        logits = self.part_logits(x)
        probs = logits.softmax(dim=1)
        return self.pool(self.trunk(x, probs), probs), logits

    # --- ANet's interface -----------------------------------------------------------------------

    def _check(self, x: Tensor) -> None:
        s = self.config.input_size
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[-2:]) != (s, s):
            raise ValueError(f"SSP+SSG: face crops must be (N, 3, {s}, {s}), got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, S, S) face crops -> (N, feature_dim) features."""
        return self.features_and_parts(x)[0]

    def attribute_logits(self, features: Tensor) -> Tensor:
        return self.attribute_head(self.head_dropout(features))

    def identity_logits(self, features: Tensor) -> Tensor:
        raise ValueError("SSP+SSG: this network has no identity head")

    def patch_offsets(self) -> list[tuple[int, int]]:
        return [(0, 0)]

    def patch_features(self, crops: Tensor) -> Tensor:
        """(N, 3, S, S) face crops -> (N, 1, feature_dim): the whole crop is the one patch."""
        if len(crops) == 0:
            return crops.new_zeros(0, 1, self.config.feature_dim)
        return self.forward(crops).unsqueeze(1)

    patch_features_naive = patch_features  # one patch: nothing to share between patches

    # --- analyses -------------------------------------------------------------------------------

    def part_probabilities(self, crops: Tensor) -> Tensor:
        """(N, parts, S, S) part probabilities of normalised face crops."""
        self._check(crops)
        return self.parsing(crops).softmax(dim=1)

    def localization_maps(self, crops: Tensor, weight: Tensor, bias: Tensor | None = None
                          ) -> Tensor:
        """(N, A, h, w): where each attribute's score comes from. The linear heads ``weight``
        (A, F) on pooled features split exactly over the last block's positions (SSP: each
        part's average is a weighted sum over positions), so a map sums to the score minus
        its bias, from image-level labels only."""
        self._check(crops)
        probs = self.parsing(crops).softmax(dim=1)
        feats = self.trunk(crops, probs)  # (N, C, h, w)
        n, c, h, w = feats.shape
        if self.config.ssp:
            pw = self.pooling_weights(probs, (h, w))  # (N, P, h, w)
            wa = weight.view(weight.shape[0], -1, c)  # (A, P, C)
            return torch.einsum("apc,nchw,nphw->nahw", wa, feats, pw)
        return torch.einsum("ac,nchw->nahw", weight, feats) / (h * w)


def part_weights(weight: Tensor, num_parts: int) -> Tensor:
    """(A, parts): for an SSP network's linear heads ``weight`` (A, parts * C), the share of
    each part in each attribute's weight (L2 norm of the part's slice, normalised to sum 1)."""
    a = weight.shape[0]
    norms = weight.reshape(a, num_parts, -1).norm(dim=2)
    return norms / norms.sum(dim=1, keepdim=True).clamp(min=1e-12)
