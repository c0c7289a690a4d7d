"""Scoring: decoded rows -> score maps, features, THR masks and the image-level decision, with
whatever detector the model holds and the calibration stored beside it."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

from raydist.calibration import thr_mask
from raydist.config import EvalConfig, ModelConfig
from raydist.contracts import Decoded, Scored
from raydist.engine.rows import check_duplicate, cloud_step, decode_row, image_id_of, input_columns
from raydist.errors import ConfigError, RowError
from raydist.features.encoder import Encoder
from raydist.methods import Detector, detector_class
from raydist.model_store import ALL, load_detector, load_meta, unit_calibration
from raydist.segment.registry import BINARISERS
from raydist.timing import StageTimes

DEFAULT_CACHE_MB = 4096.0  # per scorer (a process or an actor); measured: the bottle bank (10% of 167 images, 13,093 x 152 float16) is 4 MB


def state_nbytes(det: Detector) -> int:
    """Bytes of a detector's fitted state (its banks, weights): what keeping it resident costs."""
    return int(sum(np.asarray(t).nbytes for t in det.state()[1].values()))


class Scorer:
    """One encoder and an LRU of fitted detectors, scoring batches of dataset rows.

    One per process (or per Ray actor; the local executor's worker threads share one): the
    backbone is built once; detectors load on first use and stay resident (PatchCore banks on the
    encoder's device) until the detectors held exceed ``cache_mb``, when the least recently used
    go, by bytes rather than count: one class's bank can be a hundred times another's.
    """

    def __init__(self, model_uri: str, cfg: EvalConfig | None = None, device: str | None = None, cache_mb: float = DEFAULT_CACHE_MB,
                 storage_options=None, duplicates: dict[str, int] | None = None, keep_images: bool = False):  # fmt: skip
        self.model_uri, self.storage_options = model_uri, storage_options
        self.eval = cfg or EvalConfig()
        self.meta = load_meta(model_uri, storage_options)
        self.cfg = ModelConfig.from_dict(self.meta["config"])
        self.method = detector_class(self.cfg.method)
        align = self.eval.align or self.method.aligns[0]
        if align not in self.method.aligns:
            raise ConfigError(f"--align {align}: a {self.cfg.method} model offers {self.method.aligns} (CADA alignment needs --method unified)")
        self.align = align
        if self.eval.bank_search != "exact" and not self.method.has_bank:
            raise ConfigError(f"--bank-search {self.eval.bank_search}: a {self.cfg.method} model has no memory bank to search")
        self.encoder = Encoder(self.cfg, device, expect_weights_id=self.cfg.weights_id, runtime=self.eval.backbone_runtime)
        self.method.warm_up(self.encoder.device)
        self.duplicates = dict(duplicates or {})
        # the processed image travels on with its map only when asked or a binariser reads it (TTPix)
        self.keep_images = keep_images or any("image" in BINARISERS[b].needs for b in self.eval.segment)
        self.cache_bytes = int(cache_mb * 2**20)
        self._detectors: OrderedDict[str, tuple[Detector, int]] = OrderedDict()
        self._lock = threading.Lock()

    def unit_of(self, row: dict[str, Any]) -> str:
        """The fit unit whose detector scores this row; a class the model never saw is a row error."""
        if self.method.scope == "archive":
            return ALL
        cls = row.get("class_name")
        if cls not in self.meta["units"]:
            raise RowError(image_id_of(row), f"the model has no detector for class {cls!r}")
        return cls

    def detector(self, unit: str) -> Detector:
        """The unit's fitted detector, loaded on first use; worker threads may ask at once (one loads it)."""
        with self._lock:
            if unit in self._detectors:
                self._detectors.move_to_end(unit)
                return self._detectors[unit][0]
            det = load_detector(self.model_uri, self.meta, unit, self.align, self.storage_options)
            det.use_bank_search(self.eval.bank_search, self.encoder.device)
            self._detectors[unit] = (det, state_nbytes(det))
            while len(self._detectors) > 1 and self.cached_bytes > self.cache_bytes:  # the one just asked for always stays
                self._detectors.popitem(last=False)
            return det

    @property
    def columns(self) -> list[str]:
        """The input columns this model's rows need (no point cloud for RGB-only methods)."""
        return input_columns(self.method.needs_xyz)

    @property
    def cached_bytes(self) -> int:
        return sum(n for _, n in self._detectors.values())

    @property
    def cached_units(self) -> list[str]:
        """Resident detectors, least recently used first."""
        return list(self._detectors)

    def score_rows(self, rows: Sequence[dict[str, Any]], times: StageTimes | None = None) -> list[Scored]:
        """Score a batch; a bad row becomes a :class:`Scored` with ``error`` set, never an exception.
        Stage seconds are added to ``times`` when given (see :mod:`raydist.timing`)."""
        times = times if times is not None else StageTimes()
        out = [Scored(image_id_of(r), r.get("class_name") or "", int(r.get("label") or 0), r.get("defect_type") or "") for r in rows]
        cloud = cloud_step(self.method, self.cfg, self.encoder.prep)
        groups: dict[str, list[tuple[int, Decoded]]] = {}
        for i, r in enumerate(rows):
            try:
                with times("decode"):
                    check_duplicate(out[i].image_id, self.duplicates)
                    unit = self.unit_of(r)
                    decoded = decode_row(r, self.encoder.prep, self.eval.max_pixels, cloud)
                groups.setdefault(unit, []).append((i, decoded))  # only once decoded: a group is never empty
            except RowError as e:
                out[i].error = str(e)
        for unit, items in groups.items():
            with times("load_detector"):
                det = self.detector(unit)
            t0, f0 = time.perf_counter(), self.encoder.seconds
            batch = det.score(self.encoder, [d for _, d in items])
            features = self.encoder.seconds - f0
            times.add("features", features)
            times.add("search_and_maps", time.perf_counter() - t0 - features)
            cal = unit_calibration(self.meta, unit, self.align)
            with times("thr"):
                for j, (i, d) in enumerate(items):
                    o = out[i]
                    if batch.errors is not None and batch.errors[j] is not None:
                        o.error = batch.errors[j]
                        continue
                    o.score_map, o.image_score, o.gt = batch.maps[j].astype(np.float32), float(batch.image_scores[j]), d.gt
                    o.features = batch.features[j].astype(np.float16)
                    o.thr_known = cal is not None
                    o.thr_mask = thr_mask(o.score_map, cal.mu, cal.sigma, self.cfg.thr_k) if cal else np.zeros(o.score_map.shape, bool)
                    o.is_anomalous = o.image_score > cal.image_threshold if cal else None
                    o.extras = batch.extras[j]
                    o.feature_blocks = batch.feature_blocks
                    if self.keep_images:
                        o.image = d.image
        return out
