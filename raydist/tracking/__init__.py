"""MLflow tracking: the only package that imports ``mlflow``."""

from raydist.tracking.mlflow_tracker import Tracker, TrackingUnavailable

__all__ = ["Tracker", "TrackingUnavailable"]
