"""Cross-fitted SVM heads: an out-of-fold score for every choice image, not for a held-out part.

The choices made after fitting (C per attribute, SVM or ANet's tag layer, the operating points)
need scores from heads that never saw the images they are made on. Holding out a share of the
identities gives such scores for that share only (on celeba-mini's val split, ~243 faces). Here
the choice images are dealt into K folds by identity; for each fold the SVMs (every C of the
grid) are fit on the other folds plus the always-fit rows, and score the fold. Every choice
image then has exactly one score per C from heads that never saw its identity, and C is chosen
on all of them (per attribute, as `fit._fit` does on a held-out part).

The final heads are either the chosen C refit on every row (``final="refit"``: one model, the
out-of-fold scores stand in for its own on new faces, shifted a little as it saw more faces) or
the K fold models averaged (``final="average"``: a linear head, so this is the mean of the fold
models' scores; the points are chosen on those models' own scores). Both are returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from faceattr_ray.errors import DataError
from faceattr_ray.heads.fit import _as_images, _fittable, choose_c, make_backend
from faceattr_ray.heads.model import TRAIN, VAL, LinearHeads

FINALS = ("refit", "average")


def identity_folds(groups, k: int, seed: int = 0) -> np.ndarray:
    """Fold index (0..k'-1) per row, every row of one group (identity) in the same fold;
    groups are shuffled with ``seed`` and each goes to the fold with the fewest rows so far, so
    fold sizes differ by at most one group. k' = min(k, number of groups); with a single group
    (a tiny root of one person) the rows themselves are the groups."""
    groups = np.asarray(groups)
    if k < 2:
        raise ValueError(f"cross-fitting needs at least 2 folds, not {k}")
    if len(np.unique(groups)) < 2:
        groups = np.arange(len(groups))
    ids, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
    if len(ids) < 2:
        raise DataError(f"{len(groups)} images are too few to cross-fit")
    k = min(k, len(ids))
    fold_of_id = np.zeros(len(ids), np.int64)
    rows = np.zeros(k, np.int64)
    for i in np.random.default_rng([seed, 19]).permutation(len(ids)):
        f = int(np.argmin(rows))  # first of the least-filled folds
        fold_of_id[i] = f
        rows[f] += sizes[i]
    return fold_of_id[inverse.ravel()]


@dataclass(eq=False)
class CrossFit:
    """Out-of-fold scores at the chosen C and the two final heads (see the module doc)."""

    rows: np.ndarray  # (n,) indices of the scored (choice) rows, in row order
    folds: np.ndarray  # (n,) fold of each scored row
    scores: np.ndarray  # (n, A) out-of-fold scores at each attribute's chosen C
    labels: np.ndarray  # (n, A) their labels
    average: LinearHeads  # the K fold models at the chosen C, averaged
    refit: LinearHeads | None  # the chosen C refit on every row (None: refit=False)
    info: dict = field(default_factory=dict)

    def heads(self, final: str) -> LinearHeads:
        if final not in FINALS:
            raise ValueError(f"final must be one of {FINALS}, not {final!r}")
        if final == "refit" and self.refit is None:
            raise ValueError("these heads were cross-fit without a refit")
        heads = self.average if final == "average" else self.refit
        heads.held_out = (self.scores, self.labels)
        return heads


def _constant(w: np.ndarray, fit_mask: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """(…, A, F+1) weights with the unfittable heads made constant: +1 if the fit saw only
    positives, else -1 (as `fit._fit` does for its final heads)."""
    w = w.copy()
    w[..., ~fit_mask, :] = 0.0
    w[..., ~fit_mask, -1] = np.where(pos[~fit_mask] > 0, 1.0, -1.0)
    return w


def crossfit_heads(features, labels, names: Sequence[str], folds, C: Sequence[float],
                   class_weight: str | None = None, solver: str = "liblinear",
                   refit: bool = True, tol: float = 1e-4,
                   max_iter: int | None = None) -> CrossFit:
    """Cross-fit one linear SVM per attribute (see the module doc).

    features (N, F) or (N, P, F), labels (N, A) in {1, 0, NaN}; folds (N,): the fold of each
    choice row (0..K-1), -1 for rows fit in every fold and never scored (e.g. train-split
    faces), -2 for rows left out of everything."""
    x, y = _as_images(features, labels, names, "features")
    folds = np.asarray(folds, np.int64)
    if folds.shape != (len(x),):
        raise DataError(f"folds has shape {folds.shape}, expected ({len(x)},)")
    ks = np.unique(folds[folds >= 0])
    if len(ks) < 2:
        raise DataError("cross-fitting needs choice rows in at least 2 folds")
    names = list(names)
    c_values = np.asarray(sorted(float(c) for c in C))
    k, a, d = len(c_values), len(names), x.shape[2] + 1
    scored = np.flatnonzero(folds >= 0)
    oof = np.zeros((len(x), k, a))
    fold_w = np.zeros((len(ks), k, a, d))
    for i, f in enumerate(ks):
        split = np.where(folds == f, VAL, np.where(folds == -2, 2, TRAIN)).astype(np.int8)
        backend = make_backend(solver, x, y, split, 1.0, tol, max_iter)
        pos, neg = backend.counts((TRAIN,))
        fit_mask = _fittable(names, pos, neg, warn=False)
        w = _constant(backend.fit(np.repeat(c_values[:, None], a, 1), (TRAIN,), class_weight,
                                  fit_mask), fit_mask, pos)
        s, _ = backend.scores(w.reshape(k * a, d), VAL)
        oof[folds == f] = s.reshape(-1, k, a)
        fold_w[i] = w
    best, figures = choose_c(oof[scored].reshape(len(scored), k * a), y[scored], names,
                             c_values, class_weight)
    chosen = c_values[best]
    cols = np.arange(a)
    scores = oof[scored][:, best, cols].astype(np.float32)
    w_avg = fold_w[:, best, cols].mean(0)
    average = LinearHeads(names, w_avg[:, :-1].astype(np.float32),
                          w_avg[:, -1].astype(np.float32))
    refit_heads = None
    if refit:
        everything = np.where(folds == -2, 2, TRAIN).astype(np.int8)
        backend = make_backend(solver, x, y, everything, 1.0, tol, max_iter)
        pos, neg = backend.counts((TRAIN,))
        fit_mask = _fittable(names, pos, neg)
        w = _constant(backend.fit(chosen[None, :], (TRAIN,), class_weight, fit_mask)[0],
                      fit_mask, pos)
        refit_heads = LinearHeads(names, w[:, :-1].astype(np.float32),
                                  w[:, -1].astype(np.float32))
    info = {"solver": solver, "C": chosen.tolist(), "C_grid": c_values.tolist(),
            "class_weight": class_weight, "intercept_scaling": 1.0, "refit": bool(refit),
            "validation": figures,
            "crossfit": {"folds": int(len(ks)),
                         "fold_images": [int((folds == f).sum()) for f in ks],
                         "always_fit_images": int((folds == -1).sum())}}
    for heads in (average, refit_heads):
        if heads is not None:
            heads.info = dict(info)
    return CrossFit(scored, folds[scored], scores, y[scored], average, refit_heads, info)
