"""THR: the baseline binariser, ``score > mu + k * sigma`` of nominal validation pixel scores."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from raydist.calibration import nominal_stats
from raydist.errors import ConfigError
from raydist.segment.base import ParamsBinariser, ScoredImage


class Threshold:
    """Threshold at ``mu + k * sigma`` of all pixel scores of nominal validation maps.

    ``k = 3`` is the TTT4AS paper's best baseline setting (its Table 1 compares k = 2, 3, 4).
    Statistics are accumulated in float64 running sums, so any number of maps can be streamed.
    """

    def __init__(self, k: float = 3.0):
        if k < 0:
            raise ConfigError(f"THR k must be >= 0, got {k}")
        self.k = float(k)
        self.mu: float | None = None
        self.sigma: float | None = None

    def fit(self, maps: Iterable[np.ndarray]) -> Threshold:
        stats = nominal_stats(maps)
        self.mu, self.sigma = stats["mu"], stats["sigma"]
        return self

    @classmethod
    def from_stats(cls, mu: float, sigma: float, k: float = 3.0) -> Threshold:
        t = cls(k)
        t.mu, t.sigma = float(mu), float(sigma)
        return t

    @property
    def threshold(self) -> float:
        if self.mu is None or self.sigma is None:
            raise RuntimeError("Threshold is not fitted")
        return self.mu + self.k * self.sigma

    def predict(self, score_map: np.ndarray) -> np.ndarray:
        return np.asarray(score_map) > self.threshold  # the property refuses an unfitted threshold


@dataclass(frozen=True)
class THRParams:
    """THR has no evaluation-time parameter: its ``k`` (``--thr-k``) is part of the fitted model,
    with the nominal statistics it multiplies."""


class THR(ParamsBinariser):
    """The baseline binariser: THR's mask, made at scoring from the class's nominal statistics
    (``score > mu + k * sigma``; :class:`Threshold`), as it needs nothing of the image but its map."""

    name: ClassVar[str] = "thr"
    Params: ClassVar[type] = THRParams
    needs: ClassVar[frozenset[str]] = frozenset({"map", "nominal"})
    info_columns: ClassVar[tuple[str, ...]] = ()
    flag_prefix: ClassVar[str] = "thr-"

    def binarise(self, image: ScoredImage) -> tuple[np.ndarray, dict[str, Any]]:
        shape = np.shape(image.score_map)
        if image.thr_region is None:  # no nominal statistics: no claim
            return np.zeros(shape, bool), {"status": "degenerate", "reason": "no nominal statistics"}
        return np.asarray(image.thr_mask, dtype=bool), {"status": "ok"}
