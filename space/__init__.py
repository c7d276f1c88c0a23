"""anomalyforge Space: make synthetic anomalies in your own images and see where a detector is blind.

``python app.py`` (the Space's entry file) serves the app on http://127.0.0.1:7860 (CPU is enough).
Gradio's own variables move it: ``GRADIO_SERVER_NAME=0.0.0.0`` to listen on every interface, ``GRADIO_SERVER_PORT=8080``
for another port (a Hugging Face Space sets both itself); the app's own settings are read once,
at start, by ``SpaceConfig.from_environment``. It starts on three CC0 example textures from
scikit-image (brick, grass, gravel), and every tab's main button works before anything is uploaded.

Tabs: **Generate** (anomalies with masks and metadata, downloadable in the ``imagefolder`` layout),
**Detect** (PatchCore or PaDiM fitted on the same kind of image it scores), **Stress test**
(``detect.evaluation.stress``: recall at k false positives per shape and mode against size bin, with 95 %
intervals), **Datasets** (rows of the dataset made here, or of a published version on the Hub,
read anonymously or as the signed-in visitor -- never with the Space's own token).

The package holds widgets and calls only: anomalies come from ``synth``, detectors, the stress test,
its calibration and metrics from ``detect``, published datasets from ``hub_tools``. ``ui`` lays out
the page, ``handlers`` answers its buttons, ``inputs`` decides what uploads are accepted, ``storage``
keeps the bounded work area, ``config`` reads the settings, ``device`` runs the GPU work in functions
decorated with ``spaces.GPU`` (``zerogpu``: a ZeroGPU Space lends a GPU for their duration; elsewhere
the decorator does nothing, and the same code runs on a GPU Space or on CPU), ``examples`` holds the
example textures and ``patches`` the changes to gradio's error handling.

Limits: uploads up to 20 MB and 16.7 megapixels (decompression bombs are refused before decoding),
at least 32x32 pixels; 16 anomalies per Generate click; 40 images per Detect click; the queue runs
2 jobs at once (1 detector job) and holds 64 waiting. Disk: each session keeps only its newest
click per tab; a session's files go when its page closes or 15 minutes after its last click, and
all sessions together stay under ``SpaceConfig.disk_budget`` (2 GB; the oldest sessions go first).
"""

# ZeroGPU needs ``spaces`` imported before torch initialises CUDA: first, before any module uses torch
from space import zerogpu  # noqa: F401
