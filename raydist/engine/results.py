"""The results layout both executors write, and ``metrics.json`` computed from it alone.

Under RESULTS_URI::

    results/class_name=C/part-<unit>.parquet   one per work unit (result rows, see RESULT_SCHEMA)
    _parts/<unit>.json                         the unit's summary: written last, marks the unit done
    metrics.json                               built from the summaries only

Every write is atomic (dot-named temporary, then a move; one PUT on S3), so a reader never sees
half a file, and the fixed names make a unit's rerun overwrite instead of duplicate.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from raydist.data.dataset import dictionary_columns
from raydist.methods import Detector
from raydist.metrics.report import to_jsonable
from raydist.metrics.summary import report_from_summaries
from raydist.storage import filesystem, join, read_bytes, write_bytes


def results_uri(out_uri: str) -> str:
    return join(out_uri, "results")


def write_unit(out_uri: str, uid: str, class_name: str, table: pa.Table, summary: dict[str, Any], storage_options=None) -> None:
    buf = io.BytesIO()
    table = table.drop_columns(["class_name"])
    pq.write_table(table, buf, use_dictionary=dictionary_columns(table.schema))
    write_bytes(join(results_uri(out_uri), f"class_name={class_name}", f"part-{uid}.parquet"), buf.getvalue(), storage_options)
    write_bytes(join(out_uri, "_parts", f"{uid}.json"), json.dumps(summary).encode(), storage_options)  # last: the unit is done


def done_units(out_uri: str, storage_options=None) -> set[str]:
    fs, path = filesystem(join(out_uri, "_parts"), storage_options)
    if not fs.exists(path):
        return set()
    return {p.rsplit("/", 1)[-1][: -len(".json")] for p in fs.ls(path, detail=False) if p.endswith(".json") and not p.rsplit("/", 1)[-1].startswith((".", "_"))}


def reset(out_uri: str, storage_options=None) -> None:
    """Remove every result and summary (a fresh, non-resuming evaluation)."""
    for sub in ("results", "_parts"):
        fs, path = filesystem(join(out_uri, sub), storage_options)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def drop_units(out_uri: str, uids: Iterable[str], storage_options=None) -> None:
    """Remove the results and summaries of units that no longer describe the archive (summary
    first: a crash in between leaves results that the next run overwrites or drops, never a
    summary without results)."""
    fs, root = filesystem(out_uri, storage_options)
    uids = set(uids)
    summaries = [f"{root}/_parts/{u}.json" for u in sorted(uids & done_units(out_uri, storage_options))]
    if summaries:
        fs.rm(summaries)  # one call: S3 deletes up to 1,000 keys per request
    parts = [p for p in (fs.find(f"{root}/results") if fs.exists(f"{root}/results") else [])
             if p.rsplit("/part-", 1)[-1][: -len(".parquet")] in uids]  # one listing, not one glob per unit
    if parts:
        fs.rm(parts)


READ_THREADS = 16  # summaries fetched at once: an object store answers each GET in ~10-50 ms
READ_CHUNK = 256  # summaries held at most while the report consumes them


def read_summaries(out_uri: str, storage_options=None) -> Iterator[dict[str, Any]]:
    """Every unit summary, in unit-id order, fetched READ_THREADS at a time (on S3 a million-image
    archive has ~15,600 of them: one GET each)."""
    from concurrent.futures import ThreadPoolExecutor

    uids = sorted(done_units(out_uri, storage_options))
    fs, root = filesystem(join(out_uri, "_parts"), storage_options)  # one client for them all (S3: one session)

    def get(uid: str) -> bytes:
        return fs.cat_file(f"{root}/{uid}.json")

    with ThreadPoolExecutor(READ_THREADS) as pool:
        for i in range(0, len(uids), READ_CHUNK):
            for body in pool.map(get, uids[i : i + READ_CHUNK]):
                yield json.loads(body)


def last_run_key(out_uri: str, storage_options=None) -> str | None:
    """The run key recorded in the previous ``metrics.json`` (None when there is none)."""
    try:
        return json.loads(read_bytes(join(out_uri, "metrics.json"), storage_options)).get("run_key")
    except (FileNotFoundError, ValueError):
        return None


def metrics_from_results(out_uri: str, binarisers: list[str], method: type[Detector] | None = None, storage_options=None) -> dict[str, Any]:
    """Every metric of ``metrics.json`` from the unit summaries on storage, so it describes exactly
    the rows in ``results/``, whichever executor (or how many reruns) wrote them; plus the
    ``method``'s own blocks from its per-image report fields (:meth:`Detector.report_blocks`;
    only images carrying one of its ``report_fields`` are kept for it)."""
    fields = method.report_fields if method is not None else ()
    kept: list[dict] = []

    def summaries() -> Iterator[dict]:
        for s in read_summaries(out_uri, storage_options):
            kept.extend(im for im in s["images"] if any(f in im for f in fields))
            yield s

    report = report_from_summaries(summaries(), binarisers)
    if method is not None:
        report.update(to_jsonable(method.report_blocks(kept)))
    return report


def write_metrics(report: dict[str, Any], out_uri: str, storage_options=None) -> None:
    write_bytes(join(out_uri, "metrics.json"), json.dumps(to_jsonable(report), indent=2).encode(), storage_options)
