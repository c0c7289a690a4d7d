"""Farthest point sampling, k-nearest grouping and inverse-distance interpolation (pure torch)."""

from __future__ import annotations

import torch


def farthest_point_sampling(points: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """Indices of ``n`` points spread by FPS over (N, 3) points (deterministic for a seed)."""
    N = points.shape[0]
    n = min(n, N)
    idx = torch.empty(n, dtype=torch.long)
    dist = torch.full((N,), float("inf"))
    cur = int(torch.randint(N, (1,), generator=torch.Generator().manual_seed(seed)))
    for i in range(n):
        idx[i] = cur
        dist = torch.minimum(dist, ((points - points[cur]) ** 2).sum(1))
        cur = int(torch.argmax(dist))
    return idx


def group(points: torch.Tensor, centers: torch.Tensor, k: int) -> torch.Tensor:
    """(G, K, 3) neighbourhoods of each centre, centred on it (Point-MAE's grouping)."""
    d = torch.cdist(centers, points)
    knn = d.topk(min(k, points.shape[0]), largest=False).indices
    return points[knn] - centers[:, None, :]


def interpolate(query: torch.Tensor, centers: torch.Tensor, feats: torch.Tensor, k: int = 3, eps: float = 1e-8) -> torch.Tensor:
    """Features at (N, 3) ``query`` points by inverse-distance weighting of the k nearest centres."""
    d = torch.cdist(query, centers)
    dk, ik = d.topk(min(k, centers.shape[0]), largest=False)
    w = 1.0 / (dk + eps)
    w = w / w.sum(1, keepdim=True)
    return (feats[ik] * w[..., None]).sum(1)
