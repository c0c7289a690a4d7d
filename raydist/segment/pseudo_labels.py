"""TTT4AS pseudo-labels from one anomaly score map (pure numpy / scipy).

1. local maxima: pixels equal to the maximum of their ``peak_size`` x ``peak_size`` neighbourhood;
2. keep the peaks strictly above the ``percentile``-th percentile of the map ("easy" positives);
3. add the peak's spatial neighbours ("hard" positives, lower scores nearby): every pixel within
   ``radius`` of it (``neighbourhood="disk"``), or the pixels connected to it whose score stays
   above a level between the map's median (its background) and the peak's own score, at most
   ``radius`` away (``neighbourhood="grow"``: the neighbourhood follows the defect's own extent);
4. nominal: a regular grid every ``nominal_stride`` pixels over the rest of the map, excluding a
   ``margin`` around the positives (spatially uniform, so it holds easy and hard nominals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from raydist.errors import ConfigError

# Defaults (reasons in :func:`pseudo_labels`); TTT4AS and the CLI take them from here.
PERCENTILE = 99.0
PEAK_SIZE = 3
RADIUS = 8
NOMINAL_STRIDE = 8
MARGIN = 16
NEIGHBOURHOOD = "disk"
GROW_LEVEL = 0.5
NEIGHBOURHOODS = ("disk", "grow")


def disk(radius: int) -> np.ndarray:
    r = int(radius)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return yy**2 + xx**2 <= r * r


@dataclass
class PseudoLabels:
    positives: np.ndarray  # (n, 2) int (row, col)
    negatives: np.ndarray  # (m, 2) int (row, col)
    peaks: np.ndarray  # (k, 2) int, the kept maxima
    reason: str | None = None  # why the labels cannot train a classifier, if they cannot


def validate_params(
    percentile: float, peak_size: int, radius: int, nominal_stride: int, margin: int,
    neighbourhood: str = NEIGHBOURHOOD, grow_level: float = GROW_LEVEL,
) -> None:  # fmt: skip
    if not 0 <= percentile < 100:
        raise ConfigError(f"percentile must be in [0, 100), got {percentile}")
    if neighbourhood not in NEIGHBOURHOODS:
        raise ConfigError(f"neighbourhood must be one of {NEIGHBOURHOODS}, got {neighbourhood!r}")
    if not 0 <= grow_level < 1:
        raise ConfigError(f"grow_level must be in [0, 1), got {grow_level}")
    if peak_size < 1 or radius < 0 or nominal_stride < 1 or margin < 0:
        raise ConfigError(
            f"need peak_size >= 1, radius >= 0, nominal_stride >= 1, margin >= 0; got "
            f"{peak_size}, {radius}, {nominal_stride}, {margin}"
        )


def pseudo_labels(
    score_map: np.ndarray,
    percentile: float = PERCENTILE,
    peak_size: int = PEAK_SIZE,
    radius: int = RADIUS,
    nominal_stride: int = NOMINAL_STRIDE,
    margin: int = MARGIN,
    max_nominal: int | None = None,
    seed: int = 0,
    neighbourhood: str = NEIGHBOURHOOD,
    grow_level: float = GROW_LEVEL,
) -> PseudoLabels:
    """Pseudo-label one (H, W) map.

    Defaults and why (the paper fixes only the percentile):
        percentile=99: the paper's setting; its ablation is flat from 95 to 99.5.
        peak_size=3: "comparing neighbouring values" read literally, i.e. the 8-neighbourhood.
        radius=8: one feature cell of a stride-8 backbone at 224 px, so the hard positives reach
            the adjacent cells whose features the peak's bilinear sample mixes.
        nominal_stride=8: one nominal sample per feature cell: uniform, and ~700 points at 224 px,
            enough for a linear SVM without redundant, identical interpolated features.
        margin=16: two cells of clearance keep defect rims (scores between peak and background)
            out of the nominal set, limiting label noise.
        max_nominal: optional cap (random subset with ``seed``), for very large maps.
        neighbourhood / grow_level: ``"grow"`` keeps, around each peak, the pixels connected to it
            with a score >= ``median + grow_level * (peak - median)``, capped at ``radius``: the
            hard positives then follow the defect's extent (its "width at a fraction of the
            maximum" above the background), small for a thin crack, wide for a broken bottle. The
            percentile level cannot serve as the base: on an image whose defect covers more than
            1% of it, that level lies inside the defect and the region stays a few pixels wide.
    """
    validate_params(percentile, peak_size, radius, nominal_stride, margin, neighbourhood, grow_level)
    s = np.asarray(score_map, dtype=np.float32)
    if s.ndim != 2:
        raise ValueError(f"score map must be 2-D, got shape {s.shape}")
    empty = np.zeros((0, 2), dtype=np.int64)
    finite = np.isfinite(s)
    if not finite.all():
        return PseudoLabels(empty, empty, empty, "score map has non-finite values")
    level = np.percentile(s, percentile)
    local_max = s == ndimage.maximum_filter(s, size=peak_size, mode="nearest")
    peaks = local_max & (s > level)
    if not peaks.any():
        return PseudoLabels(empty, empty, empty, f"no local maximum above the {percentile:g}th percentile (flat map)")
    if neighbourhood == "grow":
        pos = grown_neighbourhood(s, np.argwhere(peaks), float(np.median(s)), radius, grow_level)
    else:
        # "within r of a True pixel" via the exact Euclidean distance transform: the same set as a
        # dilation by disk(r), at O(H*W) cost whatever the radius
        pos = ndimage.distance_transform_edt(~peaks) <= radius
    excl = ndimage.distance_transform_edt(~pos) <= margin
    grid = np.zeros_like(pos)
    off = nominal_stride // 2
    grid[off::nominal_stride, off::nominal_stride] = True
    neg = np.argwhere(grid & ~excl)
    if max_nominal is not None and len(neg) > max_nominal:
        rng = np.random.default_rng(seed)
        neg = neg[np.sort(rng.choice(len(neg), size=max_nominal, replace=False))]
    reason = None
    if len(neg) == 0:
        reason = "no nominal pixel left outside the positive region"
    return PseudoLabels(np.argwhere(pos), neg, np.argwhere(peaks), reason)


def grown_neighbourhood(s: np.ndarray, peaks: np.ndarray, base: float, radius: int, grow_level: float) -> np.ndarray:
    """Union over peaks of the 8-connected region around the peak with score >= its own level,
    inside the disk of ``radius`` (a window per peak, so the cost is peaks x radius^2, not H x W)."""
    H, W = s.shape
    pos = np.zeros((H, W), dtype=bool)
    r = int(radius)
    cap = disk(r)
    eight = np.ones((3, 3), dtype=bool)
    for y, x in peaks:
        y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, H), max(x - r, 0), min(x + r + 1, W)
        win = s[y0:y1, x0:x1]
        keep = (win >= base + grow_level * (s[y, x] - base)) & cap[y0 - y + r : y1 - y + r, x0 - x + r : x1 - x + r]
        lab, _ = ndimage.label(keep, structure=eight)
        pos[y0:y1, x0:x1] |= lab == lab[y - y0, x - x0]
    return pos
