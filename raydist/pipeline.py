"""The in-process core path: fit banks, score images, binarise, write results and metrics.

The Ray pipeline (``raydist.distributed``) calls the same pieces (:class:`Scorer`,
:func:`segment_scored`, :func:`result_row`) from actors and tasks; nothing here imports Ray.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from raydist.data.dataset import iter_batches, list_partitions
from raydist.data.decode import (
    DEFAULT_MAX_PIXELS,
    decode_image,
    decode_mask,
    encode_npy,
    encode_png,
)
from raydist.errors import ConfigError, DuplicateImageIdError, InvalidPointCloudError, RowError
from raydist.features.backbones import Backbone
from raydist.features.preprocess import Preprocess
from raydist.metrics.report import BINARISERS, EvalRecord, build_report, to_jsonable
from raydist.model_store import ClassModel, ModelConfig, load_class, load_meta, save_model
from raydist.scoring.patchcore import PatchCore
from raydist.segment.mebin import MEBin
from raydist.segment.threshold import Threshold
from raydist.segment.ttt4as import TTT4AS
from raydist.storage import filesystem, join, write_bytes

INPUT_COLUMNS = ["image_id", "class_name", "split", "label", "defect_type", "image", "mask", "xyz", "height", "width"]

RESULT_SCHEMA = pa.schema(
    [
        ("image_id", pa.string()),
        ("class_name", pa.string()),
        ("label", pa.int8()),
        ("defect_type", pa.string()),
        ("image_score", pa.float64()),
        ("score_map", pa.binary()),  # .npy float16 (H, W) at the evaluation resolution
        ("mask_thr", pa.binary()),  # PNG 0/255
        ("mask_ttt4as", pa.binary()),  # PNG 0/255
        ("ttt4as_status", pa.string()),
        ("ttt4as_reason", pa.string()),
        ("error", pa.string()),
        ("mask_mebin", pa.binary()),  # PNG 0/255, when --segment has mebin
    ]
)

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class Decoded:
    image_id: str
    class_name: str
    label: int
    defect_type: str
    image: np.ndarray  # (crop, crop, 3) uint8
    gt: np.ndarray  # (crop, crop) bool
    xyz: np.ndarray | None = None  # (crop, crop, 3) float32, NaN = no point / background


def decode_row(
    row: dict[str, Any], prep: Preprocess, max_pixels: int = DEFAULT_MAX_PIXELS, with_xyz: bool = False, plane_distance: float = 0.005
) -> Decoded:
    """Decode and transform one dataset row; raises :class:`RowError` naming the row."""
    image_id = row.get("image_id") or "<missing image_id>"
    img = decode_image(row.get("image"), image_id, max_pixels)
    gt = decode_mask(row.get("mask"), image_id, img.shape[:2], label=int(row.get("label") or 0), max_pixels=max_pixels)
    xyz = None
    if with_xyz:
        from raydist.data.decode import decode_xyz
        from raydist.pointcloud.preprocess import remove_plane

        raw = decode_xyz(row.get("xyz"), image_id, img.shape[:2])
        if raw is None:
            raise InvalidPointCloudError(image_id, "row has no xyz but the model is multimodal (CFM)")
        xyz = remove_plane(prep.xyz(np.nan_to_num(raw, nan=0.0)), plane_distance, image_id=image_id)
    return Decoded(image_id, row["class_name"], int(row.get("label") or 0), row.get("defect_type") or "", prep.image(img), prep.mask(gt), xyz)


def make_backbone(cfg: ModelConfig, device: str | None = None) -> Backbone:
    return Backbone(cfg.backbone, weights=cfg.weights, block=cfg.block, proj_dim=cfg.proj_dim, seed=cfg.seed, device=device)


def extract(backbone: Backbone, prep: Preprocess, images: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
    """(N, crop, crop, 3) uint8 images -> (N, D, h, w) float32 grids, in batches."""
    out = [backbone.extract(prep.to_tensor(list(images[i : i + batch_size]))).features.numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0,))


def make_point_extractor(cfg: ModelConfig):
    from raydist.features.points import create_point_extractor

    kw = {"groups": cfg.groups_3d} if cfg.backbone_3d == "pointmae" else {}
    return create_point_extractor(cfg.backbone_3d, cfg.weights_3d, cfg.block_3d, cfg.seed, **kw)


def features_3d(extractor, decoded: Sequence[Decoded], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """3D features of each row pooled onto the 2D feature grid -> (N, D3, h, w), valid fraction (N, h, w)."""
    import torch

    from raydist.pointcloud.preprocess import valid_mask
    from raydist.pointcloud.projection import pool_to_grid

    feats, fracs = [], []
    for d in decoded:
        img = extractor(d.xyz, d.image_id)
        f, frac = pool_to_grid(img, valid_mask(np.nan_to_num(d.xyz, nan=0.0)), grid)
        feats.append(f)
        fracs.append(frac)
    return torch.stack(feats).numpy(), torch.stack(fracs).numpy()


def make_mapping(cfg: ModelConfig):
    from raydist.scoring.crossmodal import CrossmodalMapping

    return CrossmodalMapping(epochs=cfg.cfm_epochs, aggregation=cfg.cfm_aggregation, sigma=cfg.sigma, seed=cfg.seed)


def _rows(data_uri: str, cls: str, split: str, storage_options=None, batch_size: int = 32) -> Iterator[dict[str, Any]]:
    for batch in iter_batches(data_uri, [cls], [split], INPUT_COLUMNS, batch_size, storage_options):
        yield from batch.to_pylist()


def fit_class(
    backbone: Backbone, prep: Preprocess, cfg: ModelConfig, train: Iterable[dict], val: Iterable[dict], batch_size: int = 16
) -> ClassModel:
    """Bank from nominal train rows and THR statistics from nominal val rows of one class."""
    skipped: list[str] = []
    cfm = cfg.method == "cfm"
    extractor = make_point_extractor(cfg) if cfm else None

    def decoded(rows: Iterable[dict]) -> list[Decoded]:
        out = []
        for r in rows:
            if int(r.get("label") or 0) != 0:
                continue  # banks, mappings and THR use nominal images only
            try:
                out.append(decode_row(r, prep, with_xyz=cfm, plane_distance=cfg.plane_distance))
            except RowError as e:
                skipped.append(str(e))
        return out

    train = decoded(train)
    if not train:
        raise ConfigError("class has no decodable nominal train image")
    grids = extract(backbone, prep, [d.image for d in train], batch_size)
    if cfm:
        import torch

        f3, frac = features_3d(extractor, train, grids.shape[-2:])
        model = make_mapping(cfg).fit(torch.from_numpy(grids), torch.from_numpy(f3), torch.from_numpy(frac))
    else:
        model = PatchCore(cfg.coreset_ratio, cfg.coreset_proj_dim, cfg.sigma, cfg.image_score, seed=cfg.seed).fit(grids)
    val = decoded(val)
    if not val:
        raise ConfigError("class has no nominal val image for the THR statistics (ingest with --val-fraction > 0)")
    vgrids = extract(backbone, prep, [d.image for d in val], batch_size)
    if cfm:
        vf3, vfrac = features_3d(extractor, val, vgrids.shape[-2:])
        maps, _ = model.score(torch.from_numpy(vgrids), torch.from_numpy(vf3), torch.from_numpy(vfrac), prep.size, cfg.image_score)
    else:
        maps, _ = model.score(vgrids, prep.size)
    thr = Threshold(cfg.thr_k).fit(maps)
    if cfm:
        return ClassModel(None, thr.mu, thr.sigma, len(train), len(val), skipped, mapping=model.state_dict(), dims=(grids.shape[1], f3.shape[1]))
    return ClassModel(model.bank, thr.mu, thr.sigma, len(train), len(val), skipped)


def dataset_classes(data_uri: str, storage_options=None) -> list[str]:
    return sorted({c for c, _ in list_partitions(data_uri, storage_options)})


def fit_model(
    data_uri: str,
    out_uri: str,
    cfg: ModelConfig,
    classes: Sequence[str] | None = None,
    batch_size: int = 16,
    storage_options=None,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Fit one bank per class and save the model; returns a summary."""
    classes = list(classes) if classes else dataset_classes(data_uri, storage_options)
    if not classes:
        raise ConfigError(f"no class found in {data_uri}")
    backbone = make_backbone(cfg)
    cfg.weights_id = backbone.weights_id
    prep = backbone.preprocess(cfg.resize, cfg.crop, cfg.aspect)
    fitted: dict[str, ClassModel] = {}
    errors: dict[str, str] = {}
    for cls in classes:
        t = time.perf_counter()
        try:
            cm = fit_class(
                backbone, prep, cfg, _rows(data_uri, cls, "train", storage_options), _rows(data_uri, cls, "val", storage_options), batch_size
            )
        except ConfigError as e:
            errors[cls] = str(e)
            log(f"[fit] {cls}: skipped: {e}")
            continue
        fitted[cls] = cm
        log(f"[fit] {cls}: {cm.describe()} ({time.perf_counter() - t:.1f}s)")
    if not fitted:
        raise ConfigError(f"no class could be fitted: {errors}")
    save_model(out_uri, cfg, fitted, storage_options)
    return {"model": out_uri, "classes": sorted(fitted), "errors": errors, "weights_id": cfg.weights_id}


@dataclass
class Scored:
    """What scoring hands to segmentation for one image."""

    image_id: str
    class_name: str
    label: int
    defect_type: str
    image_score: float | None = None
    score_map: np.ndarray | None = None  # (H, W) float32
    features: np.ndarray | None = None  # (D, h, w) float16: compact hand-off to TTT4AS
    gt: np.ndarray | None = None
    thr_mask: np.ndarray | None = None
    image: np.ndarray | None = None
    error: str | None = None
    variant_scores: dict[str, float] | None = None  # unified models: image score under each alignment
    group: int | None = None  # unified models: the bank (cluster) the image was routed to


class Scorer:
    """Backbone + lazily loaded per-class banks (LRU-bounded), scoring batches of dataset rows.

    One instance per process (or per Ray actor): the backbone is built once and banks are loaded
    on first use, evicting the least recently used beyond ``max_banks``.
    """

    def __init__(self, model_uri: str, device: str | None = None, max_banks: int = 16, storage_options=None, keep_images: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS, duplicates: dict[str, int] | None = None):  # fmt: skip
        self.model_uri = model_uri
        self.max_pixels = max_pixels
        self.duplicates = dict(duplicates or {})
        self.storage_options = storage_options
        self.meta = load_meta(model_uri, storage_options)
        self.cfg = ModelConfig.from_dict(self.meta["config"])
        self.backbone = make_backbone(self.cfg, device)
        if self.backbone.weights_id != self.cfg.weights_id:
            raise ConfigError(f"backbone weights {self.backbone.weights_id} differ from the model's {self.cfg.weights_id}")
        self.prep = self.backbone.preprocess(self.cfg.resize, self.cfg.crop, self.cfg.aspect)
        self.max_banks = max_banks
        self.keep_images = keep_images
        self.cfm = self.cfg.method == "cfm"
        self.extractor_3d = make_point_extractor(self.cfg) if self.cfm else None
        self._banks: OrderedDict[str, tuple[Any, Threshold]] = OrderedDict()

    def _class(self, cls: str) -> tuple[Any, Threshold]:
        if cls in self._banks:
            self._banks.move_to_end(cls)
            return self._banks[cls]
        cm = load_class(self.model_uri, self.meta, cls, self.storage_options)
        if self.cfm:
            model = make_mapping(self.cfg).load(cm.mapping, *cm.dims)
        else:
            model = PatchCore(self.cfg.coreset_ratio, self.cfg.coreset_proj_dim, self.cfg.sigma, self.cfg.image_score, seed=self.cfg.seed)
            model.bank = cm.bank
        self._banks[cls] = (model, Threshold.from_stats(cm.thr_mu, cm.thr_sigma, self.cfg.thr_k))
        while len(self._banks) > self.max_banks:
            self._banks.popitem(last=False)
        return self._banks[cls]

    def _grid_size(self) -> tuple[int, int]:
        """The 2D feature grid size at this crop, measured once on a blank image."""
        if not hasattr(self, "_grid"):
            blank = np.zeros((*self.prep.size, 3), np.uint8)
            self._grid = tuple(extract(self.backbone, self.prep, [blank]).shape[-2:])
        return self._grid

    def score_rows(self, rows: Sequence[dict[str, Any]]) -> list[Scored]:
        """Score a batch; a bad row becomes a :class:`Scored` with ``error`` set, never an exception."""
        out: list[Scored] = [
            Scored(r.get("image_id") or "<missing image_id>", r.get("class_name") or "", int(r.get("label") or 0), r.get("defect_type") or "")
            for r in rows
        ]
        groups: dict[str, list[tuple[int, Decoded]]] = {}
        for i, r in enumerate(rows):
            try:
                check_duplicate(out[i].image_id, self.duplicates)
                if r.get("class_name") not in self.meta["classes"]:
                    raise RowError(out[i].image_id, f"the model has no bank for class {r.get('class_name')!r}")
                d = decode_row(r, self.prep, self.max_pixels, with_xyz=self.cfm, plane_distance=self.cfg.plane_distance)
                f3 = features_3d(self.extractor_3d, [d], self._grid_size()) if self.cfm else None
                groups.setdefault(r["class_name"], []).append((i, d, f3))
            except RowError as e:
                out[i].error = str(e)
        for cls, items in groups.items():
            model, thr = self._class(cls)
            grids = extract(self.backbone, self.prep, [d.image for _, d, _ in items])
            if self.cfm:
                import torch

                f3 = np.concatenate([f[0] for _, _, f in items])
                frac = np.concatenate([f[1] for _, _, f in items])
                maps, scores = model.score(torch.from_numpy(grids), torch.from_numpy(f3), torch.from_numpy(frac), self.prep.size, self.cfg.image_score)
                grids = np.concatenate([grids, f3], axis=1)  # TTT4AS trains on the 2D + 3D features
            else:
                maps, scores = model.score(grids, self.prep.size)
            for (i, d, _), g, m, s in zip(items, grids, maps, scores):
                o = out[i]
                o.image_score, o.score_map, o.features, o.gt = float(s), m, g.astype(np.float16), d.gt
                o.thr_mask = thr.predict(m)
                if self.keep_images:
                    o.image = d.image
        return out


def segment_scored(s: Scored, ttt4as: TTT4AS | None, mebin: MEBin | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """The per-image binarisers' masks of one scored image ({} when the row already failed) and
    TTT4AS's info. THR's mask is made at scoring time (it needs only the class statistics)."""
    if s.error is not None:
        return {}, {}
    masks: dict[str, np.ndarray] = {}
    info: dict = {}
    if ttt4as is not None:
        try:
            masks["ttt4as"], info = ttt4as.fit_predict(s.score_map, s.features.astype(np.float32), s.thr_mask)
        except Exception as e:  # a per-image SVM failure must not kill the batch
            info = {"status": "error", "reason": f"{type(e).__name__}: {e}"}
    if mebin is not None:
        masks["mebin"] = mebin.predict(s.score_map)[0]
    return masks, info


def result_row(s: Scored, masks: dict[str, np.ndarray], info: dict) -> dict[str, Any]:
    ok = s.error is None
    ttt_mask, mebin_mask = masks.get("ttt4as"), masks.get("mebin")
    return {
        "image_id": s.image_id,
        "class_name": s.class_name,
        "label": s.label,
        "defect_type": s.defect_type,
        "image_score": s.image_score if ok else None,
        "score_map": encode_npy(s.score_map.astype(np.float16)) if ok else None,
        "mask_thr": encode_png(s.thr_mask) if ok else None,
        "mask_ttt4as": encode_png(ttt_mask) if ttt_mask is not None else None,
        "ttt4as_status": info.get("status"),
        "ttt4as_reason": info.get("reason"),
        "error": s.error,
        "mask_mebin": encode_png(mebin_mask) if mebin_mask is not None else None,
    }


def eval_record(s: Scored, masks: dict[str, np.ndarray]) -> EvalRecord | None:
    if s.error is not None:
        return None
    return EvalRecord(s.class_name, s.label, s.image_score, s.score_map.astype(np.float16), s.gt, {"thr": s.thr_mask, **masks})


def check_duplicate(image_id: str, duplicates: dict[str, int]) -> None:
    """Every occurrence of a duplicated id is refused: which one is right is the archive owner's call."""
    if image_id in duplicates:
        raise DuplicateImageIdError(image_id, f"image_id occurs {duplicates[image_id]} times in the evaluated split")


def make_scorer(model_uri: str, align: str | None = None, storage_options=None, **kw: Any):
    """The scorer a model needs: per-class banks, or a unified model with its alignment rule."""
    meta = load_meta(model_uri, storage_options)
    if "unified" in meta:
        from raydist.unified import UnifiedScorer

        return UnifiedScorer(model_uri, align or "cada", storage_options=storage_options, **kw)
    if align not in (None, "none"):
        raise ConfigError(f"--align {align} needs a model fitted with `raydist fit --unified`")
    return Scorer(model_uri, storage_options=storage_options, **kw)


def alignment_block(images: list[dict]) -> dict[str, Any] | None:
    """Image-level metrics of every alignment side by side (unified models): pooled and class mean."""
    from raydist.metrics.image import i_ap, i_auroc
    from raydist.metrics.report import _nanmean

    ok = [im for im in images if im.get("variant_scores")]
    if not ok:
        return None
    out = {}
    for v in ok[0]["variant_scores"]:
        lab = np.array([im["label"] for im in ok])
        sc = np.array([im["variant_scores"][v] for im in ok])
        cls = np.array([im["class_name"] for im in ok])
        out[v] = {
            "i_auroc_pooled": i_auroc(lab, sc),
            "i_ap_pooled": i_ap(lab, sc),
            "i_auroc_mean": _nanmean([i_auroc(lab[cls == c], sc[cls == c]) for c in sorted(set(cls))]),
        }
    return out


@dataclass
class EvalOptions:
    segment: tuple[str, ...] = ("thr", "ttt4as")  # mebin on request: it is a baseline
    ttt4as: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    classes: tuple[str, ...] | None = None
    align: str | None = None  # unified models: none | cada | class
    max_pixels: int = DEFAULT_MAX_PIXELS  # decompression-bomb guard per image

    def make_ttt4as(self) -> TTT4AS | None:
        return TTT4AS(**self.ttt4as) if "ttt4as" in self.segment else None

    def make_mebin(self) -> MEBin | None:
        return MEBin() if "mebin" in self.segment else None


def results_uri(out_uri: str) -> str:
    return join(out_uri, "results")


def reset_results(out_uri: str, storage_options=None) -> None:
    fs, path = filesystem(results_uri(out_uri), storage_options)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def write_results(rows: list[dict[str, Any]], out_uri: str, storage_options=None) -> None:
    """One Parquet part per class, written atomically (temporary name, then moved): a crash never
    leaves a half-written file under a final part name."""
    import io
    import uuid

    import pyarrow.parquet as pq

    by_class: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_class.setdefault(r["class_name"], []).append(r)
    for cls, items in by_class.items():
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(items, schema=RESULT_SCHEMA).drop_columns(["class_name"]), buf)
        name = join(results_uri(out_uri), f"class_name={cls}", f"part-{uuid.uuid4().hex[:16]}.parquet")
        write_bytes(name, buf.getvalue(), storage_options)


def finish_report(records: list[EvalRecord], errors_per_class: dict[str, int], segment: Sequence[str]) -> dict[str, Any]:
    binarisers = [b for b in BINARISERS if b in segment]
    return to_jsonable(build_report(records, errors_per_class, binarisers))


def write_metrics(report: dict[str, Any], out_uri: str, storage_options=None) -> None:
    write_bytes(join(out_uri, "metrics.json"), json.dumps(report, indent=2).encode(), storage_options)


def evaluate(
    data_uri: str,
    model_uri: str,
    out_uri: str,
    opts: EvalOptions | None = None,
    storage_options=None,
    log: Log = _quiet,
) -> dict[str, Any]:
    """Score every test row, binarise, write ``results/`` and ``metrics.json``; return the report."""
    opts = opts or EvalOptions()
    unknown = set(opts.segment) - set(BINARISERS)
    if unknown:
        raise ConfigError(f"unknown binariser(s) {sorted(unknown)}; choose from {BINARISERS}")
    ttt4as, mebin = opts.make_ttt4as(), opts.make_mebin()
    from raydist.data.dataset import duplicate_ids

    dups = duplicate_ids(data_uri, opts.classes, ["test"], storage_options)
    scorer = make_scorer(model_uri, opts.align, storage_options=storage_options, max_pixels=opts.max_pixels, duplicates=dups)
    reset_results(out_uri, storage_options)
    variant_images: list[dict] = []
    records: list[EvalRecord] = []
    errors: dict[str, int] = {}
    timings = {"score_s": 0.0, "segment_s": 0.0}
    from raydist.data.dataset import count_rows
    from raydist.progress import Progress

    progress = Progress(0, count_rows(data_uri, opts.classes, ["test"], storage_options))
    t_start = time.perf_counter()
    for batch in iter_batches(data_uri, opts.classes, ["test"], INPUT_COLUMNS, opts.batch_size, storage_options):
        rows = batch.to_pylist()
        t0 = time.perf_counter()
        scored = scorer.score_rows(rows)
        t1 = time.perf_counter()
        out_rows = []
        for s in scored:
            masks, info = segment_scored(s, ttt4as, mebin)
            out_rows.append(result_row(s, masks, info))
            rec = eval_record(s, masks)
            if s.variant_scores:
                variant_images.append({"label": s.label, "class_name": s.class_name, "variant_scores": s.variant_scores})
            if rec is None:
                errors[s.class_name] = errors.get(s.class_name, 0) + 1
            else:
                records.append(rec)
        timings["score_s"] += t1 - t0
        timings["segment_s"] += time.perf_counter() - t1
        write_results(out_rows, out_uri, storage_options)
        log(f"[evaluate] {progress.step(len(rows), units=0)}")
    report = finish_report(records, errors, opts.segment)
    align = alignment_block(variant_images)
    if align is not None:
        report["alignment"] = to_jsonable(align)
    report["duplicates"] = dups
    report["timing"] = {**timings, "total_s": time.perf_counter() - t_start, "images_per_s": progress.images / max(time.perf_counter() - t_start, 1e-9)}
    report["config"] = {
        "model": asdict(scorer.cfg), "ttt4as": ttt4as.get_params() if ttt4as else None, "segment": list(opts.segment),
        "align": getattr(scorer, "align", None),
    }  # fmt: skip
    write_metrics(report, out_uri, storage_options)
    return report
