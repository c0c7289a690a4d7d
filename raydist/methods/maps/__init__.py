"""Bring your own maps: another detector's score maps, binarised by raydist (THR, TTT4AS, MEBin)."""

from raydist.methods.maps.detector import ExternalMapsDetector

__all__ = ["ExternalMapsDetector"]
