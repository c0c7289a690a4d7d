"""TopoTTA's topological pseudo-mask (Ali et al., IEEE TPAMI 2026), a benchmark-only baseline.

TopoTTA (TTT4AS's successor) labels pixels from persistent homology of the min-max normalised
score map, computed on a cubical complex (gudhi: ``pip install 'raydist[bench]'``):

- superlevel filtration (the map's peaks, H0): the most persistent finite component, born at a
  peak height ``p``, marks ``map >= p - sup_delta``;
- sublevel filtration (loops, H1): the most persistent loop, dying at ``d``, marks ``map >= d - sub_delta``;
- the pseudo-mask is where both mark. (TopoTTA then trains a per-image classifier on those labels;
  that step needs its few-shot MLP and a ViT-B/8 DINO backbone, neither of which exists here.)

The defaults are the published code's (k = 1 feature of each kind, deltas 0.47 and 0.30, no
persistence floor). Written from the paper's description for raydist's harness; it is not a
registered binariser, so the product never depends on gudhi.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


def _most_persistent(pairs: list, dim: int) -> tuple[float, float] | None:
    finite = [(b, d) for k, (b, d) in pairs if k == dim and np.isfinite(d)]
    return max(finite, key=lambda bd: bd[1] - bd[0]) if finite else None


def topotta_pseudo_mask(score_map: np.ndarray, sub_delta: float = 0.47, sup_delta: float = 0.30) -> np.ndarray:
    import gudhi

    s = np.asarray(score_map, dtype=np.float64)
    lo, hi = float(s.min()), float(s.max())
    if not np.isfinite([lo, hi]).all() or hi <= lo:
        return np.zeros(s.shape, bool)
    x = (s - lo) / (hi - lo)

    def pairs(img: np.ndarray) -> list:
        cc = gudhi.CubicalComplex(top_dimensional_cells=img)
        return cc.persistence()

    loop = _most_persistent(pairs(x), 1)  # sublevel H1
    peak = _most_persistent(pairs(1.0 - x), 0)  # superlevel H0, on the inverted map
    if loop is None or peak is None:
        return np.zeros(s.shape, bool)
    sub = x >= max(0.0, loop[1] - sub_delta)
    peak_height = 1.0 - peak[0]  # a superlevel component is born at its peak's height
    sup = x >= max(0.0, peak_height - sup_delta)
    return sub & sup


class TopoTTAPseudoMask:
    """The pseudo-mask as a binariser the harness can run (not in the registry)."""

    name: ClassVar[str] = "topotta"
    info_columns: ClassVar[tuple[str, ...]] = ()

    def binarise(self, image: Any) -> tuple[np.ndarray, dict]:
        return topotta_pseudo_mask(image.score_map), {}
