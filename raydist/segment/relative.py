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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

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

    def level(self, thr_region: np.ndarray | None) -> float:
        """The image's level from the share of its pixels in THR's region (the fallback without one)."""
        p = self.params
        if thr_region is None:
            return p.fallback_level
        share = float(np.mean(thr_region)) + 1e-4  # 1e-4: an empty region reads as a speck, not log(0)
        return float(np.clip(p.intercept + p.slope * np.log10(share), p.min_level, p.max_level))

    def binarise(self, image: ScoredImage) -> tuple[np.ndarray, dict[str, Any]]:
        region = image.thr_region
        level = self.level(region)
        mask = relative_mask(image.score_map, level)
        if self.params.within_thr and region is not None:
            mask &= np.asarray(region, dtype=bool)
        return mask, {"level": f"{level:.3f}"}


__all__ = ["ARelParams", "AdaptiveRelative", "RelParams", "Relative", "relative_mask"]
