"""CFM: crossmodal feature mapping between 2D and 3D feature grids (pure torch).

Two MLPs learn, on nominal cells, to predict 3D features from 2D ones and back. At test time the
L2 distance between predicted and observed (L2-normalised) features gives Psi_2D and Psi_3D;
an anomaly must disagree in both directions, so the default aggregation is their product.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raydist.errors import ConfigError
from raydist.methods.patchcore.patchcore import image_scores, upsample_map

AGGREGATIONS = ("product", "sum", "max")
SCORE_CELLS = ("trained", "any")


def mapping_mlp(d_in: int, d_out: int) -> nn.Sequential:
    """Three linear layers with GELU between (the paper's 768-960-1152 shape, dims from the extractors)."""
    mid = (d_in + d_out) // 2
    return nn.Sequential(nn.Linear(d_in, mid), nn.GELU(), nn.Linear(mid, d_out), nn.GELU(), nn.Linear(d_out, d_out))


def _cells(grid: torch.Tensor) -> torch.Tensor:
    """(N, D, h, w) -> (N*h*w, D)."""
    return grid.permute(0, 2, 3, 1).reshape(-1, grid.shape[1])


class CrossmodalMapping:
    """Parameters (paper defaults unless said):
    epochs: 250 in the paper (one pass = every valid nominal cell once); lr 1e-3 (Adam);
    batch: cells per step (1024); min_valid: a cell trains only if >= 50% of its pixels have a
    3D point; aggregation: product (sum / max for the ablation); sigma: 4 px Gaussian.
    score_cells: where the discrepancies are defined at test time: ``"trained"`` (default) = the
    cells the MLPs learnt from (>= ``min_valid`` of their pixels have a point), so a cell on the
    part's rim, whose few points give a 3D feature no training cell looked like, is not an
    anomaly; ``"any"`` = every cell with a point (the previous behaviour; see docs/methods/cfm.md's
    ablation).
    """

    def __init__(self, epochs: int = 250, lr: float = 1e-3, batch: int = 1024, min_valid: float = 0.5,
                 aggregation: str = "product", sigma: float = 4.0, seed: int = 0, score_cells: str = "trained"):  # fmt: skip
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if epochs < 0 or lr <= 0 or batch < 1 or not 0 <= min_valid <= 1:
            raise ConfigError("CFM needs epochs >= 0, lr > 0, batch >= 1, 0 <= min_valid <= 1")
        self.epochs, self.lr, self.batch, self.min_valid = epochs, lr, batch, min_valid
        if score_cells not in SCORE_CELLS:
            raise ConfigError(f"score_cells must be one of {SCORE_CELLS}, got {score_cells!r}")
        self.aggregation, self.sigma, self.seed, self.score_cells = aggregation, sigma, seed, score_cells
        self.m2to3: nn.Module | None = None
        self.m3to2: nn.Module | None = None

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("epochs", "lr", "batch", "min_valid", "aggregation", "sigma", "seed", "score_cells")}

    def _trained_cells(self, valid: torch.Tensor) -> torch.Tensor:
        """(N*h*w,) the cells the mapping trains on: >= ``min_valid`` of their pixels hold a point."""
        return valid.reshape(-1) >= self.min_valid

    def build(self, d2: int, d3: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.m2to3, self.m3to2 = mapping_mlp(d2, d3), mapping_mlp(d3, d2)

    def fit(self, f2d: torch.Tensor, f3d: torch.Tensor, valid: torch.Tensor) -> CrossmodalMapping:
        """f2d (N, D2, h, w), f3d (N, D3, h, w), valid (N, h, w) fraction of pixels with a point."""
        x2, x3 = _cells(f2d.float()), _cells(f3d.float())
        keep = self._trained_cells(valid)
        x2, x3 = x2[keep], x3[keep]
        if len(x2) == 0:
            raise ConfigError("no nominal cell has enough 3D points to train the crossmodal mapping")
        self.build(x2.shape[1], x3.shape[1])
        params = list(self.m2to3.parameters()) + list(self.m3to2.parameters())
        opt = torch.optim.Adam(params, lr=self.lr)
        g = torch.Generator().manual_seed(self.seed)
        self.m2to3.train()
        self.m3to2.train()
        for _ in range(self.epochs):
            for idx in torch.randperm(len(x2), generator=g).split(self.batch):
                a, b = x2[idx], x3[idx]
                loss = (1 - F.cosine_similarity(self.m2to3(a), b, dim=1)).mean() + (1 - F.cosine_similarity(self.m3to2(b), a, dim=1)).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.m2to3.eval()
        self.m3to2.eval()
        return self

    @torch.inference_mode()
    def discrepancies(self, f2d: torch.Tensor, f3d: torch.Tensor, valid: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Psi_2D, Psi_3D on the grid (N, h, w); zero outside the cells scored (``score_cells``)."""
        n, _, h, w = f2d.shape
        x2, x3 = _cells(f2d.float()), _cells(f3d.float())
        p3 = F.normalize(self.m2to3(x2), dim=1)
        p2 = F.normalize(self.m3to2(x3), dim=1)
        psi3 = (p3 - F.normalize(x3, dim=1)).norm(dim=1)
        psi2 = (p2 - F.normalize(x2, dim=1)).norm(dim=1)
        has = (self._trained_cells(valid) if self.score_cells == "trained" else valid.reshape(-1) > 0).float()
        return (psi2 * has).reshape(n, h, w).numpy(), (psi3 * has).reshape(n, h, w).numpy()

    def score(self, f2d, f3d, valid, size: int | tuple[int, int], how: str = "max") -> tuple[np.ndarray, np.ndarray]:
        psi2, psi3 = self.discrepancies(f2d, f3d, valid)
        agg = {"product": psi2 * psi3, "sum": psi2 + psi3, "max": np.maximum(psi2, psi3)}[self.aggregation]
        maps = upsample_map(agg, size, self.sigma)
        return maps, image_scores(maps, how)

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {f"m2to3.{k}": v.numpy() for k, v in self.m2to3.state_dict().items()}
        out.update({f"m3to2.{k}": v.numpy() for k, v in self.m3to2.state_dict().items()})
        return out

    def load(self, tensors: dict[str, np.ndarray], d2: int, d3: int) -> CrossmodalMapping:
        self.build(d2, d3)
        self.m2to3.load_state_dict({k[6:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("m2to3.")})
        self.m3to2.load_state_dict({k[6:]: torch.from_numpy(v) for k, v in tensors.items() if k.startswith("m3to2.")})
        self.m2to3.eval()
        self.m3to2.eval()
        return self
