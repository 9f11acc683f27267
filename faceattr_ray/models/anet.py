"""ANet: attribute features of face patches (Liu et al. 2015, Sec. 2.2, Fig. 2 (c), Fig. 5).

C1, C2: globally shared valid convolutions, each followed by ReLU and a 2x2 max-pool.
C3, C4: locally shared (``LocallySharedConv2d``): the patch's map is cut into cells, each cell
with its own filters. Then a 2x2 max-pool, and FC (ReLU): the patch's feature vector. Heads for
attributes and identities are plain linear layers on FC.

One pass over many patches (``patch_features``): the face crop holds a ``grid x grid`` lattice
of ``patch_size`` patches, ``patch_stride`` pixels apart. Because C1/C2 are valid convolutions
and the stride is a multiple of their 4x downsampling, the crop's C2 map contains every patch's
C2 map as a sub-crop. Each C3 bank runs once over the part of the crop's map that its cell
covers for all patches. C4's input mixes C3 cells relative to each patch (the lattice step is
smaller than a cell), so one gather lays each C4 bank's receptive tiles, for all patches, along
the batch axis (the paper's interweaved maps) and each bank convolves them once: only C4 and FC
run per patch. The result equals cropping and running every patch (``patch_features_naive``) up
to float rounding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faceattr_ray.models.layers import LocallySharedConv2d

DOWNSAMPLING = 4  # C1-C2 each end with a 2x2, stride-2 max-pool


@dataclass
class ANetConfig:
    patch_size: int = 64
    grid: int = 5
    patch_stride: int = 4           # pixels between lattice patches; a multiple of DOWNSAMPLING
    channels: tuple = (32, 64, 96, 128)
    cells: tuple = (2, 2)           # (rows, columns) of cells in C3 and C4
    feature_dim: int = 256
    num_attributes: int = 40
    num_identities: int = 0
    kernels: tuple = (9, 5, 5, 3)   # C1..C4 kernel sizes (valid, stride 1)
    # Batch norm after each of C1..C4 (before its pool/ReLU). Off by default so bundles written
    # without it keep loading; training from scratch on a few thousand faces wants it on. In
    # eval mode it is a per-channel affine map, so the one-pass extraction still equals patch by
    # patch.
    batch_norm: bool = False
    dropout: float = 0.0            # on FC features before the heads, training only

    @property
    def window_size(self) -> int:
        return self.patch_size + (self.grid - 1) * self.patch_stride

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channels"] = list(self.channels)
        d["cells"] = list(self.cells)
        d["kernels"] = list(self.kernels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ANetConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known - {"window_size"}
        if unknown:
            raise ValueError(f"ANetConfig: unknown keys {sorted(unknown)}")
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
        return cls(**kw)

    def map_sizes(self) -> dict[str, int]:
        """Side of each layer's map for one patch: c1 (pooled), c2 (pooled), c3, c4, pooled c4."""
        k1, k2, k3, k4 = self.kernels
        c1 = (self.patch_size - k1 + 1) // 2
        c2 = (c1 - k2 + 1) // 2
        c3 = c2 - k3 + 1
        c4 = c3 - k4 + 1
        return {"c1": c1, "c2": c2, "c3": c3, "c4": c4, "fc_in": c4 // 2}

    def validate(self) -> None:
        """Raise ValueError with a readable reason if this geometry cannot work."""
        if len(self.channels) != 4 or len(self.kernels) != 4 or len(self.cells) != 2:
            raise ValueError("ANetConfig: channels and kernels need 4 entries, cells 2")
        if self.grid < 1:
            raise ValueError(f"ANetConfig: grid must be >= 1, got {self.grid}")
        if self.grid > 1 and (self.patch_stride <= 0 or self.patch_stride % DOWNSAMPLING):
            raise ValueError(
                f"ANetConfig: patch_stride {self.patch_stride} must be a positive multiple of "
                f"{DOWNSAMPLING} (the C1-C2 downsampling) so patches line up with pooled maps")
        s = self.map_sizes()
        if min(s.values()) < 1:
            raise ValueError(f"ANetConfig: patch_size {self.patch_size} is too small for "
                             f"kernels {tuple(self.kernels)} (map sizes {s})")
        for layer in ("c3", "c4"):
            if s[layer] % self.cells[0] or s[layer] % self.cells[1]:
                raise ValueError(
                    f"ANetConfig: the {layer} map is {s[layer]}x{s[layer]}, which "
                    f"{self.cells[0]}x{self.cells[1]} cells do not divide evenly; "
                    f"change patch_size, kernels or cells")


class ANet(nn.Module):
    def __init__(self, config: ANetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ANetConfig()
        config.validate()
        c1, c2, c3, c4 = config.channels
        k1, k2, k3, k4 = config.kernels
        self.conv1 = nn.Conv2d(3, c1, k1)
        self.conv2 = nn.Conv2d(c1, c2, k2)
        self.conv3 = LocallySharedConv2d(c2, c3, k3, config.cells)
        self.conv4 = LocallySharedConv2d(c3, c4, k4, config.cells)
        norm = nn.BatchNorm2d if config.batch_norm else (lambda _: nn.Identity())
        self.bn1, self.bn2, self.bn3, self.bn4 = norm(c1), norm(c2), norm(c3), norm(c4)
        self.head_dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        side = config.map_sizes()["fc_in"]
        self.fc = nn.Linear(c4 * side * side, config.feature_dim)
        self.attribute_head = nn.Linear(config.feature_dim, config.num_attributes)
        self.identity_head = (nn.Linear(config.feature_dim, config.num_identities)
                              if config.num_identities > 0 else None)

    # --- shared pieces --------------------------------------------------------------------------

    # ReLU after max-pool equals max-pool after ReLU (both monotone) and touches 4x less data.
    # Batch norm comes before the pool: with a negative scale it would not commute with max.
    def _c2(self, x: Tensor) -> Tensor:
        x = F.relu(F.max_pool2d(self.bn1(self.conv1(x)), 2))
        return F.relu(F.max_pool2d(self.bn2(self.conv2(x)), 2))

    def _fc(self, c4: Tensor) -> Tensor:
        x = F.relu(F.max_pool2d(self.bn4(c4), 2))
        return F.relu(self.fc(x.flatten(1)))

    def _bn3_banks(self, banks: Tensor) -> Tensor:
        """bn3 on C3 bank maps (N, K, C, h, w): the same per-channel map as on the assembled map
        (in eval mode; one-pass extraction is an eval-mode operation)."""
        if isinstance(self.bn3, nn.Identity):
            return banks
        n, k = banks.shape[:2]
        return self.bn3(banks.flatten(0, 1)).unflatten(0, (n, k))

    def _check(self, x: Tensor, side: int, what: str) -> None:
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (side, side):
            raise ValueError(f"ANet: {what} must be (N, 3, {side}, {side}), got {tuple(x.shape)}")

    # --- public API ---------------------------------------------------------------------------

    def forward(self, patches: Tensor) -> Tensor:
        """(N, 3, P, P) patches -> (N, feature_dim) FC features."""
        self._check(patches, self.config.patch_size, "patches")
        return self._fc(self.conv4(F.relu(self.bn3(self.conv3(self._c2(patches))))))

    def attribute_logits(self, features: Tensor) -> Tensor:
        return self.attribute_head(self.head_dropout(features))

    def identity_logits(self, features: Tensor) -> Tensor:
        if self.identity_head is None:
            raise ValueError("ANet: this network has no identity head (num_identities = 0)")
        return self.identity_head(self.head_dropout(features))

    def patch_offsets(self) -> list[tuple[int, int]]:
        """(y, x) pixel origin of every lattice patch in the face crop, in output order."""
        g, s = self.config.grid, self.config.patch_stride
        return [(gy * s, gx * s) for gy in range(g) for gx in range(g)]

    def patch_features(self, crops: Tensor) -> Tensor:
        """(N, 3, W, W) face crops -> (N, grid * grid, feature_dim) in ONE pass.

        Patches are in row-major lattice order (see ``patch_offsets``).
        """
        cfg = self.config
        self._check(crops, cfg.window_size, "face crops (window_size a side)")
        n, g = crops.shape[0], cfg.grid
        if n == 0:
            return crops.new_zeros(0, g * g, cfg.feature_dim)
        step = cfg.patch_stride // DOWNSAMPLING if g > 1 else 1
        extra = (g - 1) * step
        c2 = self._c2(crops)  # the crop's C2 map holds every patch's C2 map
        side = cfg.map_sizes()["c3"]
        ch, cw = side // cfg.cells[0], side // cfg.cells[1]
        # Each C3 bank once over its cell's region for all patches: (N, K, C, ch+extra, cw+extra)
        banks = F.relu(self._bn3_banks(self.conv3.bank_maps(c2, (ch, cw), (extra, extra))))
        # One gather builds every patch's C4 receptive tiles, stacked by C4 bank along channels
        # (the interweaved maps along the batch axis); each C4 bank then convolves all at once.
        index = self._interweave_index(banks.shape[1:], step, banks.device)
        tiles = banks.reshape(n, -1).gather(1, index.expand(n, -1))
        s4 = cfg.map_sizes()["c4"]
        k4 = self.conv4.kernel_size
        th, tw = s4 // cfg.cells[0] + k4 - 1, s4 // cfg.cells[1] + k4 - 1  # C4 receptive tile
        c4 = self.conv4.conv_stacked(tiles.view(n * g * g, -1, th, tw))
        feats = self._fc(self.conv4.assemble(c4))
        return feats.reshape(n, g * g, -1)

    def _interweave_index(self, bank_shape: torch.Size, step: int, device: torch.device
                          ) -> Tensor:
        """Flat positions in the C3 bank maps (K, C, H, W) of every patch's C4 receptive tiles,
        ordered (patch_y, patch_x, c4_cell, channel, tile_y, tile_x). Cached per shape."""
        key = (tuple(bank_shape), step, str(device))
        cache = self.__dict__.setdefault("_index_cache", {})
        if key not in cache:
            cfg = self.config
            n_cells, c, h, w = bank_shape
            gy, gx = cfg.cells
            s3 = cfg.map_sizes()["c3"]
            ch3, cw3 = s3 // gy, s3 // gx
            k4 = self.conv4.kernel_size
            ch4, cw4 = (s3 - k4 + 1) // gy, (s3 - k4 + 1) // gx
            ar = partial(torch.arange, device=device)
            # Broadcast axes: patch_y, patch_x, cell_y, cell_x, channel, tile_y, tile_x
            py = ar(cfg.grid).view(-1, 1, 1, 1, 1, 1, 1) * step
            px = ar(cfg.grid).view(1, -1, 1, 1, 1, 1, 1) * step
            rows = ar(gy).view(1, 1, -1, 1, 1, 1, 1) * ch4 + ar(ch4 + k4 - 1).view(1, 1, 1, 1, 1, -1, 1)
            cols = ar(gx).view(1, 1, 1, -1, 1, 1, 1) * cw4 + ar(cw4 + k4 - 1).view(1, 1, 1, 1, 1, 1, -1)
            chan = ar(c).view(1, 1, 1, 1, -1, 1, 1)
            bank = (rows // ch3) * gx + cols // cw3  # which C3 cell each tile pixel comes from
            flat = ((bank * c + chan) * h + py + rows % ch3) * w + px + cols % cw3
            cache[key] = flat.reshape(1, -1)
        return cache[key]

    def patch_features_naive(self, crops: Tensor) -> Tensor:
        """Reference for ``patch_features``: crop and run every patch separately."""
        cfg = self.config
        self._check(crops, cfg.window_size, "face crops (window_size a side)")
        p = cfg.patch_size
        out = [self.forward(crops[:, :, y:y + p, x:x + p]) for y, x in self.patch_offsets()]
        return torch.stack(out, dim=1)
