"""TTT4AS pseudo-labels from one anomaly score map (pure numpy / scipy).

1. local maxima: pixels equal to the maximum of their ``peak_size`` x ``peak_size`` neighbourhood;
2. keep the peaks strictly above the ``percentile``-th percentile of the map ("easy" positives);
3. add the peak's spatial neighbours ("hard" positives, lower scores nearby): every pixel within
   ``radius`` of it (``neighbourhood="disk"``), or the pixels connected to it whose score stays
   above a level between the map's median (its background) and the peak's own score, at most
   ``radius`` away (``neighbourhood="grow"``: the neighbourhood follows the defect's own extent);
4. unlabelled: the pixels the map cannot call nominal get no label, so the SVM decides them from
   the features: those above the THR threshold of the class's nominal validation maps
   (``unlabelled="thr"``, given ``thr_mask``), or the blurred blob around each peak (pixels
   connected to it whose score stays above ``median + unlabelled_level * (peak - median)``,
   ``"blob"``, also used when no THR mask exists);
5. nominal: a regular grid every ``nominal_stride`` pixels over the rest of the map, excluding a
   ``margin`` around the positives and the unlabelled pixels (spatially uniform, so it holds easy
   and hard nominals).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from raydist.segment.ttt4as_params import TTT4ASParams

DEFAULTS = TTT4ASParams()

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
    unlabelled: str = "none"  # where the unlabelled pixels came from: "thr", "blob" or "none"


def pseudo_labels(score_map: np.ndarray, params: TTT4ASParams = DEFAULTS, thr_mask: np.ndarray | None = None) -> PseudoLabels:
    """Pseudo-label one (H, W) map with ``params``' pseudo-labelling fields (validated when made);
    ``thr_mask``: THR's mask of the image (None without nominal statistics).

    Defaults (:class:`~raydist.segment.ttt4as_params.TTT4ASParams`) and why (the paper fixes only the percentile; every other default was chosen on the
    real development set, MVTec AD bottle + KolektorSDD, checked on the MVTec 3D-AD tire sample and
    generated data; docs/methods/ttt4as.md has the table):
        percentile=99: the paper's setting; its ablation is flat from 95 to 99.5.
        peak_size=3: "comparing neighbouring values" read literally, i.e. the 8-neighbourhood.
        neighbourhood="disk", radius=2: the positives are the peaks and their immediate
            neighbours, where the map is sharp. The map cannot tell a defect's size below its own
            blur: stride-8/16 patches, 3x3 aggregation and sigma-4 smoothing make a 5-px speck a
            blob of ~24 px radius at half height, the same as a 20-px scratch (measured: tire
            defects of radius 3-8 px give half-height blobs of 19-37 px; bottle defects of 11-23 px
            give 23-30 px). Any positive set read off the blob's extent is too large for small
            defects (grow 0.85: tire F1 0.10 vs THR 0.16) or too small for large ones (disk 8).
        unlabelled="thr": the pixels of THR's mask (above mu + 3 sigma of the class's nominal
            validation maps) in a component that holds a peak get no label, and the SVM decides
            them from the features. THR's mask says where a pixel is too high to be surely
            nominal; its size follows the defect's (tire: ~200 px, bottle: ~16,000 px), so a
            speck's blur stays nominal-labelled while a broken bottle's region is left to the
            features. Measured (F1; THR / r2 with everything outside the margin labelled nominal,
            balanced / the blob left unlabelled / THR's region left unlabelled): bottle 0.42 /
            0.30 / 0.56 / 0.66, KolektorSDD 0.18 / 0.26 / 0.28 / 0.28, tire 0.16 / 0.18 / 0.11 /
            0.18, generated 0.18 / 0.47 / 0.61 / 0.52; on anomalib PaDiM maps bottle 0.31 / - /
            0.49 / 0.58, KolektorSDD 0.20 / - / 0.28 / 0.26. Components without a peak (THR's
            false alarms elsewhere) stay nominal-eligible.
        unlabelled="blob", unlabelled_level=0.5, unlabelled_radius=128: used when no THR mask
            exists (maps without nominal validation rows): the pixels connected to a peak above
            half its height over the median, within 128 px. The map's blur hides a defect's size,
            so the blob is too large for specks (tire 0.11) but right for large defects.
            ``"none"`` = the paper (everything outside the margin may be nominal).
        positive_stride=2: hard positives on a 2-px lattice: neighbouring pixels carry near-identical
            bilinear features (<= 0.005 F1 on the dev set; matters for large neighbourhoods).
        nominal_stride=8: one nominal sample per feature cell: uniform, and ~700 points at 224 px,
            enough for a linear SVM without redundant, identical interpolated features.
        margin=8: one feature cell of clearance around the positives and the unlabelled pixels
            (16: tire -0.03, KolektorSDD and generated data -0.01; 4: within 0.02 everywhere).
        max_nominal: optional cap (random subset with ``seed``), for very large maps.
        neighbourhood="grow": the pixels connected to the peak whose score stays
            ``>= median + grow_level * (peak - median)``, at most ``radius`` px away (the previous
            default, grow_level 0.85, radius 32: the set follows the blob, see above).
        positive_stride: keep the hard positives on a lattice of this step (the peaks always).
        erode: ``"grow"`` only, drop region pixels within this distance of its border (off: it
            did not help on the dev set).
        peak_level: also drop peaks lower than ``median + peak_level * (highest peak - median)``
            (0 = the paper: every peak above the percentile). On a large image the top 1% holds
            more pixels than a small defect, so secondary noise peaks pass the percentile; 0.9
            gave KolektorSDD +0.01 and bottle -0.01, so it stays off.
    """
    p = params
    percentile, peak_size, radius, nominal_stride, margin = p.percentile, p.peak_size, p.radius, p.nominal_stride, p.margin
    neighbourhood, unlabelled, peak_level, positive_stride, max_nominal = p.neighbourhood, p.unlabelled, p.peak_level, p.positive_stride, p.max_nominal
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
    source = "blob" if unlabelled == "thr" and thr_mask is None else unlabelled
    needs_median = peak_level > 0 or neighbourhood == "grow" or source == "blob"
    med = float(np.median(s)) if needs_median else 0.0  # the background level
    if peak_level > 0:
        peaks &= s >= med + peak_level * (float(s[peaks].max()) - med)
    if neighbourhood == "grow":
        pos = grown_neighbourhood(s, np.argwhere(peaks), med, radius, p.grow_level, p.erode)
    else:
        # "within r of a True pixel" via the exact Euclidean distance transform: the same set as a
        # dilation by disk(r), at O(H*W) cost whatever the radius
        pos = ndimage.distance_transform_edt(~peaks) <= radius
    labelled_or_unsure = pos
    if source == "thr":
        if np.shape(thr_mask) != s.shape:
            raise ValueError(f"THR mask shape {np.shape(thr_mask)} differs from the score map's {s.shape}")
        labelled_or_unsure = pos | peak_components(np.asarray(thr_mask, dtype=bool), peaks)
    elif source == "blob":
        labelled_or_unsure = pos | grown_neighbourhood(s, np.argwhere(peaks), med, p.unlabelled_radius, p.unlabelled_level)
    excl = ndimage.distance_transform_edt(~labelled_or_unsure) <= margin
    grid = np.zeros_like(pos)
    off = nominal_stride // 2
    grid[off::nominal_stride, off::nominal_stride] = True
    neg = np.argwhere(grid & ~excl)
    if max_nominal is not None and len(neg) > max_nominal:
        rng = np.random.default_rng(p.seed)
        neg = neg[np.sort(rng.choice(len(neg), size=max_nominal, replace=False))]
    reason = None
    if len(neg) == 0:
        reason = "no nominal pixel left outside the positive region"
    kept = pos
    if positive_stride > 1:
        lattice = np.zeros_like(pos)
        lattice[positive_stride // 2 :: positive_stride, positive_stride // 2 :: positive_stride] = True
        kept = (pos & lattice) | peaks
    return PseudoLabels(np.argwhere(kept), neg, np.argwhere(peaks), reason, source)


def peak_components(region: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """The 8-connected components of ``region`` that hold a peak (a boolean (H, W) map of peaks)."""
    lab, _ = ndimage.label(region, structure=np.ones((3, 3), dtype=bool))
    ids = np.unique(lab[peaks & region])
    return np.isin(lab, ids[ids > 0])


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
