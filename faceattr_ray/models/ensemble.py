"""Several attribute networks read as one: an ensemble of the same ANet trained from other seeds.

Two ANets trained alike but from different seeds make different mistakes, so the mean of their
attribute logits is right more often than either (README, *A longer ANet*). `AttributeEnsemble`
has the attribute network's API (`patch_features`, `attribute_head`, `config.feature_dim`,
`config.window_size`), so bundles, `Predictor`, the heads, framing and annotate use it unchanged:
- its patch features are the members' side by side, (N, P, F_1 + ... + F_k): an SVM head fit on
  them weighs every member's features (the bundle's heads, fit by `reproduce`);
- its `attribute_head` is the members' own tag layers averaged: one linear layer on those
  concatenated features whose logits are the mean of the members' logits.
Every member reads the same face crop with the same patch lattice, so the crop is made once.
A bundle stores it as its "anet" entry, ``{"family": "ensemble", "members": [config, ...]}``,
with the members' weights under ``members.K.`` in one safetensors file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

FAMILY = "ensemble"


def is_ensemble(config: dict | None) -> bool:
    """Whether a network config (a bundle's "anet" entry) is an ensemble's."""
    return isinstance(config, dict) and config.get("family") == FAMILY


@dataclass
class EnsembleConfig:
    """The members' configs, and the geometry they share (read off the first)."""

    members: tuple  # each member's config dict (its own family's to_dict())
    window_size: int
    patch_size: int
    grid: int
    feature_dim: int  # the members' feature_dim summed: features are concatenated
    num_attributes: int

    def to_dict(self) -> dict:
        return {"family": FAMILY, "members": [dict(m) for m in self.members]}


class AttributeEnsemble(nn.Module):
    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        if any(is_ensemble(m.config.to_dict()) for m in members):
            raise ValueError("an ensemble's members are single networks, not ensembles")
        first = members[0].config
        for k, m in enumerate(members[1:], 1):
            for key in ("window_size", "patch_size", "grid", "num_attributes"):
                if getattr(m.config, key) != getattr(first, key):
                    raise ValueError(
                        f"ensemble member {k} has {key} {getattr(m.config, key)}, member 0 "
                        f"{getattr(first, key)}: members must read the same crops and patches "
                        f"and score the same attributes")
        self.members = nn.ModuleList(members)
        self.config = EnsembleConfig(
            members=tuple(m.config.to_dict() for m in members), window_size=first.window_size,
            patch_size=first.patch_size, grid=first.grid,
            feature_dim=sum(m.config.feature_dim for m in members),
            num_attributes=first.num_attributes)
        # The members' tag layers averaged, as one layer on the concatenated features. A
        # parameter of its own (saved and loaded with the weights) so fine-tuning the ensemble
        # as a whole would train it; built from the members here.
        self.attribute_head = nn.Linear(self.config.feature_dim, first.num_attributes)
        with torch.no_grad():
            heads = [m.attribute_head for m in members]
            self.attribute_head.weight.copy_(torch.cat([h.weight for h in heads], 1) / len(heads))
            self.attribute_head.bias.copy_(torch.stack([h.bias for h in heads]).mean(0))

    def forward(self, patches: Tensor) -> Tensor:
        """(N, 3, P, P) patches -> (N, feature_dim): the members' FC features side by side."""
        return torch.cat([m(patches) for m in self.members], dim=-1)

    def attribute_logits(self, features: Tensor) -> Tensor:
        """The mean of the members' attribute logits (``features`` as ``forward`` gives)."""
        return self.attribute_head(features)

    def patch_offsets(self) -> list[tuple[int, int]]:
        return self.members[0].patch_offsets()

    def patch_features(self, crops: Tensor) -> Tensor:
        """(N, 3, W, W) face crops -> (N, grid * grid, feature_dim): each member's one pass,
        features side by side."""
        return torch.cat([m.patch_features(crops) for m in self.members], dim=-1)

    def patch_features_naive(self, crops: Tensor) -> Tensor:
        """Reference for ``patch_features``: every member patch by patch."""
        return torch.cat([m.patch_features_naive(crops) for m in self.members], dim=-1)


def read_as_one(nets: Sequence[nn.Module]) -> nn.Module:
    """One attribute network as it is, several as an `AttributeEnsemble`."""
    return nets[0] if len(nets) == 1 else AttributeEnsemble(nets)
