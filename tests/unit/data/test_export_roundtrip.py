"""Exports their consumers read without loss: Parquet with one fixed schema (two exports taken at different
times concatenate; times are UTC timestamps), COCO that pycocotools loads, an ImageFolder tree that
torchvision reads and whose class names come back exactly; each imported back into a fresh copy gives the
same labels."""
from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labeling.data.export import LABEL_SCHEMA, export
from labeling.data.formats import import_labels
from labeling.service import LabelingService


def _some_labels(service, truth, names=None):
    rows = sorted(truth.items())[:6]
    table = [{"uri": u, "label": (names or {}).get(c, c)} for u, c in rows]
    service.label_table(table, user="ann")
    return {u: r["label"] for (u, _), r in zip(rows, table)}


def test_two_parquet_exports_at_different_times_concatenate_with_typed_columns(demo_project, truth, tmp_path):
    service = LabelingService(demo_project)
    export(service.project, "parquet", tmp_path / "before.parquet")  # no label yet: every label column empty
    _some_labels(service, truth)
    export(service.project, "parquet", tmp_path / "after.parquet")
    before, after = pq.read_table(tmp_path / "before.parquet"), pq.read_table(tmp_path / "after.parquet")
    assert before.schema.equals(LABEL_SCHEMA) and after.schema.equals(LABEL_SCHEMA)
    both = pa.concat_tables([before, after])
    assert both.num_rows == before.num_rows + after.num_rows
    assert both.schema.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert both.schema.field("label").type == pa.string()
    stamps = [t for t in after.column("created_at").to_pylist() if t is not None]
    assert stamps and all(t.tzinfo is not None for t in stamps)


def test_jsonl_and_csv_times_carry_their_zone(demo_project, truth, tmp_path):
    service = LabelingService(demo_project)
    _some_labels(service, truth)
    export(service.project, "jsonl", tmp_path / "labels.jsonl", labeled_only=True)
    first = json.loads((tmp_path / "labels.jsonl").read_text().splitlines()[0])
    assert first["created_at"].endswith("+00:00") and "T" in first["created_at"]


def test_coco_loads_in_pycocotools_and_comes_back_the_same(demo_project, truth, tmp_path):
    coco_api = pytest.importorskip("pycocotools.coco")
    service = LabelingService(demo_project)
    given = _some_labels(service, truth)
    out = demo_project / "exports" / "labels.coco.json"
    export(service.project, "coco", out)
    coco = coco_api.COCO(str(out))  # pycocotools builds its index: areas, boxes and categories all there
    assert len(coco.getImgIds()) == len(given) and len(coco.getAnnIds()) == len(given)
    names = {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())}
    by_file = {coco.loadImgs(a["image_id"])[0]["file_name"]: names[a["category_id"]]
               for a in coco.loadAnns(coco.getAnnIds())}
    assert by_file == given

    again = _emptied_copy(demo_project, tmp_path)
    back = import_labels(again, again.project.root / "exports" / "labels.coco.json", user="someone")
    assert back["labeled"] == len(given)
    assert _uris(again) == given
    assert {who for _lab, who, _src in again.current_labels().values()} == {"ann"}  # the annotator came back


def test_an_imagefolder_export_keeps_class_names_that_folders_cannot_hold(demo_project, truth, tmp_path):
    datasets = pytest.importorskip("torchvision.datasets")
    service = LabelingService(demo_project)
    classes = sorted(set(truth.values()))
    given = _some_labels(service, truth, names={classes[0]: "CAT", classes[1]: "cat", classes[2]: "a/b"})
    out = demo_project / "exports" / "tree"
    export(service.project, "imagefolder", out)
    folder_map = json.loads((out / "classes.json").read_text())["folders"]
    assert sorted(folder_map.values()) == sorted(set(given.values()))
    tv = datasets.ImageFolder(str(out))  # torchvision reads the class folders (and skips classes.json)
    assert len(tv) == len(given) and {folder_map[c] for c in tv.classes} == set(given.values())

    again = _emptied_copy(demo_project, tmp_path)
    assert import_labels(again, again.project.root / "exports" / "tree")["labeled"] == len(given)
    assert _uris(again) == given  # "CAT", "cat" and "a/b" again, not their folder names


def _uris(service) -> dict[str, str]:
    from storage import items as items_q

    current = service.current_labels()
    with service.project.db.session() as con:
        info = items_q.items_by_ids(con, list(current))
    return {info[i]["uri"]: lab for i, (lab, _w, _s) in current.items()}


def test_a_fiftyone_dataset_export_reads_back_as_fiftyone(demo_project, truth, tmp_path):
    service = LabelingService(demo_project)
    given = _some_labels(service, truth)
    out = demo_project / "exports" / "fo"
    result = export(service.project, "fiftyone", out)
    doc = json.loads((out / "labels.json").read_text())
    assert result["rows"] == len(given) and len(doc["labels"]) == len(given)
    assert all((out / "data").glob(f"{stem}.*") for stem in doc["labels"])  # every sample has its image
    assert sorted(doc["classes"]) == doc["classes"] and all(isinstance(v, int) for v in doc["labels"].values())

    again = _emptied_copy(demo_project, tmp_path)
    assert import_labels(again, again.project.root / "exports" / "fo")["labeled"] == len(given)
    assert _uris(again) == given


def _emptied_copy(root, tmp_path) -> LabelingService:
    """A copy of the project (its exports/ included) whose labels are all undone."""
    from conftest import copy_project

    copy = tmp_path / "copy"
    copy_project(root, copy)
    again = LabelingService(copy)
    for batch in {b["batch_id"] for b in again.batches()}:
        again.undo(batch, user="owner", role="admin")
    assert again.current_labels() == {}
    return again


def _times(service) -> dict[str, tuple[str, object]]:
    """uri -> (annotator, time) of each item's deciding event."""
    from storage import items as items_q
    from storage import labels as labels_q

    with service.project.db.session() as con:
        events = {e.item_id: e for e in labels_q.all_events(con) if e.kind == "label"}
        info = items_q.items_by_ids(con, list(events))
    return {info[i]["uri"]: (e.user_name, e.created_at) for i, e in events.items()}


def _labels_by_two(service, truth):
    """Six labels by two annotators, made at known times in the past."""
    from datetime import datetime

    rows = sorted(truth.items())[:6]
    for k, (uri, cls) in enumerate(rows):
        item = service.item_id_for_uri(uri)
        service.label([item], cls, user=("ann", "bob")[k % 2], source="manual",
                      times=[datetime(2026, 3, 1 + k, 9, 30, 15, 250000)])
    return {u: c for u, c in rows}


@pytest.mark.parametrize("fmt, name", [("csv", "labels.csv"), ("jsonl", "labels.jsonl"), ("parquet", "labels.parquet"),
                                       ("coco", "labels.coco.json"), ("labelstudio", "tasks.json")])
def test_labels_annotators_and_times_come_back_from_every_file_export(demo_project, truth, tmp_path, fmt, name):
    service = LabelingService(demo_project)
    given = _labels_by_two(service, truth)
    made = _times(service)
    export(service.project, fmt, demo_project / "exports" / name, labeled_only=True)
    again = _emptied_copy(demo_project, tmp_path)
    back = import_labels(again, again.project.root / "exports" / name, user="someone")
    assert back["labeled"] == len(given), back["problems"]
    assert _uris(again) == given
    got = _times(again)
    assert {u: got[u] for u in given} == {u: made[u] for u in given}  # the same people, the same moments


def test_label_studio_tasks_carry_the_suggestions_as_predictions(trained_project, tmp_path):
    from labeling.data.predictions import import_predictions

    service = LabelingService(trained_project)
    out = trained_project / "exports" / "tasks.json"
    result = export(service.project, "labelstudio", out)
    tasks = json.loads(out.read_text())
    assert result["rows"] == len(tasks) == 200 and '<Choices name="choice" toName="image"' in result["label_config"]
    _, preds = service.predictions()
    unlabeled = [t for t in tasks if not t["annotations"]]
    assert len(unlabeled) == 170 and all(t["predictions"][0]["model_version"] == f"quorum-round-{preds.round_id}"
                                         for t in unlabeled)
    labeled = [t for t in tasks if t["annotations"]]
    assert {t["annotations"][0]["completed_by"]["username"] for t in labeled} == {"seed"}
    assert all(t["data"]["image"].startswith("/data/local-files/?d=images/") for t in tasks)
    # handed back: the predictions read as a model of their own, named by their model_version
    got = import_predictions(service.project, out)
    assert got["model"] == f"quorum-round-{preds.round_id}" and got["items"] == 200


def test_a_hugging_face_export_loads_in_datasets_and_comes_back_with_annotators_and_times(demo_project, truth, tmp_path):
    datasets = pytest.importorskip("datasets")
    service = LabelingService(demo_project)
    given = _labels_by_two(service, truth)
    made = _times(service)
    out = demo_project / "exports" / "hf"
    export(service.project, "hf", out)
    ds = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert sorted(ds["label"]) == sorted(given.values()) and set(ds["annotator"]) == {"ann", "bob"}
    again = _emptied_copy(demo_project, tmp_path)
    assert import_labels(again, again.project.root / "exports" / "hf")["labeled"] == len(given)
    got = _times(again)
    assert _uris(again) == given and {u: got[u] for u in given} == {u: made[u] for u in given}
