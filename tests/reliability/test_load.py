"""Item 7 (slow; `make test-reliability`): an archive 20x the default synthetic size on a local Ray,
with bounded memory. Prints peak RSS of the driver and workers and the object-store high-water mark."""

import threading
import time

import psutil
import pytest

ray = pytest.importorskip("ray")

from raydist.config import EvalConfig, ModelConfig  # noqa: E402
from raydist.data.synth import SynthConfig, write_synth  # noqa: E402
from raydist.distributed import evaluate as dist  # noqa: E402
from raydist.engine.fit import fit as fit_model  # noqa: E402


@pytest.mark.slow
def test_archive_20x_default(tmp_path):
    data = str(tmp_path / "data")
    # default synth: 3 classes x 10 test images; 20x -> 600 test images
    write_synth(data, SynthConfig(n_classes=3, n_train=12, n_val=4, n_test_good=80, n_test_bad=120, size=128))
    model = str(tmp_path / "model")
    fit_model(data, model, ModelConfig(resize=128, crop=128))
    dist.init(num_cpus=2)
    peak = {"workers": 0, "store": 0}
    stop = threading.Event()

    def watch():
        me = psutil.Process()
        while not stop.is_set():
            rss = sum(p.memory_info().rss for p in psutil.process_iter() if "ray::" in " ".join(p.cmdline() or []) and p.pid != me.pid)
            peak["workers"] = max(peak["workers"], rss)
            try:
                used = ray.available_resources().get("object_store_memory", 0)
                total = ray.cluster_resources().get("object_store_memory", 0)
                peak["store"] = max(peak["store"], total - used)
            except Exception:
                pass
            time.sleep(0.5)

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    t0 = time.time()
    rep = dist.evaluate(data, model, str(tmp_path / "res"), EvalConfig(), log=lambda _: None)
    stop.set()
    ray.shutdown()
    driver = psutil.Process().memory_info().rss
    print(f"load: {rep['pooled']['n_images']} images in {time.time() - t0:.0f}s; driver RSS {driver / 2**20:.0f} MiB, "
          f"workers peak {peak['workers'] / 2**20:.0f} MiB, object store high-water {peak['store'] / 2**20:.0f} MiB")
    assert rep["pooled"]["n_images"] + rep["pooled"]["n_errors"] == 600
    assert driver < 4 * 2**30 and peak["workers"] < 8 * 2**30
