"""Compare the last N evaluation runs of an experiment: table, per-class deltas, regressions, chart."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEADLINE = ("_mean/f1_thr", "_mean/f1_ttt4as", "_mean/segf1_ttt4as", "_mean/i_auroc", "_mean/p_auroc")  # metric names are <scope>/<metric>
PER_CLASS = ("f1_ttt4as", "f1_thr", "i_auroc")


@dataclass
class Comparison:
    runs: list[dict[str, Any]]  # oldest first: {"run_id", "name", "start", "metrics", "tags", "params"}
    deltas: dict[str, float] = field(default_factory=dict)  # newest - previous, per "metric/class"
    regressions: list[str] = field(default_factory=list)


def model_label(run: dict[str, Any]) -> str:
    """``NAME-vN`` for runs of a registered model version, else the model folder's name."""
    t = run["tags"]
    if "raydist.model_version" in t:
        return f"{t.get('raydist.model_name', '?')}-v{t['raydist.model_version']}"
    return t.get("raydist.model_uri", "-").rstrip("/").rsplit("/", 1)[-1]


def compare_runs(tracking_uri: str, experiment: str, last: int = 5, threshold: float = 0.01, by_model: bool = False) -> Comparison:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"experiment {experiment!r} not found at {tracking_uri}")
    found = client.search_runs(
        [exp.experiment_id], filter_string="tags.`raydist.job` != 'fit' and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"], max_results=last
    )
    runs = [
        {"run_id": r.info.run_id, "name": r.info.run_name, "start": r.info.start_time, "metrics": dict(r.data.metrics), "tags": dict(r.data.tags), "params": dict(r.data.params)}
        for r in reversed(found)
    ]
    if by_model:  # the newest run of each model version, oldest version first: which version is better
        newest = {model_label(r): r for r in runs}
        runs = sorted(newest.values(), key=lambda r: (r["tags"].get("raydist.model_name", ""), int(r["tags"].get("raydist.model_version", 0))))
    cmp = Comparison(runs)
    if len(runs) >= 2:
        prev, new = runs[-2]["metrics"], runs[-1]["metrics"]
        for key, value in new.items():
            metric = key.rsplit("/", 1)[-1]
            if metric in PER_CLASS and key in prev:
                d = value - prev[key]
                cmp.deltas[key] = d
                if d < -threshold:
                    cmp.regressions.append(f"{key}: {prev[key]:.3f} -> {value:.3f} ({d:+.3f})")
    return cmp


def format_table(cmp: Comparison) -> str:
    import datetime as dt

    lines = [f"{'run':<10}{'started':<18}{'model':<32}" + "".join(f"{k.split('/')[1]:>12}" for k in HEADLINE)]
    for r in cmp.runs:
        start = dt.datetime.fromtimestamp(r["start"] / 1000).strftime("%Y-%m-%d %H:%M")
        vals = "".join(f"{r['metrics'][k]:12.3f}" if k in r["metrics"] else f"{'-':>12}" for k in HEADLINE)
        label = model_label(r)
        label = label if len(label) <= 31 else "..." + label[-28:]  # keep the version's end
        lines.append(f"{r['run_id'][:8]:<10}{start:<18}{label:<32}{vals}")
    if cmp.deltas:
        lines.append("\nper-class change, last vs previous line:")
        for k in sorted(cmp.deltas):
            flag = "  REGRESSION" if any(x.startswith(k + ":") for x in cmp.regressions) else ""
            lines.append(f"  {k:<40}{cmp.deltas[k]:+.3f}{flag}")
    lines.append(f"\n{len(cmp.regressions)} regression(s)" + ("" if not cmp.regressions else ": " + "; ".join(cmp.regressions)))
    return "\n".join(lines)


def trend_chart(cmp: Comparison, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=90)
    x = list(range(len(cmp.runs)))
    for k in HEADLINE:
        ys = [r["metrics"].get(k, float("nan")) for r in cmp.runs]
        ax.plot(x, ys, marker="o", label=k.split("/")[1])
    ax.set_xticks(x, [r["run_id"][:8] for r in cmp.runs], rotation=30, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_title("raydist runs (mean over classes)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
