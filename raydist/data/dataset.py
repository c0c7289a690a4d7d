"""Read and write hive-partitioned Parquet datasets (local path or ``s3://``) with pyarrow.dataset."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from raydist.data.schema import DATASET_SCHEMA, PARTITION_SCHEMA, PARTITIONING_FIELDS
from raydist.storage import filesystem


def hive_partitioning(schema: pa.Schema = PARTITION_SCHEMA) -> ds.Partitioning:
    return ds.partitioning(schema, flavor="hive")


def rows_to_table(rows: Sequence[dict[str, Any]], schema: pa.Schema = DATASET_SCHEMA) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=schema)


# Parquet codec per column (the rest: snappy, pyarrow's default). Organised float32 clouds barely
# compress and are read whole for every row; LZ4 reads them ~2x faster than snappy for the same
# size (MVTec 3D-AD clouds of the dev set: 1.27 vs 1.29 MB a row, 2.5 vs 5.2 ms to read; generated
# 800-px clouds: 6.8 vs 6.2 MB, 19 vs 30 ms). Files written before read as they are.
COLUMN_CODECS = {"xyz": "lz4"}


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth dictionary-encoding: all but the binary payloads (images, masks, clouds,
    maps), whose values are unique per row. pyarrow tries a dictionary first by default and falls
    back to plain after a 1 MB dictionary page, and a reader then decodes that page into a copy:
    generated 800-px 3D rows read in 7-8 ms instead of 13-34 ms a row without it."""
    return [f.name for f in schema if not (pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type))]


def write_table(
    table: pa.Table,
    uri: str,
    partition_cols: Sequence[str] = PARTITIONING_FIELDS,
    storage_options: dict[str, Any] | None = None,
    basename: str | None = None,
    max_rows_per_group: int = 64,
) -> None:
    """Append ``table`` to the dataset at ``uri`` as new files (never rewrites existing ones).

    Small row groups keep a reader's memory bounded: rows carry encoded images.
    """
    fs, path = filesystem(uri, storage_options)
    fs.makedirs(path, exist_ok=True)
    part_schema = pa.schema([table.schema.field(c) for c in partition_cols])
    fmt = ds.ParquetFileFormat()
    codecs = {c: COLUMN_CODECS.get(c, "snappy") for c in table.column_names if c not in partition_cols}
    ds.write_dataset(
        table,
        path,
        filesystem=fs,
        format=fmt,
        file_options=fmt.make_write_options(compression=codecs, use_dictionary=dictionary_columns(table.schema)),
        partitioning=ds.partitioning(part_schema, flavor="hive"),
        basename_template=(basename or f"part-{uuid.uuid4().hex[:12]}") + "-{i}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        max_rows_per_group=max_rows_per_group,
        min_rows_per_group=0,
    )


def open_dataset(
    uri: str,
    storage_options: dict[str, Any] | None = None,
    partition_schema: pa.Schema = PARTITION_SCHEMA,
    schema: pa.Schema | None = None,
) -> ds.Dataset:
    """A Parquet dataset; ``schema`` given: read as that schema (missing columns as nulls, extra ones ignored)."""
    fs, path = filesystem(uri, storage_options)
    return ds.dataset(
        path,
        schema=schema,
        filesystem=fs,
        format="parquet",
        partitioning=hive_partitioning(partition_schema),
        exclude_invalid_files=False,
        ignore_prefixes=[".", "_"],
    )


def open_input(uri: str, storage_options: dict[str, Any] | None = None) -> ds.Dataset:
    """An input archive, always read as the documented row schema: a file without an optional
    column (``xyz``, ``mask``) reads it as nulls, a column the schema does not know is ignored,
    and a numeric column of another width is cast; so one odd file never stops a job."""
    return open_dataset(uri, storage_options, schema=DATASET_SCHEMA)


def partition_filter(classes: Iterable[str] | None = None, splits: Iterable[str] | None = None) -> ds.Expression | None:
    expr = None
    if classes:
        expr = pc.field("class_name").isin(list(classes))
    if splits:
        e = pc.field("split").isin(list(splits))
        expr = e if expr is None else expr & e
    return expr


def read_table(
    uri: str,
    classes: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    columns: Sequence[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pa.Table:
    dset = open_dataset(uri, storage_options)
    table = dset.to_table(columns=list(columns) if columns else None, filter=partition_filter(classes, splits))
    if "image_id" in table.column_names and table.num_rows:
        table = table.sort_by("image_id")
    return table


def iter_batches(
    uri: str,
    classes: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    columns: Sequence[str] | None = None,
    batch_size: int = 32,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream record batches: memory stays bounded by ``batch_size`` rows, whatever the dataset size."""
    dset = open_input(uri, storage_options)
    yield from dset.to_batches(
        columns=list(columns) if columns else None,
        filter=partition_filter(classes, splits),
        batch_size=batch_size,
    )


def count_rows(uri: str, classes: Iterable[str] | None = None, splits: Iterable[str] | None = None, storage_options=None) -> int:
    """Rows of the selected partitions, from the Parquet footers (no column is read)."""
    return open_input(uri, storage_options).count_rows(filter=partition_filter(classes, splits))


def list_partitions(uri: str, storage_options: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """Sorted ``(class_name, split)`` pairs present in the dataset (read from the paths only)."""
    dset = open_dataset(uri, storage_options)
    found = set()
    for frag in dset.get_fragments():
        keys = ds.get_partition_keys(frag.partition_expression)
        found.add((keys.get("class_name"), keys.get("split")))
    return sorted(found)


def summarize(uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, dict[str, dict[str, int]]]:
    """``{class: {split: {"n": .., "anomalous": ..}}}`` without reading image bytes."""
    table = read_table(uri, columns=["class_name", "split", "label"], storage_options=storage_options)
    counts: Counter = Counter()
    anomalous: Counter = Counter()
    for c, s, lab in zip(
        table.column("class_name").to_pylist(), table.column("split").to_pylist(), table.column("label").to_pylist()
    ):
        counts[(c, s)] += 1
        anomalous[(c, s)] += int(lab == 1)
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (c, s), n in sorted(counts.items()):
        out.setdefault(c, {})[s] = {"n": n, "anomalous": anomalous[(c, s)]}
    return out


def duplicate_ids(uri: str, classes: Iterable[str] | None = None, splits: Iterable[str] | None = ("test",), storage_options=None) -> dict[str, int]:
    """``{image_id: count}`` for ids that occur more than once (reads the id column only)."""
    ids = read_table(uri, classes, splits, ["image_id"], storage_options).column("image_id").to_pylist()
    return {k: n for k, n in Counter(ids).items() if n > 1}
