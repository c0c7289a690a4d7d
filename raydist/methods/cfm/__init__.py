"""CFM (crossmodal feature mapping): RGB + point cloud; MLPs map each modality's features into the other's."""

from raydist.methods.cfm.detector import CFMDetector

__all__ = ["CFMDetector"]
