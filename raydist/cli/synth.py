"""`raydist synth`: a generated dataset (textures, or the 3D scenes benchmark)."""

from __future__ import annotations

import argparse

from raydist.errors import ConfigError


def add_parser(sub, executor_default: str) -> None:
    p = sub.add_parser("synth", help="write a generated dataset (no download needed)")
    p.add_argument("dest", help="dataset URI to write (local or s3://)")
    p.add_argument("--classes", type=int, default=3, help="texture classes (default: 3)")
    p.add_argument("--train", type=int, default=12, help="nominal train images per class (default: 12)")
    p.add_argument("--val", type=int, default=4, help="nominal val images per class, for THR statistics (default: 4)")
    p.add_argument("--test-good", type=int, default=4, help="nominal test images per class (default: 4)")
    p.add_argument("--test-bad", type=int, default=6, help="defective test images per class (default: 6)")
    p.add_argument("--size", type=int, default=128, help="image side, pixels (default: 128)")
    p.add_argument("--with-xyz", action="store_true", help="add an organized point cloud and 3D-only defects")
    p.add_argument("--scenes", action="store_true",
                   help="the generated 3D benchmark instead: textured parts on a tilted plane, images rendered from the "
                        "clouds, defects in 3D only / colour only / both (raydist.data.synth3d; --defect-strength and "
                        "--with-xyz do not apply)")  # fmt: skip
    p.add_argument("--defect-strength", type=float, default=1.0, help="0..1, lower = subtler defects (harder data)")
    p.add_argument("--seed", type=int, default=0, help="seeds textures and defects (default: 0)")


def run(a: argparse.Namespace) -> int:
    if a.scenes:
        from raydist.data.synth3d import Synth3DConfig, write_synth3d

        if a.defect_strength != 1.0:
            raise ConfigError("--defect-strength does not apply to --scenes")
        n = write_synth3d(a.dest, Synth3DConfig(a.classes, a.train, a.val, a.test_good, a.test_bad, a.size, a.seed))
    else:
        from raydist.data.synth import SynthConfig, write_synth

        n = write_synth(a.dest, SynthConfig(a.classes, a.train, a.val, a.test_good, a.test_bad, a.size, a.with_xyz, a.seed, a.defect_strength))
    print(f"wrote {n} rows to {a.dest}")
    return 0
