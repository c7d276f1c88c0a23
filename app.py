"""The Space's entry file (``app_file`` in the README header): builds the app from ``space`` and launches it.

``python app.py`` serves it on http://127.0.0.1:7860; see ``space`` for what it does and its limits.
"""

from space.config import SpaceConfig
from space.ui import build_demo, launch

if __name__ == "__main__":
    launch(build_demo(SpaceConfig.from_environment()))
