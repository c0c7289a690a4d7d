"""Overlay figures (RGB | score heat map | ground truth | masks) for a few images, one per image
(MLflow's gallery) or one grid of several (the documentation's figure, scripts/figures.py).

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
    from raydist.engine.results import results_uri as results_dir

    res = read_table(results_dir(results_uri), columns=["image_id", "class_name", "label", "error"], storage_options=storage_options).to_pylist()
    chosen = pick_samples(res, per_class)
    panels = load_panels(data_uri, results_uri, model_cfg, [r["image_id"] for r in chosen], storage_options)
    return {p["image_id"].replace("/", "__") + ".png": overlay_png(p["image_id"], p["rgb"], p["score_map"], p["gt"], p["masks"]) for p in panels}


def load_panels(data_uri: str, results_uri: str, model_cfg: dict, image_ids: Sequence[str], storage_options=None) -> list[dict]:
    """What a figure of these test images shows, at the evaluation resolution: ``image_id``,
    ``class_name``, ``rgb`` (processed as the model saw it), ``score_map``, ``gt`` and ``masks``
    (``{binariser: bool array}`` for every mask the run wrote), sorted by id."""
    import pyarrow.compute as pc

    from raydist.data.dataset import open_dataset, read_table
    from raydist.data.decode import decode_image, decode_mask, decode_npy
    from raydist.engine.results import results_uri as results_dir
    from raydist.features.preprocess import Preprocess
    from raydist.segment.registry import BINARISERS

    ids = sorted(set(image_ids))
    if not ids:
        return []
    full = open_dataset(results_dir(results_uri), storage_options, partition_schema=_class_partition()).to_table(filter=pc.field("image_id").isin(ids)).to_pylist()
    classes = sorted({r["class_name"] for r in full})
    wanted = set(ids)
    src = {r["image_id"]: r for r in read_table(data_uri, classes=classes, splits=["test"], columns=["image_id", "image", "mask", "label"], storage_options=storage_options).to_pylist() if r["image_id"] in wanted}
    prep = Preprocess(resize=model_cfg.get("resize", 256), crop=model_cfg.get("crop", 224), aspect=model_cfg.get("aspect", 1.0))
    out = []
    for r in sorted(full, key=lambda r: r["image_id"]):
        s = src.get(r["image_id"])
        if s is None or r.get("score_map") is None:
            continue
        rgb = decode_image(s["image"], r["image_id"])
        gt = decode_mask(s["mask"], r["image_id"], rgb.shape[:2], label=s["label"])
        masks = {b: _png(r[f"mask_{b}"]) for b in BINARISERS if r.get(f"mask_{b}") is not None}
        out.append({"image_id": r["image_id"], "class_name": r["class_name"], "rgb": prep.image(rgb), "gt": prep.mask(gt),
                    "score_map": decode_npy(r["score_map"], r["image_id"]).astype(np.float32), "masks": masks})  # fmt: skip
    return out


def grid_png(rows: Sequence[dict], binarisers: Sequence[str], titles: Sequence[str] | None = None, dpi: int = 72) -> bytes:
    """One figure, one row per image of :func:`load_panels`: image | score map | each binariser's
    mask | ground truth; ``titles`` label the rows (default: the image ids)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = ["image", "score map", *[f"{b.upper()} mask" for b in binarisers], "ground truth"]
    widths = [r["rgb"].shape[1] / r["rgb"].shape[0] for r in rows]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.9 * len(cols) * max(widths), 1.9 * len(rows) + 0.3), dpi=dpi, squeeze=False)
    for i, r in enumerate(rows):
        arrays = [r["rgb"], r["score_map"], *[r["masks"].get(b) for b in binarisers], r["gt"]]
        for j, (ax, arr) in enumerate(zip(axes[i], arrays)):
            if arr is not None:
                ax.imshow(arr, cmap="inferno" if j == 1 else "gray", interpolation="nearest", vmin=None if j < 2 else 0, vmax=None if j < 2 else 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(cols[j], fontsize=9)
        axes[i][0].set_ylabel((titles or [r["image_id"] for r in rows])[i], fontsize=8)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _png(data: bytes | None) -> np.ndarray | None:
    if data is None:
        return None
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data))) > 0


def _class_partition():
    import pyarrow as pa

    return pa.schema([("class_name", pa.string())])
