"""Label-free implicit classes: cluster nominal images by a global embedding, route test images.

This makes explicit the image -> class -> distribution inference that CADA's regressor does
implicitly: each cluster gets its own bank and THR statistics, so anomalous patches of one part
cannot find near neighbours among another part's patches.
"""

from __future__ import annotations

import numpy as np


def embed(grids: np.ndarray) -> np.ndarray:
    """(N, D, h, w) -> (N, D) L2-normalised mean of the feature grid (a global image descriptor)."""
    e = np.asarray(grids, dtype=np.float64).mean(axis=(2, 3))
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


class Router:
    """KMeans on global embeddings. ``k=None`` picks k in [2, k_max] by the best silhouette score."""

    def __init__(self, k: int | None = None, k_max: int = 10, seed: int = 0):
        self.k, self.k_max, self.seed = k, k_max, seed
        self.centers: np.ndarray | None = None
        self.silhouettes: dict[int, float] = {}

    def fit(self, grids: np.ndarray) -> Router:
        from sklearn.cluster import (
            KMeans,  # here: importing the method registry should not load scikit-learn
        )
        from sklearn.metrics import silhouette_score

        e = embed(grids)
        if self.k is not None:
            km = KMeans(self.k, n_init=10, random_state=self.seed).fit(e)
        else:
            best = None
            for k in range(2, min(self.k_max, len(e) - 1) + 1):
                km_k = KMeans(k, n_init=10, random_state=self.seed).fit(e)
                self.silhouettes[k] = float(silhouette_score(e, km_k.labels_))
                if best is None or self.silhouettes[k] > self.silhouettes[best[0]]:
                    best = (k, km_k)
            if best is None:
                km = KMeans(1, n_init=1, random_state=self.seed).fit(e)
            else:
                km = best[1]
        self.centers = km.cluster_centers_
        return self

    def assign(self, grids: np.ndarray) -> np.ndarray:
        e = embed(grids)
        d = ((e[:, None, :] - self.centers[None]) ** 2).sum(-1)
        return d.argmin(axis=1)
