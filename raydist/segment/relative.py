"""REL: the per-image relative threshold, ``map >= min + level * (max - min)``, a baseline.

It needs no features, no training and no nominal statistics, and on small defects it is hard to
beat: a small defect's score blob is much wider than the defect (the backbone's receptive field
and the map's smoothing), and its top band is the defect. Every other binariser is measured
against it (README, Mask quality); its one parameter is the level.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from raydist.segment.base import ScoredImage, make_params, param, validate


@dataclass(frozen=True)
class RelParams:
    level: float = param(0.7, "mask = map >= min + level * (max - min) of the image's own map",
                         "the best single level over the development set (README, Mask quality: 0.6 bottle, 0.7 transistor, "
                         "0.9 small-defect categories)", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"), flag="rel-level")  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)


class Relative:
    """Per-image relative threshold (hyper-parameters: :class:`RelParams`)."""

    name: ClassVar[str] = "rel"
    Params: ClassVar[type] = RelParams
    needs: ClassVar[frozenset[str]] = frozenset({"map"})
    info_columns: ClassVar[tuple[str, ...]] = ()
    flag_prefix: ClassVar[str] = "rel-"

    def __init__(self, params: RelParams | dict | None = None, **overrides: Any):
        self.params = make_params(RelParams, params, **overrides)

    def get_params(self) -> dict:
        return asdict(self.params)

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


__all__ = ["RelParams", "Relative", "relative_mask"]
