"""Another detector's maps as a :class:`~raydist.methods.base.Detector` (``raydist segment``).

Nothing is learnt from images: the engine's calibration reads the maps of a class's nominal
validation rows (when there are any), and scoring looks maps up by ``image_id``, aligns each
to its image and hands it on with the frozen backbone's features, which TTT4AS trains on. So THR,
TTT4AS and MEBin binarise a foreign map exactly as they do raydist's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from raydist.contracts import Decoded, ScoreBatch
from raydist.errors import DuplicateImageIdError, MissingMapError, RowError
from raydist.features.encoder import Encoder
from raydist.methods.base import BaseDetector
from raydist.methods.maps.align import align_map, decode_map
from raydist.methods.maps.store import MapStore
from raydist.methods.patchcore.patchcore import image_scores


class ExternalMapsDetector(BaseDetector):
    scope = "class"
    needs_xyz = False
    aligns = ("none",)
    signed_maps = False
    fit_splits = ()  # nothing is learnt from images
    needs_calibration = False  # maps without nominal val rows: no THR, no image gate (other binarisers still run)

    def __init__(self, cfg):
        self.cfg = cfg
        self.store = MapStore(cfg.maps)
        self.info: dict[str, Any] = {}

    @classmethod
    def fit_inputs(cls, cfg) -> tuple[str, ...]:
        return (cfg.maps,)

    def maps(self, encoder: Encoder, batch: Sequence[Decoded]) -> tuple[list[np.ndarray | None], list[float | None], list[str | None]]:
        """The aligned map of each row and its stored image score (if any), or why it has none (a typed row error's text)."""
        found = self.store.get([d.image_id for d in batch])
        maps: list[np.ndarray | None] = []
        scores: list[float | None] = []
        errors: list[str | None] = []
        for d in batch:
            try:
                stored = found.get(d.image_id)
                if not stored:
                    raise MissingMapError(d.image_id, "no score map with this image_id in the maps dataset")
                if len(stored) > 1:
                    raise DuplicateImageIdError(d.image_id, f"the maps dataset holds {len(stored)} maps for this image_id")
                maps.append(align_map(decode_map(stored[0][0], d.image_id), d.orig_shape, encoder.prep, d.image_id))
                scores.append(stored[0][1])
                errors.append(None)
            except RowError as e:
                maps.append(None)
                scores.append(None)
                errors.append(str(e))
        return maps, scores, errors

    def fit(self, encoder: Encoder, train: Sequence[Decoded]) -> ExternalMapsDetector:
        self.info = {"maps": self.cfg.maps}
        return self

    def score(self, encoder: Encoder, batch: Sequence[Decoded]) -> ScoreBatch:
        maps, stored, errors = self.maps(encoder, batch)
        dense = np.stack([m if m is not None else np.zeros(encoder.size, np.float32) for m in maps])
        read = image_scores(dense, self.cfg.image_score)  # the detector's own score wins when the maps carry one
        features = encoder.extract([d.image for d in batch])
        scores = np.array([s if s is not None else r for s, r in zip(stored, read)], dtype=np.float64)
        return ScoreBatch(dense, scores, features, [{} for _ in batch], errors)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.info, {}

    @classmethod
    def from_state(cls, cfg, info: dict[str, Any], tensors: dict[str, np.ndarray], align: str | None = None) -> ExternalMapsDetector:
        det = cls(cfg)
        det.info = info
        return det

    def describe(self) -> str:
        return f"external maps from {self.cfg.maps}"
