"""FPI: a box blended towards a partner image; numpy in method.py, torch in batched.py."""
