"""raydist: sharp binary defect masks from anomaly score maps, at archive scale.

The core (this package minus ``raydist.distributed`` and ``raydist.tracking``) is plain
numpy / torch / scikit-learn and knows nothing of Ray, S3 or MLflow.
"""

__version__ = "0.1.0"
