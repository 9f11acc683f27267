"""The `train heads` job: per-attribute SVM heads from stored ANet features; no CNN is run.

Features (Parquet, see `heads.features`) are joined to a label table by path, split
(``holdout``: all train, a part held out to choose C; ``lfwa-plus``: one third trains, the rest is
the test, scored with balanced accuracy as the paper's LFWA+ protocol), fit, and written into a
bundle: ``base_model`` is copied to ``out`` with the new heads and attribute names; without it
``out`` must already be a bundle, updated in place (a bundle always holds its ANet, so there is
no heads-only bundle).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from faceattr_ray.errors import BundleError, DataError


def train_heads(features: str, labels: str, out: str, base_model: str | None = None,
                attributes: Sequence[str] | None = None, mean_features: bool = False,
                solver: str = "liblinear", C: Sequence[float] = (0.01, 0.1, 1.0),
                class_weight: str | None = None, protocol: str = "holdout",
                seed: int = 0) -> dict:
    """Fit the heads and write the bundle. With ``solver="ray"`` Ray must be running.
    Returns {"heads": LinearHeads, "join": counts, "images": n, "test": metrics or None}."""
    from faceattr_ray.bundle import write_heads_bundle
    from faceattr_ray.data.tables import read_attribute_table
    from faceattr_ray.heads import TEST, fit_heads, fit_heads_blocks, score_blocks
    from faceattr_ray.heads.features import (
        assign_split,
        feature_layout,
        join_features_labels,
        open_features,
        ray_feature_blocks,
        read_feature_arrays,
    )
    from faceattr_ray.metrics import attribute_metrics

    table = read_attribute_table(labels, attributes=list(attributes) if attributes else None)
    dataset = open_features(features)
    layout = feature_layout(dataset, features, mean_only=mean_features)
    base = _base_bundle(features, out, base_model, layout.dim)

    keys, label_rows, join = join_features_labels(dataset, table.paths, features, labels)
    y = table.labels[label_rows]
    split = assign_split(len(keys), protocol, len(C) > 1, seed)
    join["labels_missing"] = {n: int(np.isnan(y[:, j]).sum())
                              for j, n in enumerate(table.names) if np.isnan(y[:, j]).any()}
    lookup = {"keys": keys, "y": y, "split": split}
    if solver == "liblinear":
        x, y_used, split_used = read_feature_arrays(dataset, layout, lookup)
        heads = fit_heads(x, y_used, table.names, C=C, class_weight=class_weight,
                          split=split_used, solver="liblinear", seed=seed)
        scores, truth = heads.decision_function(x[split_used == TEST]), y_used[split_used == TEST]
        images = len(x)
    elif solver == "ray":
        blocks, images = ray_feature_blocks(features, layout, lookup)
        heads = fit_heads_blocks(blocks, table.names, C=C, class_weight=class_weight)
        scores, truth = score_blocks(blocks, heads, TEST)
    else:
        raise ValueError(f"solver must be 'liblinear' or 'ray', not {solver!r}")
    join["images_with_features"] = images
    test = None
    if protocol == "lfwa-plus":
        test = attribute_metrics(truth, scores, heads.names)
        test["train_images"] = int((split != TEST).sum())
    info = {"features": features, "labels": labels, "protocol": protocol, "join": join,
            **heads.info, **({"test": test} if test else {})}
    write_heads_bundle(out, heads, base, info)
    return {"heads": heads, "join": join, "images": images, "test": test}


def _base_bundle(features: str, out: str, base_model: str | None, dim: int):
    from faceattr_ray.bundle import load_bundle

    source = base_model or out
    if base_model is None and not os.path.isfile(os.path.join(out, "config.json")):
        raise BundleError(f"{out} is not a bundle: give --base-model (the bundle whose "
                          "ANet made the features) to copy into it")
    bundle = load_bundle(source)
    feature_dim = bundle.anet.config.feature_dim
    if feature_dim != dim:
        raise DataError(f"{features}: features have dimension {dim}, but the ANet of "
                        f"{source} makes {feature_dim}")
    return bundle
