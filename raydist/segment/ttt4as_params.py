"""TTT4AS's hyper-parameters, each defined once: default, help and why (read by the pseudo-labels,
the SVM step, the CLI, ``metrics.json`` and MLflow).

The paper fixes the percentile (99), the SVM (a linear soft-margin SVM on frozen features) and
the positive set (local maxima above the percentile and their neighbours); every other default
was chosen on the real development set (MVTec AD bottle, KolektorSDD, the MVTec 3D-AD tire
sample, generated data): docs/methods/ttt4as.md has the tables, and
:func:`raydist.segment.pseudo_labels.pseudo_labels` the long reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

from raydist.segment.base import AT_LEAST_1, NON_NEGATIVE, param, validate

NEIGHBOURHOODS = ("disk", "grow")
UNLABELLED_SOURCES = ("thr", "blob", "none")
FEATURE_SCALES = ("raw", "norm", "standardize")
INPUTS = ("features", "score")
FALLBACKS = ("empty", "thr")
_fraction = (lambda v: 0 <= v < 1, "in [0, 1)")


@dataclass(frozen=True)
class TTT4ASParams:
    """Pseudo-labelling (which pixels train the per-image SVM) and the SVM step.

    The SVM step (pseudo-labelling: :func:`~raydist.segment.pseudo_labels.pseudo_labels`):
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
    """

    percentile: float = param(99.0, "peaks must lie above this percentile of the map",
                              "the paper's setting; its ablation is flat from 95 to 99.5", check=(lambda v: 0 <= v < 100, "in [0, 100)"))
    peak_size: int = param(3, "local-maximum window, pixels", "'comparing neighbouring values' read literally: the 8-neighbourhood",
                           check=AT_LEAST_1)
    peak_level: float = param(0.0, "drop peaks below median + level * (highest peak - median); 0 = every peak above the percentile",
                              "0.9 gave KolektorSDD +0.01 and bottle -0.01: off, as in the paper", check=_fraction)
    radius: int = param(2, "positive neighbourhood radius (the cap, for grow)",
                        "the peaks' immediate neighbours, where the map is sharp: the map's blur hides a defect's size "
                        "(a 5-px speck and a 20-px scratch both blur to ~24 px)", check=NON_NEGATIVE)
    neighbourhood: str = param("disk", "disk: every pixel within --radius of a peak; grow: pixels connected to the peak above --grow-level",
                               "grow 0.85 follows the blob and is too large for small defects (tire F1 0.10 vs THR 0.16)",
                               choices=NEIGHBOURHOODS)
    grow_level: float = param(0.85, "grow: keep pixels >= median + level * (peak - median)", "the previous default of grow", check=_fraction)
    erode: float = param(0.0, "grow: drop region pixels within this distance of its border (px)", "did not help on the dev set",
                         check=NON_NEGATIVE)
    positive_stride: int = param(2, "hard positives kept on a lattice of this step",
                                 "neighbouring pixels carry near-identical bilinear features (<= 0.005 F1 on the dev set)", check=AT_LEAST_1)
    unlabelled: str = param("thr", "pixels left to the features: thr (above THR's threshold), blob (a peak's blob), "
                                   "none (the paper: all may be nominal)",
                            "THR's region follows the defect's size (tire ~200 px, bottle ~16,000 px): bottle F1 0.66 vs 0.30 "
                            "with everything outside the margin nominal", choices=UNLABELLED_SOURCES)  # fmt: skip
    unlabelled_level: float = param(0.5, "blob: pixels connected to a peak above median + level * (peak - median)",
                                    "half the peak's height over the background, for maps without nominal statistics", check=_fraction)
    unlabelled_radius: int = param(128, "blob: how far from its peak, pixels", "covers the largest dev-set defects", check=NON_NEGATIVE)
    nominal_stride: int = param(8, "nominal pixels sampled on a lattice of this step",
                                "one sample per feature cell: ~700 points at 224 px, no redundant interpolated features", check=AT_LEAST_1)
    margin: int = param(8, "no nominal sample within this distance of a positive, pixels",
                        "one feature cell of clearance (16: tire -0.03; 4: within 0.02 everywhere)", check=NON_NEGATIVE)
    max_nominal: int | None = param(None, "cap on nominal samples (a seeded random subset)", "none: ~700 at 224 px needs no cap",
                                    type=int, check=(lambda v: v is None or v >= 1, "none or >= 1"))
    C: float = param(3.0, "SVM regularisation", "the paper's 0.001 on raw features, made scale-free by --feature-scale norm "
                                               "(0.001 x 58^2, EfficientNet-Lite0's mean patch norm); C 1..10 within 0.01 F1",
                     check=(lambda v: v > 0, "> 0"), flag="svm-c")  # fmt: skip
    loss: str = param("hinge", "LinearSVC loss", "the soft-margin SVM the paper writes down", choices=("hinge", "squared_hinge"), flag="svm-loss")
    class_weight: str | None = param("balanced", "balanced, or none (paper)",
                                     "~700 nominal samples face a peak's few positives; unweighted, a speck's are given up "
                                     "(tire F1 0.145 vs 0.176; bottle and KolektorSDD equal)", choices=("balanced", None))  # fmt: skip
    feature_scale: str = param("norm", "raw (paper), norm (divide by the image's mean feature norm) or standardize (per channel)",
                               "keeps the features' geometry as raw does and makes C mean the same for every backbone; standardize "
                               "inflated small-defect masks (recall ~0.9, precision ~0.05)", choices=FEATURE_SCALES)  # fmt: skip
    svm_input: str = param("features", "features (backbone grid) or score (the map itself, the paper's Table 6 ablation)",
                           "the paper's method", choices=INPUTS)
    fallback: str = param("empty", "mask of a degenerate image: empty or thr", "no labels, no claim", choices=FALLBACKS)
    max_iter: int = param(2000, "liblinear iteration budget per image", "a per-image budget: the fit stops there by design",
                          check=AT_LEAST_1, flag="svm-max-iter")
    tol: float = param(1e-2, "liblinear stopping tolerance", ">= 99.99% identical mask pixels and F1 vs sklearn's 1e-4, 20% less time",
                       check=(lambda v: v > 0, "> 0"), flag="svm-tol")
    seed: int = param(0, "seeds the nominal subset (--max-nominal) and liblinear", "fixed: a mask is a function of its image",
                      flag="svm-seed")

    def __post_init__(self) -> None:
        validate(self)


__all__ = ["FALLBACKS", "FEATURE_SCALES", "INPUTS", "NEIGHBOURHOODS", "UNLABELLED_SOURCES", "TTT4ASParams"]
