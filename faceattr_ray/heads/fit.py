"""Fitting per-attribute linear SVM heads on ANet features (paper section 2.2, Fig. 2d).

One linear SVM per attribute is trained on the FC vector of every patch, each patch carrying its
image's labels (scoring: model.py).

Two solvers minimise the same problem, LinearSVC's primal with the squared hinge loss::

    0.5 * ||[w, b/s]||^2 + sum_i C * weight(y_i) * max(0, 1 - y_i * (w . x_i + b))^2

where s is ``intercept_scaling`` (1 by default): like liblinear, the bias is learnt as the
weight of a constant extra feature of value s, so it is penalised too. ``weight(y)`` is 1, or
n / (2 * n_y) with ``class_weight="balanced"`` (scikit-learn's convention).

- ``solver="liblinear"``: scikit-learn's ``LinearSVC(dual=False)`` per attribute, in memory.
- ``solver="ray"``: all attributes (and all C values) at once with a semismooth Newton method
  on statistics reduced from Ray tasks. Each pass sends the current weights to one task per
  block; a task returns, per head, the loss, the gradient and the generalised Hessian
  ``2 * sum_{margin<1} c_i x_i x_i^T`` of its rows, and the driver sums them and solves one
  (F+1)x(F+1) system per head. A rejected Newton step is halved on the next pass (Armijo), so a
  pass is one iteration; 5-20 passes converge. The driver holds only weights and statistics:
  (heads x (F+1)^2) float64, so this suits F up to about 1,000.

C is chosen per attribute on a validation part (given, or ``val_fraction`` of the training
images drawn with ``seed``): accuracy, or balanced accuracy with ``class_weight="balanced"``.
The chosen head is then refit on training + validation images.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from faceattr_ray.errors import DataError
from faceattr_ray.heads.model import TEST, TRAIN, VAL, LinearHeads
from faceattr_ray.heads.solvers import InMemory, RayBackend, RayBlocks, blocks_from_arrays


def fit_heads(
    features,
    labels,
    names: Sequence[str],
    C: Sequence[float] = (0.01, 0.1, 1.0),
    class_weight: str | None = None,
    val: tuple | None = None,
    val_fraction: float = 0.2,
    split: np.ndarray | None = None,
    seed: int = 0,
    solver: str = "liblinear",
    refit: bool = True,
    intercept_scaling: float = 1.0,
    tol: float = 1e-4,
    max_iter: int | None = None,
    rows_per_block: int = 2048,
) -> LinearHeads:
    """Fit one linear SVM per attribute.

    features: (N, F) or (N, P, F) (P patches per image, each carrying the image's labels).
    labels: (N, A) float {1, 0, NaN}; NaN = unknown, left out for that attribute only.
    val: optional (features, labels) to choose C on; without it and when a choice is needed
    (several C), ``val_fraction`` of the images is held out.
    split: optional per-image codes TRAIN/VAL/TEST instead of ``val``/``val_fraction``; TEST
    images are ignored. With ``refit``, a validation part taken from the training images (drawn
    or given by ``split``) joins the final fit; an explicit ``val`` set never does.
    solver: "liblinear" (scikit-learn, in memory) or "ray" (distributed Newton; see module doc).
    """
    x, y = _as_images(features, labels, names, "features")
    needs_val = len(C) > 1
    val_is_split = split is not None  # a validation part of the training images: refit joins it
    if split is not None:
        split = np.asarray(split, dtype=np.int8)
        if split.shape != (len(x),):
            raise DataError(f"split has shape {split.shape}, expected ({len(x)},)")
    elif val is not None:
        xv, yv = _as_images(val[0], val[1], names, "validation features")
        if xv.shape[1:] != x.shape[1:]:
            raise DataError(f"validation features {xv.shape[1:]} differ from training {x.shape[1:]}")
        split = np.repeat(np.array([TRAIN, VAL], np.int8), [len(x), len(xv)])
        x, y = np.concatenate([x, xv]), np.concatenate([y, yv])
    else:
        split = np.full(len(x), TRAIN, dtype=np.int8)
        if needs_val:
            n_val = max(1, int(round(val_fraction * len(x))))
            if n_val >= len(x):
                raise DataError(f"{len(x)} images are too few to hold out a validation part")
            split[np.random.default_rng(seed).permutation(len(x))[:n_val]] = VAL
            val_is_split = True
    backend = make_backend(solver, x, y, split, intercept_scaling, tol, max_iter, rows_per_block)
    return _fit(backend, list(names), C, class_weight, refit and val_is_split)


def make_backend(solver: str, x: np.ndarray, y: np.ndarray, split: np.ndarray,
                 intercept_scaling: float = 1.0, tol: float = 1e-4, max_iter: int | None = None,
                 rows_per_block: int = 2048):
    """The solver over in-memory images (N, P, F) with their split codes: "liblinear"
    (scikit-learn, in this process) or "ray" (Newton steps on Ray tasks)."""
    if solver == "liblinear":
        return InMemory(x, y, split, intercept_scaling, tol, max_iter or 1000)
    if solver == "ray":
        blocks = blocks_from_arrays(x, y, split, rows_per_block)
        return RayBackend(blocks, intercept_scaling, tol, max_iter or 50)
    raise ValueError(f"unknown solver {solver!r} (liblinear or ray)")


def fit_heads_blocks(
    blocks: RayBlocks,
    names: Sequence[str],
    C: Sequence[float] = (0.01, 0.1, 1.0),
    class_weight: str | None = None,
    refit: bool = True,
    intercept_scaling: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 50,
) -> LinearHeads:
    """fit_heads with the Ray solver on data already in Ray blocks (e.g. streamed from Parquet),
    whose rows carry their split code (TRAIN, VAL, TEST; TEST rows are never fit on)."""
    backend = RayBackend(blocks, intercept_scaling, tol, max_iter)
    return _fit(backend, list(names), C, class_weight, refit)


def score_blocks(blocks: RayBlocks, heads: LinearHeads, code: int = TEST
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Scores (n, A) and labels (n, A) of the images of ``blocks`` whose split is ``code``,
    computed in Ray tasks (only scores and labels come back to the driver)."""
    if blocks.dim != heads.dim:
        raise DataError(f"features have dimension {blocks.dim}, the heads {heads.dim}")
    backend = RayBackend(blocks, 1.0, 0.0, 0)
    w = np.concatenate([heads.weight, heads.bias[:, None]], 1).astype(np.float64)
    return backend.scores(w, code)


def _as_images(features, labels, names, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(features, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None, :]
    y = np.asarray(labels, dtype=np.float32)
    if y.ndim == 1:
        y = y[:, None]
    if x.ndim != 3 or y.shape != (len(x), len(names)):
        raise DataError(
            f"{what} {x.shape} and labels {y.shape} do not fit {len(names)} attributes "
            "(expected features (N, F) or (N, P, F) and labels (N, A))"
        )
    return x, y


def _fit(backend, names: list[str], C, class_weight, refit: bool):
    if class_weight not in (None, "balanced"):
        raise ValueError(f"class_weight must be None or 'balanced', got {class_weight!r}")
    c_values = np.asarray(sorted(float(c) for c in C))
    k, a = len(c_values), len(names)
    pos, neg = backend.counts((TRAIN,))
    fit_mask = _fittable(names, pos, neg)
    w = backend.fit(np.repeat(c_values[:, None], a, 1), (TRAIN,), class_weight, fit_mask)
    chosen = np.full(a, c_values[0])
    best = np.zeros(a, dtype=int)
    val_figures = None
    if k > 1:
        scores, y_val = backend.scores(w.reshape(k * a, -1), VAL)
        if len(y_val) == 0:
            raise DataError("choosing C needs validation images; none were given")
        best, val_figures = choose_c(scores, y_val, names, c_values, class_weight)
        chosen = c_values[best]
    held_out = None
    if k > 1:
        held_out = (scores[:, best * a + np.arange(a)].astype(np.float32), y_val)
    w = w[best, np.arange(a)]
    if refit:
        pos, neg = backend.counts((TRAIN, VAL))
        fit_mask = _fittable(names, pos, neg, warn=False)
        w = backend.fit(chosen[None, :], (TRAIN, VAL), class_weight, fit_mask)[0]
    s = backend.intercept_scaling
    weight, bias = w[:, :-1].copy(), w[:, -1] * s
    # A head whose training labels are all one class answers that class for every image.
    weight[~fit_mask] = 0.0
    bias[~fit_mask] = np.where(pos[~fit_mask] > 0, 1.0, -1.0)
    heads = LinearHeads(names, weight.astype(np.float32), bias.astype(np.float32),
                        held_out=held_out)
    heads.info = {
        "solver": backend.name, "C": chosen.tolist(), "C_grid": c_values.tolist(),
        "class_weight": class_weight, "intercept_scaling": s, "refit": bool(refit),
        "train_positives": pos.tolist(), "train_negatives": neg.tolist(),
        "validation": val_figures,
    }
    if getattr(backend, "passes", None):
        heads.info["passes"] = list(backend.passes)
    return heads


def choose_c(scores: np.ndarray, labels: np.ndarray, names: Sequence[str], c_values: np.ndarray,
             class_weight: str | None) -> tuple[np.ndarray, dict]:
    """Per attribute, the index of the best C on validation scores (n, K * A) (C-major: the
    A columns of the first C, then the next) and labels (n, A): by accuracy, or balanced
    accuracy with class_weight "balanced". Returns (best index (A,), {"metric", "values"})."""
    from faceattr_ray.metrics import attribute_metrics

    k, a = len(c_values), len(names)
    key = "balanced_accuracy" if class_weight == "balanced" else "accuracy"
    figures = np.full((k, a), -1.0)
    for i in range(k):
        m = attribute_metrics(labels, scores[:, i * a:(i + 1) * a], list(names))["attributes"]
        figures[i] = [-1.0 if m[n][key] is None else m[n][key] for n in names]
    best = figures.argmax(0)  # first maximum: the smallest C, most regularised, wins ties
    return best, {"metric": key, "values": figures[best, np.arange(a)].tolist()}


def _fittable(names, pos, neg, warn: bool = True) -> np.ndarray:
    ok = (pos > 0) & (neg > 0)
    if warn:
        for j in np.flatnonzero(~ok):
            which = "no labels" if pos[j] + neg[j] == 0 else (
                "only positive labels" if pos[j] else "only negative labels")
            warnings.warn(f"attribute {names[j]!r} has {which} in training: constant head",
                          stacklevel=3)
    return ok
