"""3D feature extractors for organized clouds: FPFH (no weights needed) and a Point-MAE encoder.

Both return per-pixel features on the image grid, (D, H, W), zero where there is no point.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from raydist.errors import ConfigError, InvalidPointCloudError
from raydist.pointcloud.preprocess import valid_mask
from raydist.pointcloud.projection import to_image
from raydist.pointcloud.sampling import farthest_point_sampling, group, interpolate


class FPFH:
    """Fast Point Feature Histograms, 33 dims per point: open3d's normals and FPFH, computed by
    :func:`raydist.pointcloud.fpfh.normals_and_fpfh` on the caller's torch threads.

    Radii are multiples of the cloud's median nearest-neighbour spacing (normals: 3x with max_nn
    30, FPFH: 6x with max_nn 100), so the same settings work in metres or millimetres and at any
    resolution. They hold ~28 and ~100 neighbours: the neighbourhoods of the BTF baseline that CFM
    compares with (radii 0.1 / 0.25 m capped at max_nn 30 / 100, i.e. in effect the 30 / 100
    nearest points at MVTec 3D-AD's ~0.5 mm spacing at 224 px).

    ``stride``: the histograms are computed on every ``stride``-th pixel of the organised cloud
    and each spread over its stride x stride block (radii follow the sparser cloud's spacing).
    FPFH's cost is points x neighbours; the features are pooled to 8-px cells afterwards, so
    stride 2 (a quarter of the points) keeps ~16 histograms per cell (docs/methods/cfm.md, ablation).
    """

    dim = 33

    def __init__(self, normal_factor: float = 3.0, feature_factor: float = 6.0, max_nn: int = 100, stride: int = 1):
        if stride < 1:
            raise ConfigError(f"FPFH stride must be >= 1, got {stride}")
        self.normal_factor, self.feature_factor, self.max_nn, self.stride = normal_factor, feature_factor, max_nn, stride
        self.weights_id = "fpfh"

    def __call__(self, xyz: np.ndarray, image_id: str = "?") -> torch.Tensor:
        s = self.stride
        if s == 1:
            return self._image(xyz, image_id)
        H, W = xyz.shape[:2]
        img = self._image(xyz[::s, ::s], image_id).repeat_interleave(s, dim=1).repeat_interleave(s, dim=2)[:, :H, :W]
        return img * torch.from_numpy(valid_mask(xyz))[None]

    def _image(self, xyz: np.ndarray, image_id: str) -> torch.Tensor:
        import open3d as o3d

        from raydist.pointcloud.fpfh import normals_and_fpfh

        valid = valid_mask(xyz)
        if valid.sum() < 10:
            raise InvalidPointCloudError(image_id, f"only {int(valid.sum())} points left after background removal")
        pts = xyz[valid].astype(np.float64)
        spacing = float(np.median(np.asarray(o3d.geometry.PointCloud(o3d.utility.Vector3dVector(pts)).compute_nearest_neighbor_distance())))
        spacing = max(spacing, 1e-9)
        _, f = normals_and_fpfh(pts, self.normal_factor * spacing, self.feature_factor * spacing, 30, self.max_nn, threads=torch.get_num_threads())
        return to_image(valid, torch.from_numpy(f.astype(np.float32)))  # (P, 33) -> (33, H, W)


class MiniPointNet(nn.Module):
    """Point-MAE's group tokeniser; module names follow Point-MAE (``encoder.first_conv`` ...)."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True), nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Conv1d(512, out_dim, 1))

    def forward(self, groups: torch.Tensor) -> torch.Tensor:  # (G, K, 3) -> (G, C)
        x = self.first_conv(groups.transpose(1, 2))  # (G, 256, K)
        g = x.max(dim=2, keepdim=True).values
        # second_conv[0] on cat([g expanded over K, x]) = W_g g + W_x x + b: the group's global
        # feature goes through its half of the weights once per group, not once per point
        # (the same sum; measured 0.19 -> 0.10 s for this layer at 1024 groups of 32 on 2 cores)
        conv = self.second_conv[0]
        w = conv.weight[:, :, 0]
        half = g.shape[1]
        y = torch.matmul(w[:, half:], x) + (g[:, :, 0] @ w[:, :half].T + conv.bias)[:, :, None]
        for layer in self.second_conv[1:]:
            y = layer(y)
        return y.max(dim=2).values


class PointMAE(nn.Module):
    """Point-MAE-like encoder returning per-pixel features from block ``block``.

    Structure and names match Point-MAE's ``MAE_encoder`` (``encoder.*``, ``pos_embed.*``,
    ``blocks.blocks.<i>.*`` as timm ``Block``s, ``norm.*``): a published checkpoint loads after
    stripping the ``MAE_encoder.`` prefix (done by :meth:`load_checkpoint`). Without weights it is
    randomly initialised (tests). Clouds are centred and scaled to the unit sphere first, as
    Point-MAE was trained on normalised ShapeNet shapes.
    """

    def __init__(self, groups: int = 1024, group_size: int = 32, dim: int = 384, depth: int = 12, heads: int = 6,
                 block: int = -1, weights: str | None = None, seed: int = 0):  # fmt: skip
        super().__init__()
        from timm.models.vision_transformer import Block

        self.n_groups, self.group_size, self.dim = groups, group_size, dim
        self.block = block % depth
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = MiniPointNet(dim)
            self.pos_embed = nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))
            self.blocks = nn.Module()
            self.blocks.blocks = nn.ModuleList([Block(dim, heads, qkv_bias=False) for _ in range(depth)])
            self.norm = nn.LayerNorm(dim)
        self.weights_id = f"random:seed{seed}"
        if weights and weights != "none":
            self.load_checkpoint(weights)
        self.eval().requires_grad_(False)

    @property
    def out_dim(self) -> int:
        return self.dim

    def load_checkpoint(self, path: str) -> None:
        from raydist.features.backbones import load_state_dict_file

        sd = load_state_dict_file(path)
        sd = sd.get("base_model", sd) if isinstance(sd.get("base_model"), dict) else sd
        sd = {k.removeprefix("module.").removeprefix("MAE_encoder."): v for k, v in sd.items()}
        own = self.state_dict()
        picked = {k: v for k, v in sd.items() if k in own}
        missing = sorted(set(own) - set(picked))
        if missing:
            raise ConfigError(f"Point-MAE checkpoint {path} lacks {len(missing)} tensors, e.g. {missing[:3]}")
        self.load_state_dict(picked, strict=True)
        import hashlib
        from pathlib import Path

        self.weights_id = "file:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]

    @torch.inference_mode()
    def __call__(self, xyz: np.ndarray, image_id: str = "?") -> torch.Tensor:
        valid = valid_mask(xyz)
        if valid.sum() < 10:
            raise InvalidPointCloudError(image_id, f"only {int(valid.sum())} points left after background removal")
        pts = torch.from_numpy(xyz[valid].astype(np.float32))
        c = pts.mean(0)
        scale = (pts - c).norm(dim=1).max().clamp_min(1e-9)
        pts = (pts - c) / scale
        centers = pts[farthest_point_sampling(pts, self.n_groups)]
        tokens = self.encoder(group(pts, centers, self.group_size))
        pos = self.pos_embed(centers)
        x = tokens
        for i, blk in enumerate(self.blocks.blocks):
            x = blk((x + pos)[None])[0]
            if i == self.block:
                break
        feats = self.norm(x)
        # no 3x3 smoothing: features interpolated from the centres are smooth already (it cost 0.1 s of 384 channels)
        return to_image(valid, interpolate(pts, centers, feats), smooth=False)


def create_point_extractor(name: str, weights: str | None = None, block: int = -1, seed: int = 0, stride: int = 1, **kw):
    if name == "fpfh":
        return FPFH(stride=stride)
    if name == "pointmae":
        return PointMAE(block=block, weights=weights, seed=seed, **kw)
    raise ConfigError(f"unknown 3D extractor {name!r}; choose fpfh or pointmae")
