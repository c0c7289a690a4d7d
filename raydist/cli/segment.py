"""`raydist segment`: binarise another detector's score maps (THR, TTT4AS, MEBin), bring your own maps."""

from __future__ import annotations

import argparse
import os

from raydist.cli import executors
from raydist.cli.args import (
    SEGMENT_FIELDS,
    add_config_args,
    add_eval_args,
    add_ray_args,
    add_tracking_args,
    model_config,
)
from raydist.cli.evaluate import run
from raydist.errors import ConfigError

__all__ = ["add_parser", "fit_maps_model", "run"]


def add_parser(sub, executor_default: str) -> None:
    from raydist.config import ModelConfig

    p = sub.add_parser("segment", help="binarise another detector's score maps (THR, TTT4AS, MEBin): bring your own maps")
    p.add_argument("--maps", required=True, help="Parquet dataset with image_id + score_map (.npy / PNG / TIFF), any resolution")
    p.add_argument("--model", default=None,
                   help="the raydist model that made the maps (e.g. --maps RESULTS/results of its evaluate): its calibration "
                        "(THR statistics, image threshold) and feature settings are used, so no nominal val maps are needed "
                        "and the masks and metrics are evaluate's")  # fmt: skip
    add_eval_args(p, with_model=False)
    add_config_args(p, ModelConfig, only=SEGMENT_FIELDS)
    add_ray_args(p, executor_default, fitting=True)
    add_tracking_args(p)


def fit_maps_model(a: argparse.Namespace) -> str:
    """`segment`: the maps "model" under OUT/model: per class, the calibration of its nominal val
    maps, or of ``--model``'s units (the model that made the maps)."""
    from raydist.storage import join

    if os.path.abspath(a.maps).startswith(os.path.abspath(a.out) + os.sep) or os.path.abspath(a.maps) == os.path.abspath(a.out):
        raise ConfigError("--maps lies inside --out, whose results are rewritten: write the results elsewhere")
    model = join(a.out, "model")
    executors.fit(a, model_config(a), model, batch_size=8)
    if a.model:
        from raydist.model_store import adopt_calibration

        adopt_calibration(model, a.model)
    return model
