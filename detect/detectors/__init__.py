"""Detectors fitted on anomaly-free images only: the Detector base class, backbones, PatchCore, PaDiM."""
