"""The executors side by side on one generated archive, in one run (issue 36, item 3).

Variants, each a fresh process as a user starts it, over the same archive and model:
- ``local``: ``raydist evaluate`` (one worker thread per CPU, one shared model);
- ``ray``: ``raydist evaluate --executor ray`` with every default (embedded local Ray; the scoring
  actors binarise their own units: one actor per CPU);
- ``ray-node``: ``--cpus-per-actor <all CPUs>``: one actor with a worker thread per CPU, one model
  copy (the local executor's layout inside one Ray actor);
- ``ray-tasks``: ``--segment-in tasks`` (one scoring actor, units binarised in CPU segment tasks:
  the GPU layout, and the default before this benchmark);
- ``ray-data``: the same stages under Ray Data instead of the hand-written scheduler: units as a
  dataset, ``map_batches`` over an actor pool (``ActorPoolStrategy``, one actor per CPU) running
  both stages, as ``ray`` does;
- ``ray-data-2stage``: Ray Data with scoring in an actor pool and binarising as a CPU ``map_batches``
  stage, as ``ray-tasks`` does.
Printed per variant: whole-process seconds and images/s (what a user waits), images/s once started
(metrics.json's timing: planning to metrics.json), the start-up before that, overhead per unit
(wall time the stages' seconds spread over the workers do not explain) and the binarising share.
Every variant's metrics.json must equal the local one's (but timing and executor): checked, and a
difference is printed. Generated data (``raydist synth`` textures), said so in the output.

Run: .venv/bin/python benchmarks/bench_executors.py --images 2000 [--size 512] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAYDIST = [sys.executable, "-m", "raydist.cli"]
VARIANTS = ("local", "ray", "ray-node", "ray-tasks", "ray-data", "ray-data-2stage")


def run_ray_data(data: str, model: str, out: str, two_stage: bool) -> None:
    """Evaluate with Ray Data scheduling the engine's stages (a benchmark variant, not a product path)."""
    import numpy as np
    import ray

    from raydist.config import EvalConfig
    from raydist.distributed.evaluate import WORKER_RUNTIME_ENV, init
    from raydist.engine import results
    from raydist.engine.evaluate import collect_unit, finish, plan, submit_unit, worker_pool
    from raydist.engine.scoring import Scorer
    from raydist.engine.stages import score_unit, segment_unit
    from raydist.engine.units import read_unit
    from raydist.timing import StageTimes

    init()
    cfg, t0 = EvalConfig(), time.perf_counter()
    p = plan(data, model, out, cfg, resume=False)

    class Units:
        """Ray Data actor: both stages of each unit (two_stage: the score stage only)."""

        def __init__(self):
            import torch

            torch.set_num_threads(1)
            self.times = StageTimes()
            with self.times("start_scorer"):
                self.scorer = Scorer(model, cfg, duplicates=p.duplicates)
            self.pool = worker_pool(1)

        def __call__(self, batch: dict) -> dict:
            outs = []
            for blob in batch["unit"]:
                unit, (times, self.times) = pickle.loads(blob), (self.times, StageTimes())
                with times("read"):
                    rows = read_unit(unit, data, self.scorer.columns)
                if two_stage:
                    outs.append(pickle.dumps((unit, score_unit(self.scorer, rows, cfg.batch_size, times), dict(times))))
                    continue
                table, summary = collect_unit(unit.uid, submit_unit(self.pool, self.scorer, rows, cfg), cfg, p.offset, times)
                with times("write"):
                    results.write_unit(out, unit.uid, unit.class_name, table, summary)
                outs.append(pickle.dumps((summary["n_rows"], dict(times))))
            return {"unit": np.array(outs, dtype=object)}

    def segment(batch: dict) -> dict:
        outs = []
        for blob in batch["unit"]:
            unit, scored, t = pickle.loads(blob)
            times = StageTimes(t)
            table, summary = segment_unit(unit.uid, scored, cfg, p.offset, times)
            with times("write"):
                results.write_unit(out, unit.uid, unit.class_name, table, summary)
            outs.append(pickle.dumps((summary["n_rows"], dict(times))))
        return {"unit": np.array(outs, dtype=object)}

    cpus = int(ray.cluster_resources()["CPU"])
    actors = 1 if two_stage else cpus
    ds = ray.data.from_items([{"unit": pickle.dumps(u)} for u in p.todo], override_num_blocks=len(p.todo))
    ds = ds.map_batches(Units, batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1, runtime_env=WORKER_RUNTIME_ENV)
    if two_stage:
        ds = ds.map_batches(segment, batch_size=1, num_cpus=1, runtime_env=WORKER_RUNTIME_ENV)
    times, evaluated = StageTimes(), 0
    for row in ds.iter_rows():
        n, t = pickle.loads(row["unit"])
        evaluated += n
        times.merge(t)
    workers = actors + (cpus - actors if two_stage else 0)
    finish(p, out, {"kind": "ray-data", "actors": actors, "two_stage": two_stage}, evaluated, t0, times, workers)


def run_variant(variant: str, data: str, model: str, out: str) -> float:
    """One variant in a fresh process; its whole-process seconds."""
    if variant.startswith("ray-data"):
        cmd = [sys.executable, __file__, "--ray-data-run", variant, "--data", data, "--model", model, "--out", out]
    else:
        flags = {"local": [], "ray": ["--executor", "ray"], "ray-tasks": ["--executor", "ray", "--segment-in", "tasks"],
                 "ray-node": ["--executor", "ray", "--cpus-per-actor", str(os.cpu_count())]}[variant]  # fmt: skip
        cmd = [*RAYDIST, "evaluate", "--data", data, "--model", model, "--out", out, "--no-tracking", *flags]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    took = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return took


def median(rounds: list[dict], key: str) -> float:
    return statistics.median(x[key] for x in rounds)


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k not in ("timing", "executor")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=2000, help="test images in the generated archive (3 classes, 10%% defective)")
    ap.add_argument("--size", type=int, default=512, help="stored image side (processed at the model's 224)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--repeats", type=int, default=1, help="rounds of all variants, interleaved")
    ap.add_argument("--work", default="/tmp/raydist-executors")
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--ray-data-run", choices=["ray-data", "ray-data-2stage"], help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.ray_data_run:
        return run_ray_data(a.data, a.model, a.out, a.ray_data_run == "ray-data-2stage")

    work = Path(a.work) / f"{a.images}x{a.size}"
    data, model = str(work / "data"), str(work / "model")
    per_class = a.images // 3
    bad = per_class // 10
    if not (work / "data").exists():  # generated once, reused by later runs
        t = time.perf_counter()
        subprocess.run([*RAYDIST, "synth", data, "--classes", "3", "--train", "40", "--val", "10", "--test-good", str(per_class - bad),
                        "--test-bad", str(bad), "--size", str(a.size)], check=True, cwd=ROOT, capture_output=True)  # fmt: skip
        print(f"generated {3 * per_class} test images at {a.size} px in {time.perf_counter() - t:.0f} s")
    if not (work / "model").exists():
        subprocess.run([*RAYDIST, "fit", "--data", data, "--out", model, "--no-tracking"], check=True, cwd=ROOT, capture_output=True)
    variants = a.variants.split(",")
    from raydist.engine.units import list_units

    n_units = len(list_units(data))
    print(f"data: {data} (generated textures, 3 classes, {3 * per_class} test images stored at {a.size} px); model: PatchCore, every fit default")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {a.repeats} round(s), variants interleaved, each a fresh process\n")

    rows: dict[str, list[dict]] = {v: [] for v in variants}
    reference = None
    for r in range(a.repeats):
        for v in variants:
            out = str(work / f"out-{v}-{r}")
            subprocess.run(["rm", "-rf", out], check=True)
            whole = run_variant(v, data, model, out)
            m = json.loads(Path(out, "metrics.json").read_text())
            if reference is None:
                reference = comparable(m)
            same = comparable(m) == reference
            t = m["timing"]
            n = t["images_evaluated"]
            seg = sum(s for k, s in t["stages_s"].items() if k in ("thr", "ttt4as", "mebin", "rel", "arel", "encode", "metric_counts", "write"))
            rows[v].append({"whole": whole, "n": n, "run": t["total_s"], "overhead": t["overhead_s"],
                            "seg_share": seg / max(sum(t["stages_s"].values()), 1e-9), "workers": t["workers"], "same": same})  # fmt: skip
            print(f"  round {r} {v}: whole {whole:.1f} s, run {t['total_s']:.1f} s, metrics.json {'identical' if same else 'DIFFERS'}", flush=True)

    print("\n| variant | workers | whole-process s | images/s whole (x first row) | images/s once started (x first row) | start-up s | overhead s (per unit) | binarise + write share | metrics.json = local |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = None
    for v in variants:
        rs = rows[v]
        whole, run, n = median(rs, "whole"), median(rs, "run"), rs[0]["n"]
        base = base or (n / whole, n / run)
        print(f"| {v} | {rs[0]['workers']} | {whole:.1f} | {n / whole:.1f} ({n / whole / base[0]:.2f}x) | {n / run:.1f} ({n / run / base[1]:.2f}x) | "
              f"{whole - run:.1f} | {median(rs, 'overhead'):.1f} ({1000 * median(rs, 'overhead') / n_units:.0f} ms) | {median(rs, 'seg_share'):.0%} | {all(x['same'] for x in rs)} |")  # fmt: skip
    print(f"\n({n_units} units; medians over rounds; 'once started' = metrics.json's timing, planning to metrics.json; start-up = imports, Ray start, before planning)")


if __name__ == "__main__":
    main()
