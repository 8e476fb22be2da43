"""A Quorum project on disk: the database, and the files beside it.

Layout of a project folder ``DIR``::

    DIR/quorum.duckdb            items, classes, annotation events, users, rounds, settings
    DIR/.quorum/thumbs/ab/<sha256>.jpg   thumbnails, content-addressed, made once
    DIR/.quorum/previews/ab/<key>.jpg    cards' previews of large photos, made once (labeling.data.previews)
    DIR/.quorum/vectors/<backbone fingerprint>/   float32 vectors row-aligned with item ids
    DIR/.quorum/rounds/round-<id>.npz     one round's predictions, written whole then renamed
    DIR/.quorum/cache/                     kNN graphs and maps per vector version

Images live anywhere under ``DIR``; their uris are paths relative to it.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage.db import Database, SchemaTooNew
from storage import rounds as rounds_q

LOG = logging.getLogger(__name__)

DB_NAME = "quorum.duckdb"
DATA_DIR = ".quorum"


class ProjectError(ValueError):
    """A project folder is missing or unusable."""


class Caches:
    """What one process derives from a project's files (kNN graph, propagation operator, map builders).

    Lives on the :class:`Project` object that the service, its worker and its views share, never in a
    module global. Each entry has a name and the key it was built for (a vector version, a file's
    stamp); asking with another key builds it again and replaces the old one, so a cache holds one
    value per name and follows the data it depends on.
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, key: Any, build: Callable[[], Any] | None = None) -> Any:
        """The value cached under ``name`` for ``key``; built with ``build`` (and kept) when absent."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is not None and entry[0] == key:
            return entry[1]
        if build is None:
            return None
        value = build()
        self.put(name, key, value)
        return value

    def put(self, name: str, key: Any, value: Any) -> None:
        with self._lock:
            self._entries[name] = (key, value)

    def drop(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)

    def __contains__(self, name: str) -> bool:
        return name in self._entries


class _NoDatabase:
    """The database of :meth:`Project.files`: any use is a bug, said so at once."""

    read_only = False

    def __init__(self, root: Path) -> None:
        self.root = root

    def session(self):
        raise RuntimeError(f"this process works on the files of {self.root} only, never on its database")

    def migrate(self) -> None:
        self.session()

    def cached(self, key, read):
        return self.session()


class Project:
    """Paths and the database of one project folder, and what this process caches of it."""

    def __init__(self, root: str | Path, *, create: bool = False) -> None:
        self.root = Path(root).expanduser().resolve()
        if not create and not (self.root / DB_NAME).exists():
            raise ProjectError(
                f"{self.root} is not a Quorum project (no {DB_NAME}); create one with "
                f"'python -m labeling import {root} SRC' or 'python -m labeling demo {root}'"
            )
        if create:
            self.root.mkdir(parents=True, exist_ok=True)
        self.db = Database(self.root / DB_NAME)
        self.read_only = self.db.read_only
        """The database file or the folder is not writable: reads work, writes raise ``ReadOnlyDatabase``."""
        if not self.read_only:
            for sub in ("thumbs", "vectors", "rounds", "cache"):
                (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        try:
            self.db.migrate()
        except SchemaTooNew as exc:
            raise ProjectError(str(exc)) from exc
        self.caches = Caches()

    @classmethod
    def files(cls, root: str | Path) -> "Project":
        """The project's folders and this process's caches, without its database: for a process that
        computes from files (the training process) and leaves every database read and write to its
        parent, so a project's database is only ever used by the processes that serve or command it."""
        self = cls.__new__(cls)
        self.root = Path(root).expanduser().resolve()
        self.db = _NoDatabase(self.root)
        self.read_only = False
        self.caches = Caches()
        return self

    @property
    def data_dir(self) -> Path:
        return self.root / DATA_DIR

    def thumb_path(self, sha256: str) -> Path:
        return self.data_dir / "thumbs" / sha256[:2] / f"{sha256}.jpg"

    def vectors_dir(self, fingerprint: str) -> Path:
        return self.data_dir / "vectors" / fingerprint

    def round_file(self, round_id: int) -> Path:
        return self.data_dir / "rounds" / f"round-{round_id:06d}.npz"

    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    def resolve_uri(self, uri: str) -> Path:
        """The file of an item; never outside the project root."""
        path = (self.root / uri).resolve()
        if not path.is_relative_to(self.root):
            raise ProjectError(f"item path {uri!r} leaves the project root")
        return path

    def setting(self, key: str, default: str | None = None) -> str | None:
        return self.db.cached("settings", rounds_q.all_settings).get(key, default)

    def set_setting(self, key: str, value: str) -> None:
        with self.db.session() as con:
            rounds_q.set_setting(con, key, value)
