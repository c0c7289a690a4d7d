"""CFM as a :class:`~raydist.methods.base.Detector`: one pair of mapping networks per class.

The anomaly map is the product of the two discrepancy maps (2D->3D and 3D->2D); TTT4AS trains
on the 2D and 3D feature grids side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from raydist.contracts import Decoded, ScoreBatch
from raydist.features.encoder import Encoder
from raydist.methods.base import BaseDetector, require
from raydist.methods.cfm.crossmodal import CrossmodalMapping


@lru_cache(maxsize=2)
def point_extractor(name: str, weights: str | None, block: int, seed: int, groups: int, stride: int = 1):
    """One 3D extractor per process and setting (Point-MAE weights are loaded once)."""
    from raydist.features.points import create_point_extractor

    kw = {"groups": groups} if name == "pointmae" else {"stride": stride}
    return create_point_extractor(name, weights, block, seed, **kw)


def features_3d(extractor, decoded: Sequence[Decoded], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """3D features of each row pooled onto the 2D feature grid -> (N, D3, h, w), valid fraction (N, h, w)."""
    from raydist.pointcloud.preprocess import valid_mask
    from raydist.pointcloud.projection import pool_to_grid

    feats, fracs = [], []
    for d in decoded:
        f, frac = pool_to_grid(extractor(d.xyz, d.image_id), valid_mask(d.xyz), grid)
        feats.append(f)
        fracs.append(frac)
    return torch.stack(feats).numpy(), torch.stack(fracs).numpy()


class CFMDetector(BaseDetector):
    scope = "class"
    needs_xyz = True
    aligns = ("none",)
    signed_maps = False

    @classmethod
    def prepare_cloud(cls, raw: np.ndarray, prep, cfg, image_id: str) -> np.ndarray:
        """The background plane removed from the resized cloud, fitted on the stored one before
        resizing (``plane_fit="full"``: the official CFM/M3DM preprocessing fits it on the full
        image border) or on the resized one ("resized")."""
        from raydist.pointcloud.preprocess import remove_plane

        # NaN = no point throughout (nearest resizing carries NaN over as it is)
        return remove_plane(prep.xyz(raw), cfg.plane_distance, image_id=image_id, fit_on=raw if cfg.plane_fit == "full" else None)

    def __init__(self, cfg):
        self.cfg = cfg
        self.mapping = CrossmodalMapping(epochs=cfg.cfm_epochs, aggregation=cfg.cfm_aggregation, sigma=cfg.sigma, seed=cfg.seed,
                                         score_cells=cfg.cfm_score_cells)  # fmt: skip
        self.info: dict[str, Any] = {}

    def _extractor(self):
        c = self.cfg
        return point_extractor(c.backbone_3d, c.weights_3d, c.block_3d, c.seed, c.groups_3d, c.stride_3d)

    def _features(self, encoder: Encoder, batch: Sequence[Decoded]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        grids = encoder.extract([d.image for d in batch])
        f3, frac = features_3d(self._extractor(), batch, grids.shape[-2:])
        return grids, f3, frac

    def _score(self, grids: np.ndarray, f3: np.ndarray, frac: np.ndarray, size) -> tuple[np.ndarray, np.ndarray]:
        t = torch.from_numpy
        return self.mapping.score(t(grids), t(f3), t(frac), size, self.cfg.image_score)

    def fit(self, encoder: Encoder, train: Sequence[Decoded]) -> CFMDetector:
        require(train)
        grids, f3, frac = self._features(encoder, train)
        self.mapping.fit(torch.from_numpy(grids), torch.from_numpy(f3), torch.from_numpy(frac))
        self.info = {"n_train": len(train), "dims": [grids.shape[1], f3.shape[1]]}
        return self

    def score(self, encoder: Encoder, batch: Sequence[Decoded]) -> ScoreBatch:
        grids, f3, frac = self._features(encoder, batch)
        maps, scores = self._score(grids, f3, frac, encoder.size)
        both = np.concatenate([grids, f3], axis=1)  # TTT4AS trains on the 2D + 3D features
        return ScoreBatch(maps, scores, both, [{} for _ in batch],
                          feature_blocks=(grids.shape[1], f3.shape[1]))  # fmt: skip

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return self.info, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.mapping.state_dict().items()}

    @classmethod
    def from_state(cls, cfg, info: dict[str, Any], tensors: dict[str, np.ndarray], align: str | None = None) -> CFMDetector:
        det = cls(cfg)
        det.mapping.load(tensors, *info["dims"])
        det.info = info
        return det

    def describe(self) -> str:
        i = self.info
        return f"CFM mapping {i['dims'][0]}<->{i['dims'][1]} from {i['n_train']} images"
