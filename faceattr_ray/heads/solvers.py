"""The two solvers of `fit.fit_heads`, behind one interface (counts, fit, scores per split code).

- `InMemory`: scikit-learn's LinearSVC (liblinear) per attribute and C, on arrays in memory.
- `RayBackend`: a semismooth Newton method on statistics reduced from Ray tasks over `RayBlocks`
  (see fit.py's module notes); the driver holds only weights and statistics.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# --- in memory: scikit-learn's LinearSVC (liblinear) -------------------------------------------


class InMemory:
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


class RayBackend:
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
