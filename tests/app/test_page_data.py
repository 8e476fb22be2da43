"""The Data page through AppTest: what a click stores, writes and shows."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from PIL import Image
from streamlit.testing.v1 import AppTest

from conftest import open_app

from labeling.embed.pipeline import load_vectors
from labeling.service import LabelingService
from storage import items as items_q


def _data_page(root: Path, monkeypatch) -> AppTest:
    return open_app(root, monkeypatch, "app_pages/data.py")


def _table(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first table on the page that has all of ``columns`` (AppTest does not expose a table's key)."""
    for frame in at.dataframe:
        if set(columns) <= set(frame.value.columns):
            return frame.value
    raise LookupError(f"no table with columns {columns}")


def test_statistics_tab_shows_known_counts(demo_project, monkeypatch):
    at = _data_page(demo_project, monkeypatch)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "200" and metrics["Labeled"] == "0" and metrics["Unreadable"] == "0"
    assert metrics["Backbone"] == "efficientnet_lite0" and metrics["Vector size"] == "1280"


def test_add_then_rename_a_class(demo_project, monkeypatch):
    service = LabelingService(demo_project)
    animals = list(service.class_names().values())  # the demo declares its ten classes up front
    at = _data_page(demo_project, monkeypatch)
    at.text_input(key="data_new_class").input("  <script>alert(1)</script> ")
    at.button(key="data_add_class").click().run()
    assert not at.exception, at.exception
    assert list(service.class_names().values()) == [*animals, "<script>alert(1)</script>"]
    assert at.text_input(key="data_new_class").value == ""
    table = _table(at, "class", "merged_into")
    assert "<script>alert(1)</script>" in table["class"].tolist()

    at.text_input(key="data_new_class").input("<script>alert(1)</script>")
    at.button(key="data_add_class").click().run()
    assert any("already exists" in e.value for e in at.error)
    assert len(service.class_names()) == len(animals) + 1

    at.selectbox(key="data_rename_from").select("<script>alert(1)</script>")
    at.text_input(key="data_rename_to").input("okapi")
    at.button(key="data_rename_button").click().run()
    assert not at.exception, at.exception
    assert list(service.class_names().values()) == [*animals, "okapi"]  # a rename keeps the class's place
    assert "okapi" in _table(at, "class", "merged_into")["class"].tolist()


def test_merge_via_page_moves_labels(demo_project, monkeypatch):
    service = LabelingService(demo_project)
    with service.project.db.session() as con:
        ids = items_q.ok_items(con)[0][:3].tolist()
    service.label(ids[:2], "kitty", user="ann")
    service.label(ids[2:], "cat", user="ann")
    at = _data_page(demo_project, monkeypatch)
    at.selectbox(key="data_merge_from").select("kitty")
    at.selectbox(key="data_merge_into").select("cat")
    at.button(key="data_merge_button").click().run()
    assert not at.exception, at.exception
    labels = service.current_labels()
    assert [labels[i][0] for i in ids] == ["cat"] * 3
    assert labels[ids[0]][1:] == ("ann", "manual")  # still ann's vote: a merge maps classes, it votes for nobody
    assert [(h["user"], h["source"], h["label"]) for h in service.history(ids[0])][-1] == ("tester", "merge", "cat")
    table = _table(at, "class", "merged_into").set_index("class")
    assert table.loc["cat", "labels"] == 3 and table.loc["kitty", "merged_into"] == "cat"


def test_export_csv_via_page(demo_project, monkeypatch):
    at = _data_page(demo_project, monkeypatch)
    at.radio(key="data_export_format").set_value("csv")
    at.text_input(key="data_export_path").input("mine.csv")
    at.button(key="data_export_button").click().run()
    assert not at.exception, at.exception
    out = demo_project / "exports" / "mine.csv"
    assert out.exists() and len(pd.read_csv(out)) == 200
    assert any("exports/mine.csv" in s.value for s in at.success)
    assert at.get("download_button")  # offered as a download


def test_export_page_takes_no_server_path(demo_project, monkeypatch, tmp_path):
    """A typed absolute path, or one climbing out, writes nothing anywhere: exports stay in exports/."""
    at = _data_page(demo_project, monkeypatch)
    for typed in (str(tmp_path / "outside.csv"), "../outside.csv", str(demo_project / "quorum.duckdb")):
        before = (demo_project / "quorum.duckdb").stat().st_size
        at.text_input(key="data_export_path").input(typed)
        at.button(key="data_export_button").click().run()
        assert not at.exception, at.exception
        assert any("plain name" in e.value for e in at.error), [e.value for e in at.error]
        assert not (tmp_path / "outside.csv").exists() and not (demo_project.parent / "outside.csv").exists()
        assert (demo_project / "quorum.duckdb").stat().st_size == before


def test_import_new_folder_via_page(demo_project, monkeypatch):
    new = demo_project / "new"
    new.mkdir()
    for k in range(3):
        Image.new("L", (28, 28), color=60 * (k + 1)).save(new / f"img_{k}.png")
    (new / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    at = _data_page(demo_project, monkeypatch)
    at.text_input(key="data_import_path").input("new")
    at.button(key="data_import_button").click().run()
    assert not at.exception, at.exception
    service = LabelingService(demo_project)
    with service.project.db.session() as con:
        counts = items_q.counts(con)
        skipped = items_q.skipped_items(con)
    assert counts == {"ok": 203, "unreadable": 1}
    assert len(load_vectors(service.project).item_ids) == 203  # the new images were embedded too
    assert any(s.value.startswith("Imported 3 new images") for s in at.success)
    shown = _table(at, "path", "reason")
    assert shown["path"].tolist() == ["new/corrupt.png"]
    assert shown["reason"].tolist() == [skipped[0][2]] and skipped[0][2]
    at.run()  # the Statistics tab is drawn before the import ran; the next run shows the new file
    assert {m.label: m.value for m in at.metric}["Unreadable"] == "1"
    stats_table = _table(at, "uri", "status", "reason")
    assert stats_table["uri"].tolist() == ["new/corrupt.png"]


def test_import_outside_project_shows_error(demo_project, monkeypatch):
    at = _data_page(demo_project, monkeypatch)
    at.text_input(key="data_import_path").input("..")
    at.button(key="data_import_button").click().run()
    assert any("outside the project folder" in e.value for e in at.error)
    assert LabelingService(demo_project).summary()["items"] == 200


def test_embed_with_a_chosen_backbone_and_device(demo_project, monkeypatch):
    at = _data_page(demo_project, monkeypatch)
    assert at.selectbox(key="data_backbone").value == "efficientnet_lite0"
    at.selectbox(key="data_device").select("cuda")
    at.button(key="data_embed_button").click().run()
    import torch

    if not torch.cuda.is_available():  # a clear message, nothing changed
        assert any("cuda" in e.value.lower() for e in at.error)
    at.selectbox(key="data_device").select("cpu")
    at.button(key="data_embed_button").click().run()
    assert not at.exception, at.exception
    assert any("Embedded with efficientnet_lite0 on cpu" in s.value for s in at.success)


def test_the_data_page_adds_several_classes_at_once(demo_project, monkeypatch):
    at = _data_page(demo_project, monkeypatch)
    at.text_input(key="data_new_class").input("okapi, quokka, cat").run()
    at.button(key="data_add_class").click().run()
    assert not at.exception, at.exception
    names = list(LabelingService(demo_project).class_names().values())
    assert names[-2:] == ["okapi", "quokka"] and names.count("cat") == 1
    assert any("Added 2 classes; cat already there." in t.value for t in at.toast)
