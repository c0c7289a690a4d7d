"""TTT4AS: a linear SVM trained per test image on pseudo-labelled pixels, predicting a dense mask.

Dense prediction is exact and cheap: a linear decision function commutes with bilinear upsampling
(interpolation weights sum to one), so ``w . F + b`` is evaluated on each (h, w) feature grid and
only the 1-channel decision map is upsampled, instead of every D-channel feature.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from raydist.errors import ConfigError
from raydist.segment import pseudo_labels as pl
from raydist.segment.pseudo_labels import pseudo_labels, validate_params
from raydist.segment.sampling import as_grids, sample_features, upsample

# One SVM per image stops at ``max_iter`` by design (the per-image budget), so liblinear's "failed
# to converge" would flood every run's log. Filtered once, for that message only: a
# ``warnings.catch_warnings`` block per fit is not thread-safe (it swaps the process-wide filter
# list), and the local executor's worker threads fit SVMs side by side.
warnings.filterwarnings("ignore", message="Liblinear failed to converge", category=ConvergenceWarning)
# scikit-learn's liblinear draws from one process-wide random generator, seeded at each fit: two
# fits at once in two threads would draw from each other's sequence, and a mask would depend on
# thread timing. One fit at a time per process keeps every mask a function of its image alone.
_LIBLINEAR = threading.Lock()

FALLBACKS = ("empty", "thr")
INPUTS = ("features", "score")
FEATURE_SCALES = ("raw", "norm", "standardize")
C_DEFAULT = 3.0
FEATURE_SCALE = "norm"


class TTT4AS:
    """Per-image test-time SVM binariser.

    Parameters (paper defaults; see :func:`~raydist.segment.pseudo_labels.pseudo_labels` for the
    pseudo-labelling ones):
        C: SVM regularisation (``LinearSVC``). 3.0 on norm-scaled features is the paper's 0.001 on
            raw features, made scale-free: a linear SVM on features scaled by 1/n behaves as C*n^2
            on the raw ones, and pretrained EfficientNet-Lite0 patches have mean norm ~58
            (0.001 * 58^2 = 3.4). Dev set: norm C=3 within 0.007 F1 of raw C=0.001 everywhere;
            C=1..10 within 0.01.
        loss: ``"hinge"``, the soft-margin SVM the paper writes down.
        class_weight: ``"balanced"`` (default) or ``None`` (paper). The positives are a peak and
            its 2-px neighbours, ~700 nominal samples face them; where THR's region is small (a
            speck) few pixels are left unlabelled and, unweighted, the hinge loss gives the
            positives up (tire F1 0.145 unweighted vs 0.176; bottle and KolektorSDD equal).
        feature_scale: how features are scaled before the SVM. ``"norm"`` (default: each grid
            divided by the mean feature norm of the image's labelled pixels; keeps the features'
            geometry, as the paper's raw features do, and makes C mean the same for every
            backbone, random-weight ones included, and for concatenated 2D+3D grids), ``"raw"``
            (the paper: activations as they are; C must then suit the backbone's scale: C=0.001
            on random-init WRN50, patch norms ~2, gives empty masks), or ``"standardize"`` (per-channel
            z-scores; the previous default, chosen on random-weight backbones; on real data it
            inflated masks on small defects: recall ~0.9, precision ~0.05 on three unseen
            categories).
        svm_input: ``"features"`` (backbone grid) or ``"score"`` (the map itself, Table 6 ablation).
        fallback: mask for degenerate images: ``"empty"`` or ``"thr"`` (the THR mask, if given).
        tol: liblinear's stopping tolerance. 1e-2 instead of sklearn's 1e-4: >= 99.99% identical
            mask pixels and identical F1 on the dev set, 20% less time per image.

    ``fit_predict``'s ``thr_mask`` (THR's mask of the image, None without nominal statistics) also
    gives the pixels left unlabelled (``unlabelled="thr"``).
    """

    def __init__(
        self,
        percentile: float = pl.PERCENTILE,
        peak_size: int = pl.PEAK_SIZE,
        radius: int = pl.RADIUS,
        nominal_stride: int = pl.NOMINAL_STRIDE,
        margin: int = pl.MARGIN,
        max_nominal: int | None = None,
        C: float = C_DEFAULT,
        loss: str = "hinge",
        class_weight: str | None = "balanced",
        feature_scale: str = FEATURE_SCALE,
        svm_input: str = "features",
        fallback: str = "empty",
        max_iter: int = 2000,
        tol: float = 1e-2,
        seed: int = 0,
        neighbourhood: str = pl.NEIGHBOURHOOD,
        grow_level: float = pl.GROW_LEVEL,
        positive_stride: int = pl.POSITIVE_STRIDE,
        peak_level: float = pl.PEAK_LEVEL,
        erode: float = pl.ERODE,
        unlabelled: str = pl.UNLABELLED,
        unlabelled_level: float = pl.UNLABELLED_LEVEL,
        unlabelled_radius: int = pl.UNLABELLED_RADIUS,
    ):
        validate_params(
            percentile, peak_size, radius, nominal_stride, margin, neighbourhood, grow_level, positive_stride, peak_level, erode,
            unlabelled, unlabelled_level, unlabelled_radius,
        )  # fmt: skip
        if feature_scale not in FEATURE_SCALES:
            raise ConfigError(f"feature_scale must be one of {FEATURE_SCALES}, got {feature_scale!r}")
        if C <= 0:
            raise ConfigError(f"C must be > 0, got {C}")
        if fallback not in FALLBACKS:
            raise ConfigError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        if svm_input not in INPUTS:
            raise ConfigError(f"svm_input must be one of {INPUTS}, got {svm_input!r}")
        if class_weight not in (None, "balanced"):
            raise ConfigError(f"class_weight must be None or 'balanced', got {class_weight!r}")
        self.percentile = percentile
        self.peak_size = peak_size
        self.radius = radius
        self.nominal_stride = nominal_stride
        self.margin = margin
        self.max_nominal = max_nominal
        self.C = C
        self.loss = loss
        self.class_weight = class_weight
        self.feature_scale = feature_scale
        self.neighbourhood = neighbourhood
        self.grow_level = grow_level
        self.positive_stride = positive_stride
        self.peak_level = peak_level
        self.erode = erode
        self.unlabelled = unlabelled
        self.unlabelled_level = unlabelled_level
        self.unlabelled_radius = unlabelled_radius
        self.svm_input = svm_input
        self.fallback = fallback
        self.max_iter = max_iter
        self.tol = tol
        self.seed = seed

    def get_params(self) -> dict:
        return {k: getattr(self, k) for k in (
            "percentile", "peak_size", "peak_level", "radius", "neighbourhood", "grow_level", "erode", "positive_stride",
            "unlabelled", "unlabelled_level", "unlabelled_radius", "nominal_stride", "margin",
            "max_nominal", "C", "loss", "class_weight", "feature_scale", "svm_input", "fallback", "max_iter", "tol", "seed",
        )}  # fmt: skip

    def _degenerate(self, shape, reason: str, thr_mask: np.ndarray | None, info: dict) -> tuple[np.ndarray, dict]:
        info.update(status="degenerate", reason=reason)
        if self.fallback == "thr" and thr_mask is not None:
            info["fallback"] = "thr"
            return np.asarray(thr_mask, dtype=bool), info
        info["fallback"] = "empty"
        return np.zeros(shape, dtype=bool), info

    def fit_svm(self, x: np.ndarray, y: np.ndarray, blocks: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
        """Fit on (n, D) samples; return the weight vector and bias *in the raw feature space*.

        ``blocks``: channel counts of the concatenated grids (``"norm"`` scales each on its own).
        """
        mean = np.zeros(x.shape[1], dtype=np.float64)
        scale = np.ones(x.shape[1], dtype=np.float64)
        if self.feature_scale == "standardize":
            mean = x.mean(axis=0)
            scale = x.std(axis=0)
            scale[scale == 0] = 1.0
        elif self.feature_scale == "norm":
            start = 0
            for d in blocks or [x.shape[1]]:
                norm = float(np.linalg.norm(x[:, start : start + d], axis=1).mean())
                scale[start : start + d] = norm if norm > 0 else 1.0
                start += d
        if self.feature_scale != "raw":
            x = (x - mean) / scale
        svm = LinearSVC(
            C=self.C, loss=self.loss, class_weight=self.class_weight, dual=True,
            max_iter=self.max_iter, tol=self.tol, random_state=self.seed,
        )  # fmt: skip
        with _LIBLINEAR:
            svm.fit(x, y)
        w = svm.coef_[0] / scale
        b = float(svm.intercept_[0] - np.dot(svm.coef_[0], mean / scale))
        return w, b

    def fit_predict(
        self,
        score_map: np.ndarray,
        features: torch.Tensor | np.ndarray | Sequence | None = None,
        thr_mask: np.ndarray | None = None,
    ) -> tuple[np.ndarray, dict]:
        """Binary (H, W) mask for one image, and an info dict (status, reason, counts, timings).

        ``features`` is one (D, h, w) grid or a list of grids (e.g. CFM's 2D and 3D features).
        """
        s = np.asarray(score_map, dtype=np.float32)
        size = s.shape
        info: dict = {"status": "ok", "reason": None}
        t0 = time.perf_counter()
        pl = pseudo_labels(
            s, self.percentile, self.peak_size, self.radius, self.nominal_stride, self.margin,
            self.max_nominal, self.seed, self.neighbourhood, self.grow_level, self.positive_stride,
            self.peak_level, self.erode, self.unlabelled, self.unlabelled_level, self.unlabelled_radius, thr_mask,
        )  # fmt: skip
        t1 = time.perf_counter()
        info.update(n_pos=len(pl.positives), n_neg=len(pl.negatives), unlabelled=pl.unlabelled, t_label=t1 - t0)
        if pl.reason is not None:
            return self._degenerate(size, pl.reason, thr_mask, info)
        coords = np.concatenate([pl.positives, pl.negatives])
        y = np.r_[np.ones(len(pl.positives), dtype=int), np.zeros(len(pl.negatives), dtype=int)]
        if self.svm_input == "score":
            grids = None
            blocks = [1]
            x = s[coords[:, 0], coords[:, 1]][:, None].astype(np.float64)
        else:
            if features is None:
                raise ValueError("svm_input='features' needs the backbone feature grid(s)")
            grids = as_grids(features)
            blocks = [g.shape[0] for g in grids]
            x = sample_features(grids, coords, size).astype(np.float64)
        if np.ptp(x, axis=0).max() == 0:
            return self._degenerate(size, "labelled pixels have identical features", thr_mask, info)
        w, b = self.fit_svm(x, y, blocks)
        t2 = time.perf_counter()
        decision = dense_decision(s if grids is None else grids, w, b, size)
        mask = decision > 0
        info.update(t_fit=t2 - t1, t_predict=time.perf_counter() - t2, n_mask=int(mask.sum()))
        return mask, info


def dense_decision(
    features: np.ndarray | Sequence[torch.Tensor], w: np.ndarray, b: float, size: tuple[int, int]
) -> np.ndarray:
    """Exact ``w . upsample(F) + b`` at (H, W), computed as ``upsample(w . F) + b`` per grid."""
    if isinstance(features, np.ndarray) and features.ndim == 2:  # the score map itself, 1 feature
        return features.astype(np.float64) * w[0] + b
    out = np.full(size, b, dtype=np.float64)
    start = 0
    for g in features:
        d = g.shape[0]
        wg = torch.as_tensor(w[start : start + d], dtype=torch.float32)
        start += d
        low = torch.einsum("d,dhw->hw", wg, g).unsqueeze(0)  # (1, h, w)
        out += upsample(low, size)[0].numpy()
    return out


def dense_decision_naive(features: Sequence[torch.Tensor], w: np.ndarray, b: float, size: tuple[int, int]) -> np.ndarray:
    """Reference path: upsample every feature channel to (H, W), then apply the SVM. For tests/benchmarks."""
    full = torch.cat([upsample(g, size) for g in features], dim=0)  # (D, H, W)
    return (torch.einsum("d,dhw->hw", torch.as_tensor(w, dtype=torch.float32), full).numpy() + b).astype(np.float64)
