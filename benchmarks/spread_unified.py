"""Spread of the unified-mode claim in tests/methods/unified/test_unified.py over seeds, torch
threads and CPU kernel paths: what the test's bounds are set from.

Each (seed, threads, kernels) cell fits the unified model (k-means routing, CADA regressor) on the
test's mixed generated data and prints pooled I-AUROC for ``--align none|cada|class``. ``kernels``
is the CPU code path of torch, MKL and oneDNN (``native`` = what this CPU offers, ``avx2`` / ``sse4``
= the paths another or an older x86 machine runs), the variation another machine brings that this
one can produce. Each cell runs in its own process, so the setting applies from the start.

    .venv/bin/python benchmarks/spread_unified.py [--seeds 0 1 2 3 4 5] [--threads 1 2] [--kernels native avx2 sse4]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CELL = """
import json, sys, tempfile, torch
torch.set_num_threads({threads})
from raydist.config import EvalConfig, ModelConfig
from raydist.data.synth import SynthConfig, write_synth
from raydist.engine.evaluate import evaluate
from raydist.engine.fit import fit
tmp = tempfile.mkdtemp()
data = tmp + "/data"
write_synth(data, SynthConfig(n_train=16, n_val=4, n_test_good=6, n_test_bad=10, size=128, defect_strength=0.35))
fit(data, tmp + "/m", ModelConfig(method="unified", resize=128, crop=128, seed={seed}, route="clusters", cada_iterations=1000))
out = {{a: evaluate(data, tmp + "/m", tmp + "/r-" + a, EvalConfig(segment=("thr",), align=a), workers={threads})["pooled"]["i_auroc"]
        for a in ("none", "cada", "class")}}
print("RESULT", json.dumps(out))
"""


# torch's own kernels, MKL's BLAS and oneDNN's convolutions each pick their code path by CPU; an
# AMD CPU, or an older Intel one, runs other paths than this one's AVX-512 (MKL, for one, takes
# its AVX2 path on AMD)
KERNELS = {
    "native": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "sse4": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}


def cell(seed: int, threads: int, kernels: str) -> dict[str, float]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.update(KERNELS[kernels])
    with tempfile.TemporaryDirectory() as tmp:
        p = subprocess.run([sys.executable, "-c", CELL.format(seed=seed, threads=threads)], capture_output=True, text=True, env=env, cwd=tmp)
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(p.stderr[-3000:])
    return json.loads(line[len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=list(KERNELS))
    a = ap.parse_args()
    rows = []
    print(f"{'seed':>4} {'thr':>3} {'kernels':>8} {'none':>6} {'cada':>6} {'class':>6} {'cada-class':>10} {'cada-none':>9}")
    for kernels in a.kernels:
        for threads in a.threads:
            for seed in a.seeds:
                r = cell(seed, threads, kernels)
                rows.append(r)
                print(f"{seed:>4} {threads:>3} {kernels:>8} {r['none']:6.3f} {r['cada']:6.3f} {r['class']:6.3f} "
                      f"{r['cada'] - r['class']:+10.3f} {r['cada'] - r['none']:+9.3f}", flush=True)  # fmt: skip
    for key in ("none", "cada", "class"):
        v = [r[key] for r in rows]
        print(f"{key:>6}: min {min(v):.3f} max {max(v):.3f}")
    d = [r["cada"] - r["class"] for r in rows]
    print(f"cada - class: min {min(d):+.3f} max {max(d):+.3f} mean {sum(d) / len(d):+.3f} over {len(d)} cells")


if __name__ == "__main__":
    main()
