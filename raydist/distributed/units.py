"""Work units: (Parquet file, row group) pairs of the test split. Pure pyarrow, no Ray.

A unit id is a hash of the file path and row group, so reruns find finished units by name:
results are written as ``results/class_name=C/part-<unit>.parquet`` plus a small summary
``_parts/<unit>.json``; both are written atomically, the summary last (it marks the unit done).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pyarrow.dataset as ds

from raydist.data.dataset import open_dataset, partition_filter


@dataclass(frozen=True)
class Unit:
    path: str
    row_group: int
    class_name: str
    n_rows: int

    @property
    def uid(self) -> str:
        return hashlib.sha1(f"{self.path}#{self.row_group}".encode()).hexdigest()[:16]


def list_units(data_uri: str, classes=None, storage_options=None) -> list[Unit]:
    dset = open_dataset(data_uri, storage_options)
    units = []
    for frag in dset.get_fragments(filter=partition_filter(classes, ["test"])):
        keys = ds.get_partition_keys(frag.partition_expression)
        for rg in frag.row_groups:
            units.append(Unit(frag.path, rg.id, keys["class_name"], rg.num_rows))
    return sorted(units, key=lambda u: (u.class_name, u.path, u.row_group))


def read_unit(unit: Unit, data_uri: str, columns, storage_options=None) -> list[dict]:
    dset = open_dataset(data_uri, storage_options)
    for frag in dset.get_fragments(filter=partition_filter([unit.class_name], ["test"])):
        if frag.path == unit.path:
            table = frag.subset(row_group_ids=[unit.row_group]).to_table(schema=dset.schema, columns=list(columns))
            return table.to_pylist()
    raise FileNotFoundError(f"{unit.path} is no longer in the dataset")
