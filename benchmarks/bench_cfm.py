"""CFM inference speed and peak memory on this CPU: full vs pruned 2D/3D extractors, next to
PatchCore on the same images, in one run (prints, asserts nothing).
Run: .venv/bin/python benchmarks/bench_cfm.py
"""

from __future__ import annotations

import resource
import tempfile
import time

from raydist.config import ModelConfig
from raydist.data.dataset import read_table
from raydist.data.synth import SynthConfig, write_synth
from raydist.engine.fit import fit as fit_model
from raydist.engine.rows import INPUT_COLUMNS
from raydist.engine.scoring import Scorer


def fps(model: str, rows: list[dict]) -> float:
    sc = Scorer(model)
    sc.score_rows(rows[:1])  # warm-up
    t = time.perf_counter()
    for r in rows:
        sc.score_rows([r])
    return len(rows) / (time.perf_counter() - t)


def main() -> None:
    tmp = tempfile.mkdtemp()
    data = f"{tmp}/data"
    write_synth(data, SynthConfig(n_classes=1, n_train=8, n_val=2, n_test_good=2, n_test_bad=8, size=224, with_xyz=True))
    rows = read_table(data, splits=["test"], columns=INPUT_COLUMNS).to_pylist()
    variants = {
        "patchcore (EffNet-Lite0)": ModelConfig(resize=224, crop=224),
        "cfm EffNet-Lite0 + FPFH": ModelConfig(method="cfm", resize=224, crop=224, cfm_epochs=5),
        "cfm EffNet-Lite0 + Point-MAE full (12 blocks, random)": ModelConfig(method="cfm", backbone_3d="pointmae", weights_3d="none", resize=224, crop=224, cfm_epochs=5),
        "cfm EffNet-Lite0 + Point-MAE pruned (block 1, random)": ModelConfig(method="cfm", backbone_3d="pointmae", weights_3d="none", block_3d=0, resize=224, crop=224, cfm_epochs=5),
    }
    for name, cfg in variants.items():
        model = f"{tmp}/{abs(hash(name))}"
        fit_model(data, model, cfg)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        f = fps(model, rows)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"{name}: {f:.2f} img/s, process peak RSS {peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f})")


if __name__ == "__main__":
    main()
