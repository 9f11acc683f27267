"""The face/no-face threshold, from face images vs background-only images (paper Fig. 3b).

Each image is summarised by its maximum window score (the LNet cascade's face score with no
threshold). The threshold is the decision boundary between the two histograms: the cut with the
lowest balanced error (mean of the miss rate on faces and the false-alarm rate on backgrounds, so
unequal counts do not tilt it), placed in the middle of the widest gap that achieves it. When the
histograms are separable that is the midpoint between the highest background and the lowest face.
`faceattr-ray calibrate` (cli/calibrate.py) stores it in the bundle (``Bundle.threshold``) with a
histogram plot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def calibrate_threshold(
    face_scores: Sequence[float] | np.ndarray, background_scores: Sequence[float] | np.ndarray
) -> tuple[float, dict]:
    """Threshold t (score >= t means face) separating the two score samples, and its stats."""
    faces = np.sort(np.asarray(face_scores, dtype=np.float64).ravel())
    backgrounds = np.sort(np.asarray(background_scores, dtype=np.float64).ravel())
    if len(faces) == 0 or len(backgrounds) == 0:
        raise ValueError(f"need face and background scores, got {len(faces)} and {len(backgrounds)}")
    if not (np.isfinite(faces).all() and np.isfinite(backgrounds).all()):
        raise ValueError("scores must be finite")

    # Errors change only at observed scores: cut k means "face iff score >= values[k]", and every
    # t in (values[k-1], values[k]] gives the same decisions. The last cut rejects everything.
    values = np.unique(np.r_[faces, backgrounds])
    cuts = np.r_[values, np.inf]
    below = np.r_[-np.inf, values]
    missed = np.searchsorted(faces, cuts, side="left") / len(faces)
    false_alarms = 1.0 - np.searchsorted(backgrounds, cuts, side="left") / len(backgrounds)
    balanced_error = 0.5 * (missed + false_alarms)
    best = np.flatnonzero(np.isclose(balanced_error, balanced_error.min(), rtol=0, atol=1e-12))
    gaps = np.where(np.isfinite(cuts - below), cuts - below, -1.0)
    k = int(best[np.argmax(gaps[best])])  # the widest gap among the best cuts
    if np.isfinite(below[k]) and np.isfinite(cuts[k]):
        threshold = float((below[k] + cuts[k]) / 2)
    elif np.isfinite(cuts[k]):  # everything is called a face
        threshold = float(cuts[k])
    else:  # everything is called background
        threshold = float(np.nextafter(below[k], np.inf))

    recall = float(np.mean(faces >= threshold))
    rejection = float(np.mean(backgrounds < threshold))
    stats = {
        "threshold": threshold,
        "balanced_accuracy": 0.5 * (recall + rejection),
        "face_recall": recall,
        "background_rejection": rejection,
        "separable": bool(faces[0] > backgrounds[-1]),
        "margin": float(faces[0] - backgrounds[-1]),  # > 0: gap between the histograms
        "faces": int(len(faces)),
        "backgrounds": int(len(backgrounds)),
        "face_score_mean": float(faces.mean()),
        "background_score_mean": float(backgrounds.mean()),
    }
    return threshold, stats


def plot_score_histograms(
    face_scores: Sequence[float] | np.ndarray,
    background_scores: Sequence[float] | np.ndarray,
    threshold: float | None,
    path: str,
    title: str = "Maximum window score per image",
) -> None:
    """PNG of the two histograms and the threshold line (like the paper's Fig. 3b)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    faces = np.asarray(face_scores, dtype=np.float64).ravel()
    backgrounds = np.asarray(background_scores, dtype=np.float64).ravel()
    both = np.r_[faces, backgrounds]
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.0, 1.0)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
    fig = Figure(figsize=(6, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.hist(backgrounds, bins=bins, alpha=0.6, color="tab:blue", label=f"background ({len(backgrounds)})")
    ax.hist(faces, bins=bins, alpha=0.6, color="tab:red", label=f"face ({len(faces)})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel("max window score")
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def max_window_scores(localizer, paths: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """Face score of each image (0.0 where nothing responds); images are read batch by batch."""
    from faceattr_ray.data.decode import load_image

    scores = []
    for start in range(0, len(paths), batch_size):
        images = [load_image(p) for p in paths[start : start + batch_size]]
        scores.extend(dets[0].score if dets else 0.0 for dets in localizer.localize(images))
    return np.asarray(scores, dtype=np.float64)


def calibrate_bundle(bundle, faces: Sequence[str], backgrounds: Sequence[str], plot: str,
                     batch_size: int = 16, device=None,
                     title: str = "Maximum window score per image") -> dict:
    """Score ``faces`` and ``backgrounds`` with the bundle's own LNet cascade (threshold off:
    each image's best window, as annotate's localizer scores it), set ``bundle.threshold``,
    record the statistics in its config, save it in place and plot the histograms.
    Returns the statistics."""
    from faceattr_ray.bundle import save_bundle
    from faceattr_ray.localizers import LNetLocalizer

    localizer = LNetLocalizer.from_bundle(bundle, threshold=None, device=device)
    face_scores = max_window_scores(localizer, list(faces), batch_size)
    background_scores = max_window_scores(localizer, list(backgrounds), batch_size)
    threshold, stats = calibrate_threshold(face_scores, background_scores)
    bundle.threshold = threshold
    bundle.config = {**bundle.config, "localizer": {**(bundle.config.get("localizer") or {}),
                                                     "calibration": stats}}
    save_bundle(bundle.path, bundle)
    plot_score_histograms(face_scores, background_scores, threshold, plot, title=title)
    return stats
