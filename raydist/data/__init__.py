"""Dataset format, storage, decoding, ingest and synthetic data."""

from raydist.data.schema import DATASET_SCHEMA, PARTITIONING_FIELDS

__all__ = ["DATASET_SCHEMA", "PARTITIONING_FIELDS"]
