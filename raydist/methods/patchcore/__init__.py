"""PatchCore: a memory bank of nominal patch features (coreset-subsampled), scored by nearest-neighbour distance."""

from raydist.methods.patchcore.detector import PatchCoreDetector

__all__ = ["PatchCoreDetector"]
