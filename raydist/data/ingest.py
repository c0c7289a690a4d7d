"""Ingest folder layouts (MVTec AD, MVTec 3D-AD, generic) into the raydist Parquet format.

Rows that fail validation are reported with their reason and skipped; all others are written.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raydist.data.dataset import rows_to_table, write_table
from raydist.data.decode import decode_image, decode_mask, encode_npy
from raydist.errors import InvalidPointCloudError, RowError, ShapeMismatchError
from raydist.storage import filesystem, join, write_bytes

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
FORMATS = ("mvtec-ad", "mvtec-3d", "folder", "kolektorsdd")
KOLEKTOR_TRAIN_SHARE = 0.6  # share of KolektorSDD items whose defect-free images become train/val


@dataclass
class Candidate:
    """One sample found on disk, before validation."""

    image_id: str
    class_name: str
    split: str
    defect_type: str
    image_path: Path
    mask_path: Path | None = None
    xyz_path: Path | None = None

    @property
    def label(self) -> int:
        return 0 if self.defect_type == "good" else 1


@dataclass
class IngestReport:
    written: dict[str, dict[str, int]] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def n_written(self) -> int:
        return sum(sum(v.values()) for v in self.written.values())

    def to_dict(self) -> dict[str, Any]:
        return {"n_written": self.n_written, "n_errors": len(self.errors), "written": self.written, "errors": self.errors}


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and not p.name.startswith("."))


def _class_dirs(src: Path, marker: str) -> list[Path]:
    """Class folders under ``src``; ``src`` itself when it already is one (holds ``marker``)."""
    if (src / marker).is_dir():
        return [src]
    return sorted(p for p in src.iterdir() if p.is_dir() and (p / marker).is_dir())


def _inside(root: Path, p: Path) -> Path:
    """Refuse paths that escape the source root through ``..`` or symlinks."""
    real = p.resolve()
    if not real.is_relative_to(root.resolve()):
        raise PermissionError(f"{p} resolves to {real}, outside the source root {root}")
    return real


def find_mvtec_ad(src: Path) -> Iterator[Candidate]:
    root = src.resolve()
    for cdir in _class_dirs(src, "train"):
        cls = cdir.name
        for split in ("train", "test"):
            for ddir in sorted(p for p in (cdir / split).iterdir() if p.is_dir()):
                for img in _images(_inside(root, ddir)):
                    img = _inside(root, img)
                    mask = None
                    if ddir.name != "good":
                        mask = cdir / "ground_truth" / ddir.name / f"{img.stem}_mask.png"
                        mask = _inside(root, mask) if mask.exists() else None
                    yield Candidate(f"{cls}/{split}/{ddir.name}/{img.stem}", cls, split, ddir.name, img, mask)


def find_mvtec_3d(src: Path) -> Iterator[Candidate]:
    root = src.resolve()
    split_names = {"train": "train", "validation": "val", "test": "test"}
    for cdir in _class_dirs(src, "train"):
        cls = cdir.name
        for folder, split in split_names.items():
            if not (cdir / folder).is_dir():
                continue
            for ddir in sorted(p for p in (cdir / folder).iterdir() if p.is_dir()):
                for img in _images(_inside(root, ddir / "rgb") if (ddir / "rgb").exists() else ddir / "rgb"):
                    img = _inside(root, img)
                    gt = ddir / "gt" / f"{img.stem}.png"
                    xyz = ddir / "xyz" / f"{img.stem}.tiff"
                    yield Candidate(
                        f"{cls}/{split}/{ddir.name}/{img.stem}",
                        cls,
                        split,
                        ddir.name,
                        img,
                        _inside(root, gt) if gt.exists() else None,
                        _inside(root, xyz) if xyz.exists() else None,
                    )


def find_folder(src: Path) -> Iterator[Candidate]:
    """Generic layout: ``<class>/<split>/<good|defect>/*.png``, masks in ``<class>/masks/<defect>/<stem>.png``.

    ``split`` is ``train``, ``val`` or ``test``; ``train`` and ``val`` hold ``good`` only.
    Every path is checked to stay inside ``src`` (no ``..`` or symlink escapes).
    """
    root = src.resolve()
    for cdir in _class_dirs(src, "train"):
        cls = cdir.name
        for split in ("train", "val", "test"):
            sdir = cdir / split
            if not sdir.is_dir():
                continue
            for ddir in sorted(p for p in sdir.iterdir() if p.is_dir()):
                for img in _images(_inside(root, ddir)):
                    img = _inside(root, img)
                    mask = cdir / "masks" / ddir.name / f"{img.stem}.png"
                    mask = _inside(root, mask) if mask.exists() else None
                    yield Candidate(f"{cls}/{split}/{ddir.name}/{img.stem}", cls, split, ddir.name, img, mask)


def _has_defect(mask_path: Path) -> bool:
    from PIL import Image

    with Image.open(mask_path) as im:
        return bool(np.asarray(im).max() > 0)


def find_kolektorsdd(src: Path, train_share: float = KOLEKTOR_TRAIN_SHARE, seed: int = 0) -> Iterator[Candidate]:
    """KolektorSDD: ``kosNN/PartN.jpg`` with ``PartN_label.png`` (or ``.bmp``; all-zero = no defect).

    No split is published. As anomalib's KolektorSDD datamodule does, the split is by item, so
    images of one physical commutator never sit on both sides: a seeded ``train_share`` of the
    items gives its defect-free images to train (val is carved from them afterwards); every other
    image (all of the remaining items, and the defective images of the train items) is test.
    One class, ``kolektorsdd``; defective images get the defect type ``crack``.
    """
    if not 0 < train_share < 1:
        raise ValueError(f"train_share must be in (0, 1), got {train_share}")
    root = src.resolve()
    items = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not items:
        raise FileNotFoundError(f"no KolektorSDD item folder (kosNN/) under {src}")
    rng = np.random.default_rng(seed)
    n_train = int(round(len(items) * train_share))
    train_items = {items[i].name for i in rng.permutation(len(items))[:n_train]}
    for item in items:
        for img in _images(_inside(root, item)):
            if img.stem.endswith("_label"):
                continue
            img = _inside(root, img)
            mask = next((item / f"{img.stem}_label{ext}" for ext in (".png", ".bmp") if (item / f"{img.stem}_label{ext}").exists()), None)
            mask = _inside(root, mask) if mask is not None else None
            defect = mask is not None and _has_defect(mask)
            split = "train" if item.name in train_items and not defect else "test"
            kind = "crack" if defect else "good"
            yield Candidate(f"kolektorsdd/{split}/{kind}/{item.name}_{img.stem}", "kolektorsdd", split, kind, img,
                            mask if defect else None)  # fmt: skip


FINDERS = {"mvtec-ad": find_mvtec_ad, "mvtec-3d": find_mvtec_3d, "folder": find_folder, "kolektorsdd": find_kolektorsdd}


def read_xyz_tiff(path: Path, image_id: str, shape: tuple[int, int]) -> np.ndarray:
    import tifffile

    try:
        xyz = tifffile.imread(path)
    except Exception as e:
        raise InvalidPointCloudError(image_id, f"xyz file cannot be read: {type(e).__name__}: {e}") from None
    if xyz.ndim != 3 or xyz.shape[2] != 3 or not np.issubdtype(xyz.dtype, np.floating):
        raise InvalidPointCloudError(image_id, f"xyz must be an HxWx3 float TIFF, got shape {xyz.shape} dtype {xyz.dtype}")
    if xyz.shape[:2] != shape:
        raise ShapeMismatchError(image_id, f"xyz is {xyz.shape[1]}x{xyz.shape[0]} but image is {shape[1]}x{shape[0]}")
    return xyz.astype(np.float32, copy=False)


def candidate_to_row(c: Candidate) -> dict[str, Any]:
    """Read and validate one sample; raise a :class:`RowError` if anything is wrong."""
    image_bytes = c.image_path.read_bytes()
    img = decode_image(image_bytes, c.image_id)
    shape = img.shape[:2]
    mask_bytes = None
    if c.label == 1:
        mask_bytes = c.mask_path.read_bytes() if c.mask_path else None
        m = decode_mask(mask_bytes, c.image_id, shape, label=1)
        if not m.any():
            raise RowError(c.image_id, "anomalous row has an all-zero mask")
    elif c.mask_path is not None:  # e.g. MVTec 3D-AD test/good: all-zero gt; checked, not stored
        decode_mask(c.mask_path.read_bytes(), c.image_id, shape, label=0)
    xyz_bytes = encode_npy(read_xyz_tiff(c.xyz_path, c.image_id, shape)) if c.xyz_path else None
    return {
        "image_id": c.image_id,
        "class_name": c.class_name,
        "split": c.split,
        "label": c.label,
        "defect_type": c.defect_type,
        "image": image_bytes,
        "mask": mask_bytes,
        "xyz": xyz_bytes,
        "height": shape[0],
        "width": shape[1],
    }


def assign_val_split(candidates: list[Candidate], val_fraction: float, seed: int) -> None:
    """For each class without validation images, move ``val_fraction`` of its train images to ``val``.

    The TTT4AS paper reserves 20% of MVTec AD's train set this way. The RNG is seeded per class
    (seed + CRC of the name) so adding a class never changes another class's split.
    """
    by_class: dict[str, list[Candidate]] = {}
    for c in candidates:
        by_class.setdefault(c.class_name, []).append(c)
    for cls, items in by_class.items():
        if any(c.split == "val" for c in items):
            continue
        train = [c for c in items if c.split == "train"]
        n_val = int(round(len(train) * val_fraction))
        if n_val == 0:
            continue
        rng = np.random.default_rng(seed + zlib.crc32(cls.encode()))
        for i in rng.choice(len(train), size=n_val, replace=False):
            c = train[i]
            c.split = "val"
            c.image_id = c.image_id.replace(f"{cls}/train/", f"{cls}/val/", 1)


INGEST_MODES = ("new", "overwrite", "append")


def prepare_dest(dest: str, classes: list[str], mode: str, storage_options=None) -> None:
    """Refuse (``new``) or clear (``overwrite``) the partitions of ``classes`` already in ``dest``."""
    fs, root = filesystem(dest, storage_options)
    present = [c for c in classes if fs.exists(f"{root}/class_name={c}")]
    if not present or mode == "append":
        return
    if mode == "new":
        raise FileExistsError(f"{dest} already holds class(es) {present[:5]}{'...' if len(present) > 5 else ''}: "
                              "pass --overwrite to replace them or --append to add to them")  # fmt: skip
    for c in present:
        fs.rm(f"{root}/class_name={c}", recursive=True)


def ingest(
    src: str | os.PathLike,
    dest: str,
    fmt: str,
    val_fraction: float = 0.2,
    seed: int = 0,
    storage_options: dict[str, Any] | None = None,
    batch_rows: int = 64,
    train_share: float = KOLEKTOR_TRAIN_SHARE,
    mode: str = "new",
) -> IngestReport:
    """Validate every sample under ``src`` and write the good ones to the dataset at ``dest``.

    ``mode``: ``"new"`` refuses a ``dest`` that already holds rows of a class being ingested (a
    re-run would otherwise duplicate every row, and evaluate then refuses them all as duplicate
    ids); ``"overwrite"`` replaces those classes' partitions; ``"append"`` adds to them.
    Writes ``dest/_ingest_report.json`` listing what was written and every rejected row with its reason.
    """
    if mode not in INGEST_MODES:
        raise ValueError(f"unknown ingest mode {mode!r}; choose one of {INGEST_MODES}")
    if fmt not in FINDERS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    src_path = Path(src)
    if not src_path.is_dir():
        raise FileNotFoundError(f"source folder {src_path} does not exist")
    report = IngestReport()
    try:
        kw = {"train_share": train_share, "seed": seed} if fmt == "kolektorsdd" else {}
        candidates = list(FINDERS[fmt](src_path, **kw))
    except PermissionError as e:
        raise PermissionError(f"ingest refused: {e}") from None
    assign_val_split(candidates, val_fraction, seed)
    prepare_dest(dest, sorted({c.class_name for c in candidates}), mode, storage_options)
    seen: set[str] = set()
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if batch:
            write_table(rows_to_table(batch), dest, storage_options=storage_options)
            batch.clear()

    for c in candidates:
        try:
            if c.image_id in seen:
                raise RowError(c.image_id, "duplicate image_id")
            seen.add(c.image_id)
            row = candidate_to_row(c)
        except (RowError, OSError) as e:
            report.errors.append({"image_id": c.image_id, "source": str(c.image_path), "error": str(e)})
            continue
        batch.append(row)
        report.written.setdefault(c.class_name, {}).setdefault(c.split, 0)
        report.written[c.class_name][c.split] += 1
        if len(batch) >= batch_rows:
            flush()
    flush()
    write_bytes(join(dest, "_ingest_report.json"), json.dumps(report.to_dict(), indent=2).encode(), storage_options)
    return report
