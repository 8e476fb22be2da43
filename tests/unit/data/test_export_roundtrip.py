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
        again.undo(batch, user="ann")
    assert again.current_labels() == {}
    return again
