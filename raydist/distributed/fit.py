"""Fit per-class banks as parallel Ray tasks (GPU tasks when ``gpus_per_task`` > 0)."""

from __future__ import annotations

from typing import Any

import ray

from raydist.errors import ConfigError
from raydist.model_store import ClassModel, ModelConfig, save_model
from raydist.pipeline import _rows, dataset_classes, fit_class, make_backbone


@ray.remote(max_retries=2)
def fit_class_task(data_uri: str, cls: str, cfg: ModelConfig, batch_size: int, storage_options=None) -> tuple[str, ClassModel | str]:
    backbone = make_backbone(cfg)
    prep = backbone.preprocess(cfg.resize, cfg.crop, cfg.aspect)
    try:
        cm = fit_class(backbone, prep, cfg, _rows(data_uri, cls, "train", storage_options), _rows(data_uri, cls, "val", storage_options), batch_size)
    except ConfigError as e:
        return cls, str(e)
    return cls, cm


def fit_model(
    data_uri: str, out_uri: str, cfg: ModelConfig, classes=None, batch_size: int = 16, gpus_per_task: float = 0.0, storage_options=None, log=print
) -> dict[str, Any]:
    classes = list(classes) if classes else dataset_classes(data_uri, storage_options)
    if not classes:
        raise ConfigError(f"no class found in {data_uri}")
    cfg.weights_id = make_backbone(cfg, device="cpu").weights_id
    refs = [fit_class_task.options(num_gpus=gpus_per_task).remote(data_uri, c, cfg, batch_size, storage_options) for c in classes]
    fitted, errors = {}, {}
    for cls, res in ray.get(refs):
        if isinstance(res, str):
            errors[cls] = res
            log(f"[fit] {cls}: skipped: {res}")
        else:
            fitted[cls] = res
            log(f"[fit] {cls}: {res.describe()}")
    if not fitted:
        raise ConfigError(f"no class could be fitted: {errors}")
    save_model(out_uri, cfg, fitted, storage_options)
    return {"model": out_uri, "classes": sorted(fitted), "errors": errors, "weights_id": cfg.weights_id}
