"""Save and load fitted models without pickle: ``model.json`` (config) + one safetensors file per class.

Layout under MODEL_URI::

    model.json                 {"format": "raydist-model/1", "config": {...}, "classes": {name: {...}}}
    banks/bank-0000.safetensors   {"bank": (M, D) float16}

Banks are loaded lazily, one class at a time, so a thousand-class model never needs to fit in memory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from raydist.errors import ConfigError
from raydist.storage import exists, join, read_bytes, write_bytes

FORMAT = "raydist-model/1"


@dataclass
class ModelConfig:
    method: str = "patchcore"
    backbone: str = "efficientnet_lite0"
    weights: str | None = None
    weights_id: str = ""
    block: int | None = None
    proj_dim: int | None = None
    resize: int = 256
    crop: int = 224
    aspect: float = 1.0  # processed height / width (1 = square)
    coreset_ratio: float = 0.1
    coreset_proj_dim: int | None = 256
    sigma: float = 4.0
    image_score: str = "max"
    thr_k: float = 3.0
    seed: int = 0
    # CFM (method="cfm"): 3D extractor and crossmodal-mapping options
    backbone_3d: str = "fpfh"
    weights_3d: str | None = None
    block_3d: int = -1
    groups_3d: int = 1024
    plane_distance: float = 0.005
    cfm_epochs: int = 250
    cfm_aggregation: str = "product"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass
class ClassModel:
    bank: np.ndarray | None  # (M, D) float16 (PatchCore); None for CFM
    thr_mu: float
    thr_sigma: float
    n_train: int = 0
    n_val: int = 0
    skipped: list[str] = field(default_factory=list)
    mapping: dict[str, np.ndarray] | None = None  # CFM mapping networks (float32)
    dims: tuple[int, int] | None = None  # CFM (D_2D, D_3D)

    def describe(self) -> str:
        """One line for logs, whatever the method."""
        what = f"bank {self.bank.shape[0]}x{self.bank.shape[1]}" if self.bank is not None else f"CFM mapping {self.dims[0]}<->{self.dims[1]}"
        return f"{what} from {self.n_train} images, THR mu={self.thr_mu:.4f} sigma={self.thr_sigma:.4f}"


def save_model(uri: str, config: ModelConfig, classes: dict[str, ClassModel], storage_options=None) -> None:
    meta: dict[str, Any] = {"format": FORMAT, "config": asdict(config), "classes": {}}
    for i, (name, cm) in enumerate(sorted(classes.items())):
        rel = f"banks/bank-{i:04d}.safetensors"
        if cm.mapping is not None:
            tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in cm.mapping.items()}
        else:
            tensors = {"bank": np.ascontiguousarray(cm.bank, dtype=np.float16)}
        write_bytes(join(uri, rel), st_save(tensors), storage_options)
        meta["classes"][name] = {
            "bank": rel,
            "bank_size": int(cm.bank.shape[0]) if cm.bank is not None else 0,
            "dim": int(cm.bank.shape[1]) if cm.bank is not None else 0,
            "dims": list(cm.dims) if cm.dims else None,
            "thr": {"mu": cm.thr_mu, "sigma": cm.thr_sigma},
            "n_train": cm.n_train,
            "n_val": cm.n_val,
            "skipped_rows": cm.skipped,
        }
    # model.json last: its presence marks a complete model
    write_bytes(join(uri, "model.json"), json.dumps(meta, indent=2).encode(), storage_options)


def load_meta(uri: str, storage_options=None) -> dict[str, Any]:
    path = join(uri, "model.json")
    if not exists(path, storage_options):
        raise ConfigError(f"no model at {uri} (model.json missing); run `raydist fit` first")
    meta = json.loads(read_bytes(path, storage_options))
    if meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: unsupported model format {meta.get('format')!r}")
    return meta


def load_class(uri: str, meta: dict[str, Any], class_name: str, storage_options=None) -> ClassModel:
    info = meta["classes"].get(class_name)
    if info is None:
        raise ConfigError(f"model has no bank for class {class_name!r}")
    path = join(uri, info["bank"])
    try:
        tensors = st_load(read_bytes(path, storage_options))
    except Exception as e:  # never fall back to a loader that could execute code
        raise ConfigError(f"refusing to load {path}: not a valid safetensors file ({type(e).__name__})") from None
    if "bank" in tensors:
        return ClassModel(tensors["bank"], info["thr"]["mu"], info["thr"]["sigma"], info["n_train"], info["n_val"])
    d2, d3 = info["dims"]
    return ClassModel(None, info["thr"]["mu"], info["thr"]["sigma"], info["n_train"], info["n_val"], mapping=tensors, dims=(d2, d3))
