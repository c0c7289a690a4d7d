"""The one Arrow schema every stage reads and writes (documented in docs/data.md)."""

from __future__ import annotations

import pyarrow as pa

SPLITS = ("train", "val", "test")

#: Full row schema. ``class_name`` and ``split`` are also the hive partition keys.
DATASET_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("class_name", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("label", pa.int8(), nullable=False),
        pa.field("defect_type", pa.string(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),
        pa.field("mask", pa.binary()),
        pa.field("xyz", pa.binary()),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
    ]
)

PARTITIONING_FIELDS = ("class_name", "split")
PARTITION_SCHEMA = pa.schema([(name, pa.string()) for name in PARTITIONING_FIELDS])
#: What is stored inside each Parquet file (partition keys live in the path).
FILE_SCHEMA = pa.schema([f for f in DATASET_SCHEMA if f.name not in PARTITIONING_FIELDS])
