"""Look up score maps by ``image_id`` in a Parquet dataset (pyarrow.dataset filter push-down)."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow.compute as pc
import pyarrow.dataset as ds

from raydist.errors import ConfigError
from raydist.storage import filesystem

MAP_COLUMNS = ("image_id", "score_map")
SCORE_COLUMN = "image_score"  # optional: the detector's own image score (else one is read off the map)


class MapStore:
    """The maps dataset: any Parquet files (hive-partitioned or not) with ``image_id`` and ``score_map``.

    raydist's own ``results/`` folder is one (its ``score_map`` column is the map), so results of a
    run re-binarise without rescoring.
    """

    def __init__(self, uri: str, storage_options=None):
        fs, path = filesystem(uri, storage_options)
        if not fs.exists(path):
            raise ConfigError(f"no maps dataset at {uri}")
        self.dataset = ds.dataset(path, filesystem=fs, format="parquet", partitioning="hive")
        missing = [c for c in MAP_COLUMNS if c not in self.dataset.schema.names]
        if missing:
            raise ConfigError(f"maps dataset {uri} lacks column(s) {missing}; it needs {list(MAP_COLUMNS)}")

        self.has_scores = SCORE_COLUMN in self.dataset.schema.names

    def get(self, image_ids: Sequence[str]) -> dict[str, list[tuple[bytes | None, float | None]]]:
        """Every stored (map, image score or None) of each id asked for (a list: an id may wrongly occur twice)."""
        out: dict[str, list[tuple[bytes | None, float | None]]] = {}
        if not image_ids:
            return out
        columns = [*MAP_COLUMNS, SCORE_COLUMN] if self.has_scores else list(MAP_COLUMNS)
        table = self.dataset.to_table(columns=columns, filter=pc.field("image_id").isin(list(image_ids)))
        scores = table.column(SCORE_COLUMN).to_pylist() if self.has_scores else [None] * table.num_rows
        for iid, m, s in zip(table.column("image_id").to_pylist(), table.column("score_map").to_pylist(), scores):
            out.setdefault(iid, []).append((m, s))
        return out
