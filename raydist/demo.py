"""The embedded default end to end: synth -> fit -> evaluate on an embedded local Ray, local
Parquet and a local MLflow store inside the output folder.

``python -m raydist.demo --out runs/demo`` (what ``scripts/demo.sh`` runs).
"""

from __future__ import annotations

import argparse
import os
import sys

from raydist.cli import main as cli


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--backbone", default="efficientnet_lite0", help="pretrained EfficientNet-Lite0 is the one with real weights here")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--executor", choices=["ray", "local"], default="ray")
    a = p.parse_args(argv)
    out = os.path.abspath(a.out)
    data, model, results = (os.path.join(out, d) for d in ("data", "model", "eval"))
    if not os.path.isdir(data):  # reuse the generated data of an earlier run
        cli(["synth", data, "--size", str(a.size), "--seed", str(a.seed)])
    # the synthetic images are framed like MVTec 3D-AD: resize only, no crop
    common = ["--executor", a.executor, "--tracking-uri", f"sqlite:///{out}/mlflow.db", "--experiment", "raydist-demo"]
    rc = cli(["fit", "--data", data, "--out", model, "--backbone", a.backbone, "--resize", str(a.size), "--crop", str(a.size),
              "--seed", str(a.seed), *common])  # fmt: skip
    if rc == 0:
        rc = cli(["evaluate", "--data", data, "--model", model, "--out", results, *common])
    if rc == 0:
        print(f"\n[demo] dataset : {data}\n[demo] model   : {model}\n[demo] results : {results}/results (Parquet), {results}/metrics.json")
        print(f"[demo] MLflow  : mlflow ui --backend-store-uri sqlite:///{out}/mlflow.db  (runs in experiment 'raydist-demo')")
    return rc


if __name__ == "__main__":
    sys.exit(main())
