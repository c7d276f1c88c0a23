"""Fractal: DRAEM with fractal noise (renders batched by DRAEM's renderer)."""
