"""PatchCore as a :class:`~raydist.methods.base.Detector`: one bank per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from raydist.contracts import Decoded, ScoreBatch
from raydist.errors import ConfigError
from raydist.features.encoder import Encoder
from raydist.methods.base import BaseDetector, require
from raydist.methods.patchcore.knn import warm_up_search
from raydist.methods.patchcore.patchcore import PatchCore


class PatchCoreDetector(BaseDetector):
    scope = "class"
    needs_xyz = False
    aligns = ("none",)
    signed_maps = False
    has_bank = True

    def __init__(self, cfg):
        self.cfg = cfg
        self.model = PatchCore(cfg.coreset_ratio, cfg.coreset_proj_dim, cfg.sigma, cfg.image_score, seed=cfg.seed, coreset_chunk=cfg.coreset_chunk)
        self.info: dict[str, Any] = {}

    def fit(self, encoder: Encoder, train: Sequence[Decoded]) -> PatchCoreDetector:
        require(train)
        self.model.fit(encoder.extract([d.image for d in train]))
        bank = self.model.bank
        self.info = {"n_train": len(train), "bank_size": int(bank.shape[0]), "dim": int(bank.shape[1])}
        return self

    def score(self, encoder: Encoder, batch: Sequence[Decoded]) -> ScoreBatch:
        grids = encoder.extract_on_device([d.image for d in batch])
        maps, scores = self.model.to(encoder.device).score(grids, encoder.size)  # the bank stays resident on that device
        return ScoreBatch(maps, scores, grids.cpu().numpy(), [{} for _ in batch])

    @classmethod
    def warm_up(cls, device: torch.device) -> None:
        warm_up_search(device)

    def use_bank_search(self, how: str, device: torch.device) -> None:
        self.model.search, self.model.indexed = how, True
        self.model.to(device).search_bank()

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.info, {"bank": np.ascontiguousarray(self.model.bank, dtype=np.float16)}

    @classmethod
    def from_state(cls, cfg, info: dict[str, Any], tensors: dict[str, np.ndarray], align: str | None = None) -> PatchCoreDetector:
        if "bank" not in tensors:
            raise ConfigError("a PatchCore state needs a 'bank' tensor")
        det = cls(cfg)
        det.model.bank, det.info = tensors["bank"], info
        return det

    def describe(self) -> str:
        i = self.info
        return f"bank {i['bank_size']}x{i['dim']} from {i['n_train']} images"
