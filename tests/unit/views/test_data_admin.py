"""Class administration, statistics, import and export behind the Data page, on the demo project."""
from __future__ import annotations

import pandas as pd
import io
import zipfile

import pytest
from PIL import Image

from labeling.views import data_admin
from labeling.service import LabelingService
from storage import classes_admin as admin_q
from storage import items as items_q
from storage import labels as labels_q

HOSTILE = ["'; DROP TABLE items; --", "<script>alert(1)</script>", "Ünïcödé / ../ \"quoted\""]


@pytest.fixture
def service(demo_project) -> LabelingService:
    return LabelingService(demo_project)


@pytest.fixture
def animals(service) -> list[str]:
    """The classes the demo declares up front (its ten animals), in creation order."""
    return list(service.class_names().values())


def _first_ids(service: LabelingService, n: int) -> list[int]:
    with service.project.db.session() as con:
        ids, _ = items_q.ok_items(con)
    return [int(i) for i in ids[:n]]


@pytest.mark.parametrize("name", HOSTILE)
def test_add_class_stores_hostile_names_verbatim(service, name):
    class_id = data_admin.add_class(service, f"  {name}\n", user="ann")
    assert service.class_names()[class_id] == name
    assert data_admin.project_stats(service)["items"]["ok"] == 200  # the items table is still there
    with service.project.db.session() as con:
        assert admin_q.class_rows(con)[-1][1:4] == (name, None, "ann")


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_add_class_rejects_empty(service, animals, name):
    with pytest.raises(ValueError, match="empty"):
        data_admin.add_class(service, name, user="ann")
    assert list(service.class_names().values()) == animals


def test_add_class_rejects_duplicates_also_of_merged(service):
    data_admin.add_class(service, "ant", user="ann")
    data_admin.add_class(service, "bee", user="ann")
    with pytest.raises(ValueError, match="already exists"):
        data_admin.add_class(service, " ant ", user="ann")
    with pytest.raises(ValueError, match="already exists"):
        data_admin.add_class(service, "cat", user="ann")  # declared by the demo
    data_admin.merge_classes(service, "ant", "bee", user="ann")
    with pytest.raises(ValueError, match="merged"):
        data_admin.add_class(service, "ant", user="ann")


def test_rename_keeps_labels_and_refuses_taken_name(service, animals):
    ids = _first_ids(service, 5)
    service.label(ids[:3], "cat", user="ann")
    service.label(ids[3:], "dog", user="bob")
    data_admin.rename_class(service, "cat", "'; DROP TABLE items; --", user="ann")
    labels = service.current_labels()
    assert [labels[i][0] for i in ids] == ["'; DROP TABLE items; --"] * 3 + ["dog"] * 2
    with pytest.raises(ValueError, match="merge"):
        data_admin.rename_class(service, "dog", "'; DROP TABLE items; --", user="ann")
    with pytest.raises(LookupError):
        data_admin.rename_class(service, "cat", "feline", user="ann")
    with pytest.raises(ValueError, match="empty"):
        data_admin.rename_class(service, "dog", "  ", user="ann")
    renamed = ["'; DROP TABLE items; --" if n == "cat" else n for n in animals]
    assert list(service.class_names().values()) == renamed  # a rename keeps the class's place (and key)


def test_merge_moves_labels_as_one_batch_keeps_history_and_undo_restores(service, animals):
    ids = _first_ids(service, 6)
    service.label(ids[:4], "kitty", user="ann")
    service.label(ids[4:], "cat", user="bob")
    with service.project.db.session() as con:
        before = labels_q.all_events(con)
    done = data_admin.merge_classes(service, "kitty", "cat", user="rev")
    assert done["moved"] == 4 and done["batch_id"].startswith("merge-")
    with service.project.db.session() as con:
        after = labels_q.all_events(con)
    assert after[:len(before)] == before  # no event rewritten
    new = after[len(before):]
    assert len(new) == 4 and {e[6] for e in new} == {done["batch_id"]}
    assert {e[5] for e in new} == {"merge"} and {e[4] for e in new} == {"rev"}
    labels = service.current_labels()
    assert [labels[i][0] for i in ids] == ["cat"] * 6
    assert list(service.class_names().values()) == animals
    table = data_admin.class_table(service).set_index("class")
    assert table.loc["cat", "labels"] == 6 and table.loc["kitty", "merged_into"] == "cat"
    assert table.loc["kitty", "labels"] == 0
    # a label given with the merged name lands on the target
    service.label([_first_ids(service, 7)[6]], "kitty", user="ann")
    assert service.current_labels()[_first_ids(service, 7)[6]][0] == "cat"

    restored = data_admin.undo_merge(service, "kitty", user="rev")
    assert restored == ids[:4]
    labels = service.current_labels()
    assert [labels[i][0] for i in ids] == ["kitty"] * 4 + ["cat"] * 2
    assert list(service.class_names().values()) == [*animals, "kitty"]
    with pytest.raises(ValueError, match="not merged"):
        data_admin.undo_merge(service, "kitty", user="rev")


def test_merge_validation(service):
    data_admin.add_class(service, "a", user="ann")
    data_admin.add_class(service, "b", user="ann")
    with pytest.raises(ValueError, match="itself"):
        data_admin.merge_classes(service, "a", "a", user="ann")
    with pytest.raises(LookupError):
        data_admin.merge_classes(service, "a", "zzz", user="ann")
    empty = data_admin.merge_classes(service, "a", "b", user="ann")
    assert empty == {"batch_id": None, "moved": 0, "source": "a", "target": "b"}
    with pytest.raises(ValueError, match="merged"):
        data_admin.merge_classes(service, "a", "b", user="ann")


def test_project_stats_known_numbers(service):
    stats = data_admin.project_stats(service)
    assert stats["items"] == {"ok": 200, "unreadable": 0, "duplicate": 0, "total": 200}
    assert (stats["labeled"], stats["skipped"], stats["unlabeled"]) == (0, 0, 200)
    assert stats["rounds"] == {"finished": 1, "total": 1, "latest": 1}
    assert stats["backbone"] == "efficientnet_lite0" and stats["vector_dim"] == 1280
    assert stats["disk_bytes"] > 0 and stats["database_bytes"] > 0
    ids = _first_ids(service, 6)
    service.label(ids[:3], "cat", user="ann")
    service.label(ids[3:5], "dog", user="bob", source="lasso")
    service.label(ids[5:], None, user="bob")
    stats = data_admin.project_stats(service)
    assert (stats["labeled"], stats["skipped"], stats["unlabeled"]) == (5, 1, 194)
    per_class = stats["per_class"].set_index("class")["labels"].to_dict()
    assert {k: v for k, v in per_class.items() if v} == {"cat": 3, "dog": 2}
    assert per_class["bear"] == 0 and len(per_class) == 10  # declared classes show, with no labels yet
    assert stats["by_annotator"].to_dict("records") == [{"annotator": "ann", "labels": 3},
                                                        {"annotator": "bob", "labels": 2}]
    assert dict(stats["by_source"].itertuples(index=False)) == {"manual": 3, "lasso": 2}


def test_import_new_folder_reports_corrupt_file_and_embeds(service, demo_project):
    new = demo_project / "new"
    new.mkdir()
    for k in range(3):
        Image.new("L", (28, 28), color=40 * (k + 1)).save(new / f"img_{k}.png")
    (new / "broken.png").write_bytes(b"not a png at all")
    calls = []
    result = data_admin.run_import(service, "new", progress=lambda d, t: calls.append((d, t)))
    assert result["added"] == 3 and calls[-1] == (4, 4)
    assert [s["path"] for s in result["skipped"]] == ["new/broken.png"] and result["skipped"][0]["reason"]
    bad = data_admin.unreadable_files(service)
    assert bad["uri"].tolist() == ["new/broken.png"] and bad["status"].tolist() == ["unreadable"]
    assert data_admin.project_stats(service)["items"]["ok"] == 203
    again = data_admin.run_import(service, str(new))  # absolute inside the project: nothing new
    assert again["added"] == 0 and again["already_present"] == 3
    embed_calls = []
    data_admin.run_embed(service, device="cpu", progress=lambda d, t: embed_calls.append((d, t)))
    assert embed_calls and embed_calls[-1][0] == embed_calls[-1][1] == 3
    from labeling.embed.pipeline import load_vectors
    assert len(load_vectors(service.project).item_ids) == 203


@pytest.mark.parametrize("path", ["..", "/", "../elsewhere"])
def test_import_refuses_paths_outside_the_project(service, path):
    with pytest.raises(ValueError, match="outside the project"):
        data_admin.run_import(service, path)


def test_import_needs_an_existing_folder_or_manifest(service):
    with pytest.raises(ValueError, match="give a folder"):
        data_admin.run_import(service, "  ")
    with pytest.raises(ValueError, match="does not exist"):
        data_admin.run_import(service, "no-such-folder")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_export_file_formats_go_to_the_exports_folder(service, fmt):
    service.label(_first_ids(service, 2), "<script>alert(1)</script>", user="ann")
    result = data_admin.run_export(service, fmt, f"labels.{fmt}")
    assert result["rows"] == 200 and result["out"] == str(service.project.root / "exports" / f"labels.{fmt}")
    assert result["name"] == f"exports/labels.{fmt}"
    data, name, _mime = data_admin.export_payload(result)
    assert name == f"labels.{fmt}" and len(data) > 0
    table = {"csv": pd.read_csv, "jsonl": lambda p: pd.read_json(p, lines=True),
             "parquet": pd.read_parquet}[fmt](result["out"])
    assert len(table) == 200 and (table["label"] == "<script>alert(1)</script>").sum() == 2


@pytest.mark.parametrize("name", ["/tmp/evil.csv", "../evil.csv", "sub/evil.csv", "..", ".hidden",
                                  "~/evil.csv", "x" * 101, "a\nb.csv", "C:\\evil.csv"])
def test_a_browser_export_name_never_reaches_another_path(service, tmp_path, name):
    before = sorted(p for p in service.project.root.parent.rglob("*"))
    with pytest.raises(ValueError, match="plain name"):
        data_admin.run_export(service, "csv", name)
    assert sorted(p for p in service.project.root.parent.rglob("*")) == before


def test_export_refuses_an_existing_export_unless_overwrite(service):
    first = data_admin.run_export(service, "csv", "labels.csv")
    service.label(_first_ids(service, 1), "cat", user="ann")
    with pytest.raises(ValueError, match="exists"):
        data_admin.run_export(service, "csv", "labels.csv")
    assert pd.read_csv(first["out"])["label"].notna().sum() == 0  # the earlier export untouched
    again = data_admin.run_export(service, "csv", "labels.csv", overwrite=True)
    assert pd.read_csv(again["out"])["label"].notna().sum() == 1


def test_export_imagefolder_downloads_as_a_zip(service):
    service.label(_first_ids(service, 3), "cat", user="ann")
    result = data_admin.run_export(service, "imagefolder", "tree")
    tree = service.project.root / "exports" / "tree"
    assert result["rows"] == 3 and len(list((tree / "cat").iterdir())) == 3
    data, name, mime = data_admin.export_payload(result)
    assert name == "tree.zip" and mime == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert sum(n.startswith("tree/cat/") for n in zf.namelist()) == 3
    with pytest.raises(ValueError, match="unknown format"):
        data_admin.run_export(service, "xml", "x.xml")
