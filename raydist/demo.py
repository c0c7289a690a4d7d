"""The embedded default end to end: synth -> fit -> evaluate on generated data, local storage.

``python -m raydist.demo --out runs/demo`` (what ``scripts/demo.sh`` runs).
"""

from __future__ import annotations

import argparse
import os
import sys

from raydist.cli import print_table
from raydist.data.synth import SynthConfig, write_synth
from raydist.model_store import ModelConfig
from raydist.pipeline import EvalOptions, evaluate, fit_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--backbone", default="efficientnet_lite0", help="pretrained EfficientNet-Lite0 is the one with real weights here")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    out = os.path.abspath(a.out)
    data, model, results = (os.path.join(out, d) for d in ("data", "model", "results"))
    if not os.path.isdir(data):  # reuse the generated data of an earlier run
        n = write_synth(data, SynthConfig(size=a.size, seed=a.seed))
        print(f"[demo] generated {n} rows -> {data}")
    # the synthetic images are already framed like MVTec 3D-AD: resize only, no crop
    fit_model(data, model, ModelConfig(backbone=a.backbone, resize=a.size, crop=a.size, seed=a.seed), log=print)
    report = evaluate(data, model, results, EvalOptions(), log=lambda _: None)
    print_table(report)
    print(f"\n[demo] dataset : {data}\n[demo] model   : {model}\n[demo] results : {results}/results (Parquet), {results}/metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
