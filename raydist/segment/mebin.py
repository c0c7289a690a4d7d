"""MEBin (Main Element Binarization, AnomalyNCD, CVPR 2025): a per-image threshold where the
number of connected components of the binarised map is stable.

The threshold is swept from high to low; at each level the map is binarised (and eroded, to
split weakly joined blobs and drop specks) and its connected components are counted. The longest
run of levels with the same non-zero count is the "stable interval"; the mask is taken at the end
of that run (its lowest level), i.e. the largest mask that still shows the same main elements.

Unlike anomalib 2.7's implementation, whose sweep range comes from the peaks of the whole batch
(so one image's mask depends on its batch-mates), the range here comes from the image alone:
from its median (the background) to its maximum. A mask therefore never depends on which other
images were evaluated with it, which is what a distributed, resumable evaluation needs. The price:
on a nominal image MEBin still finds a "main element" (F1 is measured on anomalous images only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from raydist.segment.base import AT_LEAST_1, ParamsBinariser, ScoredImage, param, validate


@dataclass(frozen=True)
class MEBinParams:
    """MEBin's sweep; every default is AnomalyNCD's."""

    levels: int = param(256, "the map's [median, max] range is quantised to this many levels", "AnomalyNCD maps to 8 bits before sweeping",
                        check=(lambda v: v >= 2, ">= 2"))
    sample_rate: int = param(4, "sweep every n-th level", "AnomalyNCD's default", check=AT_LEAST_1)
    min_interval_len: int = param(4, "a stable run must span at least this many sweep steps, else the mask is empty", "AnomalyNCD's default",
                                  check=AT_LEAST_1)
    erode: bool = param(True, "erode each binarisation (and the final mask) with a kernel x kernel square before counting components",
                        "AnomalyNCD: on, to split weakly joined blobs and drop specks")
    kernel: int = param(6, "erosion square side, pixels", "AnomalyNCD's 6 x 6", check=AT_LEAST_1)

    def __post_init__(self) -> None:
        validate(self)


class MEBin(ParamsBinariser):
    """Per-image MEBin binariser (hyper-parameters: :class:`MEBinParams`)."""

    name: ClassVar[str] = "mebin"
    Params: ClassVar[type] = MEBinParams
    needs: ClassVar[frozenset[str]] = frozenset({"map"})
    info_columns: ClassVar[tuple[str, ...]] = ()
    flag_prefix: ClassVar[str] = "mebin-"

    def binarise(self, image: ScoredImage) -> tuple[np.ndarray, dict[str, Any]]:
        return self.predict(image.score_map)

    def _binarise(self, q: np.ndarray, level: int) -> np.ndarray:
        b = q > level
        if self.params.erode:
            b = ndimage.binary_erosion(b, structure=np.ones((self.params.kernel, self.params.kernel), bool))
        return b

    def predict(self, score_map: np.ndarray) -> tuple[np.ndarray, dict]:
        """Binary (H, W) mask and an info dict (threshold in score units, component count, status)."""
        s = np.asarray(score_map, dtype=np.float64)
        if s.ndim != 2 or not np.isfinite(s).all():
            return np.zeros(s.shape[-2:] if s.ndim >= 2 else (0, 0), bool), {"status": "degenerate", "reason": "map is not a finite 2-D array"}
        lo, hi = float(np.median(s)), float(s.max())
        if hi <= lo:
            return np.zeros(s.shape, bool), {"status": "degenerate", "reason": "flat map"}
        q = np.clip((s - lo) / (hi - lo) * (self.params.levels - 1), 0, self.params.levels - 1)
        sweep = list(range(self.params.levels - 1 - self.params.sample_rate, -1, -self.params.sample_rate))
        counts = [ndimage.label(self._binarise(q, t))[1] for t in sweep]
        best_len, best_end = 0, -1
        i = 0
        while i < len(counts):  # runs of equal, non-zero counts
            j = i
            while j + 1 < len(counts) and counts[j + 1] == counts[i]:
                j += 1
            if counts[i] > 0 and j - i + 1 > best_len:
                best_len, best_end = j - i + 1, j
            i = j + 1
        if best_len < self.params.min_interval_len:
            return np.zeros(s.shape, bool), {"status": "degenerate", "reason": "no stable component count"}
        level = sweep[best_end]
        return self._binarise(q, level), {
            "status": "ok", "threshold": lo + level / (self.params.levels - 1) * (hi - lo), "components": counts[best_end],
        }  # fmt: skip
