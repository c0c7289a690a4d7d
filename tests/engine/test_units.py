"""Reading a work unit: every row, its values as stored, large blobs as views."""

import numpy as np
import pyarrow as pa

from raydist.data.dataset import rows_to_table, write_table
from raydist.data.decode import read_xyz
from raydist.data.synth import SynthConfig, generate_rows
from raydist.engine.rows import INPUT_COLUMNS
from raydist.engine.units import binary_views, list_units, read_unit


def test_binary_views_are_the_values_without_copies():
    arr = pa.chunked_array([pa.array([b"abc", None, b"", b"defg"]), pa.array([b"xy"]).slice(0, 1), pa.array([None, None], pa.binary())])
    views = binary_views(arr)
    assert [None if v is None else v.to_pybytes() for v in views] == [b"abc", None, b"", b"defg", b"xy", None, None]
    big = pa.array([bytes(range(256)) * 4096], pa.large_binary())
    (v,) = binary_views(pa.chunked_array([big]))
    assert v.address == big.buffers()[2].address  # the read buffer itself


def test_read_unit_hands_clouds_on_as_views(tmp_path):
    rows = generate_rows(SynthConfig(n_classes=1, n_train=1, n_val=0, n_test_good=2, n_test_bad=2, size=32, with_xyz=True))
    write_table(rows_to_table(rows), str(tmp_path / "d"), max_rows_per_group=3)
    units = list_units(str(tmp_path / "d"))
    got = [r for u in units for r in read_unit(u, str(tmp_path / "d"), INPUT_COLUMNS)]
    want = {r["image_id"]: r for r in rows if r["split"] == "test"}
    assert sorted(r["image_id"] for r in got) == sorted(want)
    for r in got:
        w = want[r["image_id"]]
        assert isinstance(r["xyz"], pa.Buffer) and r["xyz"].to_pybytes() == w["xyz"]
        assert {k: v for k, v in r.items() if k != "xyz"} == {k: w[k] for k in r if k != "xyz"}
        assert np.array_equal(read_xyz(r["xyz"], r["image_id"]), read_xyz(w["xyz"], r["image_id"]), equal_nan=True)
