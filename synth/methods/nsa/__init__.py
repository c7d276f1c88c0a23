"""NSA (natural synthetic anomalies): Poisson-blended patches; numpy in method.py, torch in batched.py."""
