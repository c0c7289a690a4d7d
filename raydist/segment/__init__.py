"""Binarisers: THR (threshold from nominal statistics) and TTT4AS (per-image test-time SVM)."""

from raydist.segment.threshold import Threshold
from raydist.segment.ttt4as import TTT4AS

__all__ = ["TTT4AS", "Threshold"]
