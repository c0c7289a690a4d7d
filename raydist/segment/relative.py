"""Relative thresholds: a level between the image's own map minimum and maximum.

REL, ``map >= min + level * (max - min)``, is a baseline: it needs no features, no training and
no nominal statistics, and on small defects it is hard to beat: a small defect's score blob is
much wider than the defect (the backbone's receptive field and the map's smoothing), and its top
band is the defect. But the best level differs by category (dev set: 0.6 bottle, 0.7 transistor,
0.8-0.9 KolektorSDD and small-defect categories), so any fixed level is tuned to some of them.

AREL reads the level from the image: the share of the image above THR's threshold (the class's
nominal statistics) tells the defect's scale, and the best level falls with it (per anomalous
image of the dev set, the level with the best F1 against log10 of that share: correlation -0.67
pooled, -0.79 transistor). The default line is the least-squares fit of those per-image best
levels over bottle, transistor and KolektorSDD; the mask is kept inside THR's region, so a good
part whose map stays below THR's threshold gets none (docs/masks.md).

The line is fitted mostly on defects smaller than the map's blur, where the top band is the
defect. A defect much wider than the blur is a blurred step instead: its edge lies half way
between the background and the plateau. So when THR's region looks like one (an interior
``plateau_depth`` px in from its edge, the map risen half way within that depth, the plateau
above the line's level), the level is at most that half-max (:func:`plateau_level`). On the dev
set it moves the level of 8 of 10 of transistor's misplaced parts (a missing part, 50-63% of the
image) and of 35 of 63 bottle defects, of no KolektorSDD crack, tire speck or good dev-set
part; of 1 of the demo's 30 generated parts (a good one; their maps are broad peaks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

from raydist.errors import ConfigError
from raydist.segment.base import ParamsBinariser, ScoredImage, param, validate


@dataclass(frozen=True)
class RelParams:
    level: float = param(0.7, "mask = map >= min + level * (max - min) of the image's own map",
                         "the best single level over the development set (docs/masks.md: 0.6 bottle, 0.7 transistor, "
                         "0.9 small-defect categories)", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"), flag="rel-level")  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)


class Relative(ParamsBinariser):
    """Per-image relative threshold (hyper-parameters: :class:`RelParams`)."""

    name: ClassVar[str] = "rel"
    Params: ClassVar[type] = RelParams
    needs: ClassVar[frozenset[str]] = frozenset({"map"})
    info_columns: ClassVar[tuple[str, ...]] = ()
    flag_prefix: ClassVar[str] = "rel-"

    def binarise(self, image: ScoredImage) -> tuple[np.ndarray, dict[str, Any]]:
        return relative_mask(image.score_map, self.params.level), {}


def relative_mask(score_map: np.ndarray, level: float) -> np.ndarray:
    """``map >= min + level (max - min)``; empty for a flat or non-finite map (nothing stands out)."""
    s = np.asarray(score_map, dtype=np.float64)
    if not np.isfinite(s).all():
        return np.zeros(s.shape, bool)
    lo, hi = float(s.min()), float(s.max())
    if hi <= lo:
        return np.zeros(s.shape, bool)
    return s >= lo + level * (hi - lo)


@dataclass(frozen=True)
class ARelParams:
    intercept: float = param(0.55, "level = intercept + slope * log10(share of the image above THR's threshold)",
                             "least-squares fit of the per-image best level over the dev set's anomalous images "
                             "(bottle, transistor, KolektorSDD: a = 0.551, b = -0.141)", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))
    slope: float = param(-0.14, "how fast the level falls as THR's region grows (per decade of its share)", "the same fit",
                         check=(lambda v: -1.0 < v <= 0.0, "in (-1, 0]"))
    min_level: float = param(0.3, "lowest level", "the lowest level of the fit's sweep (0.30-0.95)", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))
    max_level: float = param(0.95, "highest level", "the highest level of the fit's sweep", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))
    within_thr: bool = param(True, "keep the mask inside THR's region",
                             "F1 unchanged on the dev set; good parts marked without the image gate: bottle 40% vs 100%, transistor 43% vs 100%")
    fallback_level: float = param(0.7, "the level when the class has no nominal statistics (maps without val rows)",
                                  "REL's default", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))
    plateau_depth: float = param(40.0, "a pixel of THR's region this far from its edge (px of the map) is inside the defect, past the "
                                 "map's blur; 0 turns the half-max rule off",
                                 "a few feature strides (8-16 px) plus the map's smoothing; TTPix's worst lead over the baselines "
                                 "across 11 fits of the dev set at 32 / 40 / 48 px (each at its best quantile): +0.016 / +0.016 / "
                                 "+0.011 (docs/masks.md); at 32 px a few cracks pass (KolektorSDD's lead +0.032 vs +0.037)",
                                 check=(lambda v: v >= 0.0, ">= 0"))  # fmt: skip
    plateau_quantile: float = param(0.75, "the plateau's height: this quantile of the map over the interior",
                                    "TTPix's worst lead over 11 fits of the dev set (7 transistor, 3 bottle seeds/threads, KolektorSDD) "
                                    "at 0.7 / 0.75 / 0.8: +0.013 / +0.016 / +0.005 (docs/masks.md); a missing part's plateau is "
                                    "uneven, its peaks above the step (lower: transistor), bottle's is its defect (higher)",
                                    check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))  # fmt: skip
    min_interior: float = param(0.02, "the half-max rule applies when the interior holds at least this share of THR's region",
                                "TTPix's worst lead over the 11 fits at 0 / 0.02 / 0.05 / 0.1: +0.020 / +0.018 / +0.016 / +0.013 "
                                "(bottle's SegF1 each time); at 0 two cracks and a defective demo part pass (AREL's demo F1 0.487 "
                                "vs 0.500), at 0.02 none", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)
        if self.min_level > self.max_level:
            raise ConfigError(f"min_level {self.min_level} > max_level {self.max_level}")


class AdaptiveRelative(ParamsBinariser):
    """Per-image relative threshold at a level read from THR's region (hyper-parameters: :class:`ARelParams`)."""

    name: ClassVar[str] = "arel"
    Params: ClassVar[type] = ARelParams
    needs: ClassVar[frozenset[str]] = frozenset({"map", "nominal"})
    info_columns: ClassVar[tuple[str, ...]] = ("level",)
    flag_prefix: ClassVar[str] = "arel-"

    def level(self, thr_region: np.ndarray | None, score_map: np.ndarray | None = None) -> float:
        """The image's level: the line in the share of its pixels in THR's region, lowered to the
        half-max of a plateau when the region has an interior (``score_map`` given); the fallback
        level without nominal statistics."""
        p = self.params
        if thr_region is None:
            return p.fallback_level
        share = float(np.mean(thr_region)) + 1e-4  # 1e-4: an empty region reads as a speck, not log(0)
        line = float(np.clip(p.intercept + p.slope * np.log10(share), p.min_level, p.max_level))
        if score_map is None or p.plateau_depth <= 0:
            return line
        half = plateau_level(score_map, np.asarray(thr_region, dtype=bool), p.plateau_depth, p.plateau_quantile, p.min_interior, line)
        return line if half is None else min(line, half)

    def binarise(self, image: ScoredImage) -> tuple[np.ndarray, dict[str, Any]]:
        level = self.level(image.thr_region, image.score_map)
        return self.mask_at(image, level), {"level": f"{level:.3f}"}

    def mask_at(self, image: ScoredImage, level: float) -> np.ndarray:
        """AREL's mask of ``image`` at a level already read (TTPix's fallback: no second read)."""
        mask = relative_mask(image.score_map, level)
        if self.params.within_thr and image.thr_region is not None:
            mask &= np.asarray(image.thr_region, dtype=bool)
        return mask


MIN_OUTSIDE = 20  # pixels outside THR's region below which there is no background to read


def plateau_level(score_map: np.ndarray, region: np.ndarray, depth: float, quantile: float, min_interior: float,
                  line: float | None = None) -> float | None:  # fmt: skip
    """Relative level half way between the background (the median outside ``region``) and the
    plateau (``quantile`` of the map over the region's interior: pixels more than ``depth`` px
    from its edge). None where the region is not a blurred step: an interior under
    ``min_interior`` of the region (a defect no wider than the blur); a map that has not risen half
    way in the band ``depth / 2`` to ``depth`` px from the edge (a peak rising all the way in); a
    plateau below ``line`` (a broad low rise around a smaller defect: the line's own case); or
    almost nothing outside the region.

    Why half way: a defect wider than the blur is a step blurred by the backbone's receptive field
    and the map's smoothing; a blurred step crosses its edge at half its height, and has risen
    there within a blur of THR's edge.
    """
    s = np.asarray(score_map, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    outside = ~region
    if not np.isfinite(s).all() or hi <= lo or outside.sum() < MIN_OUTSIDE:
        return None
    size = int(region.sum())
    if size < np.pi * depth**2:  # an interior pixel needs a disk of radius `depth` around it in the region
        return None
    box, dist = _depth(region)
    interior = dist > depth
    n = int(interior.sum())
    if n == 0 or n < min_interior * size:
        return None
    r = (s[box] - lo) / (hi - lo)
    background = (float(np.median(s[outside])) - lo) / (hi - lo)
    plateau = float(np.quantile(r[interior], quantile))
    half = background + 0.5 * (plateau - background)
    if np.median(r[(dist > depth / 2) & (dist <= depth)]) < half or (line is not None and plateau < line):
        return None
    return half


def _depth(region: np.ndarray) -> tuple[tuple[slice, slice], np.ndarray]:
    """The region's bounding box and, on it, each pixel's distance to the nearest pixel outside
    the region (the image's edge is not outside: a defect may run off the image). Computed on the
    box, padded with outside pixels where it does not reach the image's edge: the whole image's
    distances at a fraction of the cost on small regions."""
    box = tuple(slice(int(i[0]), int(i[-1]) + 1) for i in (np.flatnonzero(region.any(1)), np.flatnonzero(region.any(0))))
    pads = [(int(b.start > 0), int(b.stop < n)) for b, n in zip(box, region.shape)]
    dist = ndimage.distance_transform_edt(np.pad(region[box], pads))
    return box, dist[pads[0][0] : dist.shape[0] - pads[0][1], pads[1][0] : dist.shape[1] - pads[1][1]]


__all__ = ["ARelParams", "AdaptiveRelative", "RelParams", "Relative", "plateau_level", "relative_mask"]
