"""Overlay figures (RGB | score heat map | ground truth | THR mask | TTT4AS mask) for a few images.

Pure matplotlib (Agg) on arrays; the tracking layer decides where the PNGs go.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np


def overlay_png(image_id: str, rgb: np.ndarray, score_map: np.ndarray, gt: np.ndarray, masks: dict[str, np.ndarray | None]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("RGB", rgb, None), ("score", score_map, "inferno"), ("ground truth", gt, "gray")]
    panels += [(f"{name.upper()} mask", m, "gray") for name, m in masks.items() if m is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0), dpi=80)
    for ax, (title, arr, cmap) in zip(np.atleast_1d(axes), panels):
        ax.imshow(arr, cmap=cmap, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(image_id, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def pick_samples(rows: Sequence[dict], per_class: int) -> list[dict]:
    """A bounded, deterministic sample per class: anomalous images first, then nominal, by image_id."""
    by_class: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (-int(r["label"] or 0), r["image_id"])):
        if r.get("error") is None:
            by_class.setdefault(r["class_name"], []).append(r)
    return [r for items in by_class.values() for r in items[:per_class]]


def render_gallery(data_uri: str, results_uri: str, model_cfg: dict, per_class: int = 4, storage_options=None) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` for up to ``per_class`` test images of every class."""
    from raydist.data.dataset import read_table
    from raydist.data.decode import decode_image, decode_mask, decode_npy
    from raydist.engine.results import results_uri as results_dir
    from raydist.features.preprocess import Preprocess

    res = read_table(results_dir(results_uri), columns=["image_id", "class_name", "label", "error"], storage_options=storage_options).to_pylist()
    chosen = pick_samples(res, per_class)
    if not chosen:
        return {}
    ids = {r["image_id"] for r in chosen}
    import pyarrow.compute as pc

    from raydist.data.dataset import open_dataset
    from raydist.segment.registry import BINARISERS

    full = open_dataset(results_dir(results_uri), storage_options, partition_schema=_class_partition()).to_table(filter=pc.field("image_id").isin(list(ids))).to_pylist()
    src = {r["image_id"]: r for r in read_table(data_uri, classes=sorted({r["class_name"] for r in chosen}), splits=["test"], columns=["image_id", "image", "mask", "label"], storage_options=storage_options).to_pylist() if r["image_id"] in ids}
    prep = Preprocess(resize=model_cfg.get("resize", 256), crop=model_cfg.get("crop", 224), aspect=model_cfg.get("aspect", 1.0))
    out = {}
    for r in sorted(full, key=lambda r: r["image_id"]):
        s = src.get(r["image_id"])
        if s is None:
            continue
        rgb = decode_image(s["image"], r["image_id"])
        gt = decode_mask(s["mask"], r["image_id"], rgb.shape[:2], label=s["label"])
        masks = {b: _png(r[f"mask_{b}"]) for b in BINARISERS if r.get(f"mask_{b}") is not None}
        name = r["image_id"].replace("/", "__") + ".png"
        out[name] = overlay_png(r["image_id"], prep.image(rgb), decode_npy(r["score_map"], r["image_id"]).astype(np.float32), prep.mask(gt), masks)
    return out


def _png(data: bytes | None) -> np.ndarray | None:
    if data is None:
        return None
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data))) > 0


def _class_partition():
    import pyarrow as pa

    return pa.schema([("class_name", pa.string())])
