"""A generated inspection dataset that needs no download.

Each class is a distinct texture family, so the anomaly scores of *normal* images differ from
class to class (CADA needs that). Test images carry defects of several kinds with exact masks;
with ``with_xyz`` every image also gets a registered organized point cloud (an object on a
background plane) and geometric defects, some visible only in 3D and some only in colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from raydist.data.dataset import rows_to_table, write_table
from raydist.data.decode import encode_npy, encode_png

TEXTURES = ("stripes", "checker", "blobs", "dots", "weave")
DEFECTS_2D = ("scratch", "spot", "crack", "missing", "colour")
DEFECTS_3D = ("bump", "dent")


@dataclass(frozen=True)
class SynthConfig:
    n_classes: int = 3
    n_train: int = 12
    n_val: int = 4
    n_test_good: int = 4
    n_test_bad: int = 6
    size: int = 128
    with_xyz: bool = False
    seed: int = 0
    defect_strength: float = 1.0  # 0..1: blend of the defect into the image (and 3D depth scale); lower = subtler


def _texture(kind: str, size: int, rng: np.random.Generator, base: np.ndarray) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    shift = rng.uniform(0, 2 * np.pi)
    if kind == "stripes":
        t = 0.5 + 0.5 * np.sin(xx * 2 * np.pi / 12 + shift)
    elif kind == "checker":
        p = 16
        off = rng.integers(0, p)
        t = (((xx + off) // p + (yy + off) // p) % 2).astype(np.float32)
    elif kind == "blobs":
        t = ndimage.gaussian_filter(rng.standard_normal((size, size)).astype(np.float32), 5)
        t = (t - t.min()) / (np.ptp(t) + 1e-6)
    elif kind == "dots":
        p = 14
        ox, oy = rng.integers(0, p, size=2)
        d = np.hypot((xx + ox) % p - p / 2, (yy + oy) % p - p / 2)
        t = (d < 3.5).astype(np.float32)
    elif kind == "weave":
        t = 0.5 + 0.25 * np.sin(xx * 2 * np.pi / 10 + shift) + 0.25 * np.sin(yy * 2 * np.pi / 10 - shift)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    lo, hi = base[0], base[1]
    img = lo[None, None, :] * (1 - t[..., None]) + hi[None, None, :] * t[..., None]
    img += rng.normal(0, 4, size=img.shape)
    return img


def _disc(size: int, cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def _polyline(size: int, pts: np.ndarray, width: float) -> np.ndarray:
    m = np.zeros((size, size), dtype=bool)
    for (y0, x0), (y1, x1) in zip(pts[:-1], pts[1:]):
        n = int(max(abs(y1 - y0), abs(x1 - x0))) + 1
        ys = np.clip(np.round(np.linspace(y0, y1, n)).astype(int), 0, size - 1)
        xs = np.clip(np.round(np.linspace(x0, x1, n)).astype(int), 0, size - 1)
        m[ys, xs] = True
    return ndimage.binary_dilation(m, iterations=max(1, int(width // 2)))


def _defect_region(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    m = size // 6
    cy, cx = rng.uniform(m, size - m, size=2)
    s = size / 128
    if kind in ("spot", "colour", "bump", "dent"):
        return _disc(size, cy, cx, rng.uniform(6, 12) * s)
    if kind == "missing":
        h, w = rng.uniform(10, 20, size=2) * s
        region = np.zeros((size, size), dtype=bool)
        region[int(cy - h / 2) : int(cy + h / 2), int(cx - w / 2) : int(cx + w / 2)] = True
        return region
    if kind == "scratch":
        ang, length = rng.uniform(0, np.pi), rng.uniform(25, 45) * s
        d = np.array([np.sin(ang), np.cos(ang)]) * length / 2
        return _polyline(size, np.array([[cy, cx] - d, [cy, cx] + d]), 3 * s)
    if kind == "crack":
        steps = rng.normal(0, 1, size=(8, 2)) * 5 * s + np.array([2.5, 2.5]) * s
        pts = np.cumsum(np.vstack([[cy, cx], steps]), axis=0)
        return _polyline(size, pts, 2.5 * s)
    raise ValueError(f"unknown defect {kind!r}")


def _apply_colour_defect(img: np.ndarray, kind: str, region: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> None:
    before = img[region].copy()
    _paint(img, kind, region, rng)
    img[region] = (1 - strength) * before + strength * img[region]


def _paint(img: np.ndarray, kind: str, region: np.ndarray, rng: np.random.Generator) -> None:
    if kind in ("scratch", "crack"):
        img[region] = rng.uniform(0, 40, size=3)
    elif kind == "spot":
        img[region] = rng.uniform(150, 255, size=3) * np.array([1.0, 0.3, 0.2])
    elif kind == "missing":
        img[region] = 20.0
    elif kind == "colour":
        img[region] = img[region][:, ::-1] * 0.7 + np.array([0, 60, 0])


def _point_cloud(size: int, rng: np.random.Generator) -> np.ndarray:
    """Organized cloud: a dome-shaped part on a background plane, with a few missing points."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x = (xx / (size - 1) - 0.5) * 0.1
    y = (yy / (size - 1) - 0.5) * 0.1
    r = np.hypot(x, y) / 0.04
    z = np.where(r < 1, 0.01 * np.sqrt(np.clip(1 - r**2, 0, None)), 0.0) + 0.5
    z = z + rng.normal(0, 1e-5, size=z.shape)
    xyz = np.stack([x, y, z], axis=-1).astype(np.float32)
    holes = rng.random((size, size)) < 0.01
    xyz[holes] = 0.0  # MVTec 3D-AD convention: zeros = no point
    return xyz


def _apply_3d_defect(xyz: np.ndarray, kind: str, region: np.ndarray, strength: float = 1.0) -> None:
    dist = ndimage.distance_transform_edt(region)
    bump = strength * 0.003 * dist / max(dist.max(), 1)
    valid = np.any(xyz != 0, axis=2)
    sign = 1.0 if kind == "bump" else -1.0
    xyz[..., 2] = np.where(valid, xyz[..., 2] + sign * bump, 0.0)


def _class_palette(i: int) -> np.ndarray:
    rng = np.random.default_rng(1000 + i)
    lo = rng.uniform(30, 110, size=3)
    hi = rng.uniform(140, 230, size=3)
    return np.stack([lo, hi])


def split_plan(n_train: int, n_val: int, n_test_good: int, n_test_bad: int, defects: tuple[str, ...]) -> list[tuple[str, str]]:
    """(split, defect type) of each image of a class, defective test images cycling through ``defects``."""
    return (
        [("train", "good")] * n_train
        + [("val", "good")] * n_val
        + [("test", "good")] * n_test_good
        + [("test", defects[j % len(defects)]) for j in range(n_test_bad)]
    )


def generate_rows(cfg: SynthConfig) -> list[dict[str, Any]]:
    if not 0 < cfg.defect_strength <= 1:
        raise ValueError(f"defect_strength must be in (0, 1], got {cfg.defect_strength}")
    rows: list[dict[str, Any]] = []
    defects = DEFECTS_2D + (DEFECTS_3D if cfg.with_xyz else ())
    for ci in range(cfg.n_classes):
        kind = TEXTURES[ci % len(TEXTURES)]
        cls = kind if ci < len(TEXTURES) else f"{kind}{ci // len(TEXTURES)}"
        palette = _class_palette(ci)
        for k, (split, defect) in enumerate(split_plan(cfg.n_train, cfg.n_val, cfg.n_test_good, cfg.n_test_bad, defects)):
            rng = np.random.default_rng([cfg.seed, ci, k])
            img = _texture(kind, cfg.size, rng, palette)
            xyz = _point_cloud(cfg.size, rng) if cfg.with_xyz else None
            mask = None
            if defect != "good":
                region = _defect_region(defect, cfg.size, rng)
                if defect in DEFECTS_3D:
                    _apply_3d_defect(xyz, defect, region, cfg.defect_strength)
                else:
                    _apply_colour_defect(img, defect, region, rng, cfg.defect_strength)
                mask = encode_png(region)
            rows.append(
                {
                    "image_id": f"{cls}/{split}/{defect}/{k:04d}",
                    "class_name": cls,
                    "split": split,
                    "label": int(defect != "good"),
                    "defect_type": defect,
                    "image": encode_png(np.clip(img, 0, 255).astype(np.uint8)),
                    "mask": mask,
                    "xyz": encode_npy(xyz) if xyz is not None else None,
                    "height": cfg.size,
                    "width": cfg.size,
                }
            )
    return rows


def write_synth(dest: str, cfg: SynthConfig, storage_options: dict[str, Any] | None = None) -> int:
    rows = generate_rows(cfg)
    write_table(rows_to_table(rows), dest, storage_options=storage_options)
    return len(rows)
