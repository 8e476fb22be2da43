"""Quorum's engine: the labeling loop without a user interface, used by the app's pages through
:mod:`labeling.session`, by the command line, and from Python through the functions below
(:mod:`labeling.api`: ``open_project``, ``import_images``, ``embed_images``, ``import_predictions``, ``train``,
``queue``, ``label``, ``undo``, ``export``, ``stats``). The package may import every sub-package and ``storage``."""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("quorum")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+source"

API = ("open_project", "import_images", "embed_images", "import_predictions", "train", "queue", "label", "undo",
       "export", "stats")
__all__ = ["__version__", *API]


def __getattr__(name: str):
    """The public functions load on first use, so ``import labeling`` stays light (no torch)."""
    if name in API:
        from labeling import api

        return getattr(api, name)
    raise AttributeError(f"module 'labeling' has no attribute {name!r}")
