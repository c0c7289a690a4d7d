"""Binarisers: THR (threshold from nominal statistics), TTT4AS (per-image test-time SVM), MEBin;
their seam is :mod:`raydist.segment.base`, their registry :mod:`raydist.segment.registry`."""

from raydist.segment.mebin import MEBin
from raydist.segment.threshold import THR, Threshold
from raydist.segment.ttt4as import TTT4AS

__all__ = ["MEBin", "THR", "TTT4AS", "Threshold"]
