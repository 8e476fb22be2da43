"""A read-only project can be read; a newer schema and in-batch duplicates are reported in one line."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeling.cli import main
from labeling.data.importer import import_folder
from labeling.project import Project, ProjectError
from labeling.service import LabelingService
from storage.db import Database, ReadOnlyDatabase, release_files


def _project(root: Path) -> Project:
    (root / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / "img" / name)
    project = Project(root, create=True)
    import_folder(project, root / "img", progress=False)
    LabelingService(root).label([1], "cat", user="ann")
    release_files()
    return project


def _one_line(err: str) -> str:
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def read_only_root(tmp_path, monkeypatch):
    """A project whose folder and files are not writable (chmod; os.access faked too when root ignores it)."""
    root = tmp_path / "p"
    _project(root)
    paths = [Path(d) / n for d, dirs, files in os.walk(root) for n in dirs + files] + [root]
    modes = {p: p.stat().st_mode for p in paths}
    for p in paths:
        p.chmod(stat.S_IMODE(modes[p]) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    if os.geteuid() == 0:  # root ignores permissions: make this process see them anyway
        real_access = os.access

        def access(path, mode, *args, **kwargs):
            if mode & os.W_OK and Path(path).resolve().is_relative_to(root.resolve()):
                return False
            return real_access(path, mode, *args, **kwargs)

        monkeypatch.setattr(os, "access", access)
    yield root
    release_files()
    for p in sorted(paths, key=lambda q: len(q.parts)):
        p.chmod(stat.S_IMODE(modes[p]))


def test_read_only_project_reads_and_refuses_writes_in_one_line(read_only_root, tmp_path, capsys):
    root = read_only_root
    assert Project(root).read_only
    assert main(["rounds", str(root)]) == 0
    assert "round" in capsys.readouterr().out
    assert main(["stats", str(root)]) == 0
    assert capsys.readouterr().out.strip()
    out = tmp_path / "elsewhere" / "labels.csv"
    assert main(["export", str(root), "--to", "csv", "--out", str(out)]) == 0, capsys.readouterr().err
    assert "cat" in out.read_text()
    capsys.readouterr()
    labels = tmp_path / "labels.csv"
    labels.write_text("uri,label\nimg/b.png,dog\n")
    assert main(["label", str(root), "--csv", str(labels), "--user", "ann"]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "this project is read-only" in err
    with pytest.raises(ReadOnlyDatabase):
        LabelingService(root).label([2], "dog", user="ann")
    release_files()
    assert list(LabelingService(root).class_names().values()) == ["cat"]


def test_a_newer_schema_is_refused_in_one_line(tmp_path, capsys):
    root = tmp_path / "p"
    project = _project(root)
    with project.db.session() as con:
        con.execute("INSERT INTO schema_version VALUES (999, current_timestamp)")
    release_files()
    with pytest.raises(ProjectError, match="newer than this Quorum"):
        Project(root)
    assert main(["rounds", str(root)]) == 2
    err = _one_line(capsys.readouterr().err)
    assert "schema version 999" in err and "upgrade Quorum" in err
    with pytest.raises(ValueError):
        Database(root / "quorum.duckdb").migrate()


def test_a_duplicate_within_one_import_names_the_other_file(tmp_path):
    root = tmp_path / "p"
    (root / "img").mkdir(parents=True)
    Image.new("RGB", (8, 8), (1, 2, 3)).save(root / "img" / "a.png")
    (root / "img" / "b.png").write_bytes((root / "img" / "a.png").read_bytes())
    summary = import_folder(Project(root, create=True), root / "img", progress=False)
    assert summary.duplicates == [("img/b.png", "img/a.png")]
