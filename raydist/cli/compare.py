"""`raydist compare`: the last N MLflow runs of an experiment, per-class deltas, regressions, a trend chart."""

from __future__ import annotations

import argparse
import os

from raydist.errors import ConfigError


def add_parser(sub, executor_default: str) -> None:
    p = sub.add_parser("compare", help="table + trend chart of the last N runs of an MLflow experiment")
    p.add_argument("--experiment", default="raydist", help="MLflow experiment whose evaluation runs are compared")
    p.add_argument("--tracking-uri", default=None, help="default: MLFLOW_TRACKING_URI")
    p.add_argument("--last", type=int, default=5, help="how many of the newest runs to compare (default: 5)")
    p.add_argument("--threshold", type=float, default=0.01, help="a per-class drop larger than this is a regression")
    p.add_argument("--chart", default=None, help="write a PNG trend chart here")
    p.add_argument("--by-model", action="store_true", help="one line per registered model version (its newest run), versions in order")


def run(a: argparse.Namespace) -> int:
    from raydist.tracking.compare import compare_runs, format_table, trend_chart

    uri = a.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ConfigError("give --tracking-uri or set MLFLOW_TRACKING_URI")
    try:
        cmp = compare_runs(uri, a.experiment, a.last if not a.by_model else 1000, a.threshold, a.by_model)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    print(format_table(cmp))
    if a.chart:
        trend_chart(cmp, a.chart)
        print(f"chart: {a.chart}")
    return 0
