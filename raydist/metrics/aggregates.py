"""Mergeable metric aggregates, for archives too large to keep every pixel in memory.

Per class, a :class:`PixelAggregate` holds fixed-bin histograms of pixel scores: nominal pixels,
defect pixels, and per-region PRO mass (each ground-truth component adds its pixel histogram
divided by its size). Two aggregates of the same bins merge by addition, so partial results from
any number of workers combine in any order. P-AUROC, P-AP and AUPRO are then read off the
histograms; image-level metrics and mask P/R/F1 stay exact (one small record per image).

Bins are log-spaced over a fixed range, 1e-6 to 1e6 (:meth:`PixelAggregate.universal`): scores
are positive distances (signed, aligned maps get an offset first), log bins give the same
*relative* resolution (0.17% per bin) at every score level, and, being the same for every model,
two runs' histograms can always be compared or merged. Stored sparsely: most bins are empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from raydist.metrics.aupro import _STRUCTURE


@dataclass
class PixelAggregate:
    lo: float
    hi: float
    n_bins: int = 8192
    neg: np.ndarray | None = None  # counts of nominal pixels per bin
    pos: np.ndarray | None = None  # counts of defect pixels per bin
    pro: np.ndarray | None = None  # sum over regions of (region pixels in bin / region size)
    n_regions: int = 0
    offset: float = 0.0  # added to scores before binning, so signed (e.g. CADA-aligned) maps fit log bins

    def __post_init__(self) -> None:
        if not 0 < self.lo < self.hi:
            raise ValueError(f"need 0 < lo < hi, got {self.lo}, {self.hi}")
        for name, dtype in (("neg", np.int64), ("pos", np.int64), ("pro", np.float64)):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(self.n_bins, dtype=dtype))

    @classmethod
    def universal(cls, offset: float = 0.0) -> PixelAggregate:
        """The fixed layout every evaluation uses: 1e-6..1e6, 16384 bins (as fine as 3 decades x 8192)."""
        return cls(1e-6, 1e6, 16384, offset=offset)

    @classmethod
    def around(cls, reference: float, decades: float = 3.0, n_bins: int = 8192, offset: float = 0.0) -> PixelAggregate:
        """Bins from reference / 10**decades to reference * 10**decades (after adding ``offset``)."""
        ref = max(float(reference), 1e-12)
        return cls(ref / 10**decades, ref * 10**decades, n_bins, offset=offset)

    def bin_index(self, scores: np.ndarray) -> np.ndarray:
        s = np.clip(np.asarray(scores, dtype=np.float64) + self.offset, self.lo, self.hi)
        t = (np.log(s) - np.log(self.lo)) / (np.log(self.hi) - np.log(self.lo))
        return np.minimum((t * self.n_bins).astype(np.int64), self.n_bins - 1)

    def add(self, gt: np.ndarray, score_map: np.ndarray) -> None:
        gt = np.asarray(gt, dtype=bool)
        b = self.bin_index(score_map).ravel()
        flat = gt.ravel()
        self.neg += np.bincount(b[~flat], minlength=self.n_bins)
        self.pos += np.bincount(b[flat], minlength=self.n_bins)
        if flat.any():
            labels, n = ndimage.label(gt, structure=_STRUCTURE)
            lab = labels.ravel()
            sizes = np.bincount(lab, minlength=n + 1).astype(np.float64)
            inside = lab > 0
            self.pro += np.bincount(b[inside], weights=1.0 / sizes[lab[inside]], minlength=self.n_bins)
            self.n_regions += n

    def merge(self, other: PixelAggregate) -> PixelAggregate:
        if (self.lo, self.hi, self.n_bins, self.offset) != (other.lo, other.hi, other.n_bins, other.offset):
            raise ValueError("cannot merge aggregates with different bins")
        return PixelAggregate(
            self.lo, self.hi, self.n_bins, self.neg + other.neg, self.pos + other.pos, self.pro + other.pro,
            self.n_regions + other.n_regions, self.offset,
        )  # fmt: skip

    def _curves(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cumulative counts from the highest bin down: thresholds between bins."""
        tp = np.r_[0, np.cumsum(self.pos[::-1])]
        fp = np.r_[0, np.cumsum(self.neg[::-1])]
        pro = np.r_[0, np.cumsum(self.pro[::-1])]
        return tp, fp, pro

    def p_auroc(self) -> float:
        tp, fp, _ = self._curves()
        if tp[-1] == 0 or fp[-1] == 0:
            return float("nan")
        return float(np.trapezoid(tp / tp[-1], fp / fp[-1]))

    def p_ap(self) -> float:
        tp, fp, _ = self._curves()
        if tp[-1] == 0:
            return float("nan")
        keep = (tp + fp) > 0
        prec = tp[keep] / (tp[keep] + fp[keep])
        rec = tp[keep] / tp[-1]
        return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))  # step-wise, as sklearn's AP

    def aupro(self, fpr_limit: float = 0.3) -> float:
        _, fp, pro = self._curves()
        if self.n_regions == 0 or fp[-1] == 0:
            return float("nan")
        fpr = fp / fp[-1]
        prc = pro / self.n_regions
        keep = fpr <= fpr_limit
        x = np.r_[fpr[keep], fpr_limit]
        y = np.r_[prc[keep], np.interp(fpr_limit, fpr, prc)]
        return float(np.trapezoid(y, x) / fpr_limit)

    def to_dict(self) -> dict:
        """Sparse: the indices of non-empty bins and each histogram's values there."""
        idx = np.nonzero((self.neg != 0) | (self.pos != 0) | (self.pro != 0))[0]
        return {"lo": self.lo, "hi": self.hi, "n_bins": self.n_bins, "bins": idx.tolist(), "neg": self.neg[idx].tolist(),
                "pos": self.pos[idx].tolist(), "pro": self.pro[idx].tolist(), "n_regions": self.n_regions, "offset": self.offset}  # fmt: skip

    @classmethod
    def from_dict(cls, d: dict) -> PixelAggregate:
        agg = cls(d["lo"], d["hi"], d["n_bins"], n_regions=d["n_regions"], offset=d.get("offset", 0.0))
        idx = np.asarray(d["bins"], np.int64)
        agg.neg[idx], agg.pos[idx], agg.pro[idx] = d["neg"], d["pos"], d["pro"]
        return agg
