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
RADIUS = 32
NOMINAL_STRIDE = 8
MARGIN = 16
NEIGHBOURHOOD = "grow"
GROW_LEVEL = 0.85
NEIGHBOURHOODS = ("disk", "grow")
POSITIVE_STRIDE = 2
ERODE = 0.0
PEAK_LEVEL = 0.0


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
    neighbourhood: str = NEIGHBOURHOOD, grow_level: float = GROW_LEVEL, positive_stride: int = POSITIVE_STRIDE,
    peak_level: float = PEAK_LEVEL, erode: float = ERODE,
) -> None:  # fmt: skip
    if not 0 <= percentile < 100:
        raise ConfigError(f"percentile must be in [0, 100), got {percentile}")
    if neighbourhood not in NEIGHBOURHOODS:
        raise ConfigError(f"neighbourhood must be one of {NEIGHBOURHOODS}, got {neighbourhood!r}")
    if positive_stride < 1:
        raise ConfigError(f"positive_stride must be >= 1, got {positive_stride}")
    if erode < 0:
        raise ConfigError(f"erode must be >= 0, got {erode}")
    if not 0 <= peak_level < 1:
        raise ConfigError(f"peak_level must be in [0, 1), got {peak_level}")
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
    positive_stride: int = POSITIVE_STRIDE,
    peak_level: float = PEAK_LEVEL,
    erode: float = ERODE,
) -> PseudoLabels:
    """Pseudo-label one (H, W) map.

    Defaults and why (the paper fixes only the percentile; every other default was chosen on the
    real development set, MVTec AD bottle + KolektorSDD, see the README's TTT4AS table):
        percentile=99: the paper's setting; its ablation is flat from 95 to 99.5.
        peak_size=3: "comparing neighbouring values" read literally, i.e. the 8-neighbourhood.
        neighbourhood="grow", grow_level=0.85, radius=32: the "spatial neighbours" of a peak are
            the pixels connected to it whose score stays >= ``median + 0.85 * (peak - median)``,
            at most 32 px away. The set follows the defect's own extent: a few pixels around a
            speck or a thin crack, a wide patch on a broken bottle. A fixed disk cannot do both:
            radius 8 is larger than small defects (the SVM then learns "near a peak" and paints
            the neighbourhood) and far smaller than large ones (recall ~0.3). Measured (F1, THR /
            disk 8 / grow 0.85): bottle 0.43 / 0.42 / 0.54, KolektorSDD 0.19 / 0.25 / 0.26.
            Lower levels suit large defects and hurt small ones (0.65: bottle 0.60, KolektorSDD
            0.21, tire 0.06), because the map's own blur (patch stride + smoothing) makes even a
            speck's blob ~20 px wide at half height. The percentile value cannot serve as the
            base: on an image whose defect covers more than 1% of it, that value lies inside the
            defect and the region stays a few pixels wide.
        positive_stride=2: hard positives on a 2-px lattice: neighbouring pixels carry near-identical
            bilinear features; halves the SVM time at <= 0.005 F1 on the dev set.
        nominal_stride=8: one nominal sample per feature cell: uniform, and ~700 points at 224 px,
            enough for a linear SVM without redundant, identical interpolated features.
        margin=16: two cells of clearance keep defect rims (scores between peak and background)
            out of the nominal set (8 gave -0.05 F1 on bottle, +0.01 on KolektorSDD).
        max_nominal: optional cap (random subset with ``seed``), for very large maps.
        neighbourhood="disk": the paper's literal reading, every pixel within ``radius``.
        positive_stride: keep the hard positives on a lattice of this step (the peaks always).
        erode: ``"grow"`` only, drop region pixels within this distance of its border (off: it
            did not help on the dev set).
        peak_level: also drop peaks lower than ``median + peak_level * (highest peak - median)``
            (0 = the paper: every peak above the percentile). On a large image the top 1% holds
            more pixels than a small defect, so secondary noise peaks pass the percentile; 0.9
            gave KolektorSDD +0.01 and bottle -0.01, so it stays off.
    """
    validate_params(percentile, peak_size, radius, nominal_stride, margin, neighbourhood, grow_level, positive_stride, peak_level, erode)
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
    med = float(np.median(s)) if peak_level > 0 or neighbourhood == "grow" else 0.0  # the background level
    if peak_level > 0:
        peaks &= s >= med + peak_level * (float(s[peaks].max()) - med)
    if neighbourhood == "grow":
        pos = grown_neighbourhood(s, np.argwhere(peaks), med, radius, grow_level, erode)
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
    kept = pos
    if positive_stride > 1:
        lattice = np.zeros_like(pos)
        lattice[positive_stride // 2 :: positive_stride, positive_stride // 2 :: positive_stride] = True
        kept = (pos & lattice) | peaks
    return PseudoLabels(np.argwhere(kept), neg, np.argwhere(peaks), reason)


def grown_neighbourhood(
    s: np.ndarray, peaks: np.ndarray, base: float, radius: int, grow_level: float, erode: float = 0.0
) -> np.ndarray:
    """Union over peaks of the 8-connected region around the peak with score >= its own level,
    inside the disk of ``radius``, less the pixels within ``erode`` of the region's border (a
    window per peak, so the cost is peaks x radius^2, not H x W). The peak itself always stays."""
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
        region = lab == lab[y - y0, x - x0]
        if erode > 0:
            region = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1] > erode
            region[y - y0, x - x0] = True
        pos[y0:y1, x0:x1] |= region
    return pos
