"""Per-attribute linear SVM heads on ANet features (paper section 2.2, Fig. 2d).

One linear SVM per attribute is trained on the FC vector of every patch, each patch carrying its
image's labels; an image's score is the mean of its patches' scores (> 0 = present). Because
the heads are linear, that mean equals the head applied to the mean patch vector, which is how
scoring is done.

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
The chosen head is then refit on training + validation images, unless probabilities are asked:
Platt scaling (``p = sigmoid(platt_a * score + platt_b)``, fit on the validation images'
scores with Platt's smoothed targets) needs scores of images the head did not see.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from faceattr_ray.errors import BundleError, DataError

# Split codes carried by every row of a Ray block.
TRAIN, VAL, TEST = 0, 1, 2


@dataclass(eq=False)  # arrays inside: compare heads with np.testing, not ==
class LinearHeads:
    """One linear SVM per attribute: ``score = features @ weight.T + bias``."""

    names: list[str]
    weight: np.ndarray  # (A, F)
    bias: np.ndarray  # (A,)
    platt_a: np.ndarray | None = None
    platt_b: np.ndarray | None = None
    info: dict = field(default_factory=dict, compare=False, repr=False)  # how they were fit

    @property
    def dim(self) -> int:
        return int(self.weight.shape[1])

    def decision_function(self, features):
        """(N, F) or (N, P, F) -> (N, A) SVM scores, averaged over patches.

        A torch tensor is scored with a matmul on its own device and a tensor is returned.
        """
        if type(features).__module__.startswith("torch"):
            return self.decision_function_torch(features)
        x = np.asarray(features, dtype=np.float32)
        x = self._check(x)
        return x @ self.weight.T.astype(np.float32) + self.bias.astype(np.float32)

    def decision_function_torch(self, features):
        """Same as decision_function, for a torch tensor, on the tensor's device."""
        import torch

        x = self._check(features)
        w = torch.as_tensor(self.weight, dtype=x.dtype, device=x.device)
        b = torch.as_tensor(self.bias, dtype=x.dtype, device=x.device)
        return torch.addmm(b, x, w.T)

    def predict_proba(self, features):
        """Platt-scaled probabilities (N, A); only for heads fit with ``probabilities=True``."""
        if self.platt_a is None or self.platt_b is None:
            raise ValueError("these heads have no Platt scaling (fit with probabilities=True)")
        s = self.decision_function(features)
        if type(s).__module__.startswith("torch"):
            import torch

            a = torch.as_tensor(self.platt_a, dtype=s.dtype, device=s.device)
            b = torch.as_tensor(self.platt_b, dtype=s.dtype, device=s.device)
            return torch.sigmoid(a * s + b)
        return 1.0 / (1.0 + np.exp(-(self.platt_a * s + self.platt_b)))

    def _check(self, x):
        if x.ndim == 3:  # (N, P, F): mean over patches of linear scores = score of the mean
            x = x.mean(1)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise DataError(
                f"features of shape {tuple(x.shape)} do not fit heads of dimension {self.dim} "
                f"(expected (N, {self.dim}) or (N, P, {self.dim}))"
            )
        return x

    def to_arrays(self) -> dict[str, np.ndarray]:
        out = {"weight": np.ascontiguousarray(self.weight, dtype=np.float32),
               "bias": np.ascontiguousarray(self.bias, dtype=np.float32)}
        if self.platt_a is not None and self.platt_b is not None:
            out["platt_a"] = np.asarray(self.platt_a, dtype=np.float32)
            out["platt_b"] = np.asarray(self.platt_b, dtype=np.float32)
        return out

    @classmethod
    def from_arrays(cls, names: Sequence[str], arrays: dict[str, np.ndarray]) -> LinearHeads:
        if "weight" not in arrays or "bias" not in arrays:
            raise BundleError(f"heads need 'weight' and 'bias' arrays, got {sorted(arrays)}")
        weight = np.asarray(arrays["weight"], dtype=np.float32)
        bias = np.asarray(arrays["bias"], dtype=np.float32)
        a = len(names)
        if weight.ndim != 2 or weight.shape[0] != a or bias.shape != (a,):
            raise BundleError(
                f"heads weight {weight.shape} / bias {bias.shape} do not match {a} attributes"
            )
        platt = [arrays.get(k) for k in ("platt_a", "platt_b")]
        for p in platt:
            if p is not None and np.shape(p) != (a,):
                raise BundleError(f"Platt arrays must have shape ({a},), got {np.shape(p)}")
        return cls(list(names), weight, bias, *platt)


# --- fitting ----------------------------------------------------------------------------------


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
    probabilities: bool = False,
    refit: bool = True,
    intercept_scaling: float = 1.0,
    tol: float = 1e-4,
    max_iter: int | None = None,
    rows_per_block: int = 2048,
) -> LinearHeads:
    """Fit one linear SVM per attribute.

    features: (N, F) or (N, P, F) (P patches per image, each carrying the image's labels).
    labels: (N, A) float {1, 0, NaN}; NaN = unknown, left out for that attribute only.
    val: optional (features, labels) to choose C (and fit Platt scaling) on; without it and when
    a choice is needed (several C, or probabilities), ``val_fraction`` of the images is held out.
    split: optional per-image codes TRAIN/VAL/TEST instead of ``val``/``val_fraction``; TEST
    images are ignored. With ``refit``, a validation part taken from the training images (drawn
    or given by ``split``) joins the final fit; an explicit ``val`` set never does.
    solver: "liblinear" (scikit-learn, in memory) or "ray" (distributed Newton; see module doc).
    """
    x, y = _as_images(features, labels, names, "features")
    needs_val = len(C) > 1 or probabilities
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
    if solver == "liblinear":
        backend = _InMemory(x, y, split, intercept_scaling, tol, max_iter or 1000)
    elif solver == "ray":
        blocks = blocks_from_arrays(x, y, split, rows_per_block)
        backend = _RayBackend(blocks, intercept_scaling, tol, max_iter or 50)
    else:
        raise ValueError(f"unknown solver {solver!r} (liblinear or ray)")
    return _fit(backend, list(names), C, class_weight, probabilities, refit and val_is_split)


def fit_heads_blocks(
    blocks: RayBlocks,
    names: Sequence[str],
    C: Sequence[float] = (0.01, 0.1, 1.0),
    class_weight: str | None = None,
    probabilities: bool = False,
    refit: bool = True,
    intercept_scaling: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 50,
) -> LinearHeads:
    """fit_heads with the Ray solver on data already in Ray blocks (e.g. streamed from Parquet),
    whose rows carry their split code (TRAIN, VAL, TEST; TEST rows are never fit on)."""
    backend = _RayBackend(blocks, intercept_scaling, tol, max_iter)
    return _fit(backend, list(names), C, class_weight, probabilities, refit)


def score_blocks(blocks: RayBlocks, heads: LinearHeads, code: int = TEST
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Scores (n, A) and labels (n, A) of the images of ``blocks`` whose split is ``code``,
    computed in Ray tasks (only scores and labels come back to the driver)."""
    if blocks.dim != heads.dim:
        raise DataError(f"features have dimension {blocks.dim}, the heads {heads.dim}")
    backend = _RayBackend(blocks, 1.0, 0.0, 0)
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


def _fit(backend, names: list[str], C, class_weight, probabilities: bool, refit: bool):
    from faceattr_ray.metrics import attribute_metrics

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
    if k > 1 or probabilities:
        scores, y_val = backend.scores(w.reshape(k * a, -1), VAL)
        if len(y_val) == 0:
            raise DataError("choosing C (or Platt scaling) needs validation images; none were given")
        key = "balanced_accuracy" if class_weight == "balanced" else "accuracy"
        figures = np.full((k, a), -1.0)
        for i in range(k):
            m = attribute_metrics(y_val, scores[:, i * a:(i + 1) * a], names)["attributes"]
            figures[i] = [-1.0 if m[n][key] is None else m[n][key] for n in names]
        best = figures.argmax(0)  # first maximum: the smallest C, most regularised, wins ties
        chosen = c_values[best]
        val_figures = {"metric": key, "values": figures[best, np.arange(a)].tolist()}
    w = w[best, np.arange(a)]
    if refit and not probabilities:
        pos, neg = backend.counts((TRAIN, VAL))
        fit_mask = _fittable(names, pos, neg, warn=False)
        w = backend.fit(chosen[None, :], (TRAIN, VAL), class_weight, fit_mask)[0]
    s = backend.intercept_scaling
    weight, bias = w[:, :-1].copy(), w[:, -1] * s
    # A head whose training labels are all one class answers that class for every image.
    weight[~fit_mask] = 0.0
    bias[~fit_mask] = np.where(pos[~fit_mask] > 0, 1.0, -1.0)
    heads = LinearHeads(names, weight.astype(np.float32), bias.astype(np.float32))
    if probabilities:
        scores, y_val = backend.scores(np.concatenate([weight, (bias / s)[:, None]], 1), VAL)
        heads.platt_a, heads.platt_b = _fit_platt(scores, y_val)
    heads.info = {
        "solver": backend.name, "C": chosen.tolist(), "C_grid": c_values.tolist(),
        "class_weight": class_weight, "intercept_scaling": s, "refit": bool(refit and not probabilities),
        "train_positives": pos.tolist(), "train_negatives": neg.tolist(),
        "validation": val_figures, "probabilities": "platt" if probabilities else None,
    }
    if getattr(backend, "passes", None):
        heads.info["passes"] = list(backend.passes)
    return heads


def _fittable(names, pos, neg, warn: bool = True) -> np.ndarray:
    ok = (pos > 0) & (neg > 0)
    if warn:
        for j in np.flatnonzero(~ok):
            which = "no labels" if pos[j] + neg[j] == 0 else (
                "only positive labels" if pos[j] else "only negative labels")
            warnings.warn(f"attribute {names[j]!r} has {which} in training: constant head",
                          stacklevel=3)
    return ok


def _fit_platt(scores: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per attribute, (a, b) of p = sigmoid(a*s + b), maximum likelihood on Platt's targets."""
    from scipy.optimize import minimize

    a_out, b_out = np.ones(y.shape[1], np.float32), np.zeros(y.shape[1], np.float32)
    for j in range(y.shape[1]):
        known = ~np.isnan(y[:, j])
        s, t = scores[known, j].astype(np.float64), y[known, j] > 0.5
        if s.size == 0:
            continue
        n_pos, n_neg = t.sum(), (~t).sum()
        target = np.where(t, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))  # Platt's smoothing

        def nll(p, s=s, target=target):
            z = p[0] * s + p[1]
            prob = 1 / (1 + np.exp(-z))
            return np.sum(np.logaddexp(0, z) - target * z), np.array(
                [np.sum((prob - target) * s), np.sum(prob - target)])

        a_out[j], b_out[j] = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B").x
    return a_out, b_out


# --- in memory: scikit-learn's LinearSVC (liblinear) -------------------------------------------


class _InMemory:
    name = "liblinear"

    def __init__(self, x, y, split, intercept_scaling, tol, max_iter):
        self.x, self.y, self.split = x, y, split
        self.intercept_scaling, self.tol, self.max_iter = intercept_scaling, tol, max_iter

    def counts(self, codes):
        y = self.y[np.isin(self.split, codes)]
        return (y > 0.5).sum(0), (y < 0.5).sum(0)  # NaN compares False both ways

    def fit(self, c, codes, class_weight, fit_mask):
        from sklearn.svm import LinearSVC

        k, a = c.shape
        p, f = self.x.shape[1:]
        w = np.zeros((k, a, f + 1))
        rows = np.isin(self.split, codes)
        for j in np.flatnonzero(fit_mask):
            keep = rows & ~np.isnan(self.y[:, j])
            x = self.x[keep].reshape(-1, f)  # every patch is a sample ...
            t = np.repeat(self.y[keep, j] > 0.5, p)  # ... with its image's label
            for i in range(k):
                svm = LinearSVC(C=c[i, j], loss="squared_hinge", dual=False, tol=self.tol,
                                max_iter=self.max_iter, class_weight=class_weight,
                                intercept_scaling=self.intercept_scaling).fit(x, t)
                w[i, j, :f] = svm.coef_[0]
                w[i, j, f] = svm.intercept_[0] / self.intercept_scaling
        return w

    def scores(self, w, code):
        keep = self.split == code
        x = self.x[keep].mean(1)
        return x @ w[:, :-1].T + w[:, -1] * self.intercept_scaling, self.y[keep]


# --- distributed: Newton on statistics reduced from Ray tasks ---------------------------------


@dataclass
class RayBlocks:
    """Data in Ray's object store, one dict per block: "x" float32 (m, P*F) (an image's patch
    vectors, patch-major), "y" float32 (m, A) {1, 0, NaN}, "split" int8 (m,) TRAIN/VAL/TEST."""

    refs: list
    patches: int
    dim: int
    num_attributes: int


def blocks_from_arrays(x: np.ndarray, y: np.ndarray, split: np.ndarray,
                       rows_per_block: int = 2048) -> RayBlocks:
    """Put in-memory images (N, P, F) into Ray's object store as blocks."""
    import ray

    n, p, f = x.shape
    refs = [
        ray.put({"x": np.ascontiguousarray(x[i:i + rows_per_block].reshape(-1, p * f)),
                 "y": y[i:i + rows_per_block], "split": split[i:i + rows_per_block]})
        for i in range(0, n, rows_per_block)
    ]
    return RayBlocks(refs, p, f, y.shape[1])


class _RayBackend:
    name = "ray"

    def __init__(self, blocks: RayBlocks, intercept_scaling, tol, max_iter, max_in_flight=None):
        import ray

        self.blocks, self.intercept_scaling, self.tol, self.max_iter = (
            blocks, intercept_scaling, tol, max_iter)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.max_in_flight = max_in_flight or max(2, 2 * cpus)
        self.passes: list[int] = []  # data passes of each Newton solve

    def _map(self, fn, *args) -> Iterator:
        """Run fn(block, *args) on every block, at most max_in_flight at once; results yielded."""
        import ray

        remote = _remote(fn)
        args = [ray.put(a) if isinstance(a, np.ndarray) and a.size > 1024 else a for a in args]
        pending = []
        for ref in self.blocks.refs:
            pending.append(remote.remote(ref, *args))
            if len(pending) >= self.max_in_flight:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])

    def counts(self, codes):
        pos = neg = 0
        for p, n in self._map(_block_counts, np.asarray(codes)):
            pos, neg = pos + p, neg + n
        a = self.blocks.num_attributes
        return np.broadcast_to(pos, (a,)).copy(), np.broadcast_to(neg, (a,)).copy()

    def scores(self, w, code):
        parts = [p for p in self._map(_block_scores, w, code, self.blocks.patches,
                                      self.intercept_scaling) if p is not None]
        s = [p[0] for p in parts]
        y = [p[1] for p in parts]
        if not s:
            return np.zeros((0, len(w))), np.zeros((0, self.blocks.num_attributes), np.float32)
        return np.concatenate(s), np.concatenate(y)

    def fit(self, c, codes, class_weight, fit_mask):
        k, a = c.shape
        d = self.blocks.dim + 1
        weight_pos, weight_neg = np.ones(a), np.ones(a)
        if class_weight == "balanced":
            pos, neg = self.counts(codes)
            total = pos + neg
            weight_pos = total / np.maximum(2 * pos, 1)
            weight_neg = total / np.maximum(2 * neg, 1)
        heads = [(i, j) for i in range(k) for j in np.flatnonzero(fit_mask)]
        w_all = np.zeros((k, a, d))
        if not heads:
            return w_all
        attr = np.array([j for _, j in heads])
        c_pos = np.array([c[i, j] * weight_pos[j] for i, j in heads])
        c_neg = np.array([c[i, j] * weight_neg[j] for i, j in heads])
        w = self._newton(attr, c_pos, c_neg, np.asarray(codes))
        for h, (i, j) in enumerate(heads):
            w_all[i, j] = w[h]
        return w_all

    def _newton(self, attr, c_pos, c_neg, codes):
        h, d = len(attr), self.blocks.dim + 1
        w = np.zeros((h, d))  # accepted iterate
        cand = np.zeros((h, d))  # point evaluated by the next pass
        obj = np.full(h, np.inf)
        grad, direction = np.zeros((h, d)), np.zeros((h, d))
        step, g0 = np.ones(h), np.zeros(h)
        done = np.zeros(h, dtype=bool)
        passes = 0
        while passes < self.max_iter and not done.all():
            todo = np.flatnonzero(~done)
            passes += 1
            o, g, hess = 0.0, 0.0, 0.0
            for bo, bg, bh in self._map(_block_stats, cand[todo], attr[todo], c_pos[todo],
                                        c_neg[todo], codes, self.blocks.patches,
                                        self.intercept_scaling):
                o, g, hess = o + bo, g + bg, hess + bh
            o = o + 0.5 * np.sum(cand[todo] ** 2, 1)
            g = g + cand[todo]
            for i, hd in enumerate(todo):
                first = not np.isfinite(obj[hd])
                if not first and o[i] > obj[hd] + 1e-4 * step[hd] * grad[hd] @ direction[hd]:
                    step[hd] /= 2  # Armijo failed: back off along the same direction
                    done[hd] = step[hd] < 1e-8
                    cand[hd] = w[hd] + step[hd] * direction[hd]
                    continue
                w[hd], obj[hd], grad[hd] = cand[hd], o[i], g[i]
                norm = np.linalg.norm(g[i])
                if first:
                    g0[hd] = norm
                if norm <= self.tol * g0[hd]:
                    done[hd] = True
                    continue
                direction[hd] = -np.linalg.solve(np.eye(d) + hess[i], g[i])
                step[hd] = 1.0
                cand[hd] = w[hd] + direction[hd]
        self.passes.append(passes)
        if not done.all():
            warnings.warn(f"ray SVM solver: {int((~done).sum())} heads did not converge in "
                          f"{self.max_iter} passes", stacklevel=4)
        return w


@functools.cache
def _remote(fn):
    import ray

    return ray.remote(num_cpus=1)(fn)


# Ray Data may hand over an empty block (every row filtered out); it adds nothing.


def _block_counts(block, codes):
    if len(block["split"]) == 0:
        return 0, 0
    y = block["y"][np.isin(block["split"], codes)]
    return (y > 0.5).sum(0), (y < 0.5).sum(0)


def _block_scores(block, w, code, patches, intercept_scaling):
    if len(block["split"]) == 0:
        return None
    keep = block["split"] == code
    m = int(keep.sum())
    x = block["x"][keep].reshape(m, patches, -1).mean(1, dtype=np.float64)
    return x @ w[:, :-1].T + w[:, -1] * intercept_scaling, block["y"][keep]


def _block_stats(block, w, attr, c_pos, c_neg, codes, patches, intercept_scaling):
    """Loss, gradient and generalised Hessian of sum_i c_i max(0, 1 - y_i w.x_i)^2 per head."""
    h, d = w.shape
    if len(block["split"]) == 0:
        return 0.0, 0.0, 0.0
    keep = np.isin(block["split"], codes)
    x32 = block["x"][keep].reshape(-1, d - 1)  # one row per patch
    x32 = np.concatenate([x32, np.full((len(x32), 1), intercept_scaling, np.float32)], 1)
    y = np.repeat(block["y"][keep][:, attr], patches, axis=0)  # (rows, h), image labels
    sign = np.where(y > 0.5, 1.0, -1.0)
    cost = np.where(y > 0.5, c_pos, c_neg) * ~np.isnan(y)
    x = x32.astype(np.float64)
    r = np.maximum(0.0, 1.0 - sign * (x @ w.T)) * (cost > 0)
    loss = np.sum(cost * r * r, 0)
    grad = -2.0 * (cost * r * sign).T @ x
    hess = np.zeros((h, d, d))
    for j in range(h):
        act = r[:, j] > 0
        xa = x32[act] * np.sqrt(cost[act, j]).astype(np.float32)[:, None]
        hess[j] = 2.0 * (xa.T @ xa)  # float32 product: the direction tolerates it
    return loss, grad, hess
