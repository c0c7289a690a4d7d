import numpy as np
import pytest
from scipy import ndimage

from raydist.data.dataset import read_table
from raydist.data.decode import decode_image, decode_mask, decode_xyz
from raydist.data.synth3d import DEFECTS, MODALITY, Synth3DConfig, render, write_synth3d

PALETTE = np.array([[0.3, 0.3, 0.3], [0.8, 0.8, 0.8]])


def scene(defect: str, seed: int = 5):
    return render("puck", "speckle", defect, 224, np.random.default_rng(seed), PALETTE)


@pytest.mark.parametrize("defect", DEFECTS)
def test_each_defect_shows_only_in_its_modalities(defect):
    img0, xyz0, _ = scene("good")
    img, xyz, mask = scene(defect)
    assert 100 < mask.sum() < 2000
    img_changed = np.abs(img.astype(int) - img0).sum(axis=2) > 0
    xyz_changed = np.abs(xyz[..., 2] - xyz0[..., 2]) > 1e-6
    if MODALITY[defect] == "3d":
        assert not img_changed.any()  # the image is the nominal scene's: only the cloud shows it
        assert xyz_changed[mask].mean() > 0.9
    elif MODALITY[defect] == "colour":
        assert not xyz_changed.any()
        assert img_changed[mask].mean() > 0.9
    else:
        assert img_changed[mask].mean() > 0.9 and xyz_changed[mask].mean() > 0.7
    # the defect stays near its mask: nothing changes farther than the blur of its edge
    far = ndimage.distance_transform_edt(~mask) > 8
    assert not (img_changed | xyz_changed)[far].any()


def test_scene_is_framed_like_mvtec_3d():
    img, xyz, _ = scene("good")
    valid = (xyz != 0).any(axis=2)
    assert img.shape == (224, 224, 3) and img.dtype == np.uint8
    assert 0.9 < valid.mean() < 0.999  # sensor dropouts, mostly on the part's flanks
    z = xyz[..., 2][valid]
    assert 0.55 < np.median(z) < 0.65  # metres, as MVTec 3D-AD
    bg = xyz[:10].reshape(-1, 3)  # the top rows: background plane only
    bg = bg[(bg != 0).any(axis=1)]
    coef, *_ = np.linalg.lstsq(np.c_[bg[:, :2], np.ones(len(bg))], bg[:, 2], rcond=None)
    noise = (bg[:, 2] - np.c_[bg[:, :2], np.ones(len(bg))] @ coef).std()
    assert 5e-5 < noise < 2e-4  # the sensor's 0.1 mm


def test_written_dataset_round_trips(tmp_path):
    n = write_synth3d(str(tmp_path / "d"), Synth3DConfig(n_classes=4, n_train=2, n_val=1, n_test_good=1, n_test_bad=6, size=96))
    rows = read_table(str(tmp_path / "d")).to_pylist()
    assert n == len(rows) == 4 * 10 == len({r["image_id"] for r in rows})  # a 4th class gets its own name
    assert {r["defect_type"] for r in rows if r["label"]} == set(DEFECTS)
    for r in rows:
        img = decode_image(r["image"], r["image_id"])
        decode_xyz(r["xyz"], r["image_id"], img.shape[:2])
        gt = decode_mask(r["mask"], r["image_id"], img.shape[:2], label=r["label"])
        assert (gt is not None and gt.any()) == bool(r["label"])


def test_cli_writes_the_scenes(tmp_path, capsys):
    from raydist.cli import main

    dest = str(tmp_path / "s")
    assert main(["synth", dest, "--scenes", "--classes", "2", "--train", "1", "--val", "1", "--test-good", "1", "--test-bad", "6", "--size", "64"]) == 0
    rows = read_table(dest).to_pylist()
    assert len(rows) == 2 * 9 and all(r["xyz"] for r in rows)
    assert {r["class_name"] for r in rows} == {"dome_grain", "puck_speckle"}
    assert main(["synth", str(tmp_path / "t"), "--scenes", "--defect-strength", "0.5"]) == 2  # not silently ignored
    assert "does not apply to --scenes" in capsys.readouterr().err
