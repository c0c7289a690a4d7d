import json
import subprocess
import sys

import pytest

from raydist.cli import main

VERBS = ("ingest", "synth", "summary", "fit", "evaluate", "nightly", "segment")


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
    assert m["config"]["evaluate"]["ttt4as"]["percentile"] == 98 and m["pooled"]["n_images"] == 10
    # one configuration, written as-is: model.json's config is metrics.json's, every default spelled out
    stored = json.loads((tmp_path / "model" / "model.json").read_text())["config"]
    assert m["config"]["model"] == stored and stored["coreset_ratio"] == 0.1 and stored["image_score"] == "max"
    # nightly runs on the local executor too, and finds nothing to redo
    out = subprocess.run([*run, "nightly", "--executor", "local", "--data", data, "--model", model, "--out", res, "--percentile", "98",
                          "--no-tracking"], check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert "0 to do" in out and json.loads((tmp_path / "res" / "metrics.json").read_text())["timing"]["images_evaluated"] == 0


def test_bad_config_is_a_clear_error(tmp_path, capsys):
    assert main(["evaluate", "--data", str(tmp_path), "--model", str(tmp_path), "--out", str(tmp_path / "r"), "--percentile", "120"]) == 2
    assert "percentile must be in [0, 100)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "--cfm-epochs", "5"], "--cfm-epochs applies to --method cfm only"),
        (["fit", "--route", "clusters"], "--route applies to --method unified only"),
        (["fit", "--unified", "--method", "cfm"], "cannot be combined with --method cfm"),
        (["fit", "--unified", "--image-score", "max"], "--image-score must be top1"),
        (["fit", "--coreset-ratio", "0"], "--coreset-ratio must be in (0, 1]"),
        (["evaluate", "--segment", "thr", "--percentile", "95"], "options of ['ttt4as'] were given but --segment has no ttt4as"),
        (["evaluate", "--segment", "thr,otsu"], "unknown or no binariser(s) ['otsu']"),
        (["evaluate", "--executor", "ray", "--workers", "2"], "--workers sizes the local executor"),
        (["evaluate", "--executor", "ray", "--cpus-per-task", "2"], "--cpus-per-task sizes segment tasks, but the scoring actors binarise"),
        (["evaluate", "--num-actors", "2", "--cpus-per-task", "2"], "--num-actors, --cpus-per-task apply to the Ray executor only"),
        (["nightly", "--executor", "local", "--segment-in", "tasks"], "--segment-in apply to the Ray executor only"),
    ],
)
def test_a_flag_that_does_not_apply_is_refused_not_ignored(tmp_path, capsys, argv, message):
    io = ["--data", str(tmp_path), "--out", str(tmp_path / "o"), "--no-tracking"] + (["--model", str(tmp_path)] if argv[0] in ("evaluate", "nightly") else [])
    assert main([*argv, *io]) == 2
    assert message in capsys.readouterr().err
