"""The report's figures: matplotlib Figures (no pyplot state) saved as PNGs beside the page."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np


def figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save(fig, out: str, name: str) -> str:
    fig.savefig(os.path.join(out, name))
    return name


def plot_accuracy(metrics: dict, reference: dict, out: str) -> str:
    names = list(metrics["attributes"])
    m = metrics["attributes"]
    y = np.arange(len(names))[::-1]
    get = lambda key: np.array([np.nan if m[n][key] is None else m[n][key] for n in names])  # noqa: E731
    fig = figure(8.0, 1.4 + 0.26 * len(names))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh(y + 0.2, get("accuracy"), height=0.38, color="tab:blue", label="accuracy")
    ax.barh(y - 0.2, get("balanced_accuracy"), height=0.38, color="tab:orange",
            label="balanced accuracy")
    ax.scatter(get("majority_baseline"), y, marker="|", s=160, color="black", zorder=3,
               label="majority baseline")
    ref = np.array([reference.get(n, np.nan) for n in names])
    if np.isfinite(ref).any():
        ax.scatter(ref, y, marker="D", s=18, color="tab:red", zorder=3, label="paper (Table 1)")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.7, len(names) - 0.3)
    ax.set_xlabel("fraction correct")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return save(fig, out, "accuracy.png")


def plot_reliability(rel: dict, out: str) -> str:
    fig = figure(5.0, 5.0)
    ax = fig.add_subplot(2, 1, 1)
    ax.plot([0, 1], [0, 1], color="gray", ls="--", lw=1, label="perfect")
    pts = [(p, o) for p, o in zip(rel["predicted"], rel["observed"], strict=True)
           if p is not None]
    if pts:
        ax.plot(*zip(*pts, strict=True), marker="o", color="tab:blue",
                label=f"Platt (ECE {rel['ece']:.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed frequency")
    ax.legend(fontsize=8, loc="upper left")
    ax2 = fig.add_subplot(2, 1, 2)
    edges = np.asarray(rel["edges"])
    ax2.bar(edges[:-1], rel["count"], width=np.diff(edges), align="edge", color="lightgray",
            edgecolor="gray")
    ax2.set_yscale("log")
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("predicted probability")
    ax2.set_ylabel("predictions")
    fig.tight_layout()
    return save(fig, out, "reliability.png")


def plot_localization(curves: dict, operating: dict | None, out: str) -> str:
    fig = figure(9.0, 3.6)
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(curves["fppi"], curves["tpr"], color="tab:blue", drawstyle="steps-post")
    if operating is not None:
        ax.scatter([operating["fppi"]], [operating["tpr"]], color="tab:red", zorder=3,
                   label=f"bundle threshold {operating['threshold']:.3g}")
        ax.legend(fontsize=8)
    ax.set_xlabel("false positives per image")
    ax.set_ylabel("true-positive rate (IoU >= 0.5)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    ax.plot(curves["iou_thresholds"], curves["recall"], marker="o", color="tab:green")
    ax.set_xlabel("IoU required")
    ax.set_ylabel("recall (every detection kept)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, out, "localization.png")


def plot_attribute_regions(maps: np.ndarray, background: np.ndarray, names: list[str],
                            out: str, file_name: str = "attribute_regions.png") -> str:
    """One tile per attribute: its map (scaled to its own range, jet) over the mean view.

    The tiles are blended in numpy and drawn as one image: 40 matplotlib axes with two images
    each take seconds to lay out and save.
    """
    from matplotlib import colormaps
    from PIL import Image

    tile, title = 112, 16  # pixels of a tile and of the title strip above it
    cols = min(8, len(names))
    rows = math.ceil(len(names) / cols)
    base = np.asarray(Image.fromarray(background).resize((tile, tile), Image.BILINEAR), np.float64)
    grid = np.full((rows * (tile + title), cols * tile, 3), 255.0)
    jet = colormaps["jet"]
    for a in range(len(names)):
        m = maps[a].astype(np.float64)
        lo, hi = float(m.min()), float(m.max())
        unit = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        up = np.asarray(Image.fromarray(unit.astype(np.float32)).resize((tile, tile),
                                                                        Image.BILINEAR))
        blend = 0.5 * base + 0.5 * 255.0 * jet(np.clip(up, 0, 1))[..., :3]
        r, c = divmod(a, cols)
        y = r * (tile + title) + title
        grid[y : y + tile, c * tile : (c + 1) * tile] = blend
    px_w, px_h = grid.shape[1], grid.shape[0]
    fig = figure(px_w / 100, px_h / 100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid.round().astype(np.uint8), extent=(0, px_w, px_h, 0), interpolation="nearest")
    for a, name in enumerate(names):
        r, c = divmod(a, cols)
        ax.text(c * tile + tile / 2, r * (tile + title) + title - 3, name.replace("_", " "),
                ha="center", va="bottom", fontsize=6.5)
    ax.set_xlim(0, px_w)
    ax.set_ylim(px_h, 0)
    ax.set_axis_off()
    return save(fig, out, file_name)


def plot_part_shares(shares: np.ndarray, names: list[str], parts: list[str], out: str) -> str:
    """(A, parts) shares as a heat map, attributes down, parts across."""
    fig = figure(5.5, 1.2 + 0.2 * len(names))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shares, aspect="auto", cmap="viridis", vmin=0, vmax=max(float(shares.max()),
                                                                           1e-9))
    ax.set_xticks(range(len(parts)), parts, rotation=45, fontsize=8)
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.05, label="share of the score")
    fig.tight_layout()
    return save(fig, out, "part_weights.png")


def plot_concepts(rows: list[dict], faces: list[dict[str, np.ndarray]], out: str) -> str:
    fig = figure(5.2, 1.75 * len(rows) + 0.3)
    for r, (row, means) in enumerate(zip(rows, faces, strict=True)):
        for c, group in enumerate(("high", "medium", "low")):
            ax = fig.add_subplot(len(rows), 3, 3 * r + c + 1)
            ax.imshow(means[group])
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(group, fontsize=9)
            if c == 0:
                concept = (f"{row['concept']} r={row['correlation']:+.2f}" if row["concept"]
                           else "-")
                ax.set_ylabel(f"neuron {row['neuron']}\n{concept}", fontsize=7)
    fig.tight_layout(pad=0.4)
    return save(fig, out, "concept_neurons.png")


def plot_sparsity(fractions: Sequence[float], curve: np.ndarray, needed: np.ndarray,
                   majority: np.ndarray, out: str) -> str:
    fig = figure(9.0, 3.6)
    ax = fig.add_subplot(1, 2, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = curve / curve[-1]
    for a in range(curve.shape[1]):
        ax.plot(fractions, relative[:, a], color="0.75", lw=0.7)
    ax.plot(fractions, np.nanmean(relative, axis=1), color="tab:blue", lw=2,
            label="mean over attributes")
    floor = float(np.nanmean(majority) / np.nanmean(curve[-1])) if np.isfinite(curve[-1]).any() \
        and np.nanmean(curve[-1]) > 0 else float("nan")
    ax.axhline(0.9, color="tab:red", ls="--", lw=1, label="90% of full accuracy")
    if np.isfinite(floor):
        ax.axhline(floor, color="black", ls=":", lw=1, label="majority baseline / full")
    ax.set_xscale("log")
    ax.set_xlabel("fraction of FC neurons kept (best by |weight|)")
    ax.set_ylabel("accuracy / accuracy with all")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax = fig.add_subplot(1, 2, 2)
    counts = [int(np.sum(needed == f)) for f in fractions]
    ax.bar(range(len(fractions)), counts, color="tab:blue")
    ax.set_xticks(range(len(fractions)), [f"{100 * f:g}%" for f in fractions], fontsize=7)
    ax.set_xlabel("fraction needed for 90%")
    ax.set_ylabel("attributes")
    fig.tight_layout()
    return save(fig, out, "sparsity.png")


def plot_grouping(coords: np.ndarray, groups: np.ndarray, names: list[str], out: str) -> str:
    from matplotlib import colormaps

    fig = figure(7.0, 5.5)
    ax = fig.add_subplot(1, 1, 1)
    cmap = colormaps["tab10"]
    for g in np.unique(groups):
        sel = groups == g
        ax.scatter(coords[sel, 0], coords[sel, 1], color=cmap(int(g) % 10), label=f"group {g + 1}")
    for (x, y), name in zip(coords, names, strict=True):
        ax.annotate(name.replace("_", " "), (x, y), fontsize=6, xytext=(2, 2),
                    textcoords="offset points")
    ax.set_xlabel("principal axis 1 of the unit weight vectors")
    ax.set_ylabel("principal axis 2")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, out, "grouping.png")


def plot_annotations(summary: dict, out: str) -> str:
    prevalence = {k: v for k, v in summary["prevalence"].items() if v is not None}
    per_image = summary["faces_per_image"]
    fig = figure(9.0, max(3.2, 1.2 + 0.2 * len(prevalence)))
    ax = fig.add_subplot(1, 2, 1)
    names = list(prevalence)
    y = np.arange(len(names))[::-1]
    ax.barh(y, [prevalence[n] for n in names], color="tab:blue")
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of faces with score > 0")
    ax = fig.add_subplot(1, 2, 2)
    ax.bar(list(per_image), list(per_image.values()), color="tab:green")
    ax.set_xlabel("faces in the image")
    ax.set_ylabel("images")
    fig.tight_layout()
    return save(fig, out, "annotations.png")
