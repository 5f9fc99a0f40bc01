"""Anomaly detection: the scikit-learn estimator over any registered model (detector) and the
evaluation protocols built on it (protocols)."""

from aezoo.anomaly.detector import AnomalyDetector

__all__ = ["AnomalyDetector"]
