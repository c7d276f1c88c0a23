"""DRAEM: a thresholded Perlin-noise mask filled from a texture; numpy in method.py, torch in
batched.py (shared by fractal and foreground Perlin)."""
