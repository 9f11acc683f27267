"""Locally shared convolution (Liu et al. 2015, Sec. 2.2 and Fig. 5).

The layer's *output* map is divided into a ``cells[0] x cells[1]`` grid; every cell has its own
filter bank. A cell's output is a valid convolution of its bank over the cell's receptive region
of the input (the cell's rows/columns plus ``kernel_size - 1``), so neighbouring cells read
overlapping inputs, as in the paper's Fig. 5 (b).

All banks run as ONE grouped convolution: the receptive crops of the cells are stacked along the
channel axis and convolved with ``groups = number of cells``. ``bank_maps`` runs the same grouped
convolution over crops that are ``extra`` positions larger, which is what the one-pass
(interweaved) extraction needs: each bank then covers that cell for every patch on the lattice.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class LocallySharedConv2d(nn.Module):
    """A valid, stride-1 convolution with one filter bank per output cell.

    ``weight`` is (cells_y * cells_x, out_channels, in_channels, k, k), cells in row-major order;
    ``bias`` is (cells_y * cells_x, out_channels).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 cells: tuple[int, int]) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.cells = (int(cells[0]), int(cells[1]))
        n = self.cells[0] * self.cells[1]
        self.weight = nn.Parameter(torch.empty(n, out_channels, in_channels, kernel_size,
                                               kernel_size))
        self.bias = nn.Parameter(torch.empty(n, out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Each bank initialised like an nn.Conv2d of the same shape.
        fan_in = self.in_channels * self.kernel_size ** 2
        bound = 1.0 / math.sqrt(fan_in)
        nn.init.kaiming_uniform_(self.weight.view(-1, *self.weight.shape[2:]), a=math.sqrt(5))
        nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"cells={self.cells}")

    def output_size(self, in_h: int, in_w: int) -> tuple[int, int]:
        return in_h - self.kernel_size + 1, in_w - self.kernel_size + 1

    def cell_size(self, in_h: int, in_w: int) -> tuple[int, int]:
        """Output rows and columns of one cell; raises ValueError if the cells do not tile."""
        out_h, out_w = self.output_size(in_h, in_w)
        if out_h <= 0 or out_w <= 0 or out_h % self.cells[0] or out_w % self.cells[1]:
            raise ValueError(
                f"locally shared conv: a {in_h}x{in_w} input gives a {out_h}x{out_w} output, "
                f"which {self.cells[0]}x{self.cells[1]} cells do not divide evenly")
        return out_h // self.cells[0], out_w // self.cells[1]

    def bank_maps(self, x: Tensor, cell_hw: tuple[int, int], extra: tuple[int, int] = (0, 0)
                  ) -> Tensor:
        """Every bank over its cell's receptive region, ``extra`` positions larger.

        ``cell_hw`` is the cell size of the map the banks belong to. Bank (i, j) reads the input
        from row ``i * cell_h`` and column ``j * cell_w``. Returns
        (N, cells, out_channels, cell_h + extra_h, cell_w + extra_w): position (y, x) of bank
        (i, j) is the cell's output at (y, x) for an input shifted by (y, x) - (0, 0) positions,
        i.e. for a patch whose origin is (y, x) rows/columns further into ``x``.
        """
        ch, cw = cell_hw
        k = self.kernel_size
        crop_h, crop_w = ch + extra[0] + k - 1, cw + extra[1] + k - 1
        if x.shape[-2] < (self.cells[0] - 1) * ch + crop_h or \
                x.shape[-1] < (self.cells[1] - 1) * cw + crop_w:
            raise ValueError(f"locally shared conv: input {tuple(x.shape[-2:])} is too small "
                             f"for cells of {ch}x{cw} with extra {extra}")
        crops = [x[:, :, i * ch:i * ch + crop_h, j * cw:j * cw + crop_w]
                 for i in range(self.cells[0]) for j in range(self.cells[1])]
        return self.conv_stacked(torch.cat(crops, dim=1))

    def conv_stacked(self, stacked: Tensor) -> Tensor:
        """The banks on receptive crops stacked along channels, (N, cells * C_in, h, w), as one
        grouped convolution -> (N, cells, C_out, h - k + 1, w - k + 1)."""
        n_cells = self.weight.shape[0]
        weight = self.weight.reshape(n_cells * self.out_channels, *self.weight.shape[2:])
        out = F.conv2d(stacked, weight, self.bias.reshape(-1), groups=n_cells)
        return out.unflatten(1, (n_cells, self.out_channels))

    def assemble(self, banks: Tensor) -> Tensor:
        """(N, cells, C, ch, cw) cell outputs -> (N, C, cells_y * ch, cells_x * cw) map."""
        n, _, c, ch, cw = banks.shape
        gy, gx = self.cells
        return (banks.reshape(n, gy, gx, c, ch, cw).permute(0, 3, 1, 4, 2, 5)
                .reshape(n, c, gy * ch, gx * cw))

    def forward(self, x: Tensor) -> Tensor:
        cell_hw = self.cell_size(x.shape[-2], x.shape[-1])
        return self.assemble(self.bank_maps(x, cell_hw))
