"""`raydist ingest`: validate and convert a folder tree into the Parquet format."""

from __future__ import annotations

import argparse
import json
import sys

from raydist.data.ingest import FORMATS, KOLEKTOR_TRAIN_SHARE
from raydist.errors import ConfigError


def add_parser(sub, executor_default: str) -> None:
    p = sub.add_parser("ingest", help="convert a folder layout into the raydist Parquet format")
    p.add_argument("src", help="source folder")
    p.add_argument("dest", help="dataset URI to write (local or s3://); refused if it holds these classes already")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true", help="replace the partitions of the classes being ingested")
    g.add_argument("--append", action="store_true", help="add to the partitions already in DEST (ids must stay unique)")
    p.add_argument("--format", required=True, choices=list(FORMATS), help="source layout")
    p.add_argument("--val-fraction", type=float, default=0.2, help="train share moved to val for classes without val")
    p.add_argument("--train-share", type=float, default=KOLEKTOR_TRAIN_SHARE,
                   help="kolektorsdd: share of items whose defect-free images become train/val (split by item)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="seeds the val split (and the kolektorsdd item split)")


def run(a: argparse.Namespace) -> int:
    from raydist.data.ingest import ingest

    mode = "overwrite" if a.overwrite else "append" if a.append else "new"
    try:
        rep = ingest(a.src, a.dest, a.format, a.val_fraction, a.seed, train_share=a.train_share, mode=mode)
    except FileExistsError as e:
        raise ConfigError(str(e)) from None
    print(json.dumps({"written": rep.written, "n_errors": len(rep.errors)}, indent=2))
    for e in rep.errors:
        print(f"rejected: {e['error']}", file=sys.stderr)
    return 0
