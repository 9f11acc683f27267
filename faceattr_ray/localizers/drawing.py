"""Figures of the cascade, like the paper's Fig. 3 and 6: response maps over the image, boxes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from faceattr_ray.crops import Box, clip_box
from faceattr_ray.localizers.base import as_rgb
from faceattr_ray.localizers.windows import as_map

if TYPE_CHECKING:
    from faceattr_ray.localizers.lnet import LocalizationTrace


def _figure(width: int, height: int, panels: int, max_side: int):
    """A matplotlib Figure (no pyplot state) of ``panels`` image axes side by side."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    scale = max_side / max(height, width)
    px_w, px_h = max(1, round(width * scale)), max(1, round(height * scale))
    dpi = 100
    fig = Figure(figsize=(panels * px_w / dpi, px_h / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = [fig.add_axes((k / panels, 0, 1 / panels, 1)) for k in range(panels)]
    for ax in axes:
        ax.set_axis_off()
    return fig, axes, max(px_w, px_h)


def _draw_panel(ax, rgb: np.ndarray, layers: Sequence, boxes: Sequence, extra_boxes: Sequence,
                px: int, dim_outside: bool = False, title: str | None = None) -> None:
    """The image, each (map, (x1, y1, x2, y2)) layer drawn as a heat map over its extent (its
    own colour scale), ``extra_boxes`` dashed yellow, ``boxes`` lime with their scores."""
    from matplotlib.patches import Rectangle

    h, w = rgb.shape[:2]
    ax.imshow(rgb, extent=(0, w, h, 0), interpolation="bilinear")
    if dim_outside:  # only the windows' maps mean anything here
        ax.imshow(np.zeros((1, 1, 4)) + [0, 0, 0, 0.55], extent=(0, w, h, 0))
    for response, (x1, y1, x2, y2) in layers:
        m = as_map(response)
        if m.size:
            if dim_outside:
                ax.imshow(_crop_of(rgb, (x1, y1, x2, y2)), extent=(x1, x2, y2, y1),
                          interpolation="bilinear")
            ax.imshow(m, extent=(x1, x2, y2, y1), cmap="jet", alpha=0.45, interpolation="bilinear",
                      vmin=0.0, vmax=max(float(m.max()), 1e-12))
    line = max(1.0, 0.004 * px)
    for b in extra_boxes:
        x1, y1, x2, y2 = getattr(b, "box", b)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="yellow", lw=line, ls="--"))
    for b in boxes:
        x1, y1, x2, y2 = getattr(b, "box", b)
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, ec="lime", lw=line))
        if hasattr(b, "score"):
            ax.text(x1, y1, f"{b.score:.2f}", color="black", va="bottom",
                    fontsize=max(8.0, 0.015 * px),
                    bbox={"facecolor": "lime", "edgecolor": "none", "pad": 1})
    if title:
        ax.text(0.01 * w, 0.01 * h, title, color="white", va="top", fontsize=max(8.0, 0.02 * px),
                bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none", "pad": 2})
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)


def _crop_of(rgb: np.ndarray, box: Box) -> np.ndarray:
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in clip_box(box, w, h))
    return rgb[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def draw_response_overlay(
    image: np.ndarray,
    response_map,
    boxes: Sequence,
    path: str,
    extra_boxes: Sequence = (),
    max_side: int = 1024,
) -> None:
    """PNG like the paper's Fig. 3/6: the image, its averaged response map overlaid, boxes drawn.

    ``boxes`` (Detections or x1, y1, x2, y2 in image pixels) are drawn in green with their score;
    ``extra_boxes`` (e.g. head-shoulder boxes) in dashed yellow. The PNG keeps the image's aspect.
    """
    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("cannot draw an empty image")
    fig, (ax,), px = _figure(w, h, 1, max_side)
    layers = [] if response_map is None else [(response_map, (0, 0, w, h))]
    _draw_panel(ax, rgb, layers, boxes, extra_boxes, px)
    fig.savefig(path, dpi=fig.dpi)


def draw_cascade(image: np.ndarray, trace: LocalizationTrace, path: str,
                 max_side: int = 640) -> None:
    """Two panels side by side, like the paper's Fig. 3/6, from ``LNetLocalizer.localize_traced``.

    Left: LNet_o's averaged response map over the whole image and the head-shoulder boxes it
    chose (dashed yellow). Right: LNet_s's averaged response map of each window, drawn over that
    window (the rest of the image dimmed), and the face boxes with their scores (green).
    """
    rgb = as_rgb(image)
    h, w = rgb.shape[:2]
    if h == 0 or w == 0:
        raise ValueError("cannot draw an empty image")
    fig, (left, right), px = _figure(w, h, 2, max_side)
    layers_o = [] if trace.response_o is None else [(trace.response_o, (0, 0, w, h))]
    _draw_panel(left, rgb, layers_o, [], trace.head_shoulders, px, title="LNet_o")
    layers_s = list(zip(trace.responses_s, trace.head_shoulders, strict=False))
    _draw_panel(right, rgb, layers_s, trace.detections, trace.head_shoulders, px,
                dim_outside=True, title="LNet_s")
    fig.savefig(path, dpi=fig.dpi)
