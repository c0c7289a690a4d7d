"""Absolute-unified multi-class detection: CADA score alignment and label-free routing."""
