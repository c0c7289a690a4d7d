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
from typing import ClassVar

import numpy as np
import torch

from raydist.segment.base import ParamsBinariser, ScoredImage
from raydist.segment.pseudo_labels import pseudo_labels
from raydist.segment.sampling import as_grids, sample_features, upsample
from raydist.segment.ttt4as_params import TTT4ASParams

# One SVM per image stops at ``max_iter`` by design (the per-image budget), so liblinear's "failed
# to converge" would flood every run's log. Filtered once, for that message only: a
# ``warnings.catch_warnings`` block per fit is not thread-safe (it swaps the process-wide filter
# list), and the local executor's worker threads fit SVMs side by side.
warnings.filterwarnings("ignore", message="Liblinear failed to converge")  # scikit-learn's ConvergenceWarning (imported at first use)
# scikit-learn's liblinear draws from one process-wide random generator, seeded at each fit: two
# fits at once in two threads would draw from each other's sequence, and a mask would depend on
# thread timing. One fit at a time per process keeps every mask a function of its image alone.
_LIBLINEAR = threading.Lock()

class TTT4AS(ParamsBinariser):
    """Per-image test-time SVM binariser.

    Hyper-parameters: one :class:`~raydist.segment.ttt4as_params.TTT4ASParams` (defaults and the
    measured reason for each live there).

    ``fit_predict``'s ``thr_mask`` (THR's mask of the image, None without nominal statistics) also
    gives the pixels left unlabelled (``unlabelled="thr"``).
    """

    name: ClassVar[str] = "ttt4as"
    Params: ClassVar[type] = TTT4ASParams
    needs: ClassVar[frozenset[str]] = frozenset({"map", "features", "nominal"})  # nominal: THR's mask, when the class has one
    info_columns: ClassVar[tuple[str, ...]] = ("status", "reason")
    flag_prefix: ClassVar[str] = ""  # its flags (--percentile, --svm-c, ...) predate the seam

    def binarise(self, image: ScoredImage) -> tuple[np.ndarray, dict]:
        features = image.feature_grids() if self.params.svm_input == "features" else None
        return self.fit_predict(image.score_map, features, image.thr_region)

    def _degenerate(self, shape, reason: str, thr_mask: np.ndarray | None, info: dict) -> tuple[np.ndarray, dict]:
        info.update(status="degenerate", reason=reason)
        if self.params.fallback == "thr" and thr_mask is not None:
            info["fallback"] = "thr"
            return np.asarray(thr_mask, dtype=bool), info
        info["fallback"] = "empty"
        return np.zeros(shape, dtype=bool), info

    def fit_svm(self, x: np.ndarray, y: np.ndarray, blocks: Sequence[int] | None = None) -> tuple[np.ndarray, float]:
        """Fit on (n, D) samples; return the weight vector and bias *in the raw feature space*.

        ``blocks``: channel counts of the concatenated grids (``"norm"`` scales each on its own).
        """
        p = self.params
        mean = np.zeros(x.shape[1], dtype=np.float64)
        scale = np.ones(x.shape[1], dtype=np.float64)
        if p.feature_scale == "standardize":
            mean = x.mean(axis=0)
            scale = x.std(axis=0)
            scale[scale == 0] = 1.0
        elif p.feature_scale == "norm":
            start = 0
            for d in blocks or [x.shape[1]]:
                norm = float(np.linalg.norm(x[:, start : start + d], axis=1).mean())
                scale[start : start + d] = norm if norm > 0 else 1.0
                start += d
        if p.feature_scale != "raw":
            x = (x - mean) / scale
        from sklearn.svm import (
            LinearSVC,  # at the first fit: a process that never binarises never loads scikit-learn
        )

        svm = LinearSVC(
            C=p.C, loss=p.loss, class_weight=p.class_weight, dual=True, max_iter=p.max_iter, tol=p.tol, random_state=p.seed,
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
        pl = pseudo_labels(s, self.params, thr_mask)
        t1 = time.perf_counter()
        info.update(n_pos=len(pl.positives), n_neg=len(pl.negatives), unlabelled=pl.unlabelled, t_label=t1 - t0)
        if pl.reason is not None:
            return self._degenerate(size, pl.reason, thr_mask, info)
        coords = np.concatenate([pl.positives, pl.negatives])
        y = np.r_[np.ones(len(pl.positives), dtype=int), np.zeros(len(pl.negatives), dtype=int)]
        if self.params.svm_input == "score":
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
