"""The flags shared by several verbs, and the run configurations they build (each default lives in
its config dataclass; flags the user does not give are not passed, so the dataclass fills them in)."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from raydist.errors import ConfigError


def _field_type(f: dataclasses.Field) -> type:
    t = str(f.type)
    return int if t.startswith("int") else float if t.startswith("float") else str


def add_config_args(p: argparse.ArgumentParser, cls: type, only: Sequence[str] | None = None) -> None:
    """One flag per config field, its help and default read from the field: a default lives in the
    config only (flags the user does not give are not passed, so the dataclass fills them in)."""
    from raydist.features.backbones import BACKBONES

    groups: dict[str | None, argparse._ArgumentGroup] = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True) or (only is not None and f.name not in only):
            continue
        owner = f.metadata.get("method")
        if owner not in groups:
            groups[owner] = p.add_argument_group(f"{owner} only" if owner else "model")
        choices = sorted(BACKBONES) if f.name == "backbone" else f.metadata.get("choices")
        groups[owner].add_argument(
            "--" + f.name.replace("_", "-"), dest=f"cfg_{f.name}", metavar=None if choices else f.name.upper(), type=_field_type(f),
            choices=choices, default=argparse.SUPPRESS,
            help=f"{f.metadata['help']} (default: {f.default})".replace("%", "%%"),
        )  # fmt: skip


# what `segment` needs of a model: the backbone TTT4AS trains on and how images are processed
SEGMENT_FIELDS = ("backbone", "weights", "block", "proj_dim", "resize", "crop", "aspect", "image_score", "thr_k", "image_k", "seed")


def model_config(a: argparse.Namespace):
    """The validated :class:`~raydist.config.ModelConfig` of the flags given (``--unified`` = ``--method unified``)."""
    from raydist.config import ModelConfig

    given = {k[4:]: v for k, v in vars(a).items() if k.startswith("cfg_")}
    if a.verb == "segment":  # the maps' own model (--model) gives the feature settings not given here
        from raydist.model_store import load_meta

        source = load_meta(a.model)["config"] if getattr(a, "model", None) else {}
        return ModelConfig(method="maps", maps=a.maps, **{**{k: source[k] for k in SEGMENT_FIELDS if k in source}, **given})
    if a.unified:
        if given.get("method", "unified") != "unified":
            raise ConfigError(f"--unified is --method unified; it cannot be combined with --method {given['method']}")
        given["method"] = "unified"
    return ModelConfig(**given)


def add_fit_args(p: argparse.ArgumentParser) -> None:
    from raydist.config import ModelConfig

    p.add_argument("--data", required=True, help="dataset URI (local folder or s3://bucket/prefix)")
    p.add_argument("--out", required=True, help="model URI to write (local folder or s3://); a rerun fits only missing or changed classes")
    p.add_argument("--class", dest="classes", action="append", help="fit only this class (repeatable); default: all")
    p.add_argument("--batch-size", type=int, default=8, help="images per backbone forward pass")
    p.add_argument("--unified", action="store_true", help="shorthand for --method unified: one model for all classes mixed, class labels unused")
    p.add_argument("--model-name", default=None, help="MLflow registered model name (default: <dataset>-<method>); each fit adds a version")
    p.add_argument("--no-register", action="store_true", help="log the fit run but do not register the model in the MLflow Model Registry")
    add_config_args(p, ModelConfig)


def add_eval_args(p: argparse.ArgumentParser, with_model: bool = True) -> None:
    from raydist.config import EvalConfig
    from raydist.segment.registry import BINARISERS, DEFAULT_SEGMENT

    d = {f.name: f.default for f in dataclasses.fields(EvalConfig) if f.default is not dataclasses.MISSING}
    p.add_argument("--data", required=True, help="dataset URI (its test split is evaluated)")
    if with_model:
        p.add_argument("--model", required=True, help="model written by `raydist fit`: its folder URI, or models:/NAME/VERSION or models:/NAME@ALIAS (MLflow registry)")
    p.add_argument("--out", required=True, help="results URI: results/ (Parquet) + metrics.json")
    p.add_argument("--class", dest="classes", action="append", help="evaluate only this class (repeatable)")
    p.add_argument("--segment", default=argparse.SUPPRESS, help=f"binarisers, comma-separated: {','.join(BINARISERS)} (default: {','.join(DEFAULT_SEGMENT)})")
    p.add_argument("--align", choices=["none", "cada", "class"], default=argparse.SUPPRESS,
                   help="unified models: score alignment (default cada; class = CaDA-A, needs labels)")
    p.add_argument("--batch-size", type=int, default=argparse.SUPPRESS, help=f"images per scoring batch (default: {d['batch_size']})")
    p.add_argument("--no-gate", dest="gate", action="store_false", default=argparse.SUPPRESS,
                   help="binarise every image (the papers' protocol); by default an image judged nominal by its image "
                        "threshold gets an empty mask from every binariser")  # fmt: skip
    p.add_argument("--bank-search", choices=["exact", "bf16"], default=argparse.SUPPRESS,
                   help=f"memory-bank search: exact float32, or bfloat16 with a float32 re-rank of the row found (faster on CPUs with AVX512-BF16/AMX; default: {d['bank_search']})")
    p.add_argument("--backbone-runtime", choices=["torch", "openvino"], default=argparse.SUPPRESS,
                   help=f"what runs the backbone: torch, or OpenVINO (CNN backbones on the CPU, about half the feature time; pip install 'raydist[openvino]'; default: {d['backbone_runtime']})")
    p.add_argument("--max-pixels", type=int, default=argparse.SUPPRESS,
                   help=f"images larger than this are refused, a decompression-bomb guard (default: {d['max_pixels']})")
    from raydist.segment.base import flag_specs

    for name, binariser in BINARISERS.items():  # every binariser's params, flags generated from its fields
        specs = flag_specs(binariser)
        if not specs:
            continue
        g = p.add_argument_group(f"{name} (--segment {name}; defaults and their reasons: docs/methods/ttt4as.md, docs/masks.md)")
        for f in specs:
            # choices as the user types them ("none" for None), not as argparse prints the converted values
            metavar = "{" + ",".join("none" if c is None else str(c) for c in f.choices) + "}" if f.choices else f.field.upper()
            g.add_argument(f.flag, dest=f"bin__{name}__{f.field}", type=f.type, choices=f.choices, metavar=metavar,
                           default=argparse.SUPPRESS, help=f.help)  # fmt: skip


def eval_config(a: argparse.Namespace):
    """The validated :class:`~raydist.config.EvalConfig` of the flags given; a binariser's flags
    with a --segment list that does not name it are refused rather than ignored."""
    from raydist.config import EvalConfig

    kw = {k: getattr(a, k) for k in ("align", "gate", "batch_size", "max_pixels", "bank_search", "backbone_runtime") if hasattr(a, k)}
    if hasattr(a, "segment"):
        kw["segment"] = tuple(s for s in a.segment.split(",") if s)
    params: dict[str, dict] = {}
    for dest, value in vars(a).items():
        if dest.startswith("bin__"):
            _, name, key = dest.split("__", 2)
            params.setdefault(name, {})[key] = value
    return EvalConfig(params=params, classes=tuple(a.classes) if a.classes else None, **kw)


def add_ray_args(p: argparse.ArgumentParser, default: str, scoring: bool = True, fitting: bool = False) -> None:
    """Executor flags; each resource flag sizes one kind of Ray worker and nothing else."""
    from raydist.config import STALL_TIMEOUT_S
    from raydist.engine.scoring import DEFAULT_CACHE_MB

    g = p.add_argument_group("execution")
    g.add_argument("--executor", choices=["local", "ray"], default=default, help="in-process core path, or Ray")
    g.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS, else an embedded local Ray)")
    g.add_argument("--num-cpus", type=int, default=None, help="CPUs of an embedded local Ray (default: all)")
    if fitting:
        g.add_argument("--gpus-per-fit-task", type=float, default=0.0, help="Ray: GPUs per fit task (one task per class; 1 on GPU nodes)")
        g.add_argument("--cpus-per-fit-task", type=float, default=1.0, help="Ray: CPUs per fit task")
    if scoring:
        g.add_argument("--stall-timeout", type=float, default=STALL_TIMEOUT_S, metavar="SECONDS",
                       help="Ray: give up (exit 4, finished units kept) when nothing finishes or starts for this long and the work waited on fits no node (slow but placeable work is waited for)")  # fmt: skip
    elif fitting:  # one fit unit of a large class can take hours on CPU: no limit unless asked
        g.add_argument("--stall-timeout", type=float, default=None, metavar="SECONDS",
                       help="Ray: give up (exit 4, fitted units kept) when no fit unit finishes for this long and the tasks fit no node (default: no limit)")  # fmt: skip
    if scoring:
        g.add_argument("--workers", type=int, default=None,
                       help="local executor: worker threads, each scoring and binarising one batch at a time with one torch thread (default: one per usable CPU)")  # fmt: skip
        g.add_argument("--num-actors", type=int, default=None,
                       help="Ray: scoring actors, each with the backbone and resident banks (default: fill the cluster at the start: "
                            "one per --gpus-per-actor GPUs, else one per --cpus-per-actor CPUs when they binarise, else 1)")  # fmt: skip
        g.add_argument("--gpus-per-actor", type=float, default=0.0, help="Ray: GPUs per scoring actor (1 puts them on GPU nodes)")
        g.add_argument("--cpus-per-actor", type=float, default=1.0,
                       help="Ray: CPUs per scoring actor (binarising in the actor: one worker thread per CPU, sharing its model)")  # fmt: skip
        g.add_argument("--segment-in", choices=["auto", "actor", "tasks"], default="auto",
                       help="Ray: where units are binarised: in the scoring actor that scored them (no maps or features cross the "
                            "object store), or in CPU segment tasks (the GPU keeps scoring meanwhile); auto: tasks with --gpus-per-actor, else actor")  # fmt: skip
        g.add_argument("--cpus-per-task", type=float, default=None,
                       help="Ray: CPUs per segment task (THR, TTT4AS's SVMs, MEBin for one unit; default 1; only with segment tasks)")  # fmt: skip
        g.add_argument("--cache-mb", type=float, default=DEFAULT_CACHE_MB,
                       help="fitted detectors (banks) kept resident per scorer, least recently used evicted beyond this")  # fmt: skip


def add_tracking_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("tracking (MLflow)")
    g.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI, else a sqlite store in the output folder")
    g.add_argument("--experiment", default="raydist", help="MLflow experiment (created as a model-training experiment)")
    g.add_argument("--run-name", default=None, help="MLflow run name (default: '<verb> <dataset> <model> <date>')")
    g.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")
    g.add_argument("--gallery-per-class", type=int, default=4, help="overlay PNGs logged per class")


def add_storage_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage-options", default=None, metavar="JSON",
                   help="fsspec / s3fs options for every URI this command reads or writes, as a JSON object, e.g. "
                        "'{\"profile\": \"archive\"}' for a non-default S3 profile (default: the standard AWS variables "
                        "and files); forwarded to Ray workers, never written to any output")  # fmt: skip


def storage_options(a: argparse.Namespace) -> dict | None:
    """The parsed --storage-options (its values are never echoed: they may hold secrets)."""
    import json

    text = getattr(a, "storage_options", None)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError("--storage-options must be a JSON object (it is not valid JSON)") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError("--storage-options must be a JSON object with string keys")
    return value
