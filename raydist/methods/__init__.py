"""Detectors, one folder per method; the engine picks one by the config's ``method`` and nothing else.

:data:`DETECTORS` is the one registry: method name -> ``module:Class``, imported on demand (CFM
pulls in open3d). Adding a method: its folder implementing :class:`~raydist.methods.base.Detector`,
one line here and its name in :data:`raydist.config.METHODS` (a contract test checks both agree).
"""

from __future__ import annotations

from importlib import import_module

from raydist.contracts import ScoreBatch
from raydist.errors import ConfigError
from raydist.methods.base import Detector

DETECTORS: dict[str, str] = {
    "patchcore": "raydist.methods.patchcore:PatchCoreDetector",
    "cfm": "raydist.methods.cfm:CFMDetector",
    "unified": "raydist.methods.unified:UnifiedDetector",
    "maps": "raydist.methods.maps:ExternalMapsDetector",
}


def detector_class(method: str) -> type[Detector]:
    """The detector class of a method name."""
    if method not in DETECTORS:
        raise ConfigError(f"unknown method {method!r}; choose from {tuple(DETECTORS)}")
    module, name = DETECTORS[method].split(":")
    return getattr(import_module(module), name)


__all__ = ["DETECTORS", "Detector", "ScoreBatch", "detector_class"]
