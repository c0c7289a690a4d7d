"""Absolute-unified mode: one model for an archive of mixed, unlabelled classes.

fit: one PatchCore bank over all classes mixed (``route="none"``) or one per label-free cluster
(``route="clusters"``), a CADA regressor trained on leave-one-out scores of the nominal train
images, and THR statistics for each alignment (``none``, ``cada``, ``class``) from the mixed val
set. Class labels are read only for the class-aware CaDA-A comparison statistics.
evaluate: maps are aligned with the chosen rule; one threshold serves every class.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from raydist.align.cada import CADA, align_maps, image_targets
from raydist.align.routing import Router
from raydist.data.dataset import iter_batches
from raydist.errors import ConfigError, RowError
from raydist.model_store import ModelConfig, load_meta
from raydist.pipeline import (
    INPUT_COLUMNS,
    Decoded,
    Scored,
    check_duplicate,
    decode_row,
    extract,
    make_backbone,
)
from raydist.scoring.patchcore import PatchCore, image_scores
from raydist.segment.threshold import Threshold
from raydist.storage import join, read_bytes, write_bytes

ALIGNS = ("none", "cada", "class")


def score_routed(banks: list[PatchCore], grids: np.ndarray, groups: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Raw maps (N, *size), each image scored against its group's bank; one batched search per group."""
    maps = np.empty((len(grids), *size), dtype=np.float32)
    for g in np.unique(groups):
        sel = np.nonzero(groups == g)[0]
        maps[sel] = banks[int(g)].score(grids[sel], size)[0]
    return maps


def _decoded(data_uri: str, split: str, prep, storage_options=None) -> tuple[list[Decoded], list[str]]:
    out, skipped = [], []
    for batch in iter_batches(data_uri, None, [split], INPUT_COLUMNS, 32, storage_options):
        for r in batch.to_pylist():
            if int(r.get("label") or 0) != 0:
                continue
            try:
                out.append(decode_row(r, prep))
            except RowError as e:
                skipped.append(str(e))
    return out, skipped


def fit_unified(
    data_uri: str, out_uri: str, cfg: ModelConfig, route: str = "none", k: int | None = None,
    cada_params: dict | None = None, batch_size: int = 16, storage_options=None, log=print,
) -> dict[str, Any]:  # fmt: skip
    if route not in ("none", "clusters"):
        raise ConfigError(f"route must be none or clusters, got {route!r}")
    backbone = make_backbone(cfg)
    cfg.weights_id = backbone.weights_id
    prep = backbone.preprocess(cfg.resize, cfg.crop, cfg.aspect)
    train, skipped = _decoded(data_uri, "train", prep, storage_options)
    val, skipped_val = _decoded(data_uri, "val", prep, storage_options)
    if not train or not val:
        raise ConfigError("unified fit needs nominal train and val images")
    grids = extract(backbone, prep, [d.image for d in train], batch_size)
    vgrids = extract(backbone, prep, [d.image for d in val], batch_size)
    router = Router(k, seed=cfg.seed).fit(grids) if route == "clusters" else None
    groups = router.assign(grids) if router else np.zeros(len(train), dtype=int)
    n_groups = int(groups.max()) + 1
    tensors: dict[str, np.ndarray] = {}
    loo = np.zeros((len(train), *prep.size), dtype=np.float32)
    banks = []
    for g in range(n_groups):
        sel = np.nonzero(groups == g)[0]
        pc = PatchCore(cfg.coreset_ratio, cfg.coreset_proj_dim, cfg.sigma, cfg.image_score, seed=cfg.seed).fit(grids[sel])
        loo[sel] = pc.leave_one_out_maps(grids[sel], prep.size)
        tensors[f"bank.{g}"] = pc.bank
        banks.append(pc)
        log(f"[fit --unified] group {g}: {len(sel)} images, bank {pc.bank.shape[0]}x{pc.bank.shape[1]}")
    cada = CADA(**(cada_params or {}), seed=cfg.seed).fit(grids, loo)
    tensors.update({f"cada.{kk}": v for kk, v in cada.state().items()})
    if router is not None:
        tensors["router.centers"] = router.centers.astype(np.float64)
    # CaDA-A: per-class (u_c, gamma_c) from training (labels used here only, for the comparison)
    tgt = image_targets(loo)
    class_stats = {c: tgt[[i for i, d in enumerate(train) if d.class_name == c]].mean(axis=0).tolist() for c in sorted({d.class_name for d in train})}
    spread = tgt[:, 1] - tgt[:, 0]
    floor = float(0.05 * np.median(spread))
    vgroups = router.assign(vgrids) if router else np.zeros(len(val), dtype=int)
    vraw = score_routed(banks, vgrids, vgroups, prep.size)
    variants = {
        "none": vraw,
        "cada": cada.align(vraw, vgrids),
        "class": align_maps(vraw, np.array([class_stats.get(d.class_name, [0.0, 1.0]) for d in val]), floor),
    }
    thr = {a: {"mu": t.mu, "sigma": t.sigma} for a, m in variants.items() for t in [Threshold(cfg.thr_k).fit(m)]}
    meta = {
        "format": "raydist-model/1",
        "config": {**cfg.__dict__},
        "unified": {"route": route, "n_groups": n_groups, "cada": cada.get_params(), "class_stats": class_stats, "floor": floor,
                    "thr": thr, "silhouettes": router.silhouettes if router else {}},
        "classes": {},
        "skipped_rows": skipped + skipped_val,
    }  # fmt: skip
    write_bytes(join(out_uri, "unified.safetensors"), st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()}), storage_options)
    write_bytes(join(out_uri, "model.json"), json.dumps(meta, indent=2).encode(), storage_options)
    return {"model": out_uri, "groups": n_groups, "route": route, "train_images": len(train), "val_images": len(val), "weights_id": cfg.weights_id}


class UnifiedScorer:
    """Same interface as :class:`raydist.pipeline.Scorer`, for unified models. ``align`` picks the rule."""

    def __init__(self, model_uri: str, align: str = "cada", device: str | None = None, storage_options=None,
                 max_pixels: int | None = None, duplicates: dict[str, int] | None = None, **_: Any):  # fmt: skip
        if align not in ALIGNS:
            raise ConfigError(f"align must be one of {ALIGNS}, got {align!r}")
        self.meta = load_meta(model_uri, storage_options)
        if "unified" not in self.meta:
            raise ConfigError("--align needs a model fitted with `raydist fit --unified`")
        self.cfg = ModelConfig.from_dict(self.meta["config"])
        self.u = self.meta["unified"]
        self.align = align
        self.max_pixels = max_pixels
        self.duplicates = dict(duplicates or {})
        self.backbone = make_backbone(self.cfg, device)
        self.prep = self.backbone.preprocess(self.cfg.resize, self.cfg.crop, self.cfg.aspect)
        t = st_load(read_bytes(join(model_uri, "unified.safetensors"), storage_options))
        self.banks = []
        for g in range(self.u["n_groups"]):
            pc = PatchCore(self.cfg.coreset_ratio, self.cfg.coreset_proj_dim, self.cfg.sigma, self.cfg.image_score, seed=self.cfg.seed)
            pc.bank = t[f"bank.{g}"]
            self.banks.append(pc)
        self.router = None
        if "router.centers" in t:
            self.router = Router()
            self.router.centers = t["router.centers"]
        self.cada = CADA(**self.u["cada"]).load({k[5:]: v for k, v in t.items() if k.startswith("cada.")})
        self.thr = {a: Threshold.from_stats(s["mu"], s["sigma"], self.cfg.thr_k) for a, s in self.u["thr"].items()}

    def _variants(self, raw: np.ndarray, grids: np.ndarray, classes: list[str]) -> dict[str, np.ndarray]:
        cs = self.u["class_stats"]
        return {
            "none": raw,
            "cada": self.cada.align(raw, grids),
            "class": align_maps(raw, np.array([cs.get(c, [0.0, 1.0]) for c in classes]), self.u["floor"]),
        }

    def score_rows(self, rows) -> list[Scored]:
        out = [Scored(r.get("image_id") or "<missing image_id>", r.get("class_name") or "", int(r.get("label") or 0), r.get("defect_type") or "") for r in rows]
        ok: list[tuple[int, Decoded]] = []
        for i, r in enumerate(rows):
            try:
                check_duplicate(out[i].image_id, self.duplicates)
                ok.append((i, decode_row(r, self.prep, self.max_pixels) if self.max_pixels else decode_row(r, self.prep)))
            except RowError as e:
                out[i].error = str(e)
        if not ok:
            return out
        grids = extract(self.backbone, self.prep, [d.image for _, d in ok])
        groups = self.router.assign(grids) if self.router is not None else np.zeros(len(ok), dtype=int)
        raw = score_routed(self.banks, grids, groups, self.prep.size)
        variants = self._variants(raw, grids, [d.class_name for _, d in ok])
        for j, (i, d) in enumerate(ok):
            o = out[i]
            m = variants[self.align][j]
            o.score_map, o.features, o.gt = m, grids[j].astype(np.float16), d.gt
            o.image_score = float(image_scores(m[None], "top1")[0])  # the paper's image score on aligned maps
            o.thr_mask = self.thr[self.align].predict(m)
            o.variant_scores = {a: float(image_scores(v[j][None], "top1")[0]) for a, v in variants.items()}
            o.group = int(groups[j])
        return out
