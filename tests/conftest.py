"""Shared fixtures: small real projects built once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def copy_project(src: Path, dest: Path) -> Path:
    """Copy a project directory after closing this process's lingering handle on its database.

    A database file stays open for a moment after its last transaction (see storage.db); copying
    while it closes would race with the write-ahead log being checkpointed and removed.
    """
    from storage.db import release_files

    release_files()
    shutil.copytree(src, dest)
    return dest


@pytest.fixture(scope="session")
def demo_project_template(tmp_path_factory) -> Path:
    """A 200-image Animal-MNIST demo project (imported, embedded, first round), built once."""
    from labeling.demo import create_demo

    root = tmp_path_factory.mktemp("demo-template") / "demo"
    create_demo(root, limit=200, device="cpu", progress=False)
    return root


@pytest.fixture
def demo_project(demo_project_template, tmp_path) -> Path:
    """A private copy of the demo project, free to change."""
    dest = tmp_path / "demo"
    copy_project(demo_project_template, dest)
    return dest


@pytest.fixture
def truth(demo_project) -> dict[str, str]:
    import csv

    with open(demo_project / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        return {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}


def _truth_of(root: Path) -> dict[str, str]:
    import csv

    with open(root / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        return {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}


@pytest.fixture(scope="session")
def trained_project_template(demo_project_template, tmp_path_factory) -> Path:
    """The demo project with 3 true labels per class (a simulated annotator) and a trained round."""
    from labeling.rounds import train_round
    from labeling.service import LabelingService

    root = tmp_path_factory.mktemp("trained-template") / "demo"
    copy_project(demo_project_template, root)
    service = LabelingService(root)
    by_class: dict[str, list[str]] = {}
    for uri, cls in sorted(_truth_of(root).items()):
        by_class.setdefault(cls, []).append(uri)
    service.label_table([{"uri": u, "label": c} for c, uris in by_class.items() for u in uris[:3]], user="seed")
    train_round(service.project, device="cpu", cv=False)
    return root


@pytest.fixture
def trained_project(trained_project_template, tmp_path) -> Path:
    dest = tmp_path / "trained"
    copy_project(trained_project_template, dest)
    return dest


@pytest.fixture
def app_env(monkeypatch):
    """Point the app at a project, without the background worker (tests drive rounds themselves)."""
    def _use(root: Path) -> None:
        monkeypatch.setenv("QUORUM_PROJECT", str(root))
        monkeypatch.setenv("QUORUM_WORKER", "0")
        monkeypatch.setenv("QUORUM_USER", "tester")
    return _use
