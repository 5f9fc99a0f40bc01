"""Anomaly detection: the scikit-learn estimator over any registered model (detector), the
evaluation protocols built on it (protocols) and their figures."""

from aezoo.anomaly.detector import SCORES, AnomalyDetector, rescore

__all__ = ["SCORES", "AnomalyDetector", "rescore"]
