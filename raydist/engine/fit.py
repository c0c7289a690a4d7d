"""Fitting: one fit unit per class (or one for the whole archive), each saved the moment it is done.

A unit is fitted from its nominal train rows, then calibrated (:mod:`raydist.calibration`) from
the maps its detector gives the nominal val rows, under each alignment it offers.

A unit's ``fit_key`` hashes the model format and config and the fingerprints of the unit's train/val files,
so a rerun after a crash, or after new classes arrived, fits only the units that are missing or
whose config or data changed. ``finish_fit`` writes ``model.json`` (the complete set) last.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from raydist.calibration import Calibration
from raydist.calibration import calibrate as calibrate_scored
from raydist.config import ModelConfig
from raydist.contracts import Decoded
from raydist.data.dataset import iter_batches, list_partitions
from raydist.engine.rows import cloud_step, decode_row, input_columns
from raydist.engine.units import file_fingerprint, partitions_fingerprint
from raydist.errors import ConfigError, RowError
from raydist.features.encoder import Encoder
from raydist.methods import Detector, detector_class
from raydist.model_store import ALL, FORMAT, load_unit_record, save_unit, write_model
from raydist.storage import filesystem

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass(frozen=True)
class FitUnit:
    name: str  # a class, or ALL
    classes: tuple[str, ...]  # the classes whose rows it reads
    key: str  # config + data fingerprint: a saved unit with this key is current


def dataset_classes(data_uri: str, storage_options=None) -> list[str]:
    return sorted({c for c, _ in list_partitions(data_uri, storage_options)})


def _files_fingerprint(uri: str, storage_options=None) -> str:
    fs, root = filesystem(uri, storage_options)
    files = fs.find(root, detail=True) if fs.isdir(root) else {root: fs.info(root)}
    return ";".join(f"{p}={file_fingerprint(i)}" for p, i in sorted(files.items()))


def plan_fit(data_uri: str, cfg: ModelConfig, classes=None, storage_options=None) -> list[FitUnit]:
    """The fit units of this config: one per class, or one over every (selected) class."""
    classes = tuple(sorted(classes)) if classes else tuple(dataset_classes(data_uri, storage_options))
    if not classes:
        raise ConfigError(f"no class found in {data_uri}")
    groups = [(ALL, classes)] if detector_class(cfg.method).scope == "archive" else [(c, (c,)) for c in classes]
    out = []
    for name, cls in groups:
        h = hashlib.sha1(json.dumps([FORMAT, cfg.to_dict()], sort_keys=True).encode())
        h.update(partitions_fingerprint(data_uri, cls, ["train", "val"], storage_options).encode())
        for uri in detector_class(cfg.method).fit_inputs(cfg):  # other inputs a detector reads (BYO maps)
            h.update(_files_fingerprint(uri, storage_options).encode())
        out.append(FitUnit(name, cls, h.hexdigest()[:16]))
    return out


def _nominal(data_uri: str, unit: FitUnit, split: str, encoder: Encoder, cfg: ModelConfig, skipped: list[str], storage_options=None) -> list[Decoded]:
    """The unit's nominal rows of one split, decoded; a bad row is recorded in ``skipped``, never fatal."""
    cls = detector_class(cfg.method)
    needs_xyz, cloud = cls.needs_xyz, cloud_step(cls, cfg, encoder.prep)
    out = []
    for batch in iter_batches(data_uri, list(unit.classes), [split], input_columns(needs_xyz), 32, storage_options):
        for r in batch.to_pylist():
            if int(r.get("label") or 0) != 0:
                continue  # detectors and THR learn from nominal images only
            try:
                out.append(decode_row(r, encoder.prep, cloud=cloud))
            except RowError as e:
                skipped.append(str(e))
    return out


CALIBRATION_BATCH = 32  # val rows scored at once while calibrating (bounds the maps and features held)


def calibrate(detector: Detector, encoder: Encoder, val: list[Decoded], cfg: ModelConfig, skipped: list[str]) -> dict[str, Calibration] | None:
    """The unit's calibration under each alignment its detector offers, from the maps and image
    scores it gives the nominal val rows (a row it cannot score is recorded in ``skipped``).
    None when no val row could be scored; a :class:`ConfigError` when the detector needs one."""

    def scored(det: Detector, record_errors: bool) -> Iterator[tuple[np.ndarray, float]]:
        for i in range(0, len(val), CALIBRATION_BATCH):
            sb = det.score(encoder, val[i : i + CALIBRATION_BATCH])
            for j, error in enumerate(sb.errors or [None] * len(sb.maps)):
                if error is None:
                    yield sb.maps[j], float(sb.image_scores[j])
                elif record_errors:
                    skipped.append(error)

    out: dict[str, Calibration] = {}
    for align in detector.aligns:
        cal = calibrate_scored(scored(detector.aligned(align), align == detector.aligns[0]), cfg.image_k)
        if cal is None:
            if detector.needs_calibration:
                raise ConfigError("no nominal val image for the THR statistics and the image threshold (ingest with --val-fraction > 0)")
            return None
        out[align] = cal
    return out


def fit_unit(data_uri: str, out_uri: str, cfg: ModelConfig, unit: FitUnit, encoder: Encoder, storage_options=None) -> dict[str, Any]:
    """Fit one unit's detector from its nominal train rows, calibrate it on its nominal val rows
    and save both; returns the saved record (with its ``seconds``). Raises :class:`ConfigError`
    when the unit cannot be fitted."""
    t0 = time.perf_counter()
    skipped: list[str] = []
    cls = detector_class(cfg.method)
    train = _nominal(data_uri, unit, "train", encoder, cfg, skipped, storage_options) if "train" in cls.fit_splits else []
    detector = cls(cfg).fit(encoder, train)  # raises ConfigError when it lacks the rows it needs
    calibration = calibrate(detector, encoder, _nominal(data_uri, unit, "val", encoder, cfg, skipped, storage_options), cfg, skipped)
    record = save_unit(out_uri, unit.name, detector, calibration, unit.key, skipped, storage_options)
    default = calibration[cls.aligns[0]].describe() if calibration else "no nominal val image: no THR, no image gate"
    record["describe"] = f"{detector.describe()}; {default}"
    record["seconds"] = time.perf_counter() - t0  # decode, features, fit, calibration, save
    return record


RUN_ONLY = ("describe", "seconds")  # record keys of this run only, never written to model.json


def with_weights_id(cfg: ModelConfig, device: str | None = None) -> ModelConfig:
    """The config with the id of the weights its backbone really loads (checked again at scoring)."""
    return replace(cfg, weights_id=Encoder(cfg, device=device).weights_id)


def pending(out_uri: str, units: list[FitUnit], storage_options=None) -> tuple[list[FitUnit], dict[str, dict]]:
    """Units still to fit, and the saved records of the current ones."""
    done = {}
    for u in units:
        rec = load_unit_record(out_uri, u.name, storage_options)
        if rec is not None and rec.get("fit_key") == u.key:
            done[u.name] = rec
    return [u for u in units if u.name not in done], done


def finish_fit(out_uri: str, cfg: ModelConfig, records: dict[str, dict], errors: dict[str, str], reused: int, storage_options=None) -> dict[str, Any]:
    if not records:
        raise ConfigError(f"nothing could be fitted: {errors}")
    units = {name: {k: v for k, v in r.items() if k not in RUN_ONLY} for name, r in records.items()}
    write_model(out_uri, cfg, units, errors, storage_options)
    fit_s = {name: round(r["seconds"], 3) for name, r in sorted(records.items()) if "seconds" in r}
    return {"model": out_uri, "units": sorted(records), "errors": errors, "reused": reused, "weights_id": cfg.weights_id, "fit_s": fit_s}


def fit(
    data_uri: str, out_uri: str, cfg: ModelConfig, classes=None, batch_size: int = 8, storage_options=None, log: Log = _quiet
) -> dict[str, Any]:
    """The local executor: fit the missing units one after the other, then write ``model.json``."""
    encoder = Encoder(cfg, batch_size=batch_size)  # built once: it also says which weights it loaded
    cfg = replace(cfg, weights_id=encoder.weights_id)
    units = plan_fit(data_uri, cfg, classes, storage_options)
    todo, records = pending(out_uri, units, storage_options)
    log(f"[fit] {len(units)} units, {len(records)} already fitted with this config and data, {len(todo)} to fit")
    errors: dict[str, str] = {}
    if todo:
        for unit in todo:
            try:
                records[unit.name] = fit_unit(data_uri, out_uri, cfg, unit, encoder, storage_options)
            except ConfigError as e:
                errors[unit.name] = str(e)
                log(f"[fit] {unit.name}: skipped: {e}")
                continue
            log(f"[fit] {unit.name}: {records[unit.name]['describe']} ({records[unit.name]['seconds']:.1f}s)")
    return finish_fit(out_uri, cfg, records, errors, len(units) - len(todo), storage_options)

