"""MLflow the way its users work, against a real `mlflow server` on 127.0.0.1: named runs that span
the job, dataset inputs, a model-training experiment, registered model versions and aliases."""

import datetime as dt
import json
import time

import pytest

from raydist.cli import main
from tests.integration.test_mlflow import mlflow_server, small  # noqa: F401  (module fixtures)


def _runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client, exp, client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def test_runs_are_named_span_the_job_and_carry_their_dataset(mlflow_server, small, tmp_path):  # noqa: F811
    data, model = small
    t0 = time.time()
    assert main(["evaluate", "--data", data, "--model", model, "--out", str(tmp_path / "r"), "--tracking-uri", mlflow_server,
                 "--experiment", "w1", "--segment", "thr,ttt4as"]) == 0  # fmt: skip
    wall = time.time() - t0
    client, exp, runs = _runs(mlflow_server, "w1")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = runs
    assert run.info.run_name == f"evaluate data model {dt.date.today().isoformat()}"
    duration = (run.info.end_time - run.info.start_time) / 1000
    print(f"job wall time {wall:.1f} s, MLflow run duration {duration:.1f} s")
    assert duration >= wall - 2  # the run opens before the work; before it: parsing, the server check, the dataset fingerprint (~0.9 s measured)
    assert duration > 0.5 * wall
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "data" and json.loads(inp.dataset.profile)["num_rows"] == 10
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "evaluation"
    steps = client.get_metric_history(run.info.run_id, "progress/images_done")
    assert steps and steps[-1].value == 10 and steps[-1].step == 2  # 2 units (classes), the last one logged


def test_a_failed_evaluate_leaves_a_failed_run_with_the_reason(mlflow_server, small, tmp_path):  # noqa: F811
    data, model = small
    rc = main(["evaluate", "--data", data, "--model", model, "--out", str(tmp_path / "r"), "--tracking-uri", mlflow_server,
               "--experiment", "w2", "--align", "cada"])  # fmt: skip
    assert rc == 2
    _, _, runs = _runs(mlflow_server, "w2")
    (run,) = runs
    assert run.info.status == "FAILED" and "CADA alignment needs --method unified" in run.data.tags["raydist.error"]


def test_fit_registers_versions_and_evaluate_resolves_them(mlflow_server, small, tmp_path, capsys):  # noqa: F811
    from mlflow.tracking import MlflowClient

    data, _ = small
    fit = ["fit", "--data", data, "--weights", "none", "--resize", "96", "--crop", "96", "--tracking-uri", mlflow_server,
           "--experiment", "w3", "--model-name", "small-pc"]  # fmt: skip
    assert main([*fit, "--out", str(tmp_path / "m1")]) == 0
    assert main([*fit, "--out", str(tmp_path / "m2"), "--coreset-ratio", "0.5"]) == 0
    client = MlflowClient(mlflow_server)
    versions = sorted(int(v.version) for v in client.search_model_versions("name='small-pc'"))
    assert versions == [1, 2]
    _, _, runs = _runs(mlflow_server, "w3")
    assert [r.data.tags["raydist.model_version"] for r in runs] == ["1", "2"]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"] and runs[0].data.params["model.weights_id"] == "random:seed0"
    assert runs[0].info.run_name.startswith("fit data small-pc ")
    assert json.loads(runs[0].inputs.dataset_inputs[0].dataset.profile)["num_rows"] == 8  # 2 classes x 4 train
    ev = ["evaluate", "--data", data, "--segment", "thr", "--tracking-uri", mlflow_server, "--experiment", "w3e"]
    assert main([*ev, "--model", str(tmp_path / "m1"), "--out", str(tmp_path / "folder")]) == 0
    assert main([*ev, "--model", "models:/small-pc/1", "--out", str(tmp_path / "reg")]) == 0
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("folder", "reg"))
    assert a["pooled"] == b["pooled"] and a["classes"] == b["classes"]
    client.set_registered_model_alias("small-pc", "champion", "2")
    assert main([*ev, "--model", "models:/small-pc@champion", "--out", str(tmp_path / "alias")]) == 0
    client.set_registered_model_alias("small-pc", "champion", "1")  # the alias moves: the next run follows it
    assert main([*ev, "--model", "models:/small-pc@champion", "--out", str(tmp_path / "alias1")]) == 0
    _, _, eruns = _runs(mlflow_server, "w3e")
    assert [r.data.tags.get("raydist.model_version") for r in eruns] == [None, "1", "2", "1"]
    assert eruns[1].info.run_name.startswith("evaluate data small-pc-v1 ")
    c = json.loads((tmp_path / "alias1" / "metrics.json").read_text())
    assert c["pooled"] == a["pooled"]
    assert main([*ev, "--model", "models:/small-pc/9", "--out", str(tmp_path / "nope")]) == 2
    assert "cannot resolve models:/small-pc/9" in capsys.readouterr().err
    assert main(["compare", "--tracking-uri", mlflow_server, "--experiment", "w3e", "--by-model"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert [ln.split()[3] for ln in table[1:4]] == ["m1", "small-pc-v1", "small-pc-v2"]  # folder run, then versions in order


@pytest.mark.parametrize("verb", ["fit", "evaluate", "nightly", "segment", "compare", "ingest", "synth", "summary"])
def test_every_flag_has_help(verb):
    from raydist.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "verb").choices[verb]
    missing = [a.option_strings or a.dest for a in sub._actions if not a.help and a.dest != "help"]
    assert not missing, f"{verb}: flags without help: {missing}"
