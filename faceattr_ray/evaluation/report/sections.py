"""The report's sections: each computes its numbers (`faceattr_ray.evaluation.analysis`) and
draws its figures, returning what ``report.json`` holds for it; a section that cannot be drawn
says why (``status: "absent"``)."""

from __future__ import annotations

import json
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from faceattr_ray.errors import DataError
from faceattr_ray.evaluation import analysis
from faceattr_ray.evaluation.report import figures

SAMPLES = 4  # images drawn in the response-map and attribute-region sections
CONCEPT_NEURONS = 6
GROUPS = 6
REGION_SCALE = 2  # attribute maps: LNet_s input at least this many times its size (1x1 at 1x)
REGION_MAP = 8  # ... and large enough for maps of at least this many cells a side
SECTION_TITLES = {
    "accuracy": "Attribute accuracy (Table 1)",
    "operating_points": "Operating points and calibration",
    "localization": "Face localization (Fig. 7)",
    "response_maps": "Averaged response maps of LNet_o and LNet_s (Fig. 3, 6, 14)",
    "attribute_regions": "Attribute-specific regions (Fig. 9)",
    "concept_neurons": "ANet concept neurons (Fig. 8)",
    "sparsity": "Sparsity: how few FC neurons an attribute needs (Fig. 10b)",
    "grouping": "Attribute grouping by head weights (Fig. 11)",
    "part_weights": "SSP: which face parts each attribute draws on (SSP+SSG)",
    "localization_maps": "Attribute localization from image-level labels (SSP+SSG)",
    "annotations": "Annotate output",
}
LOCALIZATION_FACES = 64  # face crops averaged in the SSP+SSG localization maps



# --- data: one pass over the root ----------------------------------------------------------------


def scan_root(predictor, paths: list[str], all_faces_localizer=None,
              batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                list[np.ndarray], list | None]:
    """Run ``predictor`` over ``paths`` (dominant face per image), keeping its features and face
    crops; ``all_faces_localizer`` also records every detection for the localization curves.

    Scores follow ``evaluate.predict_scores`` (0 where no face), so the accuracy matches
    `faceattr-ray evaluate`; the loop is its own because the analyses need what ANet saw.
    """
    from faceattr_ray.data.decode import load_image

    n_attr = len(predictor.attributes)
    scores = np.zeros((len(paths), n_attr), np.float32)
    found = np.zeros(len(paths), bool)
    features, crops, samples = [], [], []
    every: list | None = [] if all_faces_localizer is not None else None
    with ThreadPoolExecutor(max_workers=2) as pool:  # decoding overlaps the model
        for start in range(0, len(paths), batch_size):
            images = list(pool.map(load_image, paths[start : start + batch_size]))
            samples.extend(images[: max(0, SAMPLES - len(samples))])
            dets = [d[:1] for d in predictor.localize(images)]
            crop = predictor.face_crops(images, dets)
            s, f = predictor.describe(crop)
            rows = [start + i for i, d in enumerate(dets) if d]
            scores[rows] = s
            found[rows] = True
            features.append(f)
            crops.append(crop)
            if every is not None:
                every.extend(all_faces_localizer.localize(images))
    dim = predictor.anet.config.feature_dim
    feats = np.concatenate(features) if features else np.zeros((0, dim), np.float32)
    side = predictor.crop_side
    stacked = np.concatenate(crops) if crops else np.zeros((0, side, side, 3), np.uint8)
    return scores, found, feats, stacked, samples, every


# --- sections ------------------------------------------------------------------------------------


def absent(reason: str) -> dict:
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
        "figures": [{"file": figures.plot_accuracy(metrics, reference, out), "caption":
                     "Bars: our accuracy and balanced accuracy; black tick: always answering the "
                     "majority class; red diamond: the paper's Table 1. Look for attributes whose "
                     "accuracy barely clears the tick (the model adds little over the prior) and "
                     "for balanced accuracy near 0.5 (the rare class is never predicted)."}],
    }


def section_operating_points(metrics: dict, labels: np.ndarray, scores: np.ndarray,
                             names: list[str], bundle_config: dict, out: str) -> dict:
    """Accuracy, balanced accuracy and AP per attribute at each of the bundle's operating points
    (``metrics["points"]``, `evaluate.point_metrics`), and a reliability diagram of its
    calibrated probabilities against these labels."""
    from faceattr_ray.heads.points import OperatingPoints

    stored = OperatingPoints.from_config(bundle_config, names)
    if stored is None:
        return absent("the bundle stores no operating points or calibration (score > 0 is its "
                      "only rule); `faceattr-ray calibrate-points` adds them")
    probs = stored.probabilities(scores)
    known = ~np.isnan(labels)
    reliability = analysis.reliability(probs[known], labels[known] > 0.5)
    return {
        "status": "ok",
        "chosen_on": stored.info.get("chosen_on"),
        "method": stored.info.get("method"),
        "points": metrics["points"],
        "reliability": reliability,
        "figures": [{"file": figures.plot_reliability(reliability, out), "caption":
                     "Calibrated probabilities (Platt's sigmoid per attribute, fit on the held-out "
                     "val identities) against how often the attribute is present, every "
                     "attribute and face pooled in 10 bins; the diagonal is perfect calibration, "
                     "the bars how many predictions fall in each bin. A point under the diagonal "
                     "is over-confident."}],
    }


def section_localization(detections: list, gts: list[np.ndarray], source: str,
                         threshold: float | None, out: str) -> dict:
    from faceattr_ray.evaluation.localization_metrics import roc_curve

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
        "figures": [{"file": figures.plot_localization(curves, operating, out), "caption":
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
    if net.config.face_tag:  # the face tag's map comes first; the regions are the attributes'
        maps = maps[1:]
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
        "figures": [{"file": figures.plot_attribute_regions(maps, background, names, out), "caption":
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


def section_concepts(features: np.ndarray, crops: np.ndarray, labels: np.ndarray,
                     names: list[str], weight: np.ndarray, out: str) -> dict:
    count = min(CONCEPT_NEURONS, features.shape[1])
    neurons = analysis.concept_neurons(features, weight, count=count, by="weight")
    rows, faces = [], []
    for j in neurons:
        r = features[:, j]
        groups = analysis.response_groups(r, fraction=0.2)
        faces.append(analysis.mean_images(crops, groups))
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
        "figures": [{"file": figures.plot_concepts(rows, faces, out), "caption":
                     "Each row is one ANet FC neuron (the ones the attribute heads weigh most); "
                     "columns are the mean face crop of the images with its highest, middle "
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
        "figures": [{"file": figures.plot_sparsity(fractions, curve, needed, majority, out), "caption":
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
        "figures": [{"file": figures.plot_grouping(coords, groups, names, out), "caption":
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
        "figures": [{"file": figures.plot_annotations(summary, out), "caption":
                     "Left: the share of found faces each attribute is predicted present in: "
                     "compare with what the collection should hold (a prevalence near 0 or 1 is "
                     "a head stuck on one answer). Right: faces per decoded image (0 = no face "
                     "found)."}],
    }


# --- the SSP+SSG family (Kalayeh et al. 2017) -----------------------------------------------------


def ssp_ssg_sections(bundle, feats: np.ndarray, crops: np.ndarray, names: list[str],
                     weight: np.ndarray, out: str) -> dict[str, dict]:
    """The part-weights and localization-map sections of an SSP+SSG bundle, or why absent."""
    from faceattr_ray.models import SSPSSGNet

    net = bundle.anet
    if not isinstance(net, SSPSSGNet):
        why = "the bundle's attribute network is ANet, not the parsing-guided SSP+SSG family"
        return {"part_weights": absent(why), "localization_maps": absent(why)}
    if len(crops) == 0:
        why = "no face crops were made from the root's images"
        return {"part_weights": absent(why), "localization_maps": absent(why)}
    out_sections = {"localization_maps": section_localization_maps(bundle, crops, names,
                                                                   weight, out)}
    if not net.config.ssp:
        out_sections["part_weights"] = absent("SSP is off in this network (an SSG-only ablation)")
    else:
        out_sections["part_weights"] = section_part_weights(net, feats, names, weight, out)
    return out_sections


def section_part_weights(net, feats: np.ndarray, names: list[str], weight: np.ndarray,
                         out: str) -> dict:
    import torch

    from faceattr_ray.data.parts import PARTS
    from faceattr_ray.models import part_weights

    shares = part_weights(torch.as_tensor(weight), len(PARTS)).numpy()
    used = analysis.part_contributions(feats, weight, len(PARTS))
    attrs = {n: {"weight_share": {p: _f(shares[a, k]) for k, p in enumerate(PARTS)},
                 "contribution_share": {p: _f(used[a, k]) for k, p in enumerate(PARTS)},
                 "top_part": PARTS[int(np.argmax(used[a]))]}
             for a, n in enumerate(names)}
    return {
        "status": "ok", "parts": list(PARTS), "faces": int(len(feats)), "attributes": attrs,
        "figures": [{"file": figures.plot_part_shares(used, names, list(PARTS), out),
                     "caption":
                     "Per attribute (rows), the share of its score that comes from each face "
                     "part's pooled features (SSP keeps one weight block per part): the mean "
                     "absolute contribution of the part over the faces scored, normalised per "
                     "row. Local attributes should draw on their part (Eyeglasses on eyes, "
                     "Smiling on mouth, hair colours on hair); the weight-norm shares are in "
                     "report.json."}],
    }


def section_localization_maps(bundle, crops: np.ndarray, names: list[str], weight: np.ndarray,
                              out: str) -> dict:
    import torch

    from faceattr_ray.models import Preprocess

    net = bundle.anet
    device = next(net.parameters()).device
    take = crops[:LOCALIZATION_FACES]
    with torch.inference_mode():
        x = Preprocess.of(bundle).normalize(take, device)
        maps = net.localization_maps(x, torch.as_tensor(weight, dtype=torch.float32,
                                                        device=device))
        maps = maps.mean(0).float().cpu().numpy()
    background = take.astype(np.float64).mean(0).round().astype(np.uint8)
    peaks = analysis.attribute_map_peaks(maps)
    attrs = {n: {"peak_row": round(r, 4), "peak_col": round(c, 4)}
             for n, (r, c) in zip(names, peaks, strict=True)}
    file = figures.plot_attribute_regions(maps, background, names, out,
                                          file_name="localization_maps.png")
    return {
        "status": "ok", "faces": int(len(take)), "map_size": list(maps.shape[1:]),
        "attributes": attrs,
        "figures": [{"file": file, "caption":
                     f"Each attribute's score split over the positions of the last block "
                     f"({maps.shape[1]}x{maps.shape[2]}; exact: a map sums to the score minus "
                     f"its bias), averaged over {len(take)} face crops and shown over their "
                     "mean. Trained from image-level labels only; red is where the attribute's "
                     "evidence is strongest."}],
    }

