"""The synthesis methods, one folder each: ``method.py`` (the ``Method``: draw a spec, render it
with numpy/OpenCV, its facts as class attributes), ``batched.py`` (its torch renderer, named by
``Method.batched``) and the helpers both renderers share. Names -> classes: ``synth.registry``."""
