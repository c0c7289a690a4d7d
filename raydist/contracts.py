"""The types that cross the seams, in one place: what decoding hands a detector (:class:`Decoded`),
what a detector hands scoring (:class:`ScoreBatch`), what scoring hands the binarisers
(:class:`Scored`, a :class:`~raydist.segment.base.ScoredImage`). What a unit learns from its
nominal validation images (THR's statistics, the image threshold) is :mod:`raydist.calibration`.

The engine, every method and every binariser import these from here, so no layer imports the one
above it to learn a type: methods never import the engine, binarisers never import a detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Decoded:
    image_id: str
    class_name: str
    label: int
    defect_type: str
    image: np.ndarray  # (H, W, 3) uint8 at the model's size
    gt: np.ndarray  # (H, W) bool
    xyz: np.ndarray | None = None  # (H, W, 3) float32, NaN = no point / background; multimodal methods only
    orig_shape: tuple[int, int] | None = None  # (H, W) of the stored image, before resizing and cropping


@dataclass
class ScoreBatch:
    maps: np.ndarray  # (N, H, W) float32 at the encoder's size
    image_scores: np.ndarray  # (N,)
    features: np.ndarray  # (N, D, h, w): what a feature-based binariser (TTT4AS) trains on
    extras: list[dict[str, Any]] = field(default_factory=list)  # per image, method-specific report fields
    errors: list[str | None] | None = None  # per image: why the detector could not score it (a row error), else None
    feature_blocks: tuple[int, ...] | None = None  # channels of each concatenated grid (CFM: 2D, 3D): TTT4AS scales each on its own


@dataclass
class Scored:
    """What scoring hands to segmentation for one image."""

    image_id: str
    class_name: str
    label: int
    defect_type: str
    image_score: float | None = None
    score_map: np.ndarray | None = None  # (H, W) float32
    features: np.ndarray | None = None  # (D, h, w) float16: compact hand-off to TTT4AS
    gt: np.ndarray | None = None
    thr_mask: np.ndarray | None = None
    thr_known: bool = True  # False when the class has no nominal statistics (maps without val rows): thr_mask is then empty
    is_anomalous: bool | None = None  # the image-level decision (score above the unit's image threshold); None: no threshold
    image: np.ndarray | None = None  # (H, W, 3) uint8, processed like the map: kept on request or when a binariser needs it (TTPix)
    error: str | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # method-specific report fields (unified: variant_scores, group)
    feature_blocks: tuple[int, ...] | None = None  # channels of each concatenated feature grid (CFM: 2D, 3D)

    def feature_grids(self) -> list[np.ndarray]:
        """The feature grids TTT4AS trains on, as float32: one per block (CFM: 2D, 3D), so each is scaled on its own."""
        f = self.features.astype(np.float32)
        if not self.feature_blocks:
            return [f]
        return np.split(f, np.cumsum(self.feature_blocks)[:-1], axis=0)

    @property
    def thr_region(self) -> np.ndarray | None:
        """THR's mask for TTT4AS (its unlabelled pixels, its fallback); None without nominal statistics."""
        return self.thr_mask if self.thr_known else None


__all__ = ["Decoded", "ScoreBatch", "Scored"]
