"""Foreground Perlin: DRAEM restricted to the object's foreground (renders batched by DRAEM's renderer)."""
