"""The protocol every detector implements, and what scoring hands on to the binarisers.

A detector turns decoded images into score maps. The engine never asks which one it has: it
fits one per *fit unit* (a class, or the whole archive for ``scope = "archive"``), stores its
``state()`` generically, and scores with it. Binarisers (THR, TTT4AS, MEBin) see only a
:class:`~raydist.contracts.ScoreBatch`: maps, image scores and the features TTT4AS trains on.
What a unit learns from nominal validation images (THR's statistics, the image threshold) the
engine computes from the detector's own val maps (:mod:`raydist.calibration`): no detector does.
The types crossing these seams live in :mod:`raydist.contracts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from raydist.contracts import Decoded, ScoreBatch
from raydist.features.encoder import Encoder


class Detector(Protocol):
    scope: ClassVar[str]  # "class": one fit per class; "archive": one fit over every class (class-agnostic)
    needs_xyz: ClassVar[bool]  # rows must carry a point cloud
    aligns: ClassVar[tuple[str, ...]]  # score alignments it offers at evaluation (first = default)
    signed_maps: ClassVar[bool]  # maps can be negative (aligned maps): metric histograms need an offset
    fit_splits: ClassVar[tuple[str, ...]]  # the nominal splits ``fit`` learns from: ("train",), or () for nothing
    needs_calibration: ClassVar[bool]  # a fit without nominal val images is an error (else: no THR, no image gate)
    has_bank: ClassVar[bool]  # holds memory bank(s) that ``use_bank_search`` switches
    report_fields: ClassVar[tuple[str, ...]]  # per-image report fields (ScoreBatch.extras) that report_blocks reads

    @classmethod
    def report_blocks(cls, images: list[dict]) -> dict[str, Any]:
        """Method-specific blocks of ``metrics.json`` from the images' summaries (label, class_name,
        error and the ``report_fields`` it set); {} when it has none."""
        ...

    @classmethod
    def fit_inputs(cls, cfg) -> tuple[str, ...]:
        """URIs besides the dataset that a fit reads (their fingerprints join the fit key)."""
        ...

    @classmethod
    def prepare_cloud(cls, raw: np.ndarray, prep, cfg, image_id: str) -> np.ndarray:
        """Multimodal methods (``needs_xyz``): the organised cloud this method scores, from the
        row's stored (H, W, 3) cloud (a read-only view, zeros or NaN where there is no point), at
        the image's processed size (NaN = no point)."""
        ...

    def fit(self, encoder: Encoder, train: Sequence[Decoded]) -> Detector: ...

    def aligned(self, align: str) -> Detector:
        """This fitted detector scoring with alignment ``align`` (one of ``aligns``): calibration
        scores the val images under each."""
        ...

    def score(self, encoder: Encoder, batch: Sequence[Decoded]) -> ScoreBatch: ...

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able info, tensors): all :meth:`from_state` needs."""
        ...

    @classmethod
    def from_state(cls, cfg, info: dict[str, Any], tensors: dict[str, np.ndarray], align: str | None = None) -> Detector: ...

    def describe(self) -> str: ...

    def use_bank_search(self, how: str, device: torch.device) -> None:
        """Search the memory bank(s) ``how`` on ``device`` from now on, prepared now (a scorer calls
        this once per loaded detector, under its lock: worker threads never prepare a bank twice)."""
        ...

    @classmethod
    def warm_up(cls, device: torch.device) -> None:
        """Load once per process what scoring on ``device`` compiles (a scorer calls it as it starts,
        so its first batch is not charged for it)."""
        ...


class BaseDetector:
    """Defaults of the protocol's class-level fields; a detector overrides what differs."""

    fit_splits: ClassVar[tuple[str, ...]] = ("train",)
    needs_calibration: ClassVar[bool] = True
    has_bank: ClassVar[bool] = False  # a PatchCore memory bank that --bank-search applies to
    report_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def report_blocks(cls, images: list[dict]) -> dict[str, Any]:
        """No blocks of its own."""
        return {}

    def use_bank_search(self, how: str, device: torch.device) -> None:
        """Search the memory bank(s) ``exact`` or ``bf16`` (see :class:`~raydist.config.EvalConfig`)."""

    @classmethod
    def warm_up(cls, device: torch.device) -> None:
        """Nothing to load by default."""

    def aligned(self, align: str) -> BaseDetector:
        """One alignment only: itself."""
        return self

    @classmethod
    def fit_inputs(cls, cfg) -> tuple[str, ...]:
        return ()

    @classmethod
    def prepare_cloud(cls, raw: np.ndarray, prep, cfg, image_id: str) -> np.ndarray:
        """The stored cloud resized and cropped like the image, NaN where there is no point."""
        from raydist.pointcloud.preprocess import clean_cloud

        return clean_cloud(prep.xyz(raw), raw, image_id)


def require(train: Sequence[Decoded]) -> None:
    """What every memory-bank-like detector needs before fitting."""
    from raydist.errors import ConfigError

    if not train:
        raise ConfigError("no decodable nominal train image")
