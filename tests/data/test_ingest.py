import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from raydist.data.dataset import read_table, summarize
from raydist.data.decode import decode_mask, decode_xyz
from raydist.data.ingest import ingest
from tests.conftest import shared_sample


def save_png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def rgb(v, h=16, w=16):
    return np.full((h, w, 3), v, np.uint8)


def mask_at(i, h=16, w=16):
    m = np.zeros((h, w), np.uint8)
    m[i : i + 3, i : i + 3] = 255
    return m


def build_mvtec_ad(root):
    for cls in ("bottle", "screw"):
        for i in range(5):
            save_png(root / cls / "train" / "good" / f"{i:03d}.png", rgb(i))
        save_png(root / cls / "test" / "good" / "000.png", rgb(50))
        for i in range(2):
            save_png(root / cls / "test" / "crack" / f"{i:03d}.png", rgb(100 + i))
            save_png(root / cls / "ground_truth" / "crack" / f"{i:03d}_mask.png", mask_at(i + 2))


def test_ingest_mvtec_ad_counts_and_pairing(tmp_path):
    build_mvtec_ad(tmp_path / "src")
    rep = ingest(tmp_path / "src", str(tmp_path / "ds"), "mvtec-ad")
    assert rep.errors == []
    # 20% of 5 train images -> 1 val image per class
    assert rep.written == {"bottle": {"train": 4, "val": 1, "test": 3}, "screw": {"train": 4, "val": 1, "test": 3}}
    rows = read_table(str(tmp_path / "ds"), classes=["bottle"], splits=["test"]).to_pylist()
    bad = {r["image_id"]: r for r in rows if r["label"] == 1}
    assert sorted(bad) == ["bottle/test/crack/000", "bottle/test/crack/001"]
    for k, r in bad.items():
        i = int(k[-1])
        m = decode_mask(r["mask"], k)
        assert m.sum() == 9 and m[i + 2, i + 2]  # mask paired with its own image
    assert all(r["mask"] is None for r in rows if r["label"] == 0)
    report = json.loads((tmp_path / "ds" / "_ingest_report.json").read_text())
    assert report["n_written"] == 16


def build_mvtec_3d(root, with_xyz=True):
    cls = root / "gland"
    for split, defects in (("train", {"good": 3}), ("validation", {"good": 2}), ("test", {"good": 1, "hole": 2})):
        for d, n in defects.items():
            for i in range(n):
                save_png(cls / split / d / "rgb" / f"{i:03d}.png", rgb(10 * i, 12, 14))
                gt = np.zeros((12, 14), np.uint8)
                if d != "good":
                    gt[2:5, 3:6] = 1  # gt values > 0, not only 255
                save_png(cls / split / d / "gt" / f"{i:03d}.png", gt)
                if with_xyz:
                    xyz = np.random.default_rng(i).random((12, 14, 3)).astype(np.float32)
                    xyz[0, 0] = 0
                    (cls / split / d / "xyz").mkdir(parents=True, exist_ok=True)
                    tifffile.imwrite(cls / split / d / "xyz" / f"{i:03d}.tiff", xyz)


def test_ingest_mvtec_3d_with_xyz(tmp_path):
    build_mvtec_3d(tmp_path / "src")
    rep = ingest(tmp_path / "src", str(tmp_path / "ds"), "mvtec-3d")
    assert rep.errors == []
    assert rep.written == {"gland": {"train": 3, "val": 2, "test": 3}}  # validation -> val, no 20% split
    rows = read_table(str(tmp_path / "ds"), splits=["test"]).to_pylist()
    hole = [r for r in rows if r["defect_type"] == "hole"]
    assert len(hole) == 2 and all(decode_mask(r["mask"], "h").sum() == 9 for r in hole)
    xyz = decode_xyz(rows[0]["xyz"], rows[0]["image_id"], (12, 14))
    assert xyz.shape == (12, 14, 3) and np.isnan(xyz[0, 0]).all()


def test_ingest_reports_bad_rows_and_keeps_the_rest(tmp_path):
    src = tmp_path / "src"
    build_mvtec_3d(src)
    cls = src / "gland" / "test"
    (cls / "hole" / "rgb" / "000.png").write_bytes(b"corrupt bytes")  # corrupt PNG
    save_png(cls / "hole" / "gt" / "001.png", np.ones((5, 5), np.uint8))  # mask of another size
    tifffile.imwrite(cls / "good" / "xyz" / "000.tiff", np.zeros((12, 14), np.float32))  # not 3-channel
    save_png(src / "gland" / "train" / "good" / "rgb" / "009.png", rgb(1, 12, 14))
    tifffile.imwrite(src / "gland" / "train" / "good" / "xyz" / "009.tiff", np.zeros((10, 14, 3), np.float32))  # wrong shape
    rep = ingest(src, str(tmp_path / "ds"), "mvtec-3d")
    reasons = {e["image_id"]: e["error"] for e in rep.errors}
    assert set(reasons) == {"gland/test/hole/000", "gland/test/hole/001", "gland/test/good/000", "gland/train/good/009"}
    assert reasons["gland/test/hole/000"].startswith("corrupt_image")
    assert reasons["gland/test/hole/001"].startswith("shape_mismatch")
    assert reasons["gland/test/good/000"].startswith("invalid_xyz")
    assert reasons["gland/train/good/009"].startswith("shape_mismatch")
    assert rep.n_written == 5  # 3 train + 2 val survive


def test_missing_mask_is_reported(tmp_path):
    build_mvtec_ad(tmp_path / "src")
    (tmp_path / "src" / "screw" / "ground_truth" / "crack" / "001_mask.png").unlink()
    rep = ingest(tmp_path / "src", str(tmp_path / "ds"), "mvtec-ad")
    assert [e["image_id"] for e in rep.errors] == ["screw/test/crack/001"]
    assert "missing_mask" in rep.errors[0]["error"]


def test_folder_format_refuses_symlink_escape(tmp_path):
    outside = tmp_path / "outside"
    save_png(outside / "secret.png", rgb(1))
    src = tmp_path / "src"
    save_png(src / "part" / "train" / "good" / "000.png", rgb(1))
    (src / "part" / "train" / "good" / "evil.png").symlink_to(outside / "secret.png")
    with pytest.raises(PermissionError, match="outside the source root"):
        ingest(src, str(tmp_path / "ds"), "folder")


def test_ingest_real_mvtec3d_sample(tmp_path):
    src = shared_sample("mvtec3d-mini")
    rep = ingest(src, str(tmp_path / "ds"), "mvtec-3d")
    assert rep.errors == []
    assert rep.written == {"cable_gland": {"train": 6, "val": 2, "test": 6}}
    rows = read_table(str(tmp_path / "ds"), splits=["test"]).to_pylist()
    assert sum(r["label"] for r in rows) == 4
    r = next(r for r in rows if r["label"] == 1)
    xyz = decode_xyz(r["xyz"], r["image_id"], (r["height"], r["width"]))
    assert xyz.shape == (400, 400, 3) and np.isfinite(xyz).all(axis=2).mean() > 0.5
    assert decode_mask(r["mask"], r["image_id"], (400, 400)).sum() > 0


def test_ingest_real_rgb_only_sample(tmp_path):
    src = shared_sample("mvtec3d-rgb-tire")
    rep = ingest(src, str(tmp_path / "ds"), "mvtec-3d")
    assert rep.errors == []
    s = summarize(str(tmp_path / "ds"))
    assert s["tire"]["train"]["n"] == 40 and s["tire"]["val"]["n"] == 8
    assert s["tire"]["test"] == {"n": 22, "anomalous": 14}
    assert all(r["xyz"] is None for r in read_table(str(tmp_path / "ds"), columns=["xyz"]).to_pylist())


def build_kolektor(root, n_items=10, parts=4, h=30, w=12):
    """Tall, grey images like KolektorSDD; item i has a defect on part i % parts when i is even."""
    for i in range(n_items):
        item = root / f"kos{i + 1:02d}"
        for p in range(parts):
            item.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((h, w), 10 * i + p, np.uint8)).save(item / f"Part{p}.jpg")
            lab = np.zeros((h, w), np.uint8)
            if i % 2 == 0 and p == i % parts:
                lab[5 + p : 9 + p, 2:4] = 255
            ext = ".bmp" if i == 0 else ".png"  # the original release ships .bmp labels
            Image.fromarray(lab).save(item / f"Part{p}_label{ext}")


def test_ingest_kolektorsdd_split_by_item(tmp_path):
    build_kolektor(tmp_path / "src")
    rep = ingest(tmp_path / "src", str(tmp_path / "ds"), "kolektorsdd", val_fraction=0.25, train_share=0.6)
    assert rep.errors == []
    rows = read_table(str(tmp_path / "ds")).to_pylist()
    assert len(rows) == 40  # every image accounted for
    item = {r["image_id"]: r["image_id"].split("/")[-1].split("_")[0] for r in rows}
    train_items = {item[r["image_id"]] for r in rows if r["split"] in ("train", "val")}
    assert len(train_items) == 6  # 60% of 10 items
    bad = [r for r in rows if r["label"] == 1]
    assert len(bad) == 5 and all(r["split"] == "test" and r["defect_type"] == "crack" for r in bad)
    # items never straddle train and test, except the defective images of train items
    for r in rows:
        if r["split"] == "test" and r["label"] == 0:
            assert item[r["image_id"]] not in train_items
    n_good_train = sum(1 for r in rows if r["split"] in ("train", "val"))
    assert n_good_train == 6 * 4 - sum(1 for r in bad if item[r["image_id"]] in train_items)
    assert sum(1 for r in rows if r["split"] == "val") == round(0.25 * n_good_train)
    for r in bad:  # label paired with its own image, non-square size kept
        m = decode_mask(r["mask"], r["image_id"], (30, 12))
        p = int(r["image_id"][-1])
        assert m.sum() == 8 and m[5 + p, 2] and (r["height"], r["width"]) == (30, 12)
    # the split is seeded: same seed, same split; another seed, another one
    again = ingest(tmp_path / "src", str(tmp_path / "ds2"), "kolektorsdd", val_fraction=0.25, train_share=0.6)
    assert again.written == rep.written
    other = read_table(str(tmp_path / "ds3") if ingest(tmp_path / "src", str(tmp_path / "ds3"), "kolektorsdd", seed=3) else "").to_pylist()
    assert {r["image_id"] for r in other if r["split"] == "train"} != {r["image_id"] for r in rows if r["split"] == "train"}


def test_ingest_real_kolektorsdd(tmp_path):
    src = shared_sample("kolektorsdd")
    rep = ingest(src, str(tmp_path / "ds"), "kolektorsdd")
    assert rep.errors == []
    s = summarize(str(tmp_path / "ds"))["kolektorsdd"]
    assert s["train"]["n"] + s["val"]["n"] + s["test"]["n"] == 400
    assert s["test"]["anomalous"] == 52 and s["val"]["anomalous"] == 0
    r = next(r for r in read_table(str(tmp_path / "ds"), splits=["test"]).to_pylist() if r["label"] == 1)
    assert r["height"] > 2 * r["width"]  # ~630 x 250: not squashed to a square


@pytest.mark.parametrize("fmt", ["mvtec-ad", "mvtec-3d", "kolektorsdd"])
def test_every_format_refuses_symlink_escapes(tmp_path, fmt):
    """A file symlink and a directory symlink pointing outside the source root are refused."""
    outside = tmp_path / "outside"
    save_png(outside / "secret.png", rgb(1))
    src = tmp_path / "src"
    if fmt == "mvtec-ad":
        build_mvtec_ad(src)
        (src / "bottle" / "train" / "good" / "evil.png").symlink_to(outside / "secret.png")
        (src / "screw" / "test" / "linked").symlink_to(outside, target_is_directory=True)
    elif fmt == "mvtec-3d":
        build_mvtec_3d(src, with_xyz=False)
        (src / "gland" / "train" / "good" / "rgb" / "evil.png").symlink_to(outside / "secret.png")
    else:
        build_kolektor(src, n_items=2)
        (src / "kos01" / "Part9.jpg").symlink_to(outside / "secret.png")
    with pytest.raises(PermissionError, match="outside the source root"):
        ingest(src, str(tmp_path / "ds"), fmt)
    assert not (tmp_path / "ds").exists()  # refused before anything was written


def test_directory_symlink_escape_is_refused(tmp_path):
    outside = tmp_path / "outside"
    save_png(outside / "000.png", rgb(1))
    src = tmp_path / "src"
    build_mvtec_ad(src)
    (src / "screw" / "test" / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(PermissionError, match="outside the source root"):
        ingest(src, str(tmp_path / "ds"), "mvtec-ad")


def test_ingesting_twice_is_refused_or_explicit(tmp_path):
    """A re-run must not silently duplicate every row: refused, or --overwrite / --append said."""
    from raydist.cli import main
    from raydist.data.dataset import read_table

    build_mvtec_ad(tmp_path / "src")
    dest = str(tmp_path / "ds")
    assert main(["ingest", str(tmp_path / "src"), dest, "--format", "mvtec-ad"]) == 0
    n = read_table(dest).num_rows
    assert main(["ingest", str(tmp_path / "src"), dest, "--format", "mvtec-ad"]) == 2  # refused, nothing written
    assert read_table(dest).num_rows == n
    assert main(["ingest", str(tmp_path / "src"), dest, "--format", "mvtec-ad", "--overwrite"]) == 0
    assert read_table(dest).num_rows == n
    assert main(["ingest", str(tmp_path / "src"), dest, "--format", "mvtec-ad", "--append"]) == 0
    assert read_table(dest).num_rows == 2 * n
