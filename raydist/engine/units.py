"""Work units: (Parquet file, row group) pairs of the test split. Pure pyarrow, no Ray.

A unit id is a hash of what its results depend on: the file path and row group, the file's
fingerprint (size + ETag or modification time) and the run key (model files + evaluation
options). Reruns find finished units by name, and a unit whose input, model or options changed
gets a new id, so it is evaluated again instead of being reported stale. Results are written as
``results/class_name=C/part-<unit>.parquet`` plus a small summary ``_parts/<unit>.json``; both
atomically, the summary last (it marks the unit done).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds

from raydist.data.dataset import open_input, partition_filter
from raydist.storage import filesystem, join, read_bytes


@dataclass(frozen=True)
class Unit:
    path: str
    row_group: int
    class_name: str
    n_rows: int
    fingerprint: str = ""  # of the input file: size + ETag / mtime
    run_key: str = ""  # of the model files and evaluation options

    @property
    def uid(self) -> str:
        return hashlib.sha1(f"{self.path}#{self.row_group}#{self.fingerprint}#{self.run_key}".encode()).hexdigest()[:16]


def file_fingerprint(info: dict) -> str:
    """Size plus the store's change marker: S3's ETag, else the modification time."""
    marker = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or info.get("last_modified")
    return f"{info.get('size')}:{marker}"


def partitions_fingerprint(data_uri: str, classes, splits, storage_options=None) -> str:
    """Path + :func:`file_fingerprint` of every file of the selected partitions, in path order:
    changes whenever one of their files is added, removed or rewritten."""
    fs, _ = filesystem(data_uri, storage_options)
    files = sorted(f.path for f in open_input(data_uri, storage_options).get_fragments(filter=partition_filter(classes, splits)))
    return ";".join(f"{p}={file_fingerprint(fs.info(p))}" for p in files)


def run_key(model_uri: str, options: dict, storage_options=None) -> str:
    """Hash of the model's files (model.json carries the config, THR statistics and file names;
    sizes and change markers of its .safetensors tensors) and of the evaluation options. Other
    files in the folder (a local MLflow store, notes) do not count."""
    h = hashlib.sha1(read_bytes(join(model_uri, "model.json"), storage_options))
    fs, root = filesystem(model_uri, storage_options)
    for f in sorted(fs.find(root, detail=True).items()):
        if f[0].endswith(".safetensors"):
            h.update(f"{f[0][len(root):]}={file_fingerprint(f[1])}".encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def list_units(data_uri: str, classes=None, storage_options=None, key: str = "") -> list[Unit]:
    dset = open_input(data_uri, storage_options)
    fs, _ = filesystem(data_uri, storage_options)
    units = []
    for frag in dset.get_fragments(filter=partition_filter(classes, ["test"])):
        keys = ds.get_partition_keys(frag.partition_expression)
        fp = file_fingerprint(fs.info(frag.path))
        for rg in frag.row_groups:
            units.append(Unit(frag.path, rg.id, keys["class_name"], rg.num_rows, fp, key))
    return sorted(units, key=lambda u: (u.class_name, u.path, u.row_group))


# per-row blobs handed on as views of the buffers Parquet was read into, not copied into bytes:
# an 800-px cloud is 7.7 MB, and copying it cost ~4 ms a row (a third of reading it)
VIEW_COLUMNS = ("xyz",)


def read_unit(unit: Unit, data_uri: str, columns, storage_options=None) -> list[dict]:
    """The unit's rows as dicts; the :data:`VIEW_COLUMNS` among ``columns`` as read-only
    ``pyarrow.Buffer`` views (bytes-like: ``memoryview``/``np.frombuffer`` read them in place)."""
    dset = open_input(data_uri, storage_options)
    for frag in dset.get_fragments(filter=partition_filter([unit.class_name], ["test"])):
        if frag.path == unit.path:
            table = frag.subset(row_group_ids=[unit.row_group]).to_table(schema=dset.schema, columns=list(columns))
            views = {c: binary_views(table.column(c)) for c in VIEW_COLUMNS if c in table.column_names}
            rows = table.drop_columns(list(views)).to_pylist()
            for c, values in views.items():
                for row, v in zip(rows, values, strict=True):
                    row[c] = v
            return rows
    raise FileNotFoundError(f"{unit.path} is no longer in the dataset")


def binary_views(column: pa.ChunkedArray) -> list[pa.Buffer | None]:
    """Each value of a binary column as a zero-copy slice of its data buffer (None where null)."""
    out: list[pa.Buffer | None] = []
    for ch in column.chunks:
        _, offsets, data = ch.buffers()
        data = data if data is not None else pa.py_buffer(b"")  # no data buffer: every value is empty or null
        off = np.frombuffer(offsets, dtype=np.int64 if pa.types.is_large_binary(ch.type) else np.int32)[ch.offset : ch.offset + len(ch) + 1]
        valid = ch.is_valid().to_numpy(zero_copy_only=False)
        out += [data.slice(int(off[i]), int(off[i + 1] - off[i])) if valid[i] else None for i in range(len(ch))]
    return out
