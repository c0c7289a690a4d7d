"""Shared fixtures. Tests never reach a model hub (HF_HUB_OFFLINE=1) and never leave 127.0.0.1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
if "RAYDIST_OPENVINO_CACHE" not in os.environ:  # converted backbones: per test session, not in the user's home
    import atexit
    import shutil
    import tempfile

    os.environ["RAYDIST_OPENVINO_CACHE"] = tempfile.mkdtemp(prefix="raydist-openvino-")
    atexit.register(shutil.rmtree, os.environ["RAYDIST_OPENVINO_CACHE"], True)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_sample(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real sample data {path} is absent (only present beside the project's CI checkout)")
    return path


@pytest.fixture(scope="session")
def synth_uri(tmp_path_factory) -> str:
    """Small generated dataset: 3 classes, 12 train / 4 val / 4 good + 6 defective test each."""
    from raydist.data.synth import SynthConfig, write_synth

    uri = str(tmp_path_factory.mktemp("synth") / "data")
    write_synth(uri, SynthConfig(seed=0))
    return uri


@pytest.fixture(scope="session")
def wrn_model_uri(synth_uri, tmp_path_factory) -> str:
    """PatchCore on random-init (pretrained=False) WideResNet-50 at 128 px: no weights exist here."""
    from raydist.config import ModelConfig
    from raydist.engine.fit import fit as fit_model

    uri = str(tmp_path_factory.mktemp("model") / "wrn")
    fit_model(synth_uri, uri, ModelConfig(backbone="wrn50", weights="none", resize=128, crop=128))
    return uri
