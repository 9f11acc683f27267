"""The report's HTML page, rendered from the report's JSON alone: every number carries its JSON
path (``data-path``), so a reader or a test can check that page and JSON agree."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence

from faceattr_ray.evaluation.report.sections import SECTION_TITLES


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


def _render_operating_points(p: _Page, d: dict, base: tuple) -> str:
    points = list(d["points"])
    header = ["attribute"] + [f"{pt} {k}" for pt in points for k in ("acc", "bal", "AP")]
    names = list(d["points"][points[0]]["attributes"])
    cells = ("accuracy", "balanced_accuracy", "average_precision")
    rows = [[_e(n)] + [p.num(*base, "points", pt, "attributes", n, k, unit="%")
                       for pt in points for k in cells] for n in names]
    rows.append(["<b>mean</b>"] + [p.num(*base, "points", pt, "mean", k, unit="%")
                                   for pt in points for k in cells])
    means = "; ".join(
        f"{_e(pt)}: accuracy {p.num(*base, 'points', pt, 'mean', 'accuracy', unit='%')}, "
        f"balanced {p.num(*base, 'points', pt, 'mean', 'balanced_accuracy', unit='%')}"
        for pt in points)
    return (f"<p>Thresholds chosen on {_e(d['chosen_on'])} ({_e(d['method'])}); a decision is "
            f"score &gt; threshold. Means: {means}. Mean AP (threshold-free): "
            f"{p.num(*base, 'points', points[0], 'mean', 'average_precision', unit='%')}. "
            f"Calibration error (ECE) {p.num(*base, 'reliability', 'ece')}, Brier "
            f"{p.num(*base, 'reliability', 'brier')}.</p>"
            + _figure_html(d["figures"][0])
            + f"<details><summary>table</summary>{_table(header, rows)}</details>")


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


def _render_part_weights(p: _Page, d: dict, base: tuple) -> str:
    rows = [[_e(n), _e(a["top_part"])] + [p.num(*base, "attributes", n, "contribution_share",
                                                 part, unit="%") for part in d["parts"]]
            for n, a in d["attributes"].items()]
    table = _table(["attribute", "top part", *d["parts"]], rows)
    return (f"<p>Over {p.num(*base, 'faces', unit='int')} faces.</p>"
            + _figure_html(d["figures"][0]) + f"<details><summary>table</summary>{table}</details>")


def _render_localization_maps(p: _Page, d: dict, base: tuple) -> str:
    return (f"<p>Averaged over {p.num(*base, 'faces', unit='int')} face crops.</p>"
            + _figure_html(d["figures"][0]))


_RENDER = {
    "accuracy": _render_accuracy, "operating_points": _render_operating_points,
    "localization": _render_localization,
    "response_maps": _render_response_maps, "attribute_regions": _render_attribute_regions,
    "concept_neurons": _render_concepts, "sparsity": _render_sparsity,
    "grouping": _render_grouping, "annotations": _render_annotations,
    "part_weights": _render_part_weights, "localization_maps": _render_localization_maps,
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
