"""Ray pipeline figures in one run (prints, asserts nothing):

- end-to-end evaluate throughput (images/s) on a local Ray with 2 CPUs;
- the SVM stage alone with 1 vs 2 concurrent CPU tasks over the same scored units (the ratio);
- driver peak RSS and the object-store bytes per image that actors hand to SVM tasks.
Run: .venv/bin/python benchmarks/bench_ray.py [--images-per-class 40]
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import tempfile
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
import torch  # noqa: E402

from raydist.config import EvalConfig, ModelConfig  # noqa: E402
from raydist.data.dataset import rows_to_table, write_table  # noqa: E402
from raydist.data.synth import SynthConfig, generate_rows  # noqa: E402
from raydist.distributed import evaluate as dist  # noqa: E402
from raydist.engine.fit import fit as fit_model  # noqa: E402
from raydist.engine.units import list_units  # noqa: E402
from raydist.model_store import load_meta, score_offset  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images-per-class", type=int, default=40)
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    data, model = f"{tmp}/data", f"{tmp}/model"
    n_bad = a.images_per_class * 3 // 4
    rows = generate_rows(SynthConfig(n_train=12, n_val=4, n_test_good=a.images_per_class - n_bad, n_test_bad=n_bad, size=a.size))
    write_table(rows_to_table(rows), data, max_rows_per_group=4)  # many small units, so 2 tasks can overlap
    fit_model(data, model, ModelConfig(resize=a.size, crop=a.size))
    dist.init(num_cpus=2)
    t = time.perf_counter()
    rep = dist.evaluate(data, model, f"{tmp}/res", EvalConfig(), log=lambda _: None)
    e2e = time.perf_counter() - t
    n = rep["pooled"]["n_images"]
    print(f"evaluate end to end: {n} images in {e2e:.1f}s = {n / e2e:.2f} img/s (1 scoring actor + SVM tasks, 2 CPUs, EfficientNet-Lite0)")

    units = list_units(data)
    actor = dist.ScoringActor.options(num_cpus=0).remote(model, data, EvalConfig(), torch.get_num_threads())
    scored = [actor.score_unit.remote(u) for u in units]
    ray.wait(scored, num_returns=len(scored))
    ray.kill(actor)  # its worker process would otherwise count against the 2-worker pool
    per_image = sum(len(pickle.dumps(ray.get(r))) for r in scored) / n
    offset = score_offset(load_meta(model))
    times = {}
    # num_cpus=2 per task -> one at a time; 1 -> two at a time. The untimed 1-CPU round right before
    # the timed one starts the second worker (Ray reaps idle workers after ~1 s), so start-up
    # (~2 s of imports) is not counted as SVM time.
    for cpus in (2, 1, 1):
        t = time.perf_counter()
        ray.get([dist.segment_task.options(num_cpus=cpus).remote(u, s, EvalConfig(), offset, f"{tmp}/seg{cpus}", 1) for u, s in zip(units, scored)])
        times[3 - cpus] = time.perf_counter() - t
    print(f"SVM stage over {n} images: 1 task at a time {times[1]:.1f}s, 2 at a time {times[2]:.1f}s -> {times[1] / times[2]:.2f}x")
    print(f"object store: {per_image / 1024:.0f} KiB per image handed from actors to SVM tasks (score map f32 + f16 feature grid + masks)")
    print(f"driver peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    ray.shutdown()


if __name__ == "__main__":
    main()
