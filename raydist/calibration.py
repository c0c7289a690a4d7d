"""What a fitted unit learns from its nominal validation images, whatever the detector: the
statistics every binariser and the image-level decision compare a test image with.

Computed once, by the engine, from the maps and image scores the unit's own detector gives its
nominal ``val`` rows (a detector never computes them), stored in the model beside the detector's
state, and handed to scoring. Two things are kept:

- THR's pixel statistics: mean and standard deviation of every nominal val pixel (the mask is
  ``map > mu + k sigma``; ``k`` is a model setting, the TTT4AS paper's best is 3);
- the image threshold: an image whose score is above it is judged anomalous, and only such an
  image gets a mask (the gate, ``EvalConfig.gate``). Its rule is :func:`image_threshold`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Calibration:
    mu: float  # nominal val pixels: mean
    sigma: float  # and standard deviation (THR)
    image_threshold: float  # image scores above it are judged anomalous
    n_val: int  # nominal val images it comes from

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Calibration:
        return cls(float(d["mu"]), float(d["sigma"]), float(d["image_threshold"]), int(d["n_val"]))

    def describe(self) -> str:
        return f"THR mu={self.mu:.4f} sigma={self.sigma:.4f}, image threshold {self.image_threshold:.4f} (from {self.n_val} val images)"


class PixelStats:
    """Mean and standard deviation of all pixels of a stream of maps, in float64 running sums."""

    def __init__(self) -> None:
        self.n, self.s, self.s2 = 0, 0.0, 0.0

    def add(self, maps: Iterable[np.ndarray]) -> PixelStats:
        for m in maps:
            m = np.asarray(m, dtype=np.float64)
            self.n += m.size
            self.s += float(m.sum())
            self.s2 += float((m * m).sum())
        return self

    def result(self) -> tuple[float, float]:
        if self.n == 0:
            raise ValueError("THR needs at least one nominal validation map")
        mu = self.s / self.n
        return float(mu), float(np.sqrt(max(self.s2 / self.n - mu**2, 0.0)))


def nominal_stats(maps: Iterable[np.ndarray]) -> dict[str, float]:
    """THR's statistics of nominal maps: {mu, sigma} of all their pixels."""
    mu, sigma = PixelStats().add(maps).result()
    return {"mu": mu, "sigma": sigma}


def image_threshold(scores: Iterable[float], k: float) -> float:
    """The image threshold from nominal val image scores: their mean + ``k`` standard deviations
    (THR's rule one level up). Not their maximum: one outlying val image (KolektorSDD's is 5.6
    standard deviations out) would switch the gate off for most defects (docs/masks.md, Image-level decision)."""
    s = np.asarray(list(scores), dtype=np.float64)
    if s.size == 0:
        raise ValueError("the image threshold needs at least one nominal validation score")
    return float(s.mean() + k * s.std())


def calibrate(scored: Iterable[tuple[np.ndarray, float]], image_k: float) -> Calibration | None:
    """The unit's :class:`Calibration` from its nominal val images' (map, image score) pairs,
    streamed (maps are summed as they come, never held); None when there is none."""
    stats, kept = PixelStats(), []
    for m, s in scored:
        stats.add([m])
        kept.append(float(s))
    if not kept:
        return None
    mu, sigma = stats.result()
    return Calibration(mu, sigma, image_threshold(kept, image_k), len(kept))


def thr_mask(score_map: np.ndarray, mu: float, sigma: float, k: float) -> np.ndarray:
    """THR's mask: pixels above mu + k sigma (NaN statistics, a class without them: nothing is above)."""
    return np.asarray(score_map) > mu + k * sigma


__all__ = ["Calibration", "PixelStats", "calibrate", "image_threshold", "nominal_stats", "thr_mask"]
