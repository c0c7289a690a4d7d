"""`raydist summary DATA`: counts per class / split."""

from __future__ import annotations

import argparse
import json


def add_parser(sub, executor_default: str) -> None:
    p = sub.add_parser("summary", help="print the per-class/split counts of a dataset")
    p.add_argument("data", help="dataset URI")


def run(a: argparse.Namespace) -> int:
    from raydist.data.dataset import summarize

    print(json.dumps(summarize(a.data), indent=2))
    return 0
