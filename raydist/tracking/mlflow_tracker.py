"""One MLflow run per job, open while the job runs: parameters, dataset inputs, progress steps,
per-class metrics, artifacts, tags, and registered model versions for fits.

Tracking never endangers results: results are written before anything is logged, every MLflow
call is retried with backoff, and what could not be logged is reported instead of raised.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raydist import __version__
from raydist.metrics.report import BINARISERS, BINARY_METRICS, DECISION_METRICS

EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
_SAFE = re.compile(r"[^A-Za-z0-9_\-./ ]")
BINARY_KEYS = BINARY_METRICS  # per binariser: precision, recall, f1, f1_pooled, iou, segf1, nominal_marked
SCORE_KEYS = ("i_auroc", "i_ap", "p_auroc", "p_ap", "aupro_30", "aupro_1", "n_images", "n_anomalous", "n_errors")


class TrackingUnavailable(RuntimeError):
    """The tracking server cannot be reached (raised before any work starts)."""


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def metric_items(report: dict[str, Any]) -> dict[str, float]:
    """``{scope}/{metric}`` with scope ``_mean``, ``_pooled`` or a class name: the UI sorts metric
    names, so a scope's headline figures (f1_thr, f1_ttt4as, i_auroc, p_auroc, ...) sit together,
    the class-mean and pooled ones first."""
    scopes = {**{_SAFE.sub("_", c): m for c, m in report["classes"].items()}, "_mean": report["mean"], "_pooled": report["pooled"]}
    out: dict[str, float] = {}
    for scope, m in scopes.items():
        for k in SCORE_KEYS:
            if m.get(k) is not None:
                out[f"{scope}/{k}"] = float(m[k])
        for b in BINARISERS:
            for k in BINARY_KEYS:
                if isinstance(m.get(b), dict) and m[b].get(k) is not None:
                    out[f"{scope}/{k}_{b}"] = float(m[b][k])
        for k in DECISION_METRICS:  # the image-level decision
            if isinstance(m.get("image"), dict) and m["image"].get(k) is not None:
                out[f"{scope}/image_{k}"] = float(m["image"][k])
    for variant, m in (report.get("alignment") or {}).items():  # unified models: raw vs CADA vs CaDA-A
        for k, v in m.items():
            if v is not None:
                out[f"align_{variant}/{k}"] = float(v)
    for k, v in (report.get("timing") or {}).items():
        if isinstance(v, int | float):
            out[f"timing/{k}"] = float(v)
        elif isinstance(v, dict):  # stages_s, driver_s: one metric per stage
            out.update({f"timing/{k}/{stage}": float(s) for stage, s in v.items()})
    return out


def class_table_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    cols = list(SCORE_KEYS) + [f"{k}_{b}" for b in BINARISERS for k in BINARY_KEYS]
    w.writerow(["class", *cols])
    for name, m in [*report["classes"].items(), ("MEAN", report["mean"]), ("POOLED", report["pooled"])]:
        row = [m.get(k) for k in SCORE_KEYS]
        row += [(m.get(b) or {}).get(k) for b in BINARISERS for k in BINARY_KEYS]
        w.writerow([name, *row])
    return buf.getvalue()


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except Exception:
        return None


def dataset_fingerprint(data_uri: str, storage_options=None) -> dict[str, Any]:
    """Row count + a hash of the partition list: changes when the archive changes."""
    from raydist.data.dataset import list_partitions, open_dataset

    parts = list_partitions(data_uri, storage_options)
    rows = open_dataset(data_uri, storage_options).count_rows()
    h = hashlib.sha256(repr(parts).encode()).hexdigest()[:12]
    return {"rows": rows, "partitions": len(parts), "partitions_sha": h}


def redact_uri(uri: str) -> str:
    """Mask the password (or a lone token) of a URI's user-info part; other URIs pass unchanged."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.split(":", 1)[0] if ":" in userinfo else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}" if user else f"***@{host}"))


class Tracker:
    """MLflow run logging with retries. ``tracking_uri`` None -> ``MLFLOW_TRACKING_URI`` -> ``default_uri``."""

    def __init__(self, tracking_uri: str | None = None, experiment: str = "raydist", default_uri: str | None = None,
                 retries: int = 3, backoff_s: float = 1.0, log: Callable[[str], None] = print):  # fmt: skip
        self.uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri
        if not self.uri:
            raise ValueError("no tracking URI: pass one, set MLFLOW_TRACKING_URI, or give a default")
        self.experiment = experiment
        self.retries = retries
        self.backoff_s = backoff_s
        self.log = log
        self.not_logged: list[str] = []
        # MLflow's own HTTP retries default to minutes of backoff per call; ours are bounded instead
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")

    @property
    def shown_uri(self) -> str:
        """The URI without credentials, for logs and messages (``http://user:pass@h`` -> ``http://user:***@h``).

        Prefer MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD over credentials in the URI."""
        return redact_uri(self.uri)

    @staticmethod
    def local_uri(folder: str) -> str:
        """A sqlite store inside the output folder: no server needed."""
        Path(folder).mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{Path(folder).resolve() / 'mlflow.db'}"

    def check(self, timeout_s: float = 5.0) -> None:
        """Fail fast, before any work, when an HTTP tracking server does not answer."""
        if self.uri.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(self.uri.rstrip("/") + "/health", timeout=timeout_s) as r:
                    if r.status != 200:
                        raise TrackingUnavailable(f"MLflow server at {self.shown_uri} answered {r.status} on /health")
            except TrackingUnavailable:
                raise
            except Exception as e:
                raise TrackingUnavailable(
                    f"MLflow tracking server {self.shown_uri} is unreachable ({type(e).__name__}); start it "
                    "(bash mlflow/server.sh), point --tracking-uri elsewhere, or pass --no-tracking"
                ) from None

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        for attempt in range(self.retries):
            try:
                return fn()
            except Exception as e:  # transient HTTP / DB errors: retry, then report
                if attempt == self.retries - 1:
                    self.not_logged.append(f"{what}: {type(e).__name__}: {str(e)[:200]}")
                    self.log(f"[tracking] gave up on {what} after {self.retries} attempts: {type(e).__name__}")
                    return None
                time.sleep(self.backoff_s * 2**attempt)

    def _client(self):
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=self.uri)

    def artifact_root(self) -> str | None:
        """Next to a local sqlite store (``<db dir>/mlartifacts``); a server manages its own."""
        if self.uri.startswith("sqlite:///"):
            return str(Path(self.uri[len("sqlite:///") :]).parent / "mlartifacts")
        return None

    def _experiment_id(self, client, artifact_root: str | None) -> str:
        exp = client.get_experiment_by_name(self.experiment)
        if exp is None:
            exp_id = client.create_experiment(self.experiment, artifact_location=artifact_root or self.artifact_root())
        else:
            exp_id = exp.experiment_id
        if exp is None or exp.tags.get(EXPERIMENT_KIND_TAG) is None:  # the UI then opens on the runs table, not GenAI traces
            client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp_id

    def start(self, kind: str, params: dict[str, Any], tags: dict[str, str] | None = None, run_name: str | None = None,
              inputs: list[DatasetRecord] | None = None, artifact_root: str | None = None) -> TrackedRun | None:  # fmt: skip
        """Open the job's run when the job starts (so duration, start time and system metrics are
        the job's): parameters, tags and dataset inputs now, metrics and artifacts at the end."""
        client = self._retry("connect", self._client)
        if client is None:
            return None
        exp_id = self._retry("experiment", lambda: self._experiment_id(client, artifact_root))
        if exp_id is None:
            return None
        all_tags = {"raydist.job": kind, "raydist.version": __version__, "raydist.run_date": dt.date.today().isoformat(), **(tags or {})}
        commit = git_commit()
        if commit:
            all_tags["raydist.git_commit"] = commit
        run = self._retry("create run", lambda: client.create_run(exp_id, run_name=run_name, tags=all_tags))
        if run is None:
            return None
        tracked = TrackedRun(self, client, run.info.run_id)
        tracked.log_params(params)
        if inputs:
            tracked.log_inputs(inputs)
        return tracked

    def log_job(self, kind: str, params: dict[str, Any], report: dict[str, Any] | None = None, artifacts: dict[str, bytes] | None = None,
                tags: dict[str, str] | None = None, artifact_root: str | None = None, run_name: str | None = None) -> str | None:  # fmt: skip
        """A whole run in one call (start + finish), for jobs logged after the fact."""
        run = self.start(kind, params, tags, run_name, artifact_root=artifact_root)
        if run is None:
            return None
        run.finish(report, artifacts)
        return run.run_id


@dataclass
class DatasetRecord:
    """An MLflow dataset input: what the run read (the UI's Dataset column and filters)."""

    name: str
    uri: str
    rows: int
    digest: str
    context: str  # "training" | "evaluation"
    split: str

    def entity(self):
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        source_type = self.uri.split("://", 1)[0] if "://" in self.uri else "local"
        ds = Dataset(self.name, self.digest, source_type, json.dumps({"uri": redact_uri(self.uri)}),
                     profile=json.dumps({"num_rows": self.rows, "split": self.split}))  # fmt: skip
        return DatasetInput(ds, [InputTag("mlflow.data.context", self.context)])


def dataset_record(data_uri: str, split: str, context: str, classes=None, storage_options=None) -> DatasetRecord:
    """The archive (one split) as a dataset input: its name, row count and a fingerprint of its files."""
    from raydist.data.dataset import count_rows
    from raydist.engine.units import partitions_fingerprint

    digest = hashlib.sha256(partitions_fingerprint(data_uri, classes, [split], storage_options).encode()).hexdigest()[:16]
    return DatasetRecord(dataset_name(data_uri), data_uri, count_rows(data_uri, classes, [split], storage_options), digest, context, split)


def dataset_name(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


class TrackedRun:
    """One open run; every call is retried and reported, never raised (results come first)."""

    def __init__(self, tracker: Tracker, client, run_id: str):
        self.tracker, self.client, self.run_id = tracker, client, run_id
        self._last_step = 0.0

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [(k, ("None" if v is None else str(v))[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 90):
            chunk = [Param(k, v) for k, v in items[i : i + 90]]
            self.tracker._retry("params", lambda c=chunk: self.client.log_batch(self.run_id, params=c))

    def log_inputs(self, inputs: list[DatasetRecord]) -> None:
        self.tracker._retry("dataset inputs", lambda: self.client.log_inputs(self.run_id, datasets=[d.entity() for d in inputs]))

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.tracker._retry(f"tag {k}", lambda k=k, v=v: self.client.set_tag(self.run_id, k, v))

    def step(self, values: dict[str, float], step: int, every_s: float = 5.0, force: bool = False) -> None:
        """Progress as step metrics while the job runs (at most one batch every ``every_s``)."""
        now = time.monotonic()
        if not force and now - self._last_step < every_s:
            return
        self._last_step = now
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        mets = [Metric(k, float(v), ts, step) for k, v in values.items()]
        self.tracker._retry("progress", lambda: self.client.log_batch(self.run_id, metrics=mets))

    def finish(self, report: dict[str, Any] | None = None, artifacts: dict[str, bytes] | None = None) -> None:
        from mlflow.entities import Metric

        if report is not None:
            ts = int(time.time() * 1000)
            mets = [Metric(k, v, ts, 0) for k, v in metric_items(report).items()]
            for i in range(0, len(mets), 900):
                chunk = mets[i : i + 900]
                self.tracker._retry("metrics", lambda c=chunk: self.client.log_batch(self.run_id, metrics=c))
        self.log_artifacts(artifacts or {})
        status = "FINISHED" if not self.tracker.not_logged else "FAILED"
        if self.tracker.not_logged:
            self.set_tags({"raydist.error": "tracking incomplete: " + "; ".join(self.tracker.not_logged)[:4000]})
        self.tracker._retry("finish", lambda: self.client.set_terminated(self.run_id, status))

    def fail(self, reason: str) -> None:
        """The job failed: the run ends FAILED with the reason (a tag the runs table can show)."""
        self.set_tags({"raydist.error": reason[:4000]})
        self.tracker._retry("finish", lambda: self.client.set_terminated(self.run_id, "FAILED"))

    def log_artifacts(self, artifacts: dict[str, bytes]) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in artifacts.items():
                path = Path(tmp) / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
                sub = str(Path(name).parent) if Path(name).parent != Path(".") else None
                self.tracker._retry(f"artifact {name}", lambda p=path, s=sub: self.client.log_artifact(self.run_id, str(p), s))

    def register_model(self, name: str, model_uri: str, files: dict[str, bytes]) -> str | None:
        """Log the fitted model's files (JSON + safetensors, no pickle) under ``model/`` and register
        them as a new version of ``name``; returns the version."""
        self.log_artifacts({f"model/{k}": v for k, v in files.items()})
        c = self.client

        def register() -> str:
            from mlflow.exceptions import MlflowException

            try:
                c.get_registered_model(name)
            except MlflowException:
                c.create_registered_model(name, description="raydist model: model.json + units/*.safetensors (load with raydist)")
            source = c.get_run(self.run_id).info.artifact_uri.rstrip("/") + "/model"
            return c.create_model_version(name, source, run_id=self.run_id, tags={"raydist.model_uri": redact_uri(model_uri)}).version

        version = self.tracker._retry(f"register model {name}", register)
        if version is not None:
            self.set_tags({"raydist.model_name": name, "raydist.model_version": str(version)})
        return version


def resolve_model(uri: str, tracking_uri: str | None, cache_dir: str | None = None) -> tuple[str, dict[str, str]]:
    """``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` -> a local folder with the version's files,
    and the tags that say which version it is; any other URI is returned as it is."""
    if not uri.startswith("models:/"):
        return uri, {}
    from mlflow.artifacts import download_artifacts
    from mlflow.tracking import MlflowClient

    from raydist.errors import ConfigError

    ref = uri[len("models:/") :]
    client = MlflowClient(tracking_uri=tracking_uri)
    try:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        else:
            name, version = ref.rsplit("/", 1)
            mv = client.get_model_version(name, version)
    except Exception as e:
        raise ConfigError(f"cannot resolve {uri} in the model registry at {redact_uri(tracking_uri or '')}: {type(e).__name__}: {e}") from None
    # keyed by the version's artifact source too: the same NAME/VERSION on another server is another model
    key = hashlib.sha256(f"{mv.source}#{mv.run_id}".encode()).hexdigest()[:12]
    dest = Path(cache_dir or Path.home() / ".cache" / "raydist" / "registry") / name / f"{mv.version}-{key}"
    if not (dest / "model" / "model.json").exists():
        dest.mkdir(parents=True, exist_ok=True)
        download_artifacts(artifact_uri=mv.source, dst_path=str(dest), tracking_uri=tracking_uri)
    folder = dest / "model" if (dest / "model" / "model.json").exists() else dest
    return str(folder), {"raydist.model_name": name, "raydist.model_version": str(mv.version)}
