"""`faceattr-ray report` on a tiny bundle and tiny generated roots: every section is produced (or
says why not), the page's numbers are report.json's, and a real browser shows every image."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from faceattr_ray.bundle import save_bundle
from faceattr_ray.data import read_celeba
from faceattr_ray.data.synthetic import read_all_faces, write_aligned, write_wild
from faceattr_ray.evaluation.report import SECTION_TITLES, ReportInputs, build_report
from faceattr_ray.presets import build_bundle

SECTIONS = tuple(SECTION_TITLES)
ANNOTATED = ["Male", "Smiling", "Young"]


def _annotate_output(path) -> None:
    """A small annotate output, in the job's own schema, with known counts."""
    from faceattr_ray.pipeline.schema import output_schema, table_metadata

    schema = output_schema(ANNOTATED, False, table_metadata(ANNOTATED, {}, None, "lnet"))
    base = {"image_width": 100, "image_height": 80, "error": None, "model_version": "test"}
    rows = [
        dict(base, path="a.jpg", status="ok", face_index=0, Male=1.0, Smiling=-1.0, Young=2.0),
        dict(base, path="a.jpg", status="ok", face_index=1, Male=0.5, Smiling=-2.0, Young=1.0),
        dict(base, path="b.jpg", status="ok", face_index=0, Male=-1.0, Smiling=3.0, Young=1.0),
        dict(base, path="c.jpg", status="no_face"),
        dict(base, path="d.jpg", status="error", error="not a recognised image format",
             image_width=0, image_height=0),
    ]
    os.makedirs(path)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), os.path.join(path, "part-0.parquet"))


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Two bundles (ANet's attribute layer; SVM heads), an aligned and a wild root, an annotate
    output, and the reports built from them."""
    root = tmp_path_factory.mktemp("report")
    plain = build_bundle("tiny", seed=0)
    save_bundle(root / "plain", plain)
    svm = build_bundle("tiny", seed=1)
    rng = np.random.default_rng(0)
    a, f = len(svm.attributes), svm.anet.config.feature_dim
    svm.heads = {"weight": rng.normal(0, 1, (a, f)).astype(np.float32),
                 "bias": rng.normal(0, 0.1, a).astype(np.float32)}
    save_bundle(root / "svm", svm)
    aligned = write_aligned(str(root / "aligned"), 16, identities=6, seed=0)
    wild = write_wild(str(root / "wild"), 8, identities=6, seed=0, size=(160, 120))
    os.remove(os.path.join(wild, "list_eval_partition.txt"))  # no split: every image is used
    _annotate_output(str(root / "annotated"))

    aligned_out = str(root / "out_aligned")
    aligned_report = build_report(ReportInputs(str(root / "svm"), aligned, split="all"),
                                  aligned_out)
    from faceattr_ray.cli import main

    wild_out = str(root / "out_wild")
    assert main(["report", "--model", str(root / "plain"), "--celeba-root", wild,
                 "--annotations", str(root / "annotated"), "--out", wild_out,
                 "--limit", "6"]) == 0
    with open(os.path.join(wild_out, "report.json")) as fh:
        wild_report = json.load(fh)
    return {"root": root, "aligned": aligned, "wild": wild,
            "aligned_out": aligned_out, "aligned_report": aligned_report,
            "wild_out": wild_out, "wild_report": wild_report}


def _ok(report, key) -> dict:
    s = report["sections"][key]
    assert s["status"] == "ok", f"{key}: {s.get('reason')}"
    return s


def test_aligned_root_gives_every_section_but_localization(made):
    r = made["aligned_report"]
    assert list(r["sections"]) == list(SECTIONS)
    for key in ("accuracy", "response_maps", "attribute_regions", "concept_neurons", "sparsity",
                "grouping"):
        _ok(r, key)
    loc = r["sections"]["localization"]
    assert loc["status"] == "absent" and "aligned crops" in loc["reason"]
    assert r["sections"]["annotations"]["status"] == "absent"
    assert r["heads"] == "svm heads" and r["localizer"] == "full"
    assert r["images"] == 16 and r["faces_found"] == 16
    with open(os.path.join(made["aligned_out"], "report.json")) as fh:
        assert json.load(fh) == r  # what build_report returns is what it wrote


def test_accuracy_equals_faceattr_ray_evaluate(made):
    from faceattr_ray.evaluation.evaluate import evaluate_celeba

    r = made["aligned_report"]
    metrics = evaluate_celeba(str(made["root"] / "svm"), made["aligned"], split="all",
                              localizer="full")
    acc = _ok(r, "accuracy")
    assert set(acc["attributes"]) == set(metrics["attributes"])
    for name, m in metrics["attributes"].items():
        for key in ("accuracy", "balanced_accuracy", "majority_baseline", "count"):
            assert acc["attributes"][name][key] == pytest.approx(m[key]), (name, key)
    assert acc["attributes"]["Male"]["paper"] == 0.98  # Table 1 beside ours
    assert acc["mean"]["accuracy"] == pytest.approx(metrics["mean"]["accuracy"])


def test_sparsity_with_every_neuron_reproduces_the_model_accuracy(made):
    # The sparsity heads are the bundle's own (SVM heads, or ANet's attribute layer when it has
    # none): keeping 100% of the neurons must give back the accuracy the model scored, within
    # one image of float rounding at a score of ~0.
    for report in (made["aligned_report"], made["wild_report"]):
        acc, sp = _ok(report, "accuracy"), _ok(report, "sparsity")
        tol = 1.0 / report["images"] + 1e-9
        # Faceless images would score 0 in `accuracy` and be left out of `sparsity`; neither
        # report has any (aligned crops are faces; the wild bundle has no threshold, so every
        # image gets its best window), so both are compared, the wild one included.
        assert report["faces_found"] == report["images"]
        for name, m in sp["attributes"].items():
            assert m["accuracy_all"] == pytest.approx(acc["attributes"][name]["accuracy"],
                                                      abs=tol), name
        assert sp["fractions"][-1] == 1.0
        assert all(f in sp["fractions"] for f in (m["fraction_needed"] for m in
                                                  sp["attributes"].values()) if f is not None)


def test_wild_root_gives_localization_against_every_person(made):
    r = made["wild_report"]
    assert r["split"] == "all" and r["images"] == 6  # --limit 6
    assert any("no split file" in n for n in r["notes"])
    loc = _ok(r, "localization")
    files = read_celeba(made["wild"]).files[:6]
    people = read_all_faces(made["wild"])
    assert loc["faces"] == sum(len(people[f]["faces"]) for f in files) > 6  # several per image
    assert loc["images"] == 6 and "list_faces_all" in loc["ground_truth"]
    assert len(loc["recall"]) == len(loc["iou_thresholds"])
    assert all(0.0 <= v <= 1.0 for v in loc["recall"] + loc["tpr"])
    assert r["heads"] == "anet attribute layer" and r["localizer"] == "lnet"


def test_model_sections_have_one_entry_per_attribute_or_neuron(made):
    r = made["aligned_report"]
    names = set(_ok(r, "accuracy")["attributes"])
    regions = _ok(r, "attribute_regions")
    assert set(regions["attributes"]) == names and min(regions["map_size"]) >= 8  # not 1x1
    for peak in regions["attributes"].values():
        assert 0 < peak["peak_row"] < 1 and 0 < peak["peak_col"] < 1
    group = _ok(r, "grouping")
    assert sorted(sum(group["groups"], [])) == sorted(names) and len(group["groups"]) == 6
    concepts = _ok(r, "concept_neurons")
    assert 1 <= len(concepts["neurons"]) <= 6
    assert len({n["neuron"] for n in concepts["neurons"]}) == len(concepts["neurons"])
    maps = _ok(r, "response_maps")
    assert len(maps["samples"]) == 4
    assert all(s["lnet_o_map"] and s["head_shoulder"] for s in maps["samples"])


def test_annotations_section_counts_the_table(made):
    a = _ok(made["wild_report"], "annotations")
    assert (a["rows"], a["images"], a["faces"], a["no_face"], a["errors"]) == (5, 4, 3, 1, 1)
    assert a["faces_per_image"] == {"0": 1, "1": 1, "2": 1}
    assert a["prevalence"] == pytest.approx({"Male": 2 / 3, "Smiling": 1 / 3, "Young": 1.0})
    assert a["error_messages"] == {"not a recognised image format": 1}


class _Numbers(HTMLParser):
    """Every <span class="num" data-path=...> of a page with its text, and every <img> src."""

    def __init__(self) -> None:
        super().__init__()
        self.numbers, self.images, self.sections = [], [], {}
        self._open = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "span" and a.get("class") == "num":
            self._open = [a["data-path"], a["data-unit"], ""]
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "section":
            self.sections[a["id"]] = a["data-status"]

    def handle_data(self, data):
        if self._open is not None:
            self._open[2] += data

    def handle_endtag(self, tag):
        if tag == "span" and self._open is not None:
            self.numbers.append(tuple(self._open))
            self._open = None


def _lookup(report, path: str):
    v = report
    for key in path.split("/"):
        v = v[int(key)] if isinstance(v, list) else v[key]
    return v


@pytest.mark.parametrize("which", ["aligned", "wild"])
def test_numbers_in_the_page_equal_the_json(made, which):
    out = made[f"{which}_out"]
    with open(os.path.join(out, "report.json")) as fh:
        report = json.load(fh)
    page = _Numbers()
    with open(os.path.join(out, "index.html")) as fh:
        page.feed(fh.read())
    assert len(page.numbers) > 100  # tables of every section, not a token few
    for path, unit, text in page.numbers:
        value = _lookup(report, path)
        if value is None:
            assert text == "-", path
            continue
        shown = float(text.rstrip("%"))
        if unit == "%":
            assert text.endswith("%") and abs(shown - 100 * value) <= 0.05 + 1e-9, (path, text)
        elif unit == "int":
            assert shown == value, (path, text)
        else:
            assert abs(shown - value) <= 0.0005 + 1e-12, (path, text)
    # Every section is in the page with the JSON's status; every figure file is in the folder.
    assert page.sections == {k: s["status"] for k, s in report["sections"].items()}
    figures = [f["file"] for s in report["sections"].values() for f in s.get("figures", [])]
    assert figures and set(figures) <= set(page.images)
    for src in page.images:
        assert not os.path.isabs(src) and os.path.isfile(os.path.join(out, src)), src
    # Absent sections say why.
    with open(os.path.join(out, "index.html")) as fh:
        text = fh.read()
    for s in report["sections"].values():
        if s["status"] != "ok":
            assert s["reason"].split("(")[0].strip()[:40] in text.replace("&#x27;", "'")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


# Appended to a copy of the page: after every image has loaded or failed, write which are
# broken into the DOM. A control image that does not exist proves the check can fail.
_CHECK = """
<img id="control" src="no-such-figure.png">
<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute("src"));
  const pre = document.createElement("pre");
  pre.id = "image-check";
  pre.textContent = JSON.stringify({total: imgs.length, broken: broken});
  document.body.appendChild(pre);
});
</script>
"""


@pytest.mark.timeout(120)
def test_page_shows_every_image_in_a_real_browser(request, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    out = request.getfixturevalue("made")["wild_out"]  # built only when there is a browser
    with open(os.path.join(out, "index.html")) as fh:
        page = fh.read()
    check = os.path.join(out, "_browser_check.html")  # beside the page: same relative links
    with open(check, "w") as fh:
        fh.write(page.replace("</body>", _CHECK + "</body>"))
    try:
        result = subprocess.run(
            [browser, "--headless", "--disable-gpu", "--no-sandbox", "--allow-file-access-from-files",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
             "--dump-dom", "file://" + os.path.abspath(check)],
            capture_output=True, text=True, timeout=90)
    finally:
        os.remove(check)
    found = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout)
    assert found, f"no image check in the dumped DOM; stderr: {result.stderr[-2000:]}"
    check_result = json.loads(found.group(1).replace("&quot;", '"'))
    expected = len(_page_images(page)) + 1
    assert check_result["total"] == expected
    assert check_result["broken"] == ["no-such-figure.png"], check_result["broken"]


def _page_images(page: str) -> list[str]:
    parser = _Numbers()
    parser.feed(page)
    return parser.images


def test_face_tag_lnets_give_maps_and_one_region_per_attribute(made, tmp_path):
    """A bundle with the "wild" LNets (face tag first, then the attributes): the report draws
    its pyramid cascade and gives one attribute region per attribute, not the face tag."""
    wild = build_bundle("wild-smoke", seed=0)
    save_bundle(tmp_path / "wild", wild)
    report = build_report(ReportInputs(str(tmp_path / "wild"), made["aligned"], split="all",
                                       limit=4), str(tmp_path / "out"))
    _ok(report, "response_maps")
    regions = _ok(report, "attribute_regions")
    assert len(regions["attributes"]) == len(wild.attributes)
