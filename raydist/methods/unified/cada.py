"""CADA: predict, from an image's frozen features, the mean and max score a *normal* image of its
(unknown) class would have, and align its map with them so one threshold serves all classes.

    aligned = (map - u_hat) / (gamma_hat - u_hat)
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raydist.errors import ConfigError


class Regressor(nn.Module):
    """One convolution (output channels = input) + two linear layers (hidden 256), dropout before
    each linear layer (the paper's default structure). The convolution is 1 x 1: on CPUs a 3 x 3
    D->D convolution over 28 x 28 grids costs 9x more per step for no stated gain."""

    def __init__(self, dim: int, hidden: int = 256, dropout: float = 0.25):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 1)
        self.drop1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(dim, hidden)
        self.drop2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden, 2)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:  # (B, D, h, w) -> (B, 2)
        x = F.relu(self.conv(grid)).mean(dim=(2, 3))
        return self.fc2(self.drop2(F.relu(self.fc1(self.drop1(x)))))


def image_targets(maps: np.ndarray, variant: str = "meanmax") -> np.ndarray:
    """(N, H, W) nominal maps -> (N, 2) targets: (mean, max) or, for the (u, sigma) variant, (mean, std)."""
    flat = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    second = flat.max(axis=1) if variant == "meanmax" else flat.std(axis=1)
    return np.stack([flat.mean(axis=1), second], axis=1)


def align_maps(maps: np.ndarray, stats: np.ndarray, floor: float, variant: str = "meanmax") -> np.ndarray:
    """(map - u) / (gamma - u) (or (map - u) / sigma). The denominator is floored at ``floor``
    (a fraction of the typical training spread) so a bad prediction cannot divide by ~0."""
    u = stats[:, 0][:, None, None]
    spread = stats[:, 1] - stats[:, 0] if variant == "meanmax" else stats[:, 1]
    spread = np.maximum(spread, floor)[:, None, None]
    return ((np.asarray(maps, dtype=np.float64) - u) / spread).astype(np.float32)


class CADA:
    """The regressor and its training (defaults from the CADA paper unless noted).

    hidden 256, dropout 0.25, smooth-L1 threshold ``alpha`` 0.1, SGD lr 5e-2, momentum 0.9,
    weight decay 1e-4, batch 16. ``iterations`` 2000 (paper: 5000+ on a GPU; enough here for the
    targets to converge on a few hundred images). Targets are divided by their mean ``u`` so that
    ``alpha`` means the same for every score scale (the paper tunes alpha per method instead).
    """

    def __init__(self, hidden: int = 256, dropout: float = 0.25, alpha: float = 0.1, lr: float = 5e-2, momentum: float = 0.9,
                 weight_decay: float = 1e-4, iterations: int = 2000, batch_size: int = 16, variant: str = "meanmax", seed: int = 0):  # fmt: skip
        if not 0 <= dropout < 1 or alpha <= 0 or iterations < 1 or variant not in ("meanmax", "meanstd"):
            raise ConfigError("CADA needs 0 <= dropout < 1, alpha > 0, iterations >= 1, variant meanmax|meanstd")
        self.hidden, self.dropout, self.alpha, self.lr, self.momentum = hidden, dropout, alpha, lr, momentum
        self.weight_decay, self.iterations, self.batch_size, self.variant, self.seed = weight_decay, iterations, batch_size, variant, seed
        self.net: Regressor | None = None
        self.scale = 1.0
        self.floor = 1e-6

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in ("hidden", "dropout", "alpha", "lr", "momentum", "weight_decay", "iterations", "batch_size", "variant", "seed")}

    def fit(self, grids: np.ndarray, maps: np.ndarray) -> CADA:
        """``maps`` must be leave-out scores of the nominal images whose ``grids`` are given."""
        y = image_targets(maps, self.variant)
        self.scale = float(max(np.abs(y[:, 0]).mean(), 1e-12))
        spread = y[:, 1] - y[:, 0] if self.variant == "meanmax" else y[:, 1]
        self.floor = float(0.05 * np.median(spread))  # 5% of a typical normal spread
        x = torch.as_tensor(np.asarray(grids, dtype=np.float32))
        t = torch.as_tensor(y / self.scale, dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = Regressor(x.shape[1], self.hidden, self.dropout)
            opt = torch.optim.SGD(self.net.parameters(), lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
            g = torch.Generator().manual_seed(self.seed)
            self.net.train()
            for _ in range(self.iterations):
                idx = torch.randint(len(x), (min(self.batch_size, len(x)),), generator=g)
                loss = F.smooth_l1_loss(self.net(x[idx]), t[idx], beta=self.alpha)
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.net.eval()
        return self

    @torch.inference_mode()
    def predict(self, grids: np.ndarray) -> np.ndarray:
        """(N, D, h, w) -> (N, 2) predicted (u, gamma) (or (u, sigma)) in score units."""
        if self.net is None:
            raise RuntimeError("CADA is not fitted")
        return self.net(torch.as_tensor(np.asarray(grids, dtype=np.float32))).numpy().astype(np.float64) * self.scale

    def align(self, maps: np.ndarray, grids: np.ndarray) -> np.ndarray:
        return align_maps(maps, self.predict(grids), self.floor, self.variant)

    def state(self) -> dict[str, np.ndarray]:
        out = {f"net.{k}": v.numpy() for k, v in self.net.state_dict().items()}
        out["meta"] = np.array([self.scale, self.floor, self.net.conv.in_channels], dtype=np.float64)
        return out

    def load(self, tensors: dict[str, np.ndarray]) -> CADA:
        scale, floor, dim = tensors["meta"]
        self.scale, self.floor = float(scale), float(floor)
        self.net = Regressor(int(dim), self.hidden, self.dropout)
        self.net.load_state_dict({k[4:]: torch.from_numpy(np.array(v)) for k, v in tensors.items() if k.startswith("net.")})
        self.net.eval()
        return self
