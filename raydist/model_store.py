"""Save and load fitted models without pickle, whatever the method: JSON + safetensors per fit unit.

Layout under MODEL_URI::

    model.json                       {"format": "raydist-model/2", "config": {...}, "units": {name: {...}}, "errors": {...}}
    units/<id>.safetensors           the detector's tensors (a bank, mapping networks, CADA ...)
    units/<id>.json                  {"name", "fit_key", "info", "calibration", "skipped_rows"}: written last, marks the unit fitted

``calibration``: {align: :class:`~raydist.calibration.Calibration` as a dict} for each alignment
the detector offers, or null when the unit had no nominal val image (external maps only).

A fit unit is a class, or ``*`` (every class) for detectors whose scope is the archive. Each unit
is saved the moment it is fitted, so a crash loses at most the unit in progress and a rerun fits
only what is missing; ``model.json`` (written last) lists the complete set. Detectors are loaded
lazily, one unit at a time, so a thousand-class model never needs to fit in memory.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from raydist.calibration import Calibration
from raydist.config import ModelConfig
from raydist.errors import ConfigError
from raydist.methods import Detector, detector_class
from raydist.storage import exists, join, read_bytes, write_bytes

FORMAT = "raydist-model/3"  # 3: calibration (THR statistics, image threshold) beside the detector's state
ALL = "*"  # the fit unit of a detector fitted on every class at once


def unit_file(name: str) -> str:
    """Storage name of a unit (class names can hold any character)."""
    return "units/" + hashlib.sha1(name.encode()).hexdigest()[:16]


def save_unit(uri: str, name: str, detector: Detector, calibration: dict[str, Calibration] | None, fit_key: str, skipped: list[str],
              storage_options=None) -> dict[str, Any]:  # fmt: skip
    info, tensors = detector.state()
    base = join(uri, unit_file(name))
    write_bytes(base + ".safetensors", st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()}), storage_options)
    cal = {a: c.to_dict() for a, c in calibration.items()} if calibration else None
    record = {"name": name, "fit_key": fit_key, "info": info, "calibration": cal, "skipped_rows": skipped,
              "state": unit_file(name) + ".safetensors"}  # fmt: skip
    write_bytes(base + ".json", json.dumps(record).encode(), storage_options)  # last: the unit is complete
    return record


def load_unit_record(uri: str, name: str, storage_options=None) -> dict[str, Any] | None:
    """The saved record of a fitted unit, or None when it was never (completely) saved."""
    path = join(uri, unit_file(name) + ".json")
    if not exists(path, storage_options):
        return None
    return json.loads(read_bytes(path, storage_options))


def write_model(uri: str, cfg: ModelConfig, units: dict[str, dict[str, Any]], errors: dict[str, str], storage_options=None) -> dict:
    meta = {"format": FORMAT, "config": cfg.to_dict(), "units": dict(sorted(units.items())), "errors": errors}
    write_bytes(join(uri, "model.json"), json.dumps(meta, indent=2).encode(), storage_options)
    return meta


def load_meta(uri: str, storage_options=None) -> dict[str, Any]:
    path = join(uri, "model.json")
    if not exists(path, storage_options):
        raise ConfigError(f"no model at {uri} (model.json missing); run `raydist fit` first")
    meta = json.loads(read_bytes(path, storage_options))
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: unsupported model format {meta.get('format')!r} (refit with this version)")
    return meta


def load_detector(uri: str, meta: dict[str, Any], name: str, align: str | None = None, storage_options=None) -> Detector:
    record = meta["units"].get(name)
    if record is None:
        raise ConfigError(f"model has no fit unit {name!r}")
    path = join(uri, record["state"])
    try:
        tensors = st_load(read_bytes(path, storage_options))
    except Exception as e:  # never fall back to a loader that could execute code
        raise ConfigError(f"refusing to load {path}: not a valid safetensors file ({type(e).__name__})") from None
    cfg = ModelConfig.from_dict(meta["config"])
    return detector_class(cfg.method).from_state(cfg, record["info"], tensors, align)


def unit_calibration(meta: dict[str, Any], name: str, align: str) -> Calibration | None:
    """The unit's calibration under ``align`` (None: the unit had no nominal val image)."""
    cal = meta["units"][name].get("calibration")
    return Calibration.from_dict(cal[align]) if cal else None


def adopt_calibration(uri: str, source_uri: str, storage_options=None) -> dict[str, Any]:
    """Give each unit of the model at ``uri`` (a maps model, one unit per class) the calibration of
    the model that made the maps: its unit of the same class, or its archive-wide unit, under its
    default alignment. So ``raydist segment --maps RESULTS/results --model MODEL`` binarises last
    night's maps with evaluate's THR statistics and image threshold, no val row re-scored."""
    meta, source = load_meta(uri, storage_options), load_meta(source_uri, storage_options)
    align = detector_class(source["config"]["method"]).aligns[0]
    for name, unit in meta["units"].items():
        src = source["units"].get(name) or source["units"].get(ALL)
        if src is None:
            raise ConfigError(f"--model {source_uri} has no unit for class {name!r}: its calibration cannot be used")
        unit["calibration"] = {a: src["calibration"][align] for a in detector_class(meta["config"]["method"]).aligns} if src["calibration"] else None
    write_bytes(join(uri, "model.json"), json.dumps(meta, indent=2).encode(), storage_options)
    return meta


def score_offset(meta: dict[str, Any]) -> float:
    """Added to scores before the metrics' log-spaced histogram bins: 0 for distances; 10 for
    signed (aligned) maps, which are ~0 for normal pixels, ~1 at a normal image's max and can be
    negative (down to -10)."""
    return 10.0 if detector_class(meta["config"]["method"]).signed_maps else 0.0
