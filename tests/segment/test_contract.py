"""The Binariser contract, checked on every registered binariser (in the spirit of scikit-learn's
``check_estimator``): adding one to the registry runs it through all of these."""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import asdict, dataclass, fields

import numpy as np
import pytest

from raydist.config import EvalConfig
from raydist.errors import ConfigError
from raydist.segment.base import NEEDS, Binariser, flag_specs
from raydist.segment.registry import BINARISERS, DEFAULT_SEGMENT

NAMES = list(BINARISERS)


@dataclass
class Image:
    """A scored image as the engine hands it over: map, THR's mask, a feature grid, the image."""

    score_map: np.ndarray
    thr_mask: np.ndarray | None
    features: np.ndarray | None = None
    image: np.ndarray | None = None

    @property
    def thr_region(self):
        return self.thr_mask

    def feature_grids(self):
        return [self.features]


def image(kind: str, size: int = 64, seed: int = 0) -> Image:
    """``defect``: a bump on noise, whose features and pixels tell it apart; ``constant``, ``zero``, ``nan``: degenerate maps."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    bump = np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / (2 * 4.0**2))
    feats = rng.standard_normal((8, size // 8, size // 8)).astype(np.float32)
    feats[0, 2, 5] += 6.0  # the defect's cell
    pixels = rng.integers(100, 140, (size, size, 3)).astype(np.uint8)
    pixels[16:25, 36:45] = (200, 60, 60)  # the defect itself, sharper than its blob in the map
    maps = {
        "defect": bump + 0.05 * rng.random((size, size)),
        "constant": np.full((size, size), 0.3),  # below THR's level: no binariser has a reason to mark it
        "zero": np.zeros((size, size)),
        "nan": np.where(yy < 8, np.nan, bump),
    }
    m = maps[kind].astype(np.float32)
    with np.errstate(invalid="ignore"):
        thr = m > 0.5
    return Image(m, thr, feats, pixels)


@pytest.fixture(params=NAMES)
def binariser(request) -> type:
    return BINARISERS[request.param]


def test_registry_is_the_one_list():
    assert NAMES[: len(DEFAULT_SEGMENT)] == list(DEFAULT_SEGMENT) and len(set(NAMES)) == len(NAMES)
    assert tuple(EvalConfig(segment=tuple(NAMES)).segment) == tuple(NAMES)  # display order = registry order


def test_declares_the_protocol(binariser):
    b = binariser()
    assert isinstance(b, Binariser)
    assert binariser.name in BINARISERS and BINARISERS[binariser.name] is binariser
    assert binariser.needs and set(binariser.needs) <= set(NEEDS) and "map" in binariser.needs
    assert all(c.isidentifier() for c in binariser.info_columns)


@pytest.mark.parametrize("kind", ["defect", "constant", "zero", "nan"])
def test_masks_have_the_map_shape_and_are_deterministic(binariser, kind):
    """Every map gives a bool mask of its shape (degenerate maps included: no exception), the same twice."""
    im = image(kind)
    b = binariser()
    mask, info = b.binarise(im)
    again, info2 = binariser().binarise(image(kind))
    assert mask.dtype == bool and mask.shape == im.score_map.shape
    assert np.array_equal(mask, again) and isinstance(info, dict)
    if kind in ("constant", "zero"):  # nothing stands out: no claim of a defect
        assert not mask.any(), (binariser.name, kind, info)


def test_finds_a_clear_defect(binariser):
    """A bump far above a flat background, its cell distinct in the features: the mask lies on it."""
    im = image("defect")
    mask, info = binariser().binarise(im)
    assert mask.any(), info
    ys, xs = np.nonzero(mask)
    assert abs(ys.mean() - 20) < 8 and abs(xs.mean() - 40) < 8


def test_params_are_one_frozen_validated_dataclass(binariser):
    p = binariser.Params()
    for f in fields(p):
        assert f.metadata.get("help"), f"{binariser.name}.{f.name} has no help"
        assert f.metadata.get("why"), f"{binariser.name}.{f.name} does not say why its default"
    assert binariser.Params(**asdict(p)) == p  # round trip through what metrics.json stores
    assert binariser.Params.__dataclass_params__.frozen
    cfg = EvalConfig(segment=(binariser.name,))
    assert cfg.params[binariser.name] == p and cfg.to_dict().get(binariser.name, {}) == asdict(p)
    with pytest.raises(ConfigError):
        EvalConfig(segment=(binariser.name,), params={binariser.name: {"no_such_option": 1}})


def test_each_bad_value_is_refused(binariser):
    """Every field with a check or choices refuses a value outside it, naming the field."""
    for f in fields(binariser.Params):
        bad = "not-a-choice" if f.metadata.get("choices") else -1 if f.metadata.get("check") else None
        if bad is None:
            continue
        with pytest.raises(ConfigError, match=f.name):
            binariser.Params(**{f.name: bad})


def test_every_field_has_a_flag_that_reaches_the_config(binariser):
    """The CLI's flags are generated from the fields: each parses into the run configuration."""
    from raydist.cli import build_parser, eval_config

    specs = flag_specs(binariser)
    assert [s.field for s in specs] == [f.name for f in fields(binariser.Params)]
    for spec, f in zip(specs, fields(binariser.Params)):
        value = f.default
        text = "none" if value is None else str(value)
        a = build_parser().parse_args(["evaluate", "--data", "d", "--model", "m", "--out", "o", "--segment", binariser.name, spec.flag, text])
        cfg = eval_config(a)
        assert getattr(cfg.params[binariser.name], f.name) == value
        assert cfg.to_dict().get(binariser.name, {}).get(f.name) == value


def test_never_imports_a_detector_or_the_engine():
    """Binarisers see maps, not who made them: importing the registry loads no detector and no engine module."""
    code = ("import sys, raydist.segment.registry; "
            "bad = sorted(m for m in sys.modules if m.startswith(('raydist.methods', 'raydist.engine', 'raydist.distributed'))); "
            "print(bad); sys.exit(1 if bad else 0)")  # fmt: skip
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_cli_parser_builds_for_every_verb():
    from raydist.cli import build_parser

    p = build_parser()
    assert isinstance(p, argparse.ArgumentParser)
