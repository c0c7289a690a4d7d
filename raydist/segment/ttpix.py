"""TTPix: a test-time classifier on the image's own pixels, refining AREL's boundary.

TTT4AS's idea (pseudo-label the map, fit a classifier per image, predict densely) with the two
things the dev set showed it lacked (docs/masks.md):

- **where the boundary lies**: the pseudo-labels hang on AREL's level (read from the share of the
  image in THR's region, at most the half-max of a plateau for a defect wider than the blur:
  :class:`~raydist.segment.relative.AdaptiveRelative`), not on the map's peaks: positives are
  THR-region pixels ``core_margin`` above it, nominal pixels those ``nominal_margin`` below it and
  the whole rest of the image (outside THR's region);
- **what can move it**: the classifier reads the pixel (:mod:`raydist.segment.pixel_features`:
  colour at 2 px and edges at 1 px) and the map's own value, where TTT4AS read the backbone's
  stride-8/16 grids, which are as blurred as the map they made. A shrinkage LDA (Ledoit-Wolf; one
  closed-form fit, deterministic, no iteration budget) decides every pixel of THR's region, the
  core included (keeping the core whatever it says gave the same F1 within 0.001 on the dev set).

The mask lies inside THR's region, so a good part whose map stays below THR's threshold gets none.
Too few pseudo-labels (a region without a core, or nothing nominal) give AREL's mask, said in
``status``. Measured on the dev set, gated F1 / SegF1 (AREL alongside): bottle 0.736 / 0.770
(0.715 / 0.744), transistor 0.597 / 0.721 (0.597 / 0.745), KolektorSDD 0.163 / 0.285
(0.118 / 0.197); 5-11 ms per image, 5-19% of scoring (docs/masks.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from raydist.segment.base import AT_LEAST_1, ParamsBinariser, ScoredImage, param, validate
from raydist.segment.pixel_features import pixel_features
from raydist.segment.relative import AdaptiveRelative, ARelParams

_MARGIN = (lambda v: 0.0 <= v <= 0.5, "in [0, 0.5]")
MIN_CORE = 5  # positives below this: no class to learn (AREL's mask instead)
MIN_NOMINAL = 20


@dataclass(frozen=True)
class TTPixParams:
    intercept: float = param(ARelParams.intercept, "AREL's line: level = intercept + slope * log10(share of the image in THR's region)",
                             "AREL's default (least squares of the dev set's per-image best levels)",
                             check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))  # fmt: skip
    slope: float = param(ARelParams.slope, "AREL's line: how fast the level falls as THR's region grows", "AREL's default",
                         check=(lambda v: -1.0 < v <= 0.0, "in (-1, 0]"))  # fmt: skip
    plateau_depth: float = param(ARelParams.plateau_depth, "AREL's half-max rule: THR-region pixels this far from its edge (px) are its interior; 0: off",
                                 "AREL's default", check=(lambda v: v >= 0.0, ">= 0"))  # fmt: skip
    plateau_quantile: float = param(ARelParams.plateau_quantile, "AREL's half-max rule: the plateau's height, this quantile of the interior's map",
                                    "AREL's default", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))  # fmt: skip
    min_interior: float = param(ARelParams.min_interior, "AREL's half-max rule: applies when the interior holds this share of THR's region",
                                "AREL's default", check=(lambda v: 0.0 <= v <= 1.0, "in [0, 1]"))  # fmt: skip
    core_margin: float = param(0.1, "positives: THR-region pixels with map >= min + (level + core_margin) (max - min)",
                               "the dev set's grid of both margins (0.05 / 0.1 / 0.2 each; docs/masks.md) by its worst cell, TTPix's "
                               "smallest lead over the strongest baseline across bottle, transistor, KolektorSDD, F1 and SegF1: +0.027 "
                               "(over 11 fits with session 18's plateau test: +0.016, still the largest); core 0.2 leads more on "
                               "KolektorSDD (0.221 F1) but falls under THR's SegF1 on transistor", check=_MARGIN)  # fmt: skip
    nominal_margin: float = param(0.05, "nominal: THR-region pixels with map < min + (level - nominal_margin) (max - min), and every pixel outside it",
                                  "the same grid: worst cell +0.027 / +0.021 / +0.007 at 0.05 / 0.1 / 0.2 (core 0.1); a wider gap leaves "
                                  "the pixels just under the level to the map's value alone", check=_MARGIN)  # fmt: skip
    max_samples: int = param(2000, "at most this many pixels of each pseudo-label group (core, nominal in THR's region, nominal outside), "
                             "evenly strided", "bounds the fit's cost on large images; 1000 and 500 moved dev-set F1 by at most 0.006",
                             check=AT_LEAST_1)  # fmt: skip

    def __post_init__(self) -> None:
        validate(self)


def _strided(idx: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of ``idx``, evenly spaced: deterministic, and spread over the whole group."""
    return idx if len(idx) <= n else idx[:: -(-len(idx) // n)]


class TTPix(ParamsBinariser):
    """Per-image test-time pixel classifier around AREL's level (hyper-parameters: :class:`TTPixParams`)."""

    name: ClassVar[str] = "ttpix"
    Params: ClassVar[type] = TTPixParams
    needs: ClassVar[frozenset[str]] = frozenset({"map", "nominal", "image"})
    info_columns: ClassVar[tuple[str, ...]] = ("status", "reason", "level")
    flag_prefix: ClassVar[str] = "ttpix-"

    def __init__(self, params: Any = None, **overrides: Any):
        super().__init__(params, **overrides)
        p = self.params  # AREL gives the level and the fallback
        self.arel = AdaptiveRelative(intercept=p.intercept, slope=p.slope, plateau_depth=p.plateau_depth,
                                     plateau_quantile=p.plateau_quantile, min_interior=p.min_interior)  # fmt: skip

    def binarise(self, image: ScoredImage) -> tuple[np.ndarray, dict[str, Any]]:
        p = self.params
        s = np.asarray(image.score_map, dtype=np.float64)
        region_given = image.thr_region
        level = self.arel.level(region_given, s)
        info: dict[str, Any] = {"status": "ok", "reason": None, "level": f"{level:.3f}"}
        lo, hi = (float(s.min()), float(s.max())) if np.isfinite(s).all() else (0.0, 0.0)
        if hi <= lo:
            info.update(status="degenerate", reason="flat or non-finite map: nothing stands out")
            return np.zeros(s.shape, bool), info
        region = np.ones(s.shape, bool) if region_given is None else np.asarray(region_given, dtype=bool)
        r = (s - lo) / (hi - lo)
        core = region & (r >= level + p.core_margin)
        nominal_in = region & (r < level - p.nominal_margin)
        if core.sum() < MIN_CORE or nominal_in.sum() + (~region).sum() < MIN_NOMINAL:
            info.update(status="fallback", reason=f"too few pseudo-labels ({int(core.sum())} core pixels): AREL's mask")
            return self.arel.mask_at(image, level), info
        pixels = getattr(image, "image", None)
        if pixels is None:
            raise ValueError("ttpix needs the image (the scorer keeps it when ttpix is in --segment)")
        if np.shape(pixels)[:2] != s.shape:
            raise ValueError(f"image shape {np.shape(pixels)[:2]} differs from the map's {s.shape}")
        feats = pixel_features(pixels)  # (F, H * W)
        z = ((r - r.mean()) / r.std()).ravel()  # the map's own value, standardised: one more feature
        pos = _strided(np.flatnonzero(core), p.max_samples)
        neg = np.concatenate([_strided(np.flatnonzero(nominal_in), p.max_samples), _strided(np.flatnonzero(~region), p.max_samples)])
        w, b = fit_lda(*(np.vstack([feats[:, i], z[i]]).T for i in (pos, neg)))
        decision = w[:-1].astype(np.float32) @ feats + w[-1] * z + b
        return region & (decision > 0).reshape(s.shape), info


def fit_lda(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, float]:
    """The decision ``x @ w + b > 0`` of scikit-learn's ``LinearDiscriminantAnalysis(solver="lsqr",
    shrinkage="auto")`` fitted on positives (1) against negatives (0), priors their shares.

    Computed from the same parts (per class: standardise, :func:`sklearn.covariance.ledoit_wolf`,
    rescale; the prior-weighted covariance solved for the class means) without the estimator's
    input checks and bookkeeping, which took ~6 of its ~10 ms per image; the test holds it equal
    to the estimator. Closed form: the same pixels give the same mask anywhere.
    """
    # imported at the first fit: a process that never binarises never loads scikit-learn
    from scipy import linalg
    from sklearn.covariance import ledoit_wolf

    groups = [np.asarray(negatives, dtype=np.float64), np.asarray(positives, dtype=np.float64)]
    n = sum(len(g) for g in groups)
    priors = np.array([len(g) / n for g in groups])
    means = np.array([g.mean(axis=0) for g in groups])
    cov = np.zeros((means.shape[1], means.shape[1]))
    for prior, g, mean in zip(priors, groups, means):
        scale = g.std(axis=0)
        scale[scale == 0] = 1.0
        shrunk = ledoit_wolf((g - mean) / scale, assume_centered=True)[0]
        cov += prior * (scale[:, None] * shrunk * scale[None, :])
    coef = linalg.lstsq(cov, means.T)[0].T
    intercept = -0.5 * np.einsum("kd,kd->k", means, coef) + np.log(priors)
    return coef[1] - coef[0], float(intercept[1] - intercept[0])


__all__ = ["TTPix", "TTPixParams", "fit_lda", "pixel_features"]
