"""Typed per-row errors.

Every stage that meets bad input raises one of these; callers record ``str(err)`` in the
row's ``error`` column and go on, so a bad row never kills a job or silently disappears.
"""

from __future__ import annotations


class RowError(ValueError):
    """A single input row cannot be processed; the message names the row and the reason."""

    kind = "row_error"

    def __init__(self, image_id: str, reason: str):
        self.image_id = image_id
        self.reason = reason
        super().__init__(f"{self.kind}: image_id={image_id!r}: {reason}")


class CorruptImageError(RowError):
    kind = "corrupt_image"


class ImageTooLargeError(RowError):
    kind = "image_too_large"


class ShapeMismatchError(RowError):
    kind = "shape_mismatch"


class MissingMaskError(RowError):
    kind = "missing_mask"


class InvalidPointCloudError(RowError):
    kind = "invalid_xyz"


class DuplicateImageIdError(RowError):
    kind = "duplicate_image_id"


class MissingMapError(RowError):
    kind = "missing_map"


class InvalidMapError(RowError):
    kind = "invalid_map"


class ConfigError(ValueError):
    """A configuration value is invalid (raised before any work starts)."""


class StalledError(RuntimeError):
    """A Ray job made no progress for its stall timeout and the work it waits on asks for resources
    no node has (Ray would queue it forever). Work that can be placed but is slow to start is
    waited for. Finished units are kept (a rerun resumes from them)."""
