"""`faceattr-ray report`: a self-contained HTML page about a model (and an annotate output).

``DIR/index.html`` links PNGs in ``DIR`` by relative name, so the folder can be copied or zipped
as it is; ``DIR/report.json`` holds every number the page shows. The page is rendered from that
JSON only, and each number in it carries its JSON path (``data-path``), so a reader or a test can
check that the two agree.

Sections, each tied to a figure of Liu et al. (ICCV 2015); the numbers come from ``analysis.py``:

- accuracy: per-attribute accuracy and balanced accuracy, the majority baseline, Table 1;
- localization: recall vs IoU and TPR vs FPPI (Fig. 7), on roots with face boxes;
- response maps: LNet_o's and LNet_s's averaged C5 maps over sample images (Fig. 3, 6, 14);
- attribute regions: LNet_s's attribute head run fully convolutionally (Fig. 9);
- concept neurons: mean faces of high, medium and low responses of ANet FC neurons (Fig. 8);
- sparsity: accuracy with each head's best k% of FC neurons (Fig. 10b);
- grouping: k-means over the heads' weight vectors (Fig. 11);
- annotations: what an annotate output holds (status counts, faces per image, prevalence).

A section that cannot be drawn (no LNets, no face boxes in the root, no annotate output) says why,
in the page and in the JSON (``status: "absent"`` and ``reason``).
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from faceattr_ray import analysis
from faceattr_ray.errors import DataError

SAMPLES = 4  # images drawn in the response-map and attribute-region sections
CONCEPT_NEURONS = 6
GROUPS = 6
REGION_SCALE = 2  # attribute maps: LNet_s input at least this many times its size (1x1 at 1x)
REGION_MAP = 8  # ... and large enough for maps of at least this many cells a side
SECTION_TITLES = {
    "accuracy": "Attribute accuracy (Table 1)",
    "localization": "Face localization (Fig. 7)",
    "response_maps": "Averaged response maps of LNet_o and LNet_s (Fig. 3, 6, 14)",
    "attribute_regions": "Attribute-specific regions (Fig. 9)",
    "concept_neurons": "ANet concept neurons (Fig. 8)",
    "sparsity": "Sparsity: how few FC neurons an attribute needs (Fig. 10b)",
    "grouping": "Attribute grouping by head weights (Fig. 11)",
    "annotations": "Annotate output",
}


# --- data: one pass over the root ----------------------------------------------------------------


def scan_root(predictor, paths: list[str], all_faces_localizer=None,
              batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                list[np.ndarray], list | None]:
    """Run ``predictor`` over ``paths`` (dominant face per image), keeping its features and face
    windows; ``all_faces_localizer`` also records every detection for the localization curves.

    Scores follow ``evaluate.predict_scores`` (0 where no face), so the accuracy matches
    `faceattr-ray evaluate`; the loop is its own because the analyses need what ANet saw.
    """
    from faceattr_ray.data.decode import load_image

    n_attr = len(predictor.attributes)
    scores = np.zeros((len(paths), n_attr), np.float32)
    found = np.zeros(len(paths), bool)
    features, windows, samples = [], [], []
    every: list | None = [] if all_faces_localizer is not None else None
    with ThreadPoolExecutor(max_workers=2) as pool:  # decoding overlaps the model
        for start in range(0, len(paths), batch_size):
            images = list(pool.map(load_image, paths[start : start + batch_size]))
            samples.extend(images[: max(0, SAMPLES - len(samples))])
            dets = [d[:1] for d in predictor.localize(images)]
            win = predictor.face_crops(images, dets)
            s, f = predictor.describe(win)
            rows = [start + i for i, d in enumerate(dets) if d]
            scores[rows] = s
            found[rows] = True
            features.append(f)
            windows.append(win)
            if every is not None:
                every.extend(all_faces_localizer.localize(images))
    dim = predictor.anet.config.feature_dim
    feats = np.concatenate(features) if features else np.zeros((0, dim), np.float32)
    side = predictor.crop_side
    wins = np.concatenate(windows) if windows else np.zeros((0, side, side, 3), np.uint8)
    return scores, found, feats, wins, samples, every


# --- figures -------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out: str, name: str) -> str:
    fig.savefig(os.path.join(out, name))
    return name


def _plot_accuracy(metrics: dict, reference: dict, out: str) -> str:
    names = list(metrics["attributes"])
    m = metrics["attributes"]
    y = np.arange(len(names))[::-1]
    get = lambda key: np.array([np.nan if m[n][key] is None else m[n][key] for n in names])  # noqa: E731
    fig = _figure(8.0, 1.4 + 0.26 * len(names))
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
    return _save(fig, out, "accuracy.png")


def _plot_localization(curves: dict, operating: dict | None, out: str) -> str:
    fig = _figure(9.0, 3.6)
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
    return _save(fig, out, "localization.png")


def _plot_attribute_regions(maps: np.ndarray, background: np.ndarray, names: list[str],
                            out: str) -> str:
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
    fig = _figure(px_w / 100, px_h / 100)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(grid.round().astype(np.uint8), extent=(0, px_w, px_h, 0), interpolation="nearest")
    for a, name in enumerate(names):
        r, c = divmod(a, cols)
        ax.text(c * tile + tile / 2, r * (tile + title) + title - 3, name.replace("_", " "),
                ha="center", va="bottom", fontsize=6.5)
    ax.set_xlim(0, px_w)
    ax.set_ylim(px_h, 0)
    ax.set_axis_off()
    return _save(fig, out, "attribute_regions.png")


def _plot_concepts(rows: list[dict], faces: list[dict[str, np.ndarray]], out: str) -> str:
    fig = _figure(5.2, 1.75 * len(rows) + 0.3)
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
    return _save(fig, out, "concept_neurons.png")


def _plot_sparsity(fractions: Sequence[float], curve: np.ndarray, needed: np.ndarray,
                   majority: np.ndarray, out: str) -> str:
    fig = _figure(9.0, 3.6)
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
    return _save(fig, out, "sparsity.png")


def _plot_grouping(coords: np.ndarray, groups: np.ndarray, names: list[str], out: str) -> str:
    from matplotlib import colormaps

    fig = _figure(7.0, 5.5)
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
    return _save(fig, out, "grouping.png")


def _plot_annotations(summary: dict, out: str) -> str:
    prevalence = {k: v for k, v in summary["prevalence"].items() if v is not None}
    per_image = summary["faces_per_image"]
    fig = _figure(9.0, max(3.2, 1.2 + 0.2 * len(prevalence)))
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
    return _save(fig, out, "annotations.png")


# --- sections: compute (numbers + figures) -------------------------------------------------------


def _absent(reason: str) -> dict:
    return {"status": "absent", "reason": reason}


def _f(v) -> float | None:
    """A JSON number: None for NaN/None."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def section_accuracy(metrics: dict, reference: dict, out: str) -> dict:
    attrs = {}
    for name, m in metrics["attributes"].items():
        attrs[name] = {**m, "paper": reference.get(name)}
    known = [reference[n] for n in attrs if n in reference]
    return {
        "status": "ok",
        "attributes": attrs,
        "mean": {**metrics["mean"], "paper": _f(np.mean(known)) if known else None},
        "figures": [{"file": _plot_accuracy(metrics, reference, out), "caption":
                     "Bars: our accuracy and balanced accuracy; black tick: always answering the "
                     "majority class; red diamond: the paper's Table 1. Look for attributes whose "
                     "accuracy barely clears the tick (the model adds little over the prior) and "
                     "for balanced accuracy near 0.5 (the rare class is never predicted)."}],
    }


def section_localization(detections: list, gts: list[np.ndarray], source: str,
                         threshold: float | None, out: str) -> dict:
    from faceattr_ray.localization_metrics import roc_curve

    curves = analysis.localization_curves(detections, gts)
    operating = None
    if threshold is not None:  # where the bundle's face threshold sits on the curve
        fppi, tpr, cuts = roc_curve(detections, gts, 0.5)
        k = int(np.flatnonzero(cuts >= threshold)[-1])
        operating = {"threshold": float(threshold), "fppi": float(fppi[k]), "tpr": float(tpr[k])}
    return {
        "status": "ok",
        "ground_truth": source,
        **curves,
        "recall_at_iou_0.5": curves["recall"][curves["iou_thresholds"].index(0.5)],
        "at_threshold": operating,
        "figures": [{"file": _plot_localization(curves, operating, out), "caption":
                     "Left: true-positive rate (IoU >= 0.5) as the face score cut falls, against "
                     "false positives per image; the paper reads it at 0.1 and 1 FPPI. Right: "
                     "recall as the required overlap grows. A curve that holds up to IoU 0.5 and "
                     "drops after it finds the faces but frames them loosely."}],
    }


def section_response_maps(bundle, samples: list[np.ndarray], sample_paths: list[str], device,
                          out: str) -> tuple[dict, list]:
    from faceattr_ray.crops import crop_resize
    from faceattr_ray.localizers import LNetLocalizer
    from faceattr_ray.localizers.drawing import draw_response_overlay

    localizer = LNetLocalizer.from_bundle(bundle, device=device)
    traces = localizer.localize_traced(samples)
    size = localizer.crop_size
    rows, figures = [], []
    for k, (image, trace, path) in enumerate(zip(samples, traces, sample_paths, strict=True)):
        file_o, file_s = f"response_o_{k}.png", f"response_s_{k}.png"
        draw_response_overlay(image, trace.response_o, trace.detections,
                              os.path.join(out, file_o), extra_boxes=trace.head_shoulders,
                              max_side=360)
        hs = trace.head_shoulders[0] if trace.head_shoulders else None
        if hs is not None and trace.responses_s:
            crop = crop_resize(image, hs, (size, size))
            sx, sy = size / (hs[2] - hs[0]), size / (hs[3] - hs[1])
            boxes = [((d.box[0] - hs[0]) * sx, (d.box[1] - hs[1]) * sy,
                      (d.box[2] - hs[0]) * sx, (d.box[3] - hs[1]) * sy) for d in trace.detections]
            draw_response_overlay(crop, trace.responses_s[0], boxes, os.path.join(out, file_s),
                                  max_side=360)
        else:
            file_s = None
        rows.append({
            "image": os.path.basename(path),
            "lnet_o_file": file_o,
            "lnet_s_file": file_s,
            "lnet_o_map": list(trace.response_o.shape) if trace.response_o is not None else None,
            "lnet_o_max": _f(trace.response_o.max()) if trace.response_o is not None else None,
            "lnet_s_max": _f(trace.responses_s[0].max()) if trace.responses_s else None,
            "head_shoulder": [float(v) for v in hs] if hs is not None else None,
            "faces": [{"box": [float(v) for v in d.box], "score": float(d.score)}
                      for d in trace.detections],
        })
        figures += [file_o] + ([file_s] if file_s else [])
    data = {
        "status": "ok",
        "threshold": bundle.threshold,
        "samples": rows,
        "caption": "Left: LNet_o's averaged C5 map over the whole image, the head-and-shoulders "
                   "window it picked (dashed yellow) and the face found (green, with its score). "
                   "Right: LNet_s's map over that window. A trained LNet_o lights up on people, "
                   "LNet_s on the face itself; a map that follows edges or texture everywhere "
                   "has not learnt faces yet.",
    }
    return data, traces


def section_attribute_regions(bundle, samples: list[np.ndarray], traces, aligned: bool,
                              out: str) -> dict:
    import torch

    from faceattr_ray.crops import crop_resize
    from faceattr_ray.models import Preprocess

    net = bundle.lnet_s
    side = region_input_size(net.config.input_size)
    views = []
    for image, trace in zip(samples, traces, strict=True):
        # What LNet_s looks at: an aligned crop is a head-and-shoulders view already.
        box = (trace.head_shoulders[0] if trace.head_shoulders and not aligned
               else (0.0, 0.0, float(image.shape[1]), float(image.shape[0])))
        views.append(crop_resize(image, box, (side, side)))
    with torch.inference_mode():
        x = Preprocess.of(bundle).normalize(np.stack(views), next(net.parameters()).device)
        maps = net.attribute_maps(x).float().mean(0).cpu().numpy()  # (A, h, w)
    background = np.mean(np.stack(views).astype(np.float64), axis=0).round().astype(np.uint8)
    names = list(bundle.attributes)
    peaks = analysis.attribute_map_peaks(maps)
    attrs = {n: {"peak_row": round(r, 4), "peak_col": round(c, 4), "min": _f(maps[a].min()),
                 "max": _f(maps[a].max())}
             for a, (n, (r, c)) in enumerate(zip(names, peaks, strict=True))}
    return {
        "status": "ok",
        "network": "lnet_s",
        "input_size": side,
        "map_size": list(maps.shape[1:]),
        "images": len(views),
        "attributes": attrs,
        "figures": [{"file": _plot_attribute_regions(maps, background, names, out), "caption":
                     f"LNet_s's attribute head run as convolutions over {side}x{side} inputs "
                     f"({maps.shape[1]}x{maps.shape[2]} logit maps, averaged over {len(views)} "
                     "images, shown over their mean). Colours are scaled per attribute: red is "
                     "where that attribute's logit is highest. Look for local attributes (eyes, "
                     "mouth, hair, neck) peaking in their place and global ones (Male, Young) "
                     "spread over the face."}],
    }


def region_input_size(input_size: int) -> int:
    """Input side for attribute maps: at least REGION_SCALE x the training size, and enough for
    a REGION_MAP-cell map (a small LNet trained at 131 pixels gives only 2x2 at 262)."""
    from faceattr_ray.models.lnet import HEAD_POOL, c5_size

    side = REGION_SCALE * input_size
    while (c5_size(side, side)[0] - 3) // 2 + 1 - HEAD_POOL + 1 < REGION_MAP:  # pooled C5, FC1
        side += 16
    return side


def section_concepts(features: np.ndarray, windows: np.ndarray, labels: np.ndarray,
                     names: list[str], weight: np.ndarray, out: str) -> dict:
    count = min(CONCEPT_NEURONS, features.shape[1])
    neurons = analysis.concept_neurons(features, weight, count=count, by="weight")
    rows, faces = [], []
    for j in neurons:
        r = features[:, j]
        groups = analysis.response_groups(r, fraction=0.2)
        faces.append(analysis.mean_images(windows, groups))
        concept, corr = analysis.best_correlated(r, labels, names)
        rows.append({
            "neuron": int(j),
            "concept": concept,
            "correlation": _f(corr) if concept is not None else None,
            "group_size": len(groups["high"]),
            "mean_response": {g: float(r[idx].mean()) for g, idx in groups.items()},
        })
    return {
        "status": "ok",
        "ranked_by": "sum of |head weight| over attributes",
        "faces": int(len(features)),
        "neurons": rows,
        "figures": [{"file": _plot_concepts(rows, faces, out), "caption":
                     "Each row is one ANet FC neuron (the ones the attribute heads weigh most); "
                     "columns are the mean face window of the images with its highest, middle "
                     "and lowest responses (a fifth of the images each). A neuron that measures "
                     "a concept changes the mean face smoothly from left to right; its label is "
                     "the attribute its responses correlate with most (Pearson r)."}],
    }


def section_sparsity(features: np.ndarray, labels: np.ndarray, names: list[str],
                     weight: np.ndarray, bias: np.ndarray, out: str) -> dict:
    fractions = list(analysis.DEFAULT_FRACTIONS)
    curve = analysis.sparsity_curve(features, labels, weight, bias, fractions)
    needed = analysis.fraction_needed(curve, fractions, target=0.9)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an attribute with no known label: NaN
        positive = np.nanmean(labels, axis=0)
    majority = np.maximum(positive, 1.0 - positive)
    ten = fractions.index(0.1)
    attrs = {n: {"accuracy_all": _f(curve[-1, a]), "accuracy_10pct": _f(curve[ten, a]),
                 "majority_baseline": _f(majority[a]), "fraction_needed": _f(needed[a]),
                 "curve": [_f(v) for v in curve[:, a]]}
             for a, n in enumerate(names)}
    known = needed[np.isfinite(needed)]
    return {
        "status": "ok",
        "faces": int(len(features)),
        "neurons": int(features.shape[1]),
        "fractions": fractions,
        "mean_accuracy": [_f(np.nanmean(row)) if np.isfinite(row).any() else None
                          for row in curve],
        "median_fraction_needed": _f(np.median(known)) if len(known) else None,
        "attributes": attrs,
        "figures": [{"file": _plot_sparsity(fractions, curve, needed, majority, out), "caption":
                     "Left: each attribute's accuracy (grey; blue: mean) when its head keeps only "
                     "its best k% of FC neurons by |weight| (dropped neurons held at their mean), "
                     "relative to all neurons. The paper finds 10% enough for 90%. The dotted "
                     "line is the majority baseline: reaching 90% means little where the prior "
                     "alone is that high. Right: how many attributes need each fraction."}],
    }


def section_grouping(weight: np.ndarray, names: list[str], out: str) -> dict:
    k = min(GROUPS, len(names))
    groups = analysis.attribute_groups(weight, groups=k)
    coords = analysis.project_2d(weight)
    return {
        "status": "ok",
        "k": int(k),
        "groups": [[n for n, g in zip(names, groups, strict=True) if g == c]
                   for c in range(int(groups.max()) + 1)],
        "assignment": {n: int(g) for n, g in zip(names, groups, strict=True)},
        "coordinates": {n: [float(x), float(y)] for n, (x, y) in zip(names, coords, strict=True)},
        "figures": [{"file": _plot_grouping(coords, groups, names, out), "caption":
                     "k-means over the heads' weight vectors, each scaled to unit length (its "
                     "direction is the decision hyperplane), drawn on their first two principal "
                     "axes. Attributes that share evidence (hair colours, make-up and lipstick, "
                     "beard types) should land in one group."}],
    }


def read_annotations(path: str) -> tuple[list[str], list[str], list, np.ndarray, list[str]]:
    """paths, status, error, scores (rows, A) and attribute names of an annotate output."""
    import pyarrow.dataset as pads

    from faceattr_ray.pipeline.schema import FIXED_COLUMNS

    try:
        ds = pads.dataset(path, format="parquet")
    except (FileNotFoundError, OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable annotate output ({e})") from None
    meta = ds.schema.metadata or {}
    raw = meta.get(b"faceattr_ray.attributes")
    if raw is not None:
        names = list(json.loads(raw))
    else:  # a table written by other means: every float column that is not a fixed one
        names = [f.name for f in ds.schema if f.name not in FIXED_COLUMNS
                 and f.name != "features" and str(f.type).startswith(("float", "double"))]
    missing = [c for c in ("path", "status") if c not in ds.schema.names]
    if missing:
        raise DataError(f"{path}: no column {missing[0]!r}; is it an annotate output?")
    cols = ["path", "status"] + (["error"] if "error" in ds.schema.names else []) + names
    t = ds.to_table(columns=cols)
    scores = (np.stack([t.column(n).to_numpy(zero_copy_only=False).astype(np.float64)
                        for n in names], 1) if names else np.zeros((t.num_rows, 0)))
    errors = t.column("error").to_pylist() if "error" in t.column_names else None
    return (t.column("path").to_pylist(), t.column("status").to_pylist(), errors, scores, names)


def section_annotations(path: str, out: str) -> dict:
    paths, status, errors, scores, names = read_annotations(path)
    summary = analysis.annotation_summary(paths, status, scores, names, errors)
    return {
        "status": "ok",
        "source": os.path.abspath(path),
        **summary,
        "figures": [{"file": _plot_annotations(summary, out), "caption":
                     "Left: the share of found faces each attribute is predicted present in: "
                     "compare with what the collection should hold (a prevalence near 0 or 1 is "
                     "a head stuck on one answer). Right: faces per decoded image (0 = no face "
                     "found)."}],
    }


# --- the report ----------------------------------------------------------------------------------


@dataclass
class ReportInputs:
    model: str
    celeba_root: str | None = None
    annotations: str | None = None
    limit: int | None = 400
    split: str = "test"  # falls back to "all" when the root has no such split
    device: str | None = None
    notes: list[str] = field(default_factory=list)


def _read_root(root: str, split: str, limit: int | None, notes: list[str]):
    from faceattr_ray.data import read_celeba

    data = read_celeba(root, split="all")
    chosen = split
    if split != "all":
        if data.partition is None:
            chosen = "all"
            notes.append(f"{root} has no split file: every image is used")
        else:
            sub = read_celeba(root, split=split)
            if len(sub):
                data = sub
            else:
                chosen = "all"
                notes.append(f"{root} has no {split} images: every image is used")
    if limit:  # the first `limit` images, as `evaluate --limit` takes them
        data = dataclasses.replace(data, **{
            k: None if getattr(data, k) is None else getattr(data, k)[:limit]
            for k in ("files", "paths", "labels", "partition", "identity", "bbox", "landmarks",
                      "headshoulder")})
    if not data.paths:
        raise DataError(f"{root}: no images")
    return data, chosen


def _ground_truth(root: str, data) -> tuple[list[np.ndarray], str] | None:
    from faceattr_ray.data.synthetic import read_all_faces

    if os.path.exists(os.path.join(root, "list_faces_all.txt")):
        every = read_all_faces(root)
        gts = [np.array([f["face"] for f in every.get(name, {}).get("faces", [])],
                        np.float64).reshape(-1, 4) for name in data.files]
        return gts, "list_faces_all.txt (every person in the image)"
    if data.bbox is not None:
        return ([b.reshape(1, 4).astype(np.float64) for b in data.bbox],
                "list_bbox_celeba.txt (one face per image: other faces count as false positives)")
    return None


def build_report(inputs: ReportInputs, out: str) -> dict:
    """Compute every section, write the figures, ``report.json`` and ``index.html`` into ``out``;
    return the report (what ``report.json`` holds)."""
    from faceattr_ray.attributes import paper_reference
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.localizers import LNetLocalizer
    from faceattr_ray.metrics import attribute_metrics
    from faceattr_ray.predictor import Predictor
    from faceattr_ray.runtime import pick_device

    started = time.time()
    os.makedirs(out, exist_ok=True)
    device = pick_device(inputs.device)
    bundle = load_bundle(inputs.model, device=str(device))
    weight, bias, heads_kind = bundle.head_arrays()
    weight, bias = weight.astype(np.float64), bias.astype(np.float64)
    has_lnets = bundle.lnet_o is not None and bundle.lnet_s is not None
    notes = inputs.notes
    sections: dict[str, dict] = {}
    report = {
        "model": os.path.abspath(inputs.model),
        "attributes": len(bundle.attributes),
        "preset": bundle.config.get("preset"),
        "threshold": bundle.threshold,
        "heads": heads_kind,
        "celeba_root": os.path.abspath(inputs.celeba_root) if inputs.celeba_root else None,
        "annotations": os.path.abspath(inputs.annotations) if inputs.annotations else None,
        "device": str(device),
        "notes": notes,
        "sections": sections,
    }

    no_root = {"accuracy": "labelled images", "localization": "images with face boxes",
               "response_maps": "images to draw on", "attribute_regions": "images to draw on",
               "concept_neurons": "face images", "sparsity": "labelled images"}
    if inputs.celeba_root:
        data, split = _read_root(inputs.celeba_root, inputs.split, inputs.limit, notes)
        aligned = os.path.basename(os.path.normpath(data.image_dir)) == "img_align_celeba"
        localizer = "full" if aligned else ("lnet" if has_lnets else "cascade")
        predictor = Predictor(bundle, device, localizer=localizer, with_features=True)
        shared = [n for n in bundle.attributes if n in data.names]
        if not shared:
            raise DataError(f"{inputs.model} predicts none of the attributes of "
                            f"{inputs.celeba_root}")
        truth = _ground_truth(inputs.celeba_root, data) if not aligned else None
        every = (LNetLocalizer.from_bundle(bundle, threshold=None, all_faces=True, device=device)
                 if truth is not None and has_lnets else None)
        scores, found, feats, wins, samples, all_faces = scan_root(predictor, list(data.paths),
                                                                   every)
        data_cols = [list(data.names).index(n) for n in shared]
        model_cols = [bundle.attributes.index(n) for n in shared]
        labels = data.labels[:, data_cols]
        report.update(split=split, images=len(data.paths), faces_found=int(found.sum()),
                      localizer=localizer)
        metrics = attribute_metrics(labels, scores[:, model_cols], shared)
        sections["accuracy"] = section_accuracy(metrics, paper_reference(shared), out)

        if aligned:
            sections["localization"] = _absent(
                "the root holds aligned crops (img_align_celeba/) with no face boxes to score "
                "against; a root with img_celeba/ and list_bbox_celeba.txt (for example "
                "`faceattr-ray generate --kind wild`) gives this section")
        elif truth is None:
            sections["localization"] = _absent(
                "the root has no face boxes (list_bbox_celeba.txt or list_faces_all.txt)")
        elif not has_lnets:
            sections["localization"] = _absent("the bundle has no LNets to localize with")
        else:
            sections["localization"] = section_localization(all_faces, truth[0], truth[1],
                                                            bundle.threshold, out)

        traces = None
        if has_lnets:
            sections["response_maps"], traces = section_response_maps(
                bundle, samples, data.paths[: len(samples)], device, out)
        else:
            sections["response_maps"] = _absent("the bundle has no LNets")
        if not has_lnets:
            sections["attribute_regions"] = _absent("the bundle has no LNets")
        elif bundle.lnet_s.head is None or \
                bundle.lnet_s.head[-1].out_features != len(bundle.attributes):
            sections["attribute_regions"] = _absent(
                "LNet_s has no attribute head for the bundle's attributes (it was not "
                "fine-tuned with attribute tags)")
        else:
            sections["attribute_regions"] = section_attribute_regions(bundle, samples, traces,
                                                                      aligned, out)

        found_labels = labels[found]
        if len(feats) < 3:
            why = f"only {len(feats)} faces found in the root's images; at least 3 are needed"
            sections["concept_neurons"] = _absent(why)
            sections["sparsity"] = _absent(why)
        else:
            sections["concept_neurons"] = section_concepts(feats, wins, found_labels, shared,
                                                           weight, out)
            sections["sparsity"] = section_sparsity(feats, found_labels, shared,
                                                    weight[model_cols], bias[model_cols], out)
    else:
        for key, needs in no_root.items():
            sections[key] = _absent(f"no --celeba-root given: this section needs {needs}")

    if len(bundle.attributes) >= 2:
        sections["grouping"] = section_grouping(weight, list(bundle.attributes), out)
    else:
        sections["grouping"] = _absent("fewer than two attributes to group")
    if inputs.annotations:
        sections["annotations"] = section_annotations(inputs.annotations, out)
    else:
        sections["annotations"] = _absent("no --annotations given (an annotate output folder)")

    sections_in_order = {k: sections[k] for k in SECTION_TITLES}
    report["sections"] = sections_in_order
    report["seconds"] = round(time.time() - started, 2)
    report = json.loads(json.dumps(report, allow_nan=False))  # the page shows exactly the JSON
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(render_html(report))
    return report


# --- HTML: rendered from the JSON alone ----------------------------------------------------------


def _lookup(report: dict, path: Sequence) -> object:
    v = report
    for key in path:
        v = v[key]
    return v


class _Page:
    """Writes numbers with their JSON path, so the page can be checked against report.json."""

    def __init__(self, report: dict) -> None:
        self.report = report

    def num(self, *path, unit: str = "") -> str:
        """``unit``: "%" (a 0-1 value shown as a percentage), "int", or "" (3 decimals)."""
        v = _lookup(self.report, path)
        if v is None:
            text = "-"
        elif unit == "%":
            text = f"{100.0 * v:.1f}%"
        elif unit == "int":
            text = f"{int(v)}"
        else:
            text = f"{v:.3f}"
        key = html.escape("/".join(str(p) for p in path), quote=True)
        return f'<span class="num" data-path="{key}" data-unit="{unit}">{text}</span>'


def _e(text) -> str:
    return html.escape(str(text))


def _figure_html(fig: dict) -> str:
    return (f'<figure><img src="{_e(fig["file"])}" alt="{_e(fig["caption"][:80])}">'
            f"<figcaption>{_e(fig['caption'])}</figcaption></figure>")


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _render_accuracy(p: _Page, d: dict, base: tuple) -> str:
    rows = [[_e(n), p.num(*base, "attributes", n, "count", unit="int"),
             p.num(*base, "attributes", n, "accuracy", unit="%"),
             p.num(*base, "attributes", n, "balanced_accuracy", unit="%"),
             p.num(*base, "attributes", n, "majority_baseline", unit="%"),
             p.num(*base, "attributes", n, "paper", unit="%")] for n in d["attributes"]]
    rows.append(["<b>mean</b>", "", p.num(*base, "mean", "accuracy", unit="%"),
                 p.num(*base, "mean", "balanced_accuracy", unit="%"),
                 p.num(*base, "mean", "majority_baseline", unit="%"),
                 p.num(*base, "mean", "paper", unit="%")])
    table = _table(["attribute", "n", "accuracy", "balanced", "majority", "paper"], rows)
    return (f"<p>Mean accuracy {p.num(*base, 'mean', 'accuracy', unit='%')} against "
            f"{p.num(*base, 'mean', 'majority_baseline', unit='%')} for always answering the "
            f"majority class (paper: {p.num(*base, 'mean', 'paper', unit='%')}).</p>"
            + _figure_html(d["figures"][0]) + f"<details><summary>table</summary>{table}</details>")


def _render_localization(p: _Page, d: dict, base: tuple) -> str:
    text = (f"<p>{p.num(*base, 'faces', unit='int')} faces in {p.num(*base, 'images', unit='int')}"
            f" images (ground truth: {_e(d['ground_truth'])}). TPR at 0.1 false positives per "
            f"image: {p.num(*base, 'tpr_at_0.1_fppi', unit='%')}; at 1: "
            f"{p.num(*base, 'tpr_at_1_fppi', unit='%')}; recall at IoU 0.5 "
            f"{p.num(*base, 'recall_at_iou_0.5', unit='%')}.")
    if d.get("at_threshold"):
        text += (f" At the bundle's threshold {p.num(*base, 'at_threshold', 'threshold')}: TPR "
                 f"{p.num(*base, 'at_threshold', 'tpr', unit='%')} at "
                 f"{p.num(*base, 'at_threshold', 'fppi')} false positives per image.")
    rows = [[p.num(*base, "iou_thresholds", k), p.num(*base, "recall", k, unit="%")]
            for k in range(len(d["iou_thresholds"]))]
    return (text + "</p>" + _figure_html(d["figures"][0])
            + f"<details><summary>recall vs IoU</summary>{_table(['IoU', 'recall'], rows)}"
              "</details>")


def _render_response_maps(p: _Page, d: dict, base: tuple) -> str:
    cells = []
    for k, s in enumerate(d["samples"]):
        imgs = f'<img src="{_e(s["lnet_o_file"])}" alt="LNet_o map of {_e(s["image"])}">'
        if s["lnet_s_file"]:
            imgs += f'<img src="{_e(s["lnet_s_file"])}" alt="LNet_s map of {_e(s["image"])}">'
        faces = ", ".join(p.num(*base, "samples", k, "faces", j, "score")
                          for j in range(len(s["faces"]))) or "none"
        cells.append(f'<div class="pair">{imgs}<div class="small">{_e(s["image"])}: face '
                     f"score {faces}</div></div>")
    return f"<figure>{''.join(cells)}<figcaption>{_e(d['caption'])}</figcaption></figure>"


def _render_attribute_regions(p: _Page, d: dict, base: tuple) -> str:
    rows = [[_e(n), p.num(*base, "attributes", n, "peak_row"),
             p.num(*base, "attributes", n, "peak_col")] for n in d["attributes"]]
    table = _table(["attribute", "peak row (0 top, 1 bottom)", "peak column"], rows)
    return _figure_html(d["figures"][0]) + f"<details><summary>peaks</summary>{table}</details>"


def _render_concepts(p: _Page, d: dict, base: tuple) -> str:
    rows = [[p.num(*base, "neurons", k, "neuron", unit="int"), _e(n["concept"] or "-"),
             p.num(*base, "neurons", k, "correlation"),
             p.num(*base, "neurons", k, "mean_response", "high"),
             p.num(*base, "neurons", k, "mean_response", "medium"),
             p.num(*base, "neurons", k, "mean_response", "low")]
            for k, n in enumerate(d["neurons"])]
    table = _table(["neuron", "best-correlated attribute", "r", "high", "medium", "low"], rows)
    return (f"<p>From {p.num(*base, 'faces', unit='int')} faces; neurons ranked by "
            f"{_e(d['ranked_by'])}.</p>" + _figure_html(d["figures"][0]) + table)


def _render_sparsity(p: _Page, d: dict, base: tuple) -> str:
    rows = [[_e(n), p.num(*base, "attributes", n, "accuracy_all", unit="%"),
             p.num(*base, "attributes", n, "accuracy_10pct", unit="%"),
             p.num(*base, "attributes", n, "majority_baseline", unit="%"),
             p.num(*base, "attributes", n, "fraction_needed", unit="%")] for n in d["attributes"]]
    table = _table(["attribute", "all neurons", "best 10%", "majority", "needed for 90%"], rows)
    return (f"<p>{p.num(*base, 'neurons', unit='int')} FC neurons, "
            f"{p.num(*base, 'faces', unit='int')} faces. Median fraction of neurons an attribute "
            f"needs for 90% of its accuracy: {p.num(*base, 'median_fraction_needed', unit='%')}."
            "</p>" + _figure_html(d["figures"][0])
            + f"<details><summary>table</summary>{table}</details>")


def _render_grouping(p: _Page, d: dict, base: tuple) -> str:
    items = "".join(f"<li><b>group {g + 1}</b>: {_e(', '.join(names))}</li>"
                    for g, names in enumerate(d["groups"]))
    return (f"<p>k = {p.num(*base, 'k', unit='int')}</p><ol class='groups'>{items}</ol>"
            + _figure_html(d["figures"][0]))


def _render_annotations(p: _Page, d: dict, base: tuple) -> str:
    counts = _table(["rows", "images", "faces", "no face", "errors"], [[
        p.num(*base, k, unit="int") for k in ("rows", "images", "faces", "no_face", "errors")]])
    per = _table(["faces in the image", "images"],
                 [[_e(k), p.num(*base, "faces_per_image", k, unit="int")]
                  for k in d["faces_per_image"]])
    errors = _table(["error", "rows"], [[_e(k), p.num(*base, "error_messages", k, unit="int")]
                                        for k in d["error_messages"]]) \
        if d["error_messages"] else "<p>No errors.</p>"
    prev = _table(["attribute", "predicted present"],
                  [[_e(n), p.num(*base, "prevalence", n, unit="%")] for n in d["prevalence"]])
    return (f"<p>{_e(d['source'])}</p>{counts}" + _figure_html(d["figures"][0])
            + f"<h3>Faces per image</h3>{per}<h3>Errors by kind</h3>{errors}"
            + f"<details><summary>prevalence</summary>{prev}</details>")


_RENDER = {
    "accuracy": _render_accuracy, "localization": _render_localization,
    "response_maps": _render_response_maps, "attribute_regions": _render_attribute_regions,
    "concept_neurons": _render_concepts, "sparsity": _render_sparsity,
    "grouping": _render_grouping, "annotations": _render_annotations,
}

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { font-size: 1.5em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .9em; margin-top: .3em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
td, th { border: 1px solid #ddd; padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
.absent { color: #8a4b00; background: #fff6e5; padding: .5em 1em; border-left: 4px solid #f0a030; }
.pair { display: inline-block; vertical-align: top; margin: 0 1em 1em 0; }
.pair img { height: 180px; width: auto; margin-right: 4px; }
.small, .meta { font-size: .85em; color: #555; }
"""


def render_html(report: dict) -> str:
    """The page, from the report dict alone."""
    p = _Page(report)
    sections = report["sections"]
    nav = "".join(
        f'<li><a href="#{k}">{_e(SECTION_TITLES[k])}</a>'
        f'{"" if s["status"] == "ok" else " (absent)"}</li>' for k, s in sections.items())
    meta = [f"model <code>{_e(report['model'])}</code> ({_e(report['attributes'])} attributes, "
            + (f"preset {_e(report['preset'])}, " if report.get("preset") else "")
            + f"scores from the {_e(report['heads'])})"]
    if report.get("celeba_root"):
        meta.append(f"root <code>{_e(report['celeba_root'])}</code>, split {_e(report['split'])}"
                    f", {p.num('images', unit='int')} images, "
                    f"{p.num('faces_found', unit='int')} faces found with the "
                    f"{_e(report['localizer'])} localizer")
    meta += [_e(n) for n in report["notes"]]
    body = []
    for key, d in sections.items():
        title = _e(SECTION_TITLES[key])
        if d["status"] != "ok":
            inner = f'<p class="absent">Not produced: {_e(d["reason"])}.</p>'
        else:
            inner = _RENDER[key](p, d, ("sections", key))
        body.append(f'<section id="{key}" data-status="{_e(d["status"])}"><h2>{title}</h2>'
                    f"{inner}</section>")
    return ("<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>faceattr-ray report: {_e(os.path.basename(report['model']))}</title>"
            f"<style>{_STYLE}</style></head><body>"
            "<h1>faceattr-ray report</h1>"
            + "".join(f'<p class="meta">{m}</p>' for m in meta)
            + f"<nav><ol>{nav}</ol></nav>" + "".join(body)
            + f"<p class='meta'>Written in {p.num('seconds')} s on {_e(report['device'])}.</p>"
            "</body></html>\n")
