"""Attribute metrics agree with scikit-learn and print like the paper's Table 1."""

import json

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from faceattr_ray.attributes import paper_reference
from faceattr_ray.metrics import attribute_metrics, format_table


def test_figures_per_attribute_and_means():
    y = np.array([[1, 0], [1, 1], [0, np.nan], [1, 0]], dtype=np.float32)
    s = np.array([[0.5, -1], [-0.2, 2], [-1, 3], [0.1, 1]], dtype=np.float32)
    m = attribute_metrics(y, s, ["Smiling", "Sunglasses"])
    a, b = m["attributes"]["Smiling"], m["attributes"]["Sunglasses"]
    assert a["count"] == 4 and a["accuracy"] == 0.75
    assert a["balanced_accuracy"] == balanced_accuracy_score([1, 1, 0, 1], [1, 0, 0, 1])
    assert a["positive_rate"] == 0.75 and a["majority_baseline"] == 0.75
    assert b["count"] == 3  # the NaN label is left out
    assert b["accuracy"] == 2 / 3 and b["balanced_accuracy"] == 0.75
    assert m["mean"]["accuracy"] == np.mean([0.75, 2 / 3])
    json.dumps(m)  # JSON-able as is


def test_one_class_and_no_labels():
    y = np.array([[1, np.nan], [1, np.nan]], dtype=np.float32)
    m = attribute_metrics(y, np.array([[1, 0], [-1, 0]]), ["A", "B"])
    assert m["attributes"]["A"]["balanced_accuracy"] == 0.5  # recall of the one class
    assert m["attributes"]["B"]["accuracy"] is None
    assert m["mean"]["accuracy"] == 0.5  # B is left out of the means


def test_table_with_paper_reference():
    names = ["Smiling", "Asian"]  # "Asian" is not one of CelebA's 40: no reference
    y = np.array([[1, 0], [0, 1]], dtype=np.float32)
    m = attribute_metrics(y, np.array([[1, -1], [-1, 1]]), names)
    text = format_table(m, reference=paper_reference(names))
    lines = text.splitlines()
    assert lines[0].split() == ["attribute", "n", "acc", "bal.acc", "majority", "pos.rate", "paper"]
    smiling = next(line for line in lines if line.startswith("Smiling")).split()
    assert smiling[2] == "100.0" and smiling[-1] == "92.0"  # paper Table 1, CelebA
    assert next(line for line in lines if line.startswith("Asian")).split()[-1] == "-"
    assert lines[-1].split()[0] == "mean"
