"""The run configuration: what a fit and an evaluation are, validated once, written as-is.

``ModelConfig`` goes into ``model.json``, ``EvalConfig`` into ``metrics.json`` (beside the model's),
and both into the MLflow params. The CLI builds its fit flags from :class:`ModelConfig`'s fields
(:func:`raydist.cli.args.add_config_args`), so each default lives here and nowhere else; TTT4AS's
defaults live in its constructor. A flag that does not apply to the chosen method is refused,
never ignored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from raydist.errors import ConfigError

METHODS = ("patchcore", "cfm", "unified", "maps")


def _opt(default: Any, help: str, method: str | None = None, **kw: Any) -> Any:
    """A config field with its CLI help; ``method`` marks an option of one method only."""
    return field(default=default, metadata={"help": help, "method": method, **kw})


@dataclass(frozen=True)
class ModelConfig:
    """Everything a fitted model depends on (defaults: the papers', reasons in the help)."""

    method: str = _opt("patchcore", "patchcore | cfm (RGB + point cloud) | unified (one model for all classes, CADA) | "
                                    "maps (another detector's score maps, `raydist segment`)", choices=METHODS)  # fmt: skip
    backbone: str = _opt("efficientnet_lite0", "2D feature extractor (EfficientNet-Lite0: the one packaged ImageNet backbone)")
    weights: str | None = _opt(None, "'none' (random), 'packaged' (EfficientNet-Lite0), or a local file; default per backbone")
    weights_id: str = _opt("", "filled in by fit: which weights the backbone loaded", cli=False)
    block: int | None = _opt(None, "ViT block whose tokens are used (default: last)")
    proj_dim: int | None = _opt(None, "average-pool features to this many channels")
    resize: int | None = _opt(None, "resize side before the center crop; default 256 (MVTec AD practice), 224 for cfm "
                                    "(MVTec 3D-AD practice: the CFM paper resizes to 224 without a crop)")  # fmt: skip
    crop: int | None = _opt(None, "center-crop side, equal to --resize means no crop; default 224, --resize for cfm (no crop: "
                                  "the part's rim and the plane's border stay in view)")  # fmt: skip
    aspect: float = _opt(1.0, "height/width of the processed image (e.g. 2.5 for KolektorSDD, so thin cracks are not squashed)")
    coreset_ratio: float = _opt(0.1, "share of train patches kept in the memory bank (PatchCore: 10%)")
    coreset_proj_dim: int | None = _opt(256, "random projection for the greedy coreset's distances (PatchCore: 128-256)")
    coreset_chunk: int = _opt(200_000, "patches per greedy coreset run: a larger train set is split into random chunks of "
                                       "this size, each reduced on its own, so the fit grows linearly with it, not with its "
                                       "square (~255 train images at 224 px; docs/methods/patchcore.md); 0 = one exact greedy")  # fmt: skip
    sigma: float = _opt(4.0, "Gaussian smoothing of score maps, pixels (PatchCore: 4)")
    image_score: str | None = _opt(None, "max | top1; default max, top1 for unified (CADA scores aligned maps by their top pixel)",
                                   choices=("max", "top1"))  # fmt: skip
    thr_k: float = _opt(3.0, "THR threshold = mu + k * sigma of nominal validation pixels (TTT4AS paper's best: 3)")
    image_k: float = _opt(3.0, "image threshold = mean + k * std of nominal validation image scores: "
                               "an image above it is judged anomalous and gets a mask (docs/masks.md)")  # fmt: skip
    seed: int = _opt(0, "seeds coreset, random backbones, CFM and CADA training")
    # CFM: 3D extractor and crossmodal mapping
    backbone_3d: str = _opt("fpfh", "CFM's 3D extractor (fpfh needs no weights)", "cfm", choices=("fpfh", "pointmae"))
    weights_3d: str | None = _opt(None, "local Point-MAE checkpoint (default: random init)", "cfm")
    block_3d: int = _opt(-1, "Point-MAE block to map (layer pruning)", "cfm")
    groups_3d: int = _opt(1024, "Point-MAE groups (FPS centres)", "cfm")
    stride_3d: int = _opt(1, "FPFH on every n-th pixel of the organised cloud, spread over its n x n block (speed; docs/methods/cfm.md)", "cfm")
    plane_distance: float = _opt(0.005, "background plane removal distance (data units)", "cfm")
    plane_fit: str = _opt("full", "where the background plane is fitted and removed: 'full' = on the stored cloud before "
                                  "resizing (the CFM/M3DM official preprocessing), 'resized' = after resize and crop", "cfm",
                          choices=("full", "resized"))  # fmt: skip
    cfm_epochs: int = _opt(250, "crossmodal mapping epochs (CFM paper: 250)", "cfm")
    cfm_aggregation: str = _opt("product", "how the two discrepancy maps combine (CFM paper: product)", "cfm", choices=("product", "sum", "max"))
    cfm_score_cells: str = _opt("trained", "cells scored: 'trained' = those with >= 50% of pixels holding a 3D point (the cells "
                                           "the mapping learnt from), 'any' = every cell with a point", "cfm", choices=("trained", "any"))  # fmt: skip
    # unified (absolute-unified, CADA)
    route: str = _opt("none", "none: one bank for every class; clusters: one per label-free implicit class", "unified", choices=("none", "clusters"))
    k: int | None = _opt(None, "clusters for --route clusters (default: best silhouette in 2..10)", "unified")
    cada_iterations: int = _opt(2000, "CADA regressor SGD iterations", "unified")
    cada_dropout: float = _opt(0.25, "CADA regressor dropout", "unified")
    cada_alpha: float = _opt(0.1, "CADA weight of the max target against the mean", "unified")
    cada_variant: str = _opt("meanmax", "meanstd = the (u, sigma) variant", "unified", choices=("meanmax", "meanstd"))
    # maps: bring your own score maps
    maps: str | None = _opt(None, "dataset of score maps from any detector (image_id + score_map); see docs/byo-maps.md", "maps")

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose from {METHODS}")
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{f.name} must be one of {choices}, got {value!r}")
            owner = f.metadata.get("method")
            if owner and owner != self.method and value != f.default:
                raise ConfigError(f"--{f.name.replace('_', '-')} applies to --method {owner} only (method is {self.method})")
        if self.method == "maps" and not self.maps:
            raise ConfigError("method maps needs --maps (the score maps' dataset URI)")
        if self.resize is None:
            object.__setattr__(self, "resize", 224 if self.method == "cfm" else 256)
        if self.crop is None:
            object.__setattr__(self, "crop", self.resize if self.method == "cfm" else min(224, self.resize))
        if self.image_score is None:
            object.__setattr__(self, "image_score", "top1" if self.method == "unified" else "max")
        elif self.method == "unified" and self.image_score != "top1":
            raise ConfigError("unified models score aligned maps by their top pixel (CADA): --image-score must be top1")
        checks = [
            (0 < self.coreset_ratio <= 1, f"--coreset-ratio must be in (0, 1], got {self.coreset_ratio}"),
            (self.coreset_chunk == 0 or self.coreset_chunk >= 1000, f"--coreset-chunk must be 0 (off) or >= 1000, got {self.coreset_chunk}"),
            (self.thr_k >= 0, f"--thr-k must be >= 0, got {self.thr_k}"),
            (self.image_k >= 0, f"--image-k must be >= 0, got {self.image_k}"),
            (self.sigma >= 0, f"--sigma must be >= 0, got {self.sigma}"),
            (0 < self.crop <= self.resize, f"--crop must be in (0, --resize], got {self.crop} with resize {self.resize}"),
            (self.aspect > 0, f"--aspect must be > 0, got {self.aspect}"),
            (self.stride_3d >= 1, f"--stride-3d must be >= 1, got {self.stride_3d}"),
            (self.stride_3d == 1 or self.backbone_3d == "fpfh", "--stride-3d applies to --backbone-3d fpfh only"),
            (self.k is None or self.k >= 2, f"--k must be >= 2, got {self.k}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        """Read a stored config; keys of another version are dropped, values are re-validated."""
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d.setdefault("coreset_chunk", 0)  # models stored before the option ran one exact greedy
        if d.get("method") == "cfm":  # CFM models stored before these options fitted the plane after
            d.setdefault("plane_fit", "resized")  # resizing and scored every cell with a point
            d.setdefault("cfm_score_cells", "any")
        return cls(**d)


# Ray evaluation gives up when no unit finishes (or no scoring actor starts) for this long: far
# longer than one unit takes on any node measured (seconds), and short of a nightly window; a job
# asking for a GPU on a cluster without one otherwise waits forever (Ray queues it silently).
STALL_TIMEOUT_S = 3600.0
ALIGNS = ("none", "cada", "class")
BANK_SEARCHES = ("exact", "bf16")
RUNTIMES = ("torch", "openvino")  # what runs a CNN backbone's forward pass at evaluation


@dataclass(frozen=True)
class EvalConfig:
    """How an evaluation binarises and what it reads; part of every unit's identity (nightly)."""

    segment: tuple[str, ...] | None = None  # binarisers by name; None: raydist.segment.registry.DEFAULT_SEGMENT
    # each configured binariser's hyper-parameters, by name: its Params object, or a dict of the
    # fields that differ from its defaults (validated and completed here); its defaults live in its Params
    params: dict[str, Any] = field(default_factory=dict)
    # the image-level decision gates every mask: an image whose score is not above its unit's image
    # threshold (raydist.calibration) gets an empty mask from every binariser; False keeps the
    # papers' protocol (every image binarised). On by default: an archive is mostly good parts
    gate: bool = True
    batch_size: int = 8
    classes: tuple[str, ...] | None = None
    align: str | None = None  # unified models: none | cada (default) | class
    max_pixels: int = 64_000_000  # decompression-bomb guard per image
    # memory-bank search: exact float32, or bf16 (the nearest row found in bfloat16, its distance
    # re-ranked in float32; ~1.6x faster search on CPUs with AVX512-BF16/AMX, maps within 0.001
    # P-AUROC on the bottle dev category); exact by default so results do not depend on the CPU
    bank_search: str = "exact"
    # what runs the backbone at evaluation: torch, or OpenVINO (CNN backbones on the CPU: about half
    # the feature time, float32, grids equal to torch's to rounding); torch by default because
    # OpenVINO is an optional install and fit always extracts with torch
    backbone_runtime: str = "torch"

    def __post_init__(self) -> None:
        from raydist.segment.base import make_params
        from raydist.segment.registry import BINARISERS, DEFAULT_SEGMENT

        segment = tuple(DEFAULT_SEGMENT if self.segment is None else self.segment)
        unknown = sorted(set(segment) - set(BINARISERS))
        if unknown or not segment:
            raise ConfigError(f"unknown or no binariser(s) {unknown}; choose from {tuple(BINARISERS)}")
        object.__setattr__(self, "segment", tuple(b for b in BINARISERS if b in segment))
        stray = sorted(set(self.params) - set(self.segment))
        if stray:
            raise ConfigError(f"options of {stray} were given but --segment has no {', '.join(stray)}")
        object.__setattr__(self, "params", {b: make_params(BINARISERS[b].Params, self.params.get(b)) for b in self.segment})
        if self.align is not None and self.align not in ALIGNS:
            raise ConfigError(f"--align must be one of {ALIGNS}, got {self.align!r}")
        if self.batch_size < 1 or self.max_pixels < 1:
            raise ConfigError("--batch-size and --max-pixels must be >= 1")
        if self.bank_search not in BANK_SEARCHES:
            raise ConfigError(f"--bank-search must be one of {BANK_SEARCHES}, got {self.bank_search!r}")
        if self.backbone_runtime not in RUNTIMES:
            raise ConfigError(f"--backbone-runtime must be one of {RUNTIMES}, got {self.backbone_runtime!r}")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(sorted(self.classes)))

    def to_dict(self) -> dict[str, Any]:
        """As written into metrics.json and MLflow: each configured binariser's params under its
        name (every field spelled out; a binariser without parameters adds no key)."""
        d: dict[str, Any] = {"segment": list(self.segment)}
        d.update({b: asdict(p) for b, p in self.params.items() if asdict(p)})
        d.update({f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("segment", "params")})
        d["classes"] = list(self.classes) if self.classes else None
        return d

    def binarisers(self) -> list:
        """The configured binarisers, built from their params, in display order."""
        from raydist.segment.registry import BINARISERS

        return [BINARISERS[b](p) for b, p in self.params.items()]
