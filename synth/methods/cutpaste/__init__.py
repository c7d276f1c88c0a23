"""CutPaste and CutPaste-Scar: a patch of the image pasted elsewhere; numpy in method.py, torch in batched.py."""
