"""CutOut: a square of constant colour; numpy in method.py, torch in batched.py."""
