"""`raydist nightly`: `evaluate` that keeps the finished units whose file, model and options are
unchanged (idempotent; on Ray unless --executor local)."""

from __future__ import annotations

from raydist.cli.args import add_eval_args, add_ray_args, add_tracking_args
from raydist.cli.evaluate import run

__all__ = ["add_parser", "run"]


def add_parser(sub, executor_default: str) -> None:
    p = sub.add_parser("nightly", help="evaluate only the test units whose results are missing or stale (idempotent; on Ray unless --executor local)")
    add_eval_args(p)
    add_ray_args(p, "ray")
    add_tracking_args(p)
