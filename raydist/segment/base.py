"""The Binariser seam: what every binariser is, and how its hyper-parameters are declared.

A binariser turns one scored image into a binary mask. It never knows which detector made the
map: it sees a :class:`ScoredImage` (the map, THR's mask from the class's nominal statistics, and
the feature grids and the image itself on request). Its hyper-parameters are one frozen dataclass of :func:`param`
fields (help, default and why), validated once by :func:`validate`; the CLI flags, ``metrics.json``
and the MLflow params are generated from those fields. The registry is
:mod:`raydist.segment.registry`: adding a binariser is one module there and one line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from raydist.errors import ConfigError

NEEDS = ("map", "features", "nominal", "image")  # what a binariser may read of a scored image


class ScoredImage(Protocol):
    """What a binariser sees of one scored image (the engine's ``Scored`` is one)."""

    score_map: np.ndarray  # (H, W) float32
    thr_mask: np.ndarray | None  # THR's mask from the class's nominal statistics (empty when it has none)
    image: np.ndarray | None  # (H, W, 3) uint8 at the map's resolution, kept when a binariser needs "image"

    @property
    def thr_region(self) -> np.ndarray | None:
        """THR's mask, None when the class has no nominal statistics."""

    def feature_grids(self) -> list[np.ndarray]:
        """The frozen backbone's (D, h, w) grids, one per feature block."""


@runtime_checkable
class Binariser(Protocol):
    """One binariser: built from its params, a pure function of one scored image.

    ``name`` is its ``--segment`` name and the stem of its result columns (``mask_<name>``, then
    ``<name>_<column>`` for each of ``info_columns``, taken from the info dict it returns);
    ``needs`` says what it reads (:data:`NEEDS`); ``flag_prefix`` prefixes its generated flags.
    """

    name: ClassVar[str]
    Params: ClassVar[type]
    needs: ClassVar[frozenset[str]]
    info_columns: ClassVar[tuple[str, ...]]
    flag_prefix: ClassVar[str]
    params: Any

    def binarise(self, image: ScoredImage) -> tuple[np.ndarray, dict[str, Any]]:
        """(H, W) bool mask of ``image`` and an info dict (``status``/``reason`` where it has them)."""


def param(default: Any, help: str, why: str = "", *, choices: tuple | None = None, check: tuple[Callable[[Any], bool], str] | None = None,
          type: Callable[[str], Any] | None = None, flag: str | None = None) -> Any:  # fmt: skip
    """A hyper-parameter field: its default, one-line ``help``, ``why`` that default (the paper's
    or a measured reason), allowed ``choices`` or a ``check`` (predicate, "must be ..." text), the
    flag's value ``type`` when the default does not tell it (None defaults), and its ``flag`` name
    when not the field's."""
    return field(default=default, metadata={"help": help, "why": why, "choices": choices, "check": check, "type": type, "flag": flag})


def validate(params: Any) -> None:
    """Raise :class:`ConfigError` for the first field outside its choices or failing its check."""
    for f in fields(params):
        value = getattr(params, f.name)
        choices, check = f.metadata.get("choices"), f.metadata.get("check")
        if choices is not None and value not in choices:
            raise ConfigError(f"{f.name} must be one of {choices}, got {value!r}")
        if check is not None and not check[0](value):
            raise ConfigError(f"{f.name} must be {check[1]}, got {value!r}")


def make_params(cls: type, given: Any = None, **overrides: Any) -> Any:
    """``cls`` from a params object, a dict of overrides (unknown keys refused) or None (defaults),
    with ``overrides`` on top (a binariser's ``Binariser(params, C=1.0)``)."""
    if isinstance(given, cls):
        return replace(given, **overrides) if overrides else given
    given = {**dict(given or {}), **overrides}
    unknown = sorted(set(given) - {f.name for f in fields(cls)})
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} option(s) {unknown}")
    return cls(**given)


class ParamsBinariser:
    """What every binariser's constructor is: ``B()``, ``B(params)``, ``B({"field": v})`` or
    ``B(params, field=v)``, its :attr:`Params` validated once (:func:`make_params`)."""

    Params: ClassVar[type]

    def __init__(self, params: Any = None, **overrides: Any):
        self.params = make_params(self.Params, params, **overrides)

    def get_params(self) -> dict:
        return asdict(self.params)


AT_LEAST_1 = (lambda v: v >= 1, ">= 1")  # param(check=...) shapes more than one binariser uses
NON_NEGATIVE = (lambda v: v >= 0, ">= 0")


def boolean(v: str) -> bool:
    """A flag type for on/off values: true/false, yes/no, on/off, 1/0."""
    t = v.strip().lower()
    if t not in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        raise ValueError(f"not a boolean: {v!r}")
    return t in ("true", "yes", "on", "1")


def none_or(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """A flag type that reads "none" as None (an optional value typed on the command line)."""

    def parse(v: str) -> Any:
        return None if v.lower() == "none" else kind(v)

    parse.__name__ = getattr(kind, "__name__", "value")
    return parse


@dataclass(frozen=True)
class FlagSpec:
    """One generated command-line flag of a binariser's params."""

    flag: str
    field: str
    type: Callable[[str], Any]
    choices: tuple | None
    help: str


def flag_specs(binariser: type) -> list[FlagSpec]:
    """The flags of ``binariser``'s params, in field order: ``--<flag_prefix><field>`` unless the
    field names its flag; help ends with the default."""
    out = []
    for f in fields(binariser.Params):
        default = f.default if f.default is not MISSING else None
        kind = f.metadata.get("type") or (type(default) if default is not None else str)
        kind = boolean if kind is bool else kind
        choices = f.metadata.get("choices")
        if None in (choices or ()) or default is None:
            kind = none_or(kind)
        name = f.metadata.get("flag") or binariser.flag_prefix + f.name.replace("_", "-")
        out.append(FlagSpec(f"--{name}", f.name, kind, choices, f"{f.metadata['help']} (default: {default})"))
    return out


__all__ = ["AT_LEAST_1", "NEEDS", "NON_NEGATIVE", "Binariser", "FlagSpec", "ParamsBinariser", "ScoredImage", "boolean", "flag_specs", "make_params", "none_or", "param", "validate"]
