"""Label exchange: every export format carries provenance and imports back into a project of the same images."""
from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from labeling.cli import main
from labeling.data.export import PROVENANCE, export
from labeling.data.formats import LabelFileError, import_labels
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
    assert main(["export", str(labeled), "--to", fmt, "--out", str(out)]) == 0
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
    files = [p for p in (tmp_path / "hf").iterdir() if p.name not in ("metadata.jsonl", ".quorum-export")]
    assert files and got["link_refused"] == 0 and all(p.is_symlink() and p.resolve().is_file() for p in files)
    export(project, "imagefolder", tmp_path / "if", link=True)
    assert all(p.is_symlink() for p in (tmp_path / "if").rglob("*.png"))


def test_hf_export_loads_with_the_datasets_library(labeled, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets", reason="the datasets library is not installed")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the imagefolder builder ships with the library
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "cache"))
    project = LabelingService(labeled).project
    export(project, "hf", tmp_path / "hf")
    ds = datasets.load_dataset("imagefolder", data_dir=str(tmp_path / "hf"), split="train")
    expected = _labels(labeled)
    assert len(ds) == len(expected) > 0
    assert {"image", "label", "uri", "annotator", "source"} <= set(ds.column_names)  # provenance travels
    got = {}
    for row in ds:
        assert row["image"].size == (28, 28)  # each image decoded by the library
        got[row["uri"].rsplit("/", 1)[-1]] = row["label"]
    assert got == expected


def test_the_data_page_imports_a_label_file_from_inside_the_project_only(labeled, fresh, tmp_path, monkeypatch):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    export(LabelingService(labeled).project, "coco", fresh / "in.coco.json")
    export(LabelingService(labeled).project, "coco", tmp_path / "outside.json")
    monkeypatch.setenv("QUORUM_PROJECT", str(fresh))
    monkeypatch.setenv("QUORUM_WORKER", "0")
    monkeypatch.setenv("QUORUM_USER", "tester")
    app = Path(__file__).resolve().parents[3] / "app.py"
    at = AppTest.from_file(str(app), default_timeout=90)
    at.run()
    at.switch_page("app_pages/data.py").run()
    at.text_input(key="data_label_file").input(str(tmp_path / "outside.json"))
    at.button(key="data_label_import_button").click().run()
    assert any("outside the project folder" in e.value for e in at.error)
    assert not LabelingService(fresh).current_labels()
    at.text_input(key="data_label_file").input("in.coco.json")
    at.button(key="data_label_import_button").click().run()
    assert not at.exception, at.exception
    assert _labels(fresh) == _labels(labeled)


# ---- exchange details: ImageFolder import, history, refused links, per-row messages --------------------
def _labels_by_content(root) -> dict[str, str]:
    """sha256 of the image -> label, for projects whose paths and file names differ."""
    import hashlib

    service = LabelingService(root)
    with service.project.db.session() as con:
        uris = dict(con.execute("SELECT id, uri FROM items").fetchall())
    return {hashlib.sha256((root / uris[i]).read_bytes()).hexdigest(): v[0]
            for i, v in service.current_labels().items() if v[0]}


def _fresh_uris(root) -> list[str]:
    from storage import items as items_q

    with LabelingService(root).project.db.session() as con:
        return items_q.ok_items(con)[1]


def test_imagefolder_round_trips_by_folder_names_and_by_import_labels(labeled, fresh, tmp_path):
    expected = _labels_by_content(labeled)
    tree = tmp_path / "new" / "tree"
    assert main(["export", str(labeled), "--to", "imagefolder", "--out", str(tree)]) == 0
    # a project made of the exported tree: labels come from the class folders
    assert main(["import", str(tmp_path / "new"), str(tree), "--labels-from-folders", "--quiet"]) == 0
    assert _labels_by_content(tmp_path / "new") == expected
    # a project of the same images elsewhere: import-labels reads the tree and matches by content
    assert main(["import-labels", str(fresh), str(tree)]) == 0
    assert _labels_by_content(fresh) == expected
    assert {v[2] for v in LabelingService(fresh).current_labels().values()} == {"import"}


def test_history_writes_every_event_beside_a_file_and_inside_a_folder(labeled, tmp_path, capsys):
    service = LabelingService(labeled)
    item = service.queue(1)[0].item_id
    batch = service.label([item], "bird", user="zoe")
    service.undo(batch, user="zoe")
    assert main(["export", str(labeled), "--to", "csv", "--out", str(tmp_path / "l.csv"), "--history"]) == 0
    assert "label events to" in capsys.readouterr().out
    events = pd.read_csv(tmp_path / "l.events.csv")
    with service.project.db.session() as con:
        total = con.execute("SELECT count(*) FROM annotations").fetchone()[0]
    assert len(events) == total
    mine = events[events["item_id"] == item]
    bird = mine[mine["label"] == "bird"].iloc[0]
    assert bird["user"] == "zoe" and bool(bird["undone"]) and bird["source"] == "manual"
    assert (mine["kind"] == "undo").sum() == 1
    adjudicated = events[events["source"] == "adjudication"].iloc[0]
    assert adjudicated["user"] == "rita" and adjudicated["label"] == "cow" and not adjudicated["undone"]
    got = export(service.project, "hf", tmp_path / "hf", history=True)
    assert got["history"] == str(tmp_path / "hf" / "events.jsonl")
    assert len((tmp_path / "hf" / "events.jsonl").read_text().splitlines()) == total


def test_refused_links_fall_back_to_copies_with_a_note(labeled, tmp_path, monkeypatch, capsys):
    from pathlib import Path

    def refuse(self, target, target_is_directory=False):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(Path, "symlink_to", refuse)
    out = tmp_path / "hf"
    assert main(["export", str(labeled), "--to", "hf", "--out", str(out), "--link"]) == 0
    printed = capsys.readouterr().out
    assert "refused links" in printed and "copied instead" in printed
    images = [p for p in out.iterdir() if p.suffix == ".png"]
    assert images and not any(p.is_symlink() for p in images)
    assert len(images) == len(_labels(labeled))
    got = export(LabelingService(labeled).project, "imagefolder", tmp_path / "if", link=True)
    assert got["linked"] == 0 and got["copied"] == got["rows"] and got["link_refused"] == got["rows"]
    assert any("refused links" in n for n in got["notes"])


def test_classes_whose_folder_names_collide_get_their_own_folders(labeled, tmp_path):
    service = LabelingService(labeled)
    a, b = [q.item_id for q in service.queue(12)][-2:]
    service.label([a], "a/b", user="alice")
    service.label([b], "a_b", user="alice")
    out = tmp_path / "if"
    got = export(service.project, "imagefolder", out)
    folders = {p.name: [f.name for f in p.iterdir()] for p in out.iterdir() if p.is_dir()}
    assert any(name.startswith(f"{a}_") for name in folders["a_b"])
    assert any(name.startswith(f"{b}_") for name in folders["a_b-2"])
    assert any("a_b-2" in n for n in got["notes"])
    assert all(p.resolve().is_relative_to(out.resolve()) for p in out.rglob("*"))


def test_coco_names_the_project_and_date_and_carries_provenance(labeled, tmp_path):
    out = tmp_path / "l.json"
    export(LabelingService(labeled).project, "coco", out)
    doc = json.loads(out.read_text())
    assert doc["info"]["project"] == labeled.name and doc["info"]["date_created"].startswith("20")
    names = {c["id"]: c["name"] for c in doc["categories"]}
    settled = [a for a in doc["annotations"] if a["source"] == "adjudication"]
    assert len(settled) == 1 and names[settled[0]["category_id"]] == "cow"
    assert settled[0]["adjudicated_by"] == "rita" and settled[0]["n_votes"] == 1
    images = {i["id"]: i for i in doc["images"]}
    assert all(images[a["image_id"]]["width"] == 28 for a in doc["annotations"])
    assert len(doc["annotations"]) == len(_labels(labeled))


def test_bad_rows_are_reported_by_line_and_the_good_ones_imported(fresh, tmp_path):
    a, b, c = _fresh_uris(fresh)[:3]
    (tmp_path / "outside.png").write_bytes((fresh / a).read_bytes())
    text = (f"path,label,notes\n{a},cat,x\n{b},dog,y\n{a},cat,z\n{b},cow,w\n"
            "pictures/nope.png,cat,\n../outside.png,cat,\n")
    (fresh / "labels.csv").write_text(text)
    result = import_labels(LabelingService(fresh), fresh / "labels.csv")
    assert result["labeled"] == 2 and result["rows"] == 6
    assert result["problems"] == [
        "ignored columns: 'notes'",
        f"line 4: {a!r} repeats line 2 (the same image), ignored",
        f"line 5: {b!r} is labelled 'cow' here but 'dog' on line 3 (the same image); keeping 'dog'",
        "line 6: no item matches 'pictures/nope.png'",
        "line 7: '../outside.png' leaves the folder of the label file, not read",
    ]
    lines = [{"item_id": 999999, "label": "cat"}, {"file_name": c, "label": ["x"]}, {"item_id": 1, "label": ""},
             {"file_name": c, "label": 7}]
    (fresh / "more.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    result = import_labels(LabelingService(fresh), fresh / "more.jsonl")
    assert result["labeled"] == 1
    assert result["problems"] == ["line 2: the label ['x'] is not text, row ignored",
                                  "line 5: not JSON (Expecting property name enclosed in double quotes), ignored",
                                  "line 1: no readable item has id 999999, ignored"]
    now = LabelingService(fresh).current_labels()
    current = {uri: now.get(i, (None,))[0] for i, uri in zip(*_ids_and_uris(fresh))}
    assert (current[a], current[b], current[c]) == ("cat", "dog", "7")


def _ids_and_uris(root):
    from storage import items as items_q

    with LabelingService(root).project.db.session() as con:
        ids, uris = items_q.ok_items(con)
    return ids.tolist(), uris


def test_coco_problems_name_the_annotation_and_the_rest_is_imported(fresh, tmp_path):
    a, b = _fresh_uris(fresh)[:2]
    doc = {"images": [{"id": 1, "file_name": a}, {"id": 2, "file_name": b}, {"id": 2, "file_name": a}],
           "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1, 1]]},
                           {"id": 2, "image_id": 3, "category_id": 1},
                           {"id": 3, "image_id": 2, "category_id": 9},
                           {"id": 4, "image_id": 2, "category_id": 2}]}
    (fresh / "coco.json").write_text(json.dumps(doc))
    result = import_labels(LabelingService(fresh), fresh / "coco.json")
    assert result["labeled"] == 2
    assert result["problems"] == ["ignored annotation fields: 'segmentation'",
                                  "image 3: id 2 repeats an earlier image, ignored",
                                  "annotation 2: image_id 3 is not among the images, ignored",
                                  "annotation 3: category_id 9 is not among the categories, ignored"]
    now = LabelingService(fresh).current_labels()
    labels = {uri: now[i][0] for i, uri in zip(*_ids_and_uris(fresh)) if uri in (a, b)}
    assert labels == {a: "cat", b: "dog"}


def test_import_reads_no_file_outside_the_label_files_folder(labeled, fresh, tmp_path, monkeypatch):
    import labeling.data.matching as matching  # where rows are matched to items, by content if need be

    hashed = []
    real_hash = matching._hash_file
    monkeypatch.setattr(matching, "_hash_file", lambda p: hashed.append(p) or real_hash(p))
    folder = tmp_path / "incoming"
    folder.mkdir()
    uri = _fresh_uris(fresh)[0]
    original = labeled / uri.replace("pictures/", "images/", 1)
    shutil.copy(fresh / uri, folder / "copy.png")
    (folder / "link.png").symlink_to(original)  # same content, but the file lies outside the folder
    (folder / "labels.jsonl").write_text('{"file_name": "copy.png", "label": "cat"}\n'
                                         '{"file_name": "link.png", "label": "dog"}\n')
    result = import_labels(LabelingService(fresh), folder / "labels.jsonl")
    assert result["labeled"] == 1
    assert result["problems"] == ["line 2: 'link.png' leaves the folder of the label file, not read"]
    assert hashed and all(p.is_relative_to(folder.resolve()) for p in hashed)
