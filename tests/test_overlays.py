"""Figures of real results: the panels are the run's own arrays, and the grid is one PNG of them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from raydist.config import EvalConfig
from raydist.data.dataset import read_table
from raydist.engine.evaluate import evaluate
from raydist.overlays import grid_png, load_panels, render_gallery


def test_panels_are_the_runs_arrays_and_the_grid_holds_them(synth_uri, wrn_model_uri, tmp_path):
    out = str(tmp_path / "r")
    evaluate(synth_uri, wrn_model_uri, out, EvalConfig(segment=("thr", "arel"), gate=False))
    cfg = json.loads((Path(wrn_model_uri) / "model.json").read_text())["config"]
    ids = read_table(synth_uri, splits=["test"], columns=["image_id", "label"]).to_pylist()
    wanted = [r["image_id"] for r in ids if r["label"] == 1][:2] + [r["image_id"] for r in ids if r["label"] == 0][:1]
    panels = load_panels(synth_uri, out, cfg, wanted + ["no/such/image"])
    assert [p["image_id"] for p in panels] == sorted(wanted)  # an unknown id is skipped, not an error
    for p in panels:
        side = cfg["crop"]
        assert p["rgb"].shape == (side, side, 3) and p["score_map"].shape == (side, side) and p["gt"].shape == (side, side)
        assert set(p["masks"]) == {"thr", "arel"} and all(m.dtype == bool and m.shape == (side, side) for m in p["masks"].values())
        assert p["gt"].any() == (p["image_id"] in wanted[:2])
    png = Image.open(io.BytesIO(grid_png(panels, ("thr", "arel"))))
    assert png.width > png.height  # 5 columns by 3 rows of square panels
    assert np.asarray(png).std() > 0
    gallery = render_gallery(synth_uri, out, cfg, per_class=1)
    assert len(gallery) == 3 and all(v.startswith(b"\x89PNG") for v in gallery.values())  # one image per class
