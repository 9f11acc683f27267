"""`faceattr-ray report`: a self-contained HTML page about a model (and an annotate output).

``DIR/index.html`` links PNGs in ``DIR`` by relative name, so the folder can be copied or zipped
as it is; ``DIR/report.json`` holds every number the page shows. The page is rendered from that
JSON only, and each number in it carries its JSON path (``data-path``), so a reader or a test can
check that the two agree.

Sections, each tied to a figure of Liu et al. (ICCV 2015); the numbers come from ``evaluation/analysis.py``
(sections.py computes them and draws figures.py; page.py renders the HTML):

- accuracy: per-attribute accuracy and balanced accuracy, the majority baseline, Table 1;
- localization: recall vs IoU and TPR vs FPPI (Fig. 7), on roots with face boxes;
- response maps: LNet_o's and LNet_s's averaged C5 maps over sample images (Fig. 3, 6, 14);
- attribute regions: LNet_s's attribute head run fully convolutionally (Fig. 9);
- concept neurons: mean faces of high, medium and low responses of ANet FC neurons (Fig. 8);
- sparsity: accuracy with each head's best k% of FC neurons (Fig. 10b);
- grouping: k-means over the heads' weight vectors (Fig. 11);
- SSP+SSG bundles (Kalayeh et al. 2017): per attribute, the share of its score from each face
  part's pooled features (SSP), and attribute localization maps (the score split exactly over
  the last block's positions), from image-level labels only;
- annotations: what an annotate output holds (status counts, faces per image, prevalence).

A section that cannot be drawn (no LNets, no face boxes in the root, no annotate output) says why,
in the page and in the JSON (``status: "absent"`` and ``reason``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np

from faceattr_ray.errors import DataError
from faceattr_ray.evaluation.report.page import render_html
from faceattr_ray.evaluation.report.sections import (
    SECTION_TITLES,
    absent,
    scan_root,
    section_accuracy,
    section_annotations,
    section_attribute_regions,
    section_concepts,
    section_grouping,
    section_localization,
    section_operating_points,
    section_response_maps,
    section_sparsity,
    ssp_ssg_sections,
)

__all__ = ["SECTION_TITLES", "ReportInputs", "build_report", "render_html"]


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
    from faceattr_ray.bundle import load_bundle
    from faceattr_ray.runtime import pick_device

    started = time.time()
    os.makedirs(out, exist_ok=True)
    device = pick_device(inputs.device)
    bundle = load_bundle(inputs.model, device=str(device))
    weight, bias, heads_kind = bundle.head_arrays()
    weight, bias = weight.astype(np.float64), bias.astype(np.float64)
    report = {
        "model": os.path.abspath(inputs.model),
        "attributes": len(bundle.attributes),
        "preset": bundle.config.get("preset"),
        "threshold": bundle.threshold,
        "heads": heads_kind,
        "celeba_root": os.path.abspath(inputs.celeba_root) if inputs.celeba_root else None,
        "annotations": os.path.abspath(inputs.annotations) if inputs.annotations else None,
        "device": str(device),
        "notes": inputs.notes,
    }
    if inputs.celeba_root:
        facts, sections = _root_sections(inputs, bundle, weight, bias, device, out)
        report.update(facts)
    else:
        sections = {key: absent(f"no --celeba-root given: this section needs {needs}")
                    for key, needs in NEEDS_ROOT.items()}
    if len(bundle.attributes) >= 2:
        sections["grouping"] = section_grouping(weight, list(bundle.attributes), out)
    else:
        sections["grouping"] = absent("fewer than two attributes to group")
    if inputs.annotations:
        sections["annotations"] = section_annotations(inputs.annotations, out)
    else:
        sections["annotations"] = absent("no --annotations given (an annotate output folder)")

    report["sections"] = {k: sections[k] for k in SECTION_TITLES}
    report["seconds"] = round(time.time() - started, 2)
    report = json.loads(json.dumps(report, allow_nan=False))  # the page shows exactly the JSON
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(out, "index.html"), "w") as f:
        f.write(render_html(report))
    return report


# What each section drawn from a root needs, said when no root is given.
NEEDS_ROOT = {"accuracy": "labelled images", "operating_points": "labelled images",
              "localization": "images with face boxes",
              "response_maps": "images to draw on", "attribute_regions": "images to draw on",
              "concept_neurons": "face images", "sparsity": "labelled images",
              "part_weights": "face images", "localization_maps": "face images"}


def _root_sections(inputs: ReportInputs, bundle, weight: np.ndarray, bias: np.ndarray, device,
                   out: str) -> tuple[dict, dict[str, dict]]:
    """The sections drawn from the images of a CelebA-layout root: one `Predictor` pass over
    them, then accuracy, localization, the LNet figures, concept neurons and sparsity.
    Returns (facts for the report's head, sections)."""
    from faceattr_ray.attributes import paper_reference
    from faceattr_ray.evaluation.evaluate import point_metrics
    from faceattr_ray.localizers import LNetLocalizer
    from faceattr_ray.predictor import Predictor

    has_lnets = bundle.lnet_o is not None and bundle.lnet_s is not None
    data, split = _read_root(inputs.celeba_root, inputs.split, inputs.limit, inputs.notes)
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
    scores, found, feats, crops, samples, all_faces = scan_root(predictor, list(data.paths),
                                                                every)
    data_cols = [list(data.names).index(n) for n in shared]
    model_cols = [bundle.attributes.index(n) for n in shared]
    labels = data.labels[:, data_cols]
    facts = {"split": split, "images": len(data.paths), "faces_found": int(found.sum()),
             "localizer": localizer}
    metrics = point_metrics(labels, scores[:, model_cols], shared, bundle.config)
    sections = {"accuracy": section_accuracy(metrics, paper_reference(shared), out),
                "operating_points": section_operating_points(
                    metrics, labels, scores[:, model_cols], shared, bundle.config, out)}
    if aligned:
        sections["localization"] = absent(
            "the root holds aligned crops (img_align_celeba/) with no face boxes to score "
            "against; a root with img_celeba/ and list_bbox_celeba.txt (for example "
            "`faceattr-ray generate --kind wild`) gives this section")
    elif truth is None:
        sections["localization"] = absent(
            "the root has no face boxes (list_bbox_celeba.txt or list_faces_all.txt)")
    elif not has_lnets:
        sections["localization"] = absent("the bundle has no LNets to localize with")
    else:
        sections["localization"] = section_localization(all_faces, truth[0], truth[1],
                                                        bundle.threshold, out)
    sections.update(_lnet_sections(bundle, samples, data.paths[: len(samples)], aligned,
                                   device, out))
    found_labels = labels[found]
    if len(feats) < 3:
        why = f"only {len(feats)} faces found in the root's images; at least 3 are needed"
        sections["concept_neurons"] = absent(why)
        sections["sparsity"] = absent(why)
    else:
        sections["concept_neurons"] = section_concepts(feats, crops, found_labels, shared,
                                                       weight, out)
        sections["sparsity"] = section_sparsity(feats, found_labels, shared,
                                                weight[model_cols], bias[model_cols], out)
    sections.update(ssp_ssg_sections(bundle, feats, crops, list(bundle.attributes), weight, out))
    return facts, sections


def _lnet_sections(bundle, samples, sample_paths, aligned: bool, device,
                   out: str) -> dict[str, dict]:
    """Response maps and attribute regions, or why they are absent."""
    if bundle.lnet_o is None or bundle.lnet_s is None:
        return {"response_maps": absent("the bundle has no LNets"),
                "attribute_regions": absent("the bundle has no LNets")}
    sections = {}
    sections["response_maps"], traces = section_response_maps(bundle, samples, sample_paths,
                                                               device, out)
    if bundle.lnet_s.head is None or bundle.lnet_s.config.num_attributes != len(bundle.attributes):
        sections["attribute_regions"] = absent(
            "LNet_s has no attribute head for the bundle's attributes (it was not "
            "fine-tuned with attribute tags)")
    else:
        sections["attribute_regions"] = section_attribute_regions(bundle, samples, traces,
                                                                  aligned, out)
    return sections
