"""CFM inference speed and peak memory on this CPU: FPFH and Point-MAE (full and pruned) next to
RGB-only PatchCore on the same images, in one run (prints each images/s and its ratio to
PatchCore's; asserts nothing). Images: the generated 3D benchmark (raydist.data.synth3d, 224 px,
~48k points per cloud, as MVTec 3D-AD at 224).
Run: .venv/bin/python benchmarks/bench_cfm.py
"""

from __future__ import annotations

import resource
import tempfile
import time

from raydist.config import ModelConfig
from raydist.data.dataset import read_table
from raydist.data.synth3d import Synth3DConfig, write_synth3d
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
    write_synth3d(data, Synth3DConfig(n_classes=1, n_train=8, n_val=2, n_test_good=2, n_test_bad=8))
    rows = read_table(data, splits=["test"], columns=INPUT_COLUMNS).to_pylist()
    variants = {
        "patchcore (EffNet-Lite0)": ModelConfig(resize=224, crop=224),
        "cfm EffNet-Lite0 + FPFH": ModelConfig(method="cfm", cfm_epochs=5),
        "cfm EffNet-Lite0 + Point-MAE full (12 blocks, random)": ModelConfig(method="cfm", backbone_3d="pointmae", weights_3d="none", cfm_epochs=5),
        "cfm EffNet-Lite0 + Point-MAE pruned (block 1, random)": ModelConfig(method="cfm", backbone_3d="pointmae", weights_3d="none", block_3d=0, cfm_epochs=5),
    }
    base = None
    for name, cfg in variants.items():
        model = f"{tmp}/{abs(hash(name))}"
        fit_model(data, model, cfg)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        f = fps(model, rows)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        base = base or f
        print(f"{name}: {f:.2f} img/s ({f / base:.2f}x PatchCore), process peak RSS {peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f})", flush=True)


if __name__ == "__main__":
    main()
