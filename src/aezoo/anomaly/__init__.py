"""Anomaly detection: the scikit-learn estimator over aezoo's autoencoders (detector; its tabular
default in tabular), the evaluation protocols built on it (protocols, tabular_protocol) and their
figures."""

from aezoo.anomaly.detector import SCORES, AnomalyDetector
from aezoo.anomaly.fitting import rescore

__all__ = ["SCORES", "AnomalyDetector", "rescore"]
