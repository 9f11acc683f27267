"""Density peaks (Rodriguez & Laio 2014): split a response map into regions, one per face.

The paper prunes several faces that respond inside one window by keeping the dominant one;
`region_windows` gives the best window of each region, dominant first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from faceattr_ray.crops import Box
from faceattr_ray.localizers.windows import DEFAULT_ALPHA, as_map, best_window, integral_image


@dataclass
class DensityPeaks:
    centers: np.ndarray  # (k, 2) row, col of each region's peak; dominant (densest) first
    density: np.ndarray  # (k,) rho: response mass around the peak
    separation: np.ndarray  # (k,) sigma: distance (cells) to the nearest denser cell
    d: np.ndarray  # (k,) sqrt(rho'^2 + sigma'^2), rho' / sigma' scaled to [0, 1]; sorted descending
    labels: np.ndarray  # (h, w) index into centers of the region each cell belongs to


def density_peaks(
    response_map,
    radius: int | None = None,
    min_separation: float | None = None,
    min_relative_density: float = 0.25,
) -> DensityPeaks:
    """Split a response map into regions around density peaks.

    rho_i is the response summed in a (2r+1)^2 box around cell i (a blob's mass, not one hot
    cell); sigma_i the distance to the nearest cell of higher rho (ties broken by raster order, so
    a plateau has one peak). A local maximum of rho becomes a region centre when it lies at least
    ``min_separation`` cells from any denser cell and has at least ``min_relative_density`` of
    the top density; every other cell joins a centre by steepest ascent, and minor peaks join the
    region of their nearest denser cell, as Rodriguez & Laio assign points. The paper ranks peaks
    by d = sqrt(rho^2 + sigma^2); with both scaled to [0, 1] and the top peak's sigma set to the
    map diagonal, the densest region always comes first.
    """
    m = as_map(response_map)
    h, w = m.shape
    n = h * w
    r = max(1, round(0.08 * min(h, w))) if radius is None else int(radius)
    sep = max(2.0, 0.2 * min(h, w)) if min_separation is None else float(min_separation)

    table = integral_image(m)
    y0, y1 = np.clip(np.arange(h) - r, 0, h), np.clip(np.arange(h) + r + 1, 0, h)
    x0, x1 = np.clip(np.arange(w) - r, 0, w), np.clip(np.arange(w) + r + 1, 0, w)
    rho = (
        table[np.ix_(y1, x1)] - table[np.ix_(y0, x1)] - table[np.ix_(y1, x0)] + table[np.ix_(y0, x0)]
    ).ravel()

    order = np.lexsort((np.arange(n), -rho))  # densest first; a total order
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    # Steepest ascent: each cell points to its best-ranked 3x3 neighbour (a peak to itself).
    padded = np.pad(rank.reshape(h, w), 1, constant_values=n)
    neigh = np.stack([padded[dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)])
    k = neigh.argmin(0)
    parent = ((np.arange(h)[:, None] + k // 3 - 1) * w + np.arange(w)[None, :] + k % 3 - 1).ravel()
    while True:  # pointer jumping: parent becomes the peak each cell climbs to
        nxt = parent[parent]
        if np.array_equal(nxt, parent):
            break
        parent = nxt
    peaks = np.flatnonzero(parent == np.arange(n))
    peaks = peaks[np.argsort(rank[peaks])]

    # sigma is needed only at peaks: any other cell has a denser neighbour within sqrt(2).
    ys, xs = np.divmod(np.arange(n), w)
    sigma = np.empty(len(peaks))
    nearest = np.zeros(len(peaks), dtype=np.int64)
    for start in range(0, len(peaks), 256):  # chunks keep memory small on noisy maps
        p = peaks[start : start + 256]
        dist = np.hypot(ys[p, None] - ys[None], xs[p, None] - xs[None])
        dist[rank[None, :] >= rank[p, None]] = np.inf
        nearest[start : start + 256] = dist.argmin(1)
        sigma[start : start + 256] = dist.min(1)
    diag = math.hypot(h, w)
    sigma[0] = diag  # the densest peak has no denser cell

    rho_max = rho[peaks[0]]
    rel = rho[peaks] / rho_max if rho_max > 0 else np.zeros(len(peaks))
    peak_index = np.full(n, -1, dtype=np.int64)
    peak_index[peaks] = np.arange(len(peaks))
    joins = np.arange(len(peaks))  # which peak's region each peak ends up in
    for i in range(1, len(peaks)):  # densest first, so the target is already resolved
        if sigma[i] < sep or rel[i] < min_relative_density:
            joins[i] = joins[peak_index[parent[nearest[i]]]]
    centres = np.flatnonzero(joins == np.arange(len(peaks)))
    d = np.hypot(rel[centres], sigma[centres] / diag)
    by_d = centres[np.argsort(-d, kind="stable")]
    region_of_peak = np.full(len(peaks), -1, dtype=np.int64)
    region_of_peak[by_d] = np.arange(len(by_d))
    labels = region_of_peak[joins[peak_index[parent]]].reshape(h, w)
    return DensityPeaks(
        centers=np.stack([ys[peaks[by_d]], xs[peaks[by_d]]], 1),
        density=rho[peaks[by_d]],
        separation=sigma[by_d],
        d=np.sort(d)[::-1],
        labels=labels,
    )


def region_windows(
    response_map, max_regions: int | None = 1, alpha: float = DEFAULT_ALPHA, **peak_options
) -> list[tuple[Box, float]]:
    """Best window of each density-peak region (dominant first), the map outside it zeroed.

    ``max_regions=1`` is the paper's pruning: when several faces respond inside one window, keep
    the densest one only. ``None`` returns every region.
    """
    m = as_map(response_map)
    if m.size == 0 or m.max() <= 0:
        return [best_window(m, alpha)]
    peaks = density_peaks(m, **peak_options)
    count = len(peaks.centers) if max_regions is None else min(max_regions, len(peaks.centers))
    return [best_window(np.where(peaks.labels == k, m, 0.0), alpha) for k in range(count)]
