import numpy as np

from raydist.data.decode import decode_image, decode_mask, decode_xyz
from raydist.data.synth import SynthConfig, generate_rows


def test_synth_is_deterministic_and_sized():
    cfg = SynthConfig(n_classes=2, n_train=3, n_val=1, n_test_good=1, n_test_bad=5, size=64, seed=3)
    a, b = generate_rows(cfg), generate_rows(cfg)
    assert [r["image"] for r in a] == [r["image"] for r in b]
    assert len(a) == 2 * (3 + 1 + 1 + 5)
    assert generate_rows(SynthConfig(n_classes=2, n_train=3, size=64, seed=4))[0]["image"] != a[0]["image"]
    bad = [r for r in a if r["label"] == 1]
    assert sorted({r["defect_type"] for r in bad}) == ["colour", "crack", "missing", "scratch", "spot"]
    for r in bad:
        img = decode_image(r["image"], r["image_id"])
        m = decode_mask(r["mask"], r["image_id"], img.shape[:2])
        assert 10 < m.sum() < 0.2 * m.size


def test_synth_classes_differ_and_xyz_has_3d_only_defects():
    rows = generate_rows(SynthConfig(n_classes=3, n_train=2, n_val=0, n_test_good=1, n_test_bad=7, size=64, with_xyz=True))
    means = {r["class_name"]: decode_image(r["image"], "x").std() for r in rows if r["split"] == "train"}
    assert len(means) == 3 and len(set(np.round(list(means.values()), 1))) == 3
    good = next(r for r in rows if r["split"] == "test" and r["label"] == 0)
    bump = next(r for r in rows if r["defect_type"] == "bump")
    xyz_g = decode_xyz(good["xyz"], "g")
    xyz_b = decode_xyz(bump["xyz"], "b")
    m = decode_mask(bump["mask"], "b")
    dz = np.nan_to_num(xyz_b[..., 2] - xyz_g[..., 2])
    assert np.abs(dz[m]).mean() > 10 * np.abs(dz[~m]).mean()  # the geometry changed inside the mask
