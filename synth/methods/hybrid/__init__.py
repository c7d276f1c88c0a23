"""Hybrid: a weighted mixture of the other methods (built by synth.registry.mixture)."""
