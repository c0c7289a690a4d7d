"""The fit engine: units saved as they finish, reruns fit only what is missing or changed, flat driver memory."""

import tracemalloc

import pytest

from raydist.config import ModelConfig
from raydist.data.synth import SynthConfig, write_synth
from raydist.engine.fit import fit
from raydist.model_store import load_meta, load_unit_record, unit_file

CFG = ModelConfig(weights="none", resize=32, crop=32)


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    uri = str(tmp_path_factory.mktemp("fit") / "data")
    write_synth(uri, SynthConfig(n_classes=3, n_train=4, n_val=2, n_test_good=1, n_test_bad=1, size=32))
    return uri


def test_a_fit_killed_after_one_class_resumes_with_only_the_missing_ones(three, tmp_path):
    out = str(tmp_path / "m")
    fitted: list[str] = []

    def die_after_first(line: str) -> None:
        if ": bank " in line:
            fitted.append(line)
            raise Killed(line)  # the process dies right after the first class was saved

    with pytest.raises(Killed):
        fit(three, out, CFG, log=die_after_first)
    first = fitted[0].split()[1].rstrip(":")
    saved = (tmp_path / "m" / (unit_file(first) + ".safetensors")).stat().st_mtime_ns
    assert not (tmp_path / "m" / "model.json").exists()  # no model.json: the model is not complete
    lines: list[str] = []
    summary = fit(three, out, CFG, log=lines.append)
    assert "3 units, 1 already fitted with this config and data, 2 to fit" in lines[0]
    assert summary["reused"] == 1 and summary["units"] == ["blobs", "checker", "stripes"]
    assert sum(": bank " in ln for ln in lines) == 2 and not any(ln.startswith(f"[fit] {first}:") for ln in lines)
    assert (tmp_path / "m" / (unit_file(first) + ".safetensors")).stat().st_mtime_ns == saved
    assert set(load_meta(out)["units"]) == {"blobs", "checker", "stripes"}
    # seconds are reported for the units fitted in this run only, and never stored in model.json
    assert set(summary["fit_s"]) == {"blobs", "checker", "stripes"} - {first} and all(s > 0 for s in summary["fit_s"].values())
    assert all("seconds" not in u and "describe" not in u for u in load_meta(out)["units"].values())


def test_a_changed_config_or_new_data_refits(three, tmp_path):
    out = str(tmp_path / "m")
    fit(three, out, CFG)
    key = load_unit_record(out, "blobs")["fit_key"]
    lines: list[str] = []
    fit(three, out, ModelConfig(weights="none", resize=32, crop=32, coreset_ratio=0.5), log=lines.append)
    assert "0 already fitted" in lines[0] and load_unit_record(out, "blobs")["fit_key"] != key
    write_synth(three + "-more", SynthConfig(n_classes=1, n_train=2, n_val=1, n_test_good=0, n_test_bad=0, size=32, seed=5))
    import shutil

    data = str(tmp_path / "data")
    shutil.copytree(three, data)
    fit(data, out, CFG)
    for split in ("train",):  # new train rows for one class: only that class is refitted
        shutil.copytree(f"{three}-more/class_name=stripes/split={split}", f"{data}/class_name=stripes/split={split}", dirs_exist_ok=True)
    lines.clear()
    fit(data, out, CFG, log=lines.append)
    assert "2 already fitted" in lines[0] and any(ln.startswith("[fit] stripes: bank") for ln in lines)


def _peak_traced_fit(data: str, out: str, cfg: ModelConfig) -> int:
    tracemalloc.start()
    try:
        fit(data, out, cfg)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_driver_memory_does_not_grow_with_the_class_count(tmp_path):
    """Each unit is saved and released as it finishes: 20 classes peak like 4 (numpy/Python heap).

    Full banks (coreset ratio 1) make what a driver holding every class would keep large: the
    growth from 4 to 20 classes must stay under a quarter of 16 more banks."""
    cfg = ModelConfig(weights="none", resize=64, crop=64, coreset_ratio=1.0)
    peaks, bank_bytes = {}, 0
    write_synth(str(tmp_path / "warm"), SynthConfig(n_classes=1, n_train=2, n_val=1, n_test_good=0, n_test_bad=0, size=64))
    fit(str(tmp_path / "warm"), str(tmp_path / "mwarm"), cfg)  # one-off costs (imports, backbone caches) out of the way
    for n in (4, 20):
        data, out = str(tmp_path / f"d{n}"), str(tmp_path / f"m{n}")
        write_synth(data, SynthConfig(n_classes=n, n_train=6, n_val=2, n_test_good=0, n_test_bad=0, size=64))
        peaks[n] = _peak_traced_fit(data, out, cfg)
        bank_bytes = max(u["info"]["bank_size"] * u["info"]["dim"] * 2 for u in load_meta(out)["units"].values())
    print(f"peak traced memory during fit: 4 classes {peaks[4] / 2**20:.2f} MiB, 20 classes {peaks[20] / 2**20:.2f} MiB; "
          f"one bank {bank_bytes / 2**20:.2f} MiB")  # fmt: skip
    assert peaks[20] - peaks[4] < 0.25 * 16 * bank_bytes
