"""Generated RGB + point-cloud scenes framed like MVTec 3D-AD, for CFM's benchmark and tests.

Why a second generator: :mod:`raydist.data.synth` draws the image and the cloud independently (a
texture over a fixed dome), so nothing ties appearance to geometry, which is what CFM's
crossmodal mapping learns. Here each image is rendered from its cloud: an object (dome, puck or
rounded box; one shape and texture per class) lies on a tilted background plane at ~0.6 m, as a
structured-light sensor sees it; the image is the object's texture times Lambertian shading from
the surface normals, so colour and geometry co-vary as on real parts. Nominal parts differ in
position, rotation, size and plane tilt. The cloud carries sensor noise (0.1 mm in depth),
dropped points (random, at steep flanks where the sensor loses the surface, and a few blob
holes), in metres, zeros = no point (the MVTec 3D-AD convention).

Defects (``defect_type``), each with an exact mask:
    ``dent`` / ``bump`` (3D only): the surface moves by 0.8-1.5 mm; the image is shaded from the
        nominal surface (diffuse light hides shallow dents), so only the cloud shows it;
    ``stain`` / ``scratch`` (colour only): paint on the texture, the geometry unchanged;
    ``cut`` / ``hole`` (both): material missing: depth drops by 2-4 mm (hole: points gone) and the
        cut's floor is dark in colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from raydist.data.dataset import rows_to_table, write_table
from raydist.data.decode import encode_npy, encode_png
from raydist.data.synth import split_plan

SHAPES = ("dome", "puck", "box")
TEXTURES = ("grain", "speckle", "weave")
DEFECTS_3D_ONLY = ("dent", "bump")
DEFECTS_COLOUR_ONLY = ("stain", "scratch")
DEFECTS_BOTH = ("cut", "hole")
DEFECTS = DEFECTS_3D_ONLY + DEFECTS_COLOUR_ONLY + DEFECTS_BOTH
MODALITY = {**dict.fromkeys(DEFECTS_3D_ONLY, "3d"), **dict.fromkeys(DEFECTS_COLOUR_ONLY, "colour"), **dict.fromkeys(DEFECTS_BOTH, "both")}

FIELD_M = 0.12  # metres across the image (MVTec 3D-AD parts: ~0.1 m)
DEPTH_M = 0.6  # camera to plane
NOISE_M = 1e-4  # depth noise of the sensor (0.1 mm)


@dataclass(frozen=True)
class Synth3DConfig:
    n_classes: int = 1
    n_train: int = 20
    n_val: int = 4
    n_test_good: int = 6
    n_test_bad: int = 18  # cycles through DEFECTS
    size: int = 224
    seed: int = 0


def _height(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Object height (m) over rotated, size-normalised coordinates (the part spans |u|,|v| < 1)."""
    if shape == "dome":
        r2 = u**2 + v**2
        return np.where(r2 < 1, 0.018 * np.sqrt(np.clip(1 - r2, 0, None)), 0.0)
    if shape == "puck":  # flat top, rounded 20% rim
        r = np.hypot(u, v)
        rim = np.clip((1 - r) / 0.2, 0, 1)
        return 0.012 * np.sin(rim * np.pi / 2)
    if shape == "box":  # rounded box: soft max-norm
        d = (np.abs(u) ** 6 + np.abs(v * 1.4) ** 6) ** (1 / 6)
        return 0.014 * np.clip((1 - d) / 0.15, 0, 1) ** 0.5
    raise ValueError(f"unknown shape {shape!r}")


def _texture(kind: str, u: np.ndarray, v: np.ndarray, rng: np.random.Generator, palette: np.ndarray) -> np.ndarray:
    """Albedo (H, W, 3) in [0, 1] attached to the part's own coordinates (it moves with the part)."""
    if kind == "grain":
        t = 0.5 + 0.5 * np.sin(28 * u + 3 * np.sin(5 * v))
    elif kind == "speckle":
        n = ndimage.gaussian_filter(rng.standard_normal(u.shape), 1.5)
        t = np.clip(0.5 + 2.5 * n, 0, 1)
    elif kind == "weave":
        t = 0.5 + 0.25 * np.sin(40 * u) + 0.25 * np.sin(40 * v)
    else:
        raise ValueError(f"unknown texture {kind!r}")
    return palette[0] * (1 - t[..., None]) + palette[1] * t[..., None]


def _normals(z: np.ndarray, pitch: float) -> np.ndarray:
    gy, gx = np.gradient(z, pitch)
    n = np.stack([-gx, -gy, np.ones_like(z)], axis=-1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _shade(height: np.ndarray, pitch: float) -> np.ndarray:
    light = np.array([0.35, -0.45, 0.82])
    light = light / np.linalg.norm(light)
    return 0.35 + 0.65 * np.clip(_normals(height, pitch) @ light, 0, 1)


def _region(kind: str, size: int, part: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A defect region on the part (inside its footprint, away from its rim)."""
    inner = ndimage.binary_erosion(part, iterations=max(2, size // 14))
    ys, xs = np.nonzero(inner)
    k = rng.integers(len(ys))
    cy, cx = ys[k], xs[k]
    yy, xx = np.mgrid[0:size, 0:size]
    s = size / 224
    if kind in ("dent", "bump", "stain", "hole"):
        r = rng.uniform(7, 13) * s
        a, b = r * rng.uniform(0.7, 1.3), r * rng.uniform(0.7, 1.3)
        region = ((yy - cy) / a) ** 2 + ((xx - cx) / b) ** 2 <= 1
    else:  # scratch, cut: a thin bent line
        ang, length = rng.uniform(0, np.pi), rng.uniform(30, 55) * s
        t = np.linspace(-0.5, 0.5, 64)[:, None]
        d = np.array([np.sin(ang), np.cos(ang)]) * length
        bend = np.array([np.cos(ang), -np.sin(ang)]) * rng.uniform(-6, 6) * s * (1 - 4 * t**2)
        pts = np.array([cy, cx]) + t * d + bend
        line = np.zeros((size, size), dtype=bool)
        py, px = np.clip(np.round(pts).astype(int), 0, size - 1).T
        line[py, px] = True
        width = (2.5 if kind == "scratch" else 4.0) * s
        region = ndimage.distance_transform_edt(~line) <= width / 2
    return region & part


def render(shape: str, texture: str, defect: str, size: int, rng: np.random.Generator, palette: np.ndarray):
    """One scene -> (uint8 RGB image, organized cloud (H, W, 3) float32 metres, mask or None).

    The defect draws from its own generator, so a seed gives the same part, pose, texture, noise
    and dropouts whatever the defect: a 3D-only defect leaves the image as the nominal scene's, a
    colour-only one the cloud.
    """
    drng = np.random.default_rng(rng.integers(1 << 62))
    pitch = FIELD_M / size
    yy, xx = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size - 0.5  # [-0.5, 0.5]
    cy, cx = rng.uniform(-0.04, 0.04, size=2)
    ang = rng.uniform(0, 2 * np.pi)
    scale = 0.31 * rng.uniform(0.95, 1.05)
    u = (np.cos(ang) * (xx - cx) + np.sin(ang) * (yy - cy)) / scale
    v = (-np.sin(ang) * (xx - cx) + np.cos(ang) * (yy - cy)) / scale
    h = _height(shape, u, v)
    part = h > 1e-4
    albedo = _texture(texture, u, v, rng, palette)
    background = np.array([0.55, 0.55, 0.58]) + 0.03 * ndimage.gaussian_filter(rng.standard_normal((size, size)), 2)[..., None]
    albedo = np.where(part[..., None], albedo, background)
    mask = None
    h_seen = h.copy()
    drop = np.zeros((size, size), dtype=bool)
    if defect != "good":
        region = _region(defect, size, part, drng)
        # defect edges are not pixel-sharp; a dent or bump is a smooth deformation
        sigma = 2.0 * size / 224 if defect in DEFECTS_3D_ONLY else 1.0
        soft = ndimage.gaussian_filter(region.astype(np.float64), sigma)
        if defect in DEFECTS_3D_ONLY:
            depth = drng.uniform(0.0008, 0.0015) * (1 if defect == "bump" else -1)
            h_seen = h + depth * soft
        elif defect in DEFECTS_COLOUR_ONLY:
            paint = drng.uniform(0.05, 0.3, size=3) if defect == "scratch" else drng.uniform(0.2, 0.9, size=3)
            albedo = albedo * (1 - soft[..., None]) + paint * soft[..., None]
        else:  # cut / hole: material missing, dark floor; a hole's floor is beyond the sensor's reach
            h_seen = h - drng.uniform(0.002, 0.004) * soft
            albedo = albedo * (1 - 0.8 * soft[..., None])
            if defect == "hole":
                drop |= ndimage.binary_erosion(region, iterations=2)
        mask = (soft >= 0.25) & part  # the ground truth: where the part changed by >= a quarter of the defect's strength
    # the image is shaded from the surface the light sees: the nominal one for 3D-only defects
    shade = _shade(h if defect in DEFECTS_3D_ONLY else h_seen, pitch)
    img = albedo * shade[..., None] + rng.normal(0, 0.012, size=albedo.shape)
    # the cloud: a tilted plane at DEPTH_M, the part nearer to the camera, sensor noise and dropouts
    tilt = rng.uniform(-0.08, 0.08, size=2)
    x, y = xx * FIELD_M, yy * FIELD_M
    z = DEPTH_M + tilt[0] * x + tilt[1] * y - h_seen + rng.normal(0, NOISE_M, size=h.shape)
    slope = np.hypot(*np.gradient(h_seen, pitch))
    drop |= rng.random((size, size)) < 0.003
    drop |= (slope > 1.2) & (rng.random((size, size)) < 0.7)  # the sensor loses steep flanks
    for _ in range(rng.integers(0, 3)):  # a few blob holes on the background (specular or occluded patches)
        by, bx = rng.integers(0, size, size=2)
        drop |= (np.hypot(np.arange(size)[:, None] - by, np.arange(size)[None] - bx) < rng.uniform(2, 6) * size / 224) & ~part
    xyz = np.stack([x, y, z], axis=-1).astype(np.float32)
    xyz[drop] = 0.0
    return np.clip(img * 255, 0, 255).astype(np.uint8), xyz, mask


def generate_rows(cfg: Synth3DConfig) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for ci in range(cfg.n_classes):
        shape, texture = SHAPES[ci % len(SHAPES)], TEXTURES[ci % len(TEXTURES)]
        cls = f"{shape}_{texture}" + (f"{ci // len(SHAPES)}" if ci >= len(SHAPES) else "")
        palette = np.random.default_rng(500 + ci).uniform([0.25, 0.2, 0.15], [0.9, 0.85, 0.8], size=(2, 3))
        for k, (split, defect) in enumerate(split_plan(cfg.n_train, cfg.n_val, cfg.n_test_good, cfg.n_test_bad, DEFECTS)):
            rng = np.random.default_rng([cfg.seed, ci, k, 3])
            img, xyz, mask = render(shape, texture, defect, cfg.size, rng, palette)
            rows.append({
                "image_id": f"{cls}/{split}/{defect}/{k:04d}", "class_name": cls, "split": split,
                "label": int(defect != "good"), "defect_type": defect, "image": encode_png(img),
                "mask": encode_png(mask) if mask is not None else None, "xyz": encode_npy(xyz),
                "height": cfg.size, "width": cfg.size,
            })  # fmt: skip
    return rows


def write_synth3d(dest: str, cfg: Synth3DConfig, storage_options: dict[str, Any] | None = None) -> int:
    rows = generate_rows(cfg)
    write_table(rows_to_table(rows), dest, storage_options=storage_options)
    return len(rows)
