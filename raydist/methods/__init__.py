"""Detectors, one folder per method; the engine picks one by the config's ``method`` and nothing else."""

from __future__ import annotations

from raydist.errors import ConfigError
from raydist.methods.base import Detector, ScoreBatch


def detector_class(method: str) -> type[Detector]:
    """The detector class of a method name (imported on demand: CFM pulls in open3d)."""
    if method == "patchcore":
        from raydist.methods.patchcore import PatchCoreDetector as cls
    elif method == "cfm":
        from raydist.methods.cfm import CFMDetector as cls
    elif method == "maps":
        from raydist.methods.maps import ExternalMapsDetector as cls
    elif method == "unified":
        from raydist.methods.unified import UnifiedDetector as cls
    else:
        raise ConfigError(f"unknown method {method!r}")
    return cls


__all__ = ["Detector", "ScoreBatch", "detector_class"]
