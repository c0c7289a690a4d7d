import numpy as np

from raydist.data.dataset import list_partitions, read_table, rows_to_table, summarize, write_table
from raydist.data.decode import decode_npy, encode_npy, encode_png


def make_rows(n_per=3):
    rows = []
    for cls in ("a", "b"):
        for split in ("train", "test"):
            for i in range(n_per):
                img = np.full((8, 10, 3), i * 10, np.uint8)
                rows.append(
                    {
                        "image_id": f"{cls}/{split}/{i}",
                        "class_name": cls,
                        "split": split,
                        "label": int(split == "test" and i == 0),
                        "defect_type": "cut" if split == "test" and i == 0 else "good",
                        "image": encode_png(img),
                        "mask": encode_png(np.ones((8, 10), bool)) if split == "test" and i == 0 else None,
                        "xyz": encode_npy(np.random.default_rng(i).random((8, 10, 3), dtype=np.float32)),
                        "height": 8,
                        "width": 10,
                    }
                )
    return rows


def roundtrip(uri, storage_options=None):
    rows = make_rows()
    write_table(rows_to_table(rows), uri, storage_options=storage_options)
    assert list_partitions(uri, storage_options) == [("a", "test"), ("a", "train"), ("b", "test"), ("b", "train")]
    back = read_table(uri, storage_options=storage_options).to_pylist()
    assert len(back) == len(rows) == 12
    by_id = {r["image_id"]: r for r in back}
    for r in rows:
        got = by_id[r["image_id"]]
        for k in ("class_name", "split", "label", "defect_type", "image", "mask", "xyz", "height", "width"):
            assert got[k] == r[k], k  # byte-identical blobs
    only = read_table(uri, classes=["b"], splits=["test"], columns=["image_id"], storage_options=storage_options)
    assert sorted(only.column("image_id").to_pylist()) == ["b/test/0", "b/test/1", "b/test/2"]
    return back


def test_local_roundtrip_is_byte_identical(tmp_path):
    back = roundtrip(str(tmp_path / "ds"))
    xyz = decode_npy(back[0]["xyz"], "x")
    assert xyz.shape == (8, 10, 3) and xyz.dtype == np.float32


def test_summary_counts(tmp_path):
    uri = str(tmp_path / "ds")
    write_table(rows_to_table(make_rows()), uri)
    s = summarize(uri)
    assert s["a"]["test"] == {"n": 3, "anomalous": 1}
    assert s["b"]["train"] == {"n": 3, "anomalous": 0}


def test_clouds_are_written_with_lz4_the_rest_with_snappy_payloads_without_dictionary(tmp_path):
    import pyarrow.parquet as pq

    from raydist.data.synth import SynthConfig, generate_rows

    rows = generate_rows(SynthConfig(n_classes=1, n_train=2, n_val=0, n_test_good=1, n_test_bad=1, size=32, with_xyz=True))
    write_table(rows_to_table(rows), str(tmp_path / "d"))
    f = next((tmp_path / "d").rglob("*.parquet"))  # one file per partition
    rg = pq.ParquetFile(f).metadata.row_group(0)
    codecs = {rg.column(i).path_in_schema: rg.column(i).compression for i in range(rg.num_columns)}
    assert codecs.pop("xyz") in ("LZ4", "LZ4_RAW") and set(codecs.values()) == {"SNAPPY"}
    # payloads (unique per row) are never dictionary-encoded; the small columns are
    dictionary = {rg.column(i).path_in_schema: "RLE_DICTIONARY" in rg.column(i).encodings for i in range(rg.num_columns)}
    assert dictionary == {"image_id": True, "label": True, "defect_type": True, "image": False, "mask": False, "xyz": False, "height": True, "width": True}
    assert read_table(str(tmp_path / "d")).num_rows == len(rows)
