"""``raydist`` command line: ingest | synth | summary | fit | evaluate | nightly | segment | compare.

One small module per verb (``add_parser`` + ``run``: parse -> run configuration -> one engine
call -> print); the flags several verbs share are built in :mod:`raydist.cli.args` from the
config dataclasses, tracking is set up in :mod:`raydist.cli.tracking` and the executor chosen in
:mod:`raydist.cli.executors`, each once. ``jobs/<verb>.py`` reuse these parsers, so
``ray job submit -- python jobs/evaluate.py`` takes the same flags as ``raydist evaluate``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from raydist import __version__
from raydist.cli import compare, evaluate, fit, ingest, nightly, segment, summary, synth
from raydist.cli.args import (
    add_config_args,
    add_storage_args,
    eval_config,
    model_config,
    storage_options,
)
from raydist.cli.evaluate import print_table
from raydist.errors import ConfigError, StalledError
from raydist.storage import process_options, use_options

VERBS = {"ingest": ingest, "synth": synth, "summary": summary, "fit": fit, "evaluate": evaluate, "nightly": nightly,
         "segment": segment, "compare": compare}  # fmt: skip


def build_parser(executor_default: str = "local") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raydist", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"raydist {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb in VERBS.values():
        verb.add_parser(sub, executor_default)
    for name, p in sub.choices.items():
        if name != "compare":  # every verb that reads or writes a dataset, model or results URI
            add_storage_args(p)
    return parser


def main(argv: Sequence[str] | None = None, executor_default: str = "local") -> int:
    args = build_parser(executor_default).parse_args(argv)
    previous = process_options()  # main() may be called in a longer-lived process (tests, jobs): restored after
    try:
        use_options(storage_options(args))
        return VERBS[args.verb].run(args)
    except ConfigError as e:
        print(f"raydist {args.verb}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, PermissionError) as e:  # a missing dataset, bucket or model; a refused credential
        from raydist.tracking.mlflow_tracker import redact_uri

        what = "not found" if isinstance(e, FileNotFoundError) else "access denied"
        where = ""
        if e.filename is None:  # storage errors often name no path: say which locations the command used
            uris = [f"--{k} {redact_uri(str(v))}" for k in ("data", "maps", "model", "out") if isinstance(v := getattr(args, k, None), str)]
            where = f" (on one of: {', '.join(uris)})" if uris else ""
        print(f"raydist {args.verb}: error: {what}: {redact_uri(str(e.filename or e))}{where}", file=sys.stderr)
        return 2
    except StalledError as e:  # a Ray job that could not progress (raydist.distributed)
        print(f"raydist {args.verb}: error: stalled: {e}", file=sys.stderr)
        return 4
    except Exception as e:
        from raydist.tracking import TrackingUnavailable

        if isinstance(e, TrackingUnavailable):
            print(f"raydist {args.verb}: error: {e}", file=sys.stderr)
            return 3
        raise
    finally:
        use_options(previous)


__all__ = ["VERBS", "add_config_args", "build_parser", "eval_config", "main", "model_config", "print_table"]
