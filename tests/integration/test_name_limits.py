"""Class and user names are limited at every entry point, with one-line refusals and nothing half-written."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labeling.cli import main
from labeling.data.importer import import_folder, import_manifest
from labeling.project import Project, ProjectError
from labeling.service import LabelingService
from labeling.views import data_admin
from storage import labels as labels_q
from storage import users as users_q
from storage.db import release_files

HUGE = "x" * (10 * 1024 * 1024)
BAD_NAMES = ["two\nlines", "y" * 101, "tab\there", "zero\u200bwidth", "del\x7f", "   "]


def _images(folder: Path, names: list[str], seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(folder / name)


@pytest.fixture
def project(tmp_path) -> Project:
    root = tmp_path / "p"
    _images(root / "img", ["a.png", "b.png", "c.png"])
    project = Project(root, create=True)
    import_folder(project, root / "img", progress=False)
    return project


def _counts(project: Project) -> tuple[int, int]:
    with project.db.session() as con:
        classes = con.execute("SELECT count(*) FROM classes").fetchone()[0]
        events = con.execute("SELECT count(*) FROM annotations").fetchone()[0]
    return int(classes), int(events)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err[:500]
    assert len(err) < 500
    return err


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_10_mb_label_file_is_refused_with_one_line_and_nothing_written(project, capsys, fmt):
    path = project.root / f"labels.{fmt}"
    rows = [{"file_name": "img/a.png", "label": "cat"}, {"file_name": "img/b.png", "label": HUGE}]
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        path.write_text("file_name,label\n" + "".join(f"{r['file_name']},{r['label']}\n" for r in rows))
    before = _counts(project)
    release_files()
    rc = main(["import-labels", str(project.root), str(path)])
    assert rc == 2
    err = _one_line_error(capsys)
    assert (f"labels.{fmt} line 2" if fmt == "jsonl" else "labels.csv: line 3") in err
    assert ("longer than 100 characters" in err) if fmt == "jsonl" else ("a field is longer than" in err)
    assert _counts(project) == before == (0, 0)


@pytest.mark.parametrize("bad", ["z" * 101, "cr\rhere", "new\u0085line"])
def test_a_bad_label_refuses_the_whole_label_file(project, capsys, bad):
    path = project.root / "labels.jsonl"
    path.write_text(json.dumps({"file_name": "img/a.png", "label": "cat"}) + "\n"
                    + json.dumps({"file_name": "img/b.png", "label": bad}) + "\n")
    release_files()
    assert main(["import-labels", str(project.root), str(path)]) == 2
    err = _one_line_error(capsys)
    assert "labels.jsonl line 2" in err and "nothing imported" in err
    assert _counts(project) == (0, 0)


def test_label_csv_with_a_10_mb_field_is_one_line_not_a_traceback(project, tmp_path, capsys):
    path = tmp_path / "labels.csv"
    path.write_text(f"uri,label\nimg/a.png,cat\nimg/b.png,{HUGE}\n")
    release_files()
    rc = main(["label", str(project.root), "--csv", str(path), "--user", "ann"])
    assert rc == 2
    err = _one_line_error(capsys)
    assert "labels.csv line 3: a field is longer than" in err
    assert _counts(project) == (0, 0)


def test_label_csv_with_a_bad_class_name_is_refused_before_writing(project, tmp_path, capsys):
    path = tmp_path / "labels.csv"
    path.write_text("uri,label\nimg/a.png,cat\nimg/b.png," + "q" * 150 + "\n")
    release_files()
    assert main(["label", str(project.root), "--csv", str(path), "--user", "ann"]) == 2
    err = _one_line_error(capsys)
    assert "labels.csv line 3" in err and "longer than 100 characters" in err
    assert _counts(project) == (0, 0)


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_add_class_and_rename_refuse_bad_names(project, bad):
    service = LabelingService(project.root)
    with pytest.raises(ValueError) as info:
        data_admin.add_class(service, bad, user="ann")
    assert "\n" not in str(info.value)
    data_admin.add_class(service, "cat", user="ann")
    with pytest.raises(ValueError):
        data_admin.rename_class(service, "cat", bad, user="ann")
    with pytest.raises(ValueError):
        service.label([1], bad, user="ann")
    assert list(service.class_names().values()) == ["cat"]


@pytest.mark.parametrize("bad", ["x" * 101, "a\nb", "", "bell\x07"])
def test_storage_refuses_bad_class_names(project, bad):
    with project.db.session() as con:
        with pytest.raises(labels_q.InvalidName):
            labels_q.ensure_classes(con, [bad], user="u")
        class_id = labels_q.ensure_classes(con, ["  ok name  "], user="u")["  ok name  "]
        with pytest.raises(labels_q.InvalidName):
            labels_q.rename_class(con, class_id, bad)
    assert list(LabelingService(project.root).class_names().values()) == ["ok name"]


def test_a_100_character_name_with_unicode_is_fine(project):
    service = LabelingService(project.root)
    name = "ünï " + "é" * 96
    assert len(name) == 100
    data_admin.add_class(service, name, user="ann")
    assert name in service.class_names().values()


@pytest.mark.parametrize("bad", ["u" * 65, "a\nb", "nul\x00", ""])
def test_user_names_are_limited(project, bad):
    with project.db.session() as con:
        with pytest.raises(labels_q.InvalidName):
            users_q.add_user(con, bad, "annotator", None)
        users_q.add_user(con, "a/b ok for a person", "annotator", None)


def test_folder_labels_and_manifests_refuse_bad_names_before_writing(tmp_path):
    root = tmp_path / "p"
    _images(root / "src", ["cat/a.png", "w" * 120 + "/b.png"])
    project = Project(root, create=True)
    with pytest.raises(ProjectError) as info:
        import_folder(project, root / "src", labels_from_folders=True, progress=False)
    assert "longer than 100 characters" in str(info.value) and "nothing imported" in str(info.value)
    with project.db.session() as con:
        assert con.execute("SELECT count(*) FROM items").fetchone()[0] == 0
    manifest = root / "m.csv"
    manifest.write_text("path,label\nsrc/cat/a.png,cat\nsrc/cat/a.png,dup\n"
                        f"{'src/' + 'w' * 120 + '/b.png'},bad\tname\n")
    with pytest.raises(ProjectError) as info:
        import_manifest(project, manifest, progress=False)
    assert "m.csv line 4" in str(info.value) and "control character" in str(info.value)
    assert _counts(project) == (0, 0)


def test_imagefolder_export_sees_only_valid_names(project, tmp_path, capsys):
    from labeling.data.export import export

    service = LabelingService(project.root)
    for bad in BAD_NAMES:
        with pytest.raises(ValueError):
            data_admin.add_class(service, bad, user="ann")
    service.label([1], "cat", user="ann")
    out = export(project, "imagefolder", tmp_path / "out")
    assert out["rows"] >= 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["cat"]
