"""Shared fixtures: small real projects built once per test session."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest


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
    shutil.copytree(demo_project_template, dest)
    return dest


@pytest.fixture
def truth(demo_project) -> dict[str, str]:
    import csv

    with open(demo_project / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        return {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}
