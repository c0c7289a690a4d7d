"""The absolute-unified model as a :class:`~raydist.methods.base.Detector`: one fit over every class.

fit: one PatchCore bank over all classes mixed (``route="none"``) or one per label-free cluster
(``route="clusters"``), a CADA regressor trained on leave-one-out scores of the nominal train
images. The engine calibrates each alignment (``none``, ``cada``, ``class``) on the mixed val set.
Class labels are read only for the class-aware CaDA-A comparison statistics.
score: maps are aligned with the chosen rule, so one threshold serves every class.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from raydist.contracts import Decoded, ScoreBatch
from raydist.errors import ConfigError
from raydist.features.encoder import Encoder
from raydist.methods.base import BaseDetector, require
from raydist.methods.patchcore.knn import warm_up_search
from raydist.methods.patchcore.patchcore import PatchCore, image_scores
from raydist.methods.unified.cada import CADA, align_maps, image_targets
from raydist.methods.unified.routing import Router
from raydist.metrics.image import i_ap, i_auroc
from raydist.metrics.report import nanmean


def score_routed(banks: list[PatchCore], grids: np.ndarray, groups: np.ndarray, size: tuple[int, int], device="cpu") -> np.ndarray:
    """Raw maps (N, *size), each image scored against its group's bank (resident on ``device``); one batched search per group."""
    maps = np.empty((len(grids), *size), dtype=np.float32)
    for g in np.unique(groups):
        sel = np.nonzero(groups == g)[0]
        maps[sel] = banks[int(g)].to(device).score(grids[sel], size)[0]
    return maps


class UnifiedDetector(BaseDetector):
    scope = "archive"
    needs_xyz = False
    aligns = ("cada", "none", "class")
    signed_maps = True
    has_bank = True
    report_fields = ("variant_scores",)

    @classmethod
    def report_blocks(cls, images: list[dict]) -> dict[str, Any]:
        """``alignment``: image-level metrics of every alignment side by side, pooled and class mean
        (each image is scored under all three at once: ``variant_scores``)."""
        ok = [im for im in images if im.get("variant_scores") and im.get("error") is None]
        if not ok:
            return {}
        lab = np.array([im["label"] for im in ok])
        cls_ = np.array([im["class_name"] for im in ok])
        out = {}
        for v in ok[0]["variant_scores"]:
            sc = np.array([im["variant_scores"][v] for im in ok])
            out[v] = {
                "i_auroc_pooled": i_auroc(lab, sc),
                "i_ap_pooled": i_ap(lab, sc),
                "i_auroc_mean": nanmean([i_auroc(lab[cls_ == c], sc[cls_ == c]) for c in sorted(set(cls_))]),
            }
        return {"alignment": out}

    def __init__(self, cfg, align: str = "cada"):
        if align not in self.aligns:
            raise ConfigError(f"align must be one of {self.aligns}, got {align!r}")
        self.cfg, self.align = cfg, align
        self.banks: list[PatchCore] = []
        self.router: Router | None = None
        self.cada = CADA(iterations=cfg.cada_iterations, dropout=cfg.cada_dropout, alpha=cfg.cada_alpha, variant=cfg.cada_variant, seed=cfg.seed)
        self.info: dict[str, Any] = {}

    @classmethod
    def warm_up(cls, device: torch.device) -> None:
        warm_up_search(device)

    def use_bank_search(self, how: str, device: torch.device) -> None:
        for bank in self.banks:
            bank.search, bank.indexed = how, True
            bank.to(device).search_bank()

    def _bank(self) -> PatchCore:
        c = self.cfg
        return PatchCore(c.coreset_ratio, c.coreset_proj_dim, c.sigma, c.image_score, seed=c.seed, coreset_chunk=c.coreset_chunk)

    def _groups(self, grids: np.ndarray) -> np.ndarray:
        return self.router.assign(grids) if self.router is not None else np.zeros(len(grids), dtype=int)

    def _variants(self, raw: np.ndarray, grids: np.ndarray, classes: Sequence[str]) -> dict[str, np.ndarray]:
        cs = self.info["class_stats"]
        return {
            "none": raw,
            "cada": self.cada.align(raw, grids),
            "class": align_maps(raw, np.array([cs.get(c, [0.0, 1.0]) for c in classes]), self.info["floor"]),
        }

    def aligned(self, align: str) -> UnifiedDetector:
        """The same fitted banks and regressor, scoring with ``align``."""
        if align not in self.aligns:
            raise ConfigError(f"align must be one of {self.aligns}, got {align!r}")
        other = copy.copy(self)
        other.align = align
        return other

    def fit(self, encoder: Encoder, train: Sequence[Decoded]) -> UnifiedDetector:
        require(train)
        grids = encoder.extract([d.image for d in train])
        self.router = Router(self.cfg.k, seed=self.cfg.seed).fit(grids) if self.cfg.route == "clusters" else None
        groups = self._groups(grids)
        loo = np.zeros((len(train), *encoder.size), dtype=np.float32)
        self.banks = []
        for g in range(int(groups.max()) + 1):
            sel = np.nonzero(groups == g)[0]
            pc = self._bank().fit(grids[sel])
            loo[sel] = pc.leave_one_out_maps(grids[sel], encoder.size)
            self.banks.append(pc)
        self.cada.fit(grids, loo)
        # CaDA-A: per-class (u_c, gamma_c) from training (labels used here only, for the comparison)
        tgt = image_targets(loo)
        classes = sorted({d.class_name for d in train})
        class_stats = {c: tgt[[i for i, d in enumerate(train) if d.class_name == c]].mean(axis=0).tolist() for c in classes}
        self.info = {"class_stats": class_stats, "floor": float(0.05 * np.median(tgt[:, 1] - tgt[:, 0])),
                     "n_groups": len(self.banks), "banks": [int(b.bank.shape[0]) for b in self.banks], "n_train": len(train),
                     "cada": self.cada.get_params(), "silhouettes": self.router.silhouettes if self.router else {}}  # fmt: skip
        return self

    def score(self, encoder: Encoder, batch: Sequence[Decoded]) -> ScoreBatch:
        grids = encoder.extract([d.image for d in batch])
        groups = self._groups(grids)
        variants = self._variants(score_routed(self.banks, grids, groups, encoder.size, encoder.device), grids, [d.class_name for d in batch])
        maps = variants[self.align]
        extras = [{"variant_scores": {a: float(image_scores(v[j][None], "top1")[0]) for a, v in variants.items()}, "group": int(groups[j])}
                  for j in range(len(batch))]  # fmt: skip
        return ScoreBatch(maps, image_scores(maps, "top1"), grids, extras)

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        tensors = {f"bank.{g}": np.ascontiguousarray(b.bank) for g, b in enumerate(self.banks)}
        tensors.update({f"cada.{k}": v for k, v in self.cada.state().items()})
        if self.router is not None:
            tensors["router.centers"] = self.router.centers.astype(np.float64)
        return self.info, tensors

    @classmethod
    def from_state(cls, cfg, info: dict[str, Any], tensors: dict[str, np.ndarray], align: str | None = None) -> UnifiedDetector:
        det = cls(cfg, align or cls.aligns[0])
        det.info = info
        for g in range(info["n_groups"]):
            pc = det._bank()
            pc.bank = tensors[f"bank.{g}"]
            det.banks.append(pc)
        if "router.centers" in tensors:
            det.router = Router()
            det.router.centers = tensors["router.centers"]
        det.cada = CADA(**info["cada"]).load({k[5:]: v for k, v in tensors.items() if k.startswith("cada.")})
        return det

    def describe(self) -> str:
        i = self.info
        return f"{i['n_groups']} bank(s) {i['banks']} + CADA from {i['n_train']} images (route {self.cfg.route})"
