"""Detectors trained on synthetic anomalies (segmenter, DRAEM, defect_map), their loop and `anomalyforge train`."""
