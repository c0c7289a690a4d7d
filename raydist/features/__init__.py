"""Frozen feature extractors (timm) and the preprocessing the papers use."""

from raydist.features.backbones import BACKBONES, Backbone, FeatureGrid, create_backbone
from raydist.features.preprocess import Preprocess

__all__ = ["BACKBONES", "Backbone", "FeatureGrid", "Preprocess", "create_backbone"]
