import json
import subprocess
import sys

import pytest

from raydist.cli import main

VERBS = ("ingest", "synth", "summary", "fit", "evaluate", "nightly")


@pytest.mark.parametrize("verb", VERBS)
def test_help_on_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0 and "usage: raydist " + verb in capsys.readouterr().out


def test_console_script_end_to_end(tmp_path):
    data, model, res = (str(tmp_path / d) for d in ("data", "model", "res"))
    run = [sys.executable, "-m", "raydist.cli"]
    subprocess.run([*run, "synth", data, "--classes", "2", "--train", "4", "--val", "2", "--test-good", "2", "--test-bad", "3", "--size", "96"], check=True)
    subprocess.run([*run, "fit", "--data", data, "--out", model, "--backbone", "efficientnet_lite0", "--weights", "none", "--resize", "96", "--crop", "96"], check=True)
    out = subprocess.run([*run, "evaluate", "--data", data, "--model", model, "--out", res, "--percentile", "98"], check=True, capture_output=True, text=True).stdout
    assert "POOLED" in out and "metrics.json" in out
    m = json.loads((tmp_path / "res" / "metrics.json").read_text())
    assert m["config"]["ttt4as"]["percentile"] == 98 and m["pooled"]["n_images"] == 10


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "r"), "--percentile", "120"]) == 2
    assert "percentile must be in [0, 100)" in capsys.readouterr().err
