"""Quorum's engine: the labeling loop without a user interface (import, embed, train, queue, label, undo,
export), used by the app's pages through :mod:`labeling.session` and by the command line."""
from __future__ import annotations

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("quorum")
except _metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0.0.0+source"
