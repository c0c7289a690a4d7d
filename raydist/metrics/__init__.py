"""Evaluation metrics: pure functions on numpy arrays, plus the metrics.json report."""

from raydist.metrics.aupro import aupro
from raydist.metrics.binary import mask_prf
from raydist.metrics.image import i_ap, i_auroc
from raydist.metrics.pixel import p_ap, p_auroc

__all__ = ["aupro", "i_ap", "i_auroc", "mask_prf", "p_ap", "p_auroc"]
