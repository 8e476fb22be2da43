"""Label exchange: every export format carries provenance and imports back into a project of the same images."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from labeling.cli import main
from labeling.export import PROVENANCE, export
from labeling.formats import LabelFileError, import_labels
from labeling.service import LabelingService


@pytest.fixture
def labeled(trained_project):
    service = LabelingService(trained_project)
    ids = [q.item_id for q in service.queue(6)]
    service.label(ids[:2], "cat", user="alice")
    service.label(ids[:1], "dog", user="bob")  # a tie: bob's newer vote decides item 0
    service.adjudicate(ids[1:2], "cow", user="rita", role="reviewer")
    service.label(ids[2:4], "dog", user="alice", source="lasso")
    return trained_project


@pytest.fixture
def fresh(labeled, tmp_path):
    """A new project over copies of the same images (other paths, same content)."""
    root = tmp_path / "fresh"
    shutil.copytree(labeled / "images", root / "pictures")
    assert main(["import", str(root), str(root / "pictures"), "--quiet"]) == 0
    return root


def _labels(root) -> dict[str, str]:
    """uri file name -> label, for comparing projects whose folders differ."""
    service = LabelingService(root)
    with service.project.db.session() as con:
        uris = dict(con.execute("SELECT id, uri FROM items").fetchall())
    return {uris[i].rsplit("/", 1)[-1]: v[0] for i, v in service.current_labels().items() if v[0]}


def test_tabular_exports_carry_provenance(labeled, tmp_path):
    table = pd.read_csv(tmp_path / "x.csv") if export(
        LabelingService(labeled).project, "csv", tmp_path / "x.csv")["rows"] else None
    assert set(PROVENANCE) <= set(table.columns)
    settled = table[table["source"] == "adjudication"].iloc[0]
    assert settled["label"] == "cow" and settled["adjudicated_by"] == "rita"
    tie = table[(table["annotator"] == "bob")].iloc[0]
    assert tie["label"] == "dog" and tie["n_votes"] == 2 and tie["n_agree"] == 1
    assert table["model_round"].notna().sum() == 0 or table["model_round"].dropna().astype(int).min() >= 1


@pytest.mark.parametrize("fmt,name", [("csv", "l.csv"), ("jsonl", "l.jsonl"), ("parquet", "l.parquet"),
                                      ("coco", "l.json"), ("hf", "hf")])
def test_every_format_round_trips_into_a_project_of_the_same_images(labeled, fresh, tmp_path, fmt, name):
    out = tmp_path / name
    assert main(["export", str(labeled), "--format", fmt, "--out", str(out)]) == 0
    if fmt == "hf":
        meta = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
        assert all((out / m["file_name"]).is_file() and m["label"] for m in meta)
        assert {"annotator", "source", "n_votes"} <= set(meta[0])
    if fmt == "coco":
        doc = json.loads(out.read_text())
        assert {"images", "categories", "annotations"} <= set(doc)
        assert all({"annotator", "source", "created_at"} <= set(a) for a in doc["annotations"])
    # the fresh project keeps the images under "pictures/", not "images/": rows match by content (hf) or
    # by a file name found once in the project (the others)
    result = import_labels(LabelingService(fresh), out)
    expected = _labels(labeled)
    assert result["labeled"] == len(expected), result["problems"]
    assert _labels(fresh) == expected
    sources = {v[2] for v in LabelingService(fresh).current_labels().values()}
    assert sources == {"import"}


def test_bad_label_files_get_clear_messages(fresh, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    with pytest.raises(LabelFileError, match="COCO-style"):
        import_labels(LabelingService(fresh), bad)
    cols = tmp_path / "cols.csv"
    cols.write_text("path,klass\na.png,cat\n")
    with pytest.raises(LabelFileError, match="needs a 'label' column"):
        import_labels(LabelingService(fresh), cols)
    escape = tmp_path / "esc.jsonl"
    escape.write_text('{"file_name": "../../etc/passwd", "label": "cat"}\nnot json\n'
                      '{"file_name": "missing.png", "label": "<script>alert(1)</script>"}\n')
    result = import_labels(LabelingService(fresh), escape)
    assert result["labeled"] == 0
    assert any("leaves the folder" in p for p in result["problems"])
    assert any("not JSON" in p for p in result["problems"])
    assert any("no item matches 'missing.png'" in p for p in result["problems"])
    assert main(["import-labels", str(fresh), str(bad)]) == 2  # one clear line, no traceback


def test_imagefolder_and_hf_can_link_instead_of_copy(labeled, tmp_path):
    project = LabelingService(labeled).project
    got = export(project, "hf", tmp_path / "hf", link=True)
    files = [p for p in (tmp_path / "hf").iterdir() if p.name != "metadata.jsonl"]
    assert files and got["link_refused"] == 0 and all(p.is_symlink() and p.resolve().is_file() for p in files)
    export(project, "imagefolder", tmp_path / "if", link=True)
    assert all(p.is_symlink() for p in (tmp_path / "if").rglob("*.png"))


def test_the_data_page_imports_a_label_file_from_inside_the_project_only(labeled, fresh, tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    export(LabelingService(labeled).project, "coco", fresh / "in.coco.json")
    export(LabelingService(labeled).project, "coco", tmp_path / "outside.json")
    monkeypatch.setenv("QUORUM_PROJECT", str(fresh))
    monkeypatch.setenv("QUORUM_WORKER", "0")
    monkeypatch.setenv("QUORUM_USER", "tester")
    app = Path(__file__).resolve().parent.parent / "app.py"
    at = AppTest.from_file(str(app), default_timeout=90)
    at.run()
    at.switch_page("pages/data.py").run()
    at.text_input(key="data_label_file").input(str(tmp_path / "outside.json"))
    at.button(key="data_label_import_button").click().run()
    assert any("outside the project folder" in e.value for e in at.error)
    assert not LabelingService(fresh).current_labels()
    at.text_input(key="data_label_file").input("in.coco.json")
    at.button(key="data_label_import_button").click().run()
    assert not at.exception, at.exception
    assert _labels(fresh) == _labels(labeled)
