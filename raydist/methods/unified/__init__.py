"""Absolute-unified detection: one model for a mixed, unlabelled archive (label-free routing + CADA alignment)."""

from raydist.methods.unified.detector import UnifiedDetector

__all__ = ["UnifiedDetector"]
