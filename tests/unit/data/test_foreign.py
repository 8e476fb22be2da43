"""Label files other tools leave: Label Studio JSON, JSON_MIN and CSV, CVAT for images 1.1 XML, FiftyOne
dataset folders and CSV. Samples are written by hand after each tool's documented layout; each is told by
its content, and a FiftyOne folder is never read as an ImageFolder tree."""
from __future__ import annotations

import json
import shutil

import pytest

from labeling.data.formats import LabelFileError, import_labels, read_labels
from labeling.data.foreign import local_path, sniff
from labeling.service import LabelingService


@pytest.fixture
def service(demo_project) -> LabelingService:
    return LabelingService(demo_project)


def _truth_rows(truth, n=4):
    """(uri, class) of the first n images, in name order."""
    return sorted(truth.items())[:n]


def _labels(service) -> dict[str, str]:
    by_id = service.current_labels()
    with service.project.db.session() as con:
        from storage import items as items_q

        info = items_q.items_by_ids(con, list(by_id))
    return {info[i]["uri"]: lab for i, (lab, _who, _src) in by_id.items()}


def test_label_studio_paths_become_files_to_match():
    assert local_path("/data/local-files/?d=images%2Fa%20b.png") == "images/a b.png"
    assert local_path("/data/upload/3/8f2a1c3e-cat_001.png") == "cat_001.png"
    assert local_path("https://example.com/pics/cat.png") == "pics/cat.png"
    assert local_path("/home/alice/data/cat.png") == "/home/alice/data/cat.png"
    assert local_path("") is None


def test_label_studio_json_export(service, demo_project, truth):
    (a, ca), (b, cb), (c, cc), (d, _) = _truth_rows(truth)
    tasks = [
        {"id": 1, "data": {"image": f"/data/upload/1/8f2a1c3e-{a.rsplit('/', 1)[-1]}"},
         "annotations": [{"id": 11, "completed_by": {"id": 1, "email": "ann@example.com"}, "was_cancelled": False,
                          "created_at": "2026-11-01T10:00:00.000000Z",
                          "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                                      "value": {"choices": [ca]}}]}],
         "predictions": [{"model_version": "m1", "result": [{"type": "choices", "value": {"choices": ["zebra"]}}]}]},
        {"id": 2, "data": {"image": f"/data/local-files/?d={b}"},
         "annotations": [{"id": 12, "completed_by": 2, "result": [{"type": "choices", "value": {"choices": [cb]}}]}]},
        {"id": 3, "data": {"image": f"/data/upload/1/0badc0de-{c.rsplit('/', 1)[-1]}"},
         "annotations": [{"id": 13, "was_cancelled": True, "result": [{"type": "choices", "value": {"choices": [cc]}}]}]},
        {"id": 4, "data": {"image": f"/data/upload/1/12345678-{d.rsplit('/', 1)[-1]}"},
         "annotations": [{"id": 14, "result": [{"type": "choices", "value": {"choices": ["cat", "dog"]}}]}]},
    ]
    path = demo_project / "project-1-at-2026-11-01.json"
    path.write_text(json.dumps(tasks))
    assert sniff(path) == "labelstudio"
    rows, problems, _ = read_labels(path)
    assert [(r["label"], r["annotator"]) for r in rows] == [(ca, "ann@example.com"), (cb, "2")]  # no predictions
    assert any("task 4: 2 choices" in p for p in problems)
    out = import_labels(service, path, user="importer")
    assert out["labeled"] == 2 and _labels(service) == {a: ca, b: cb}
    who = {lab: person for lab, person, _src in service.current_labels().values()}
    assert who == {ca: "ann@example.com", cb: "2"}  # each annotation keeps its annotator, not --user


def test_a_plain_export_keeps_each_rows_annotator(service, demo_project, truth):
    (a, ca), (b, cb), *_ = _truth_rows(truth)
    path = demo_project / "two-people.csv"
    path.write_text(f"uri,label,annotator,source\n{a},{ca},alice,manual\n{b},{cb},,manual\n")
    assert import_labels(service, path, user="importer")["labeled"] == 2
    who = {lab: person for lab, person, _src in service.current_labels().values()}
    assert who == {ca: "alice", cb: "importer"}  # a row without one falls back to --user


def test_label_studio_json_min_and_csv(service, demo_project, truth):
    (a, ca), (b, cb), *_ = _truth_rows(truth)
    records = [{"image": f"/data/upload/1/8f2a1c3e-{a.rsplit('/', 1)[-1]}", "id": 1, "choice": ca, "annotator": 1,
                "annotation_id": 5, "created_at": "2026-11-01T10:00:00Z", "updated_at": "2026-11-01T10:00:00Z",
                "lead_time": 2.5}]
    path = demo_project / "min.json"
    path.write_text(json.dumps(records))
    assert sniff(path) == "labelstudio"
    assert import_labels(service, path)["labeled"] == 1
    csv_path = demo_project / "export.csv"
    csv_path.write_text("image,id,choice,annotator,annotation_id,created_at,updated_at,lead_time\n"
                        f"/data/local-files/?d={b},2,{cb},1,6,2026-11-01T10:00:00Z,2026-11-01T10:00:00Z,1.0\n")
    assert sniff(csv_path) == "labelstudio-csv"  # a "choice" column, not "label": still read
    assert import_labels(service, csv_path)["labeled"] == 1
    assert _labels(service) == {a: ca, b: cb}


def test_cvat_for_images_xml(service, demo_project, truth):
    (a, ca), (b, cb), (c, _), _ = _truth_rows(truth)
    xml = (f'<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task><name>t</name>'
           f'</task></meta><image id="0" name="{a}" width="28" height="28"><tag label="{ca}" source="manual"/></image>'
           f'<image id="1" name="{b.rsplit("/", 1)[-1]}" width="28" height="28"><tag label="{cb}" source="manual"/>'
           f'</image><image id="2" name="{c}" width="28" height="28"></image></annotations>')
    path = demo_project / "annotations.xml"
    path.write_text(xml)
    assert sniff(path) == "cvat"
    assert import_labels(service, path)["labeled"] == 2
    assert _labels(service) == {a: ca, b: cb}
    bomb = demo_project / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotations>&x;</annotations>')
    with pytest.raises(LabelFileError, match="DOCTYPE"):
        read_labels(bomb)


def test_a_fiftyone_dataset_folder_is_read_as_fiftyone_never_as_an_imagefolder(service, demo_project, truth):
    (a, ca), (b, cb), *_ = _truth_rows(truth)
    folder = demo_project / "fo-export"
    (folder / "data").mkdir(parents=True)
    classes = sorted({ca, cb})
    labels = {}
    for k, (uri, cls) in enumerate([(a, ca), (b, cb)]):
        uuid = f"6f1c2d3e4a5b6c7d8e9f00{k:02d}"
        shutil.copy(demo_project / uri, folder / "data" / f"{uuid}.png")
        labels[uuid] = {"label": cls} if k else classes.index(cls)  # both forms FiftyOne writes
    (folder / "labels.json").write_text(json.dumps({"classes": classes, "labels": labels}))
    assert sniff(folder) == "fiftyone"
    out = import_labels(service, folder)
    assert out["labeled"] == 2 and _labels(service) == {a: ca, b: cb}  # matched by content
    assert "data" not in service.class_names().values()  # never a class named after the folder
    broken = demo_project / "fo-broken"
    broken.mkdir()
    (broken / "labels.json").write_text(json.dumps({"classes": None, "labels": {}}))
    with pytest.raises(LabelFileError, match="data/"):
        read_labels(broken)


def test_a_fiftyone_csv_with_paths_from_another_machine(service, demo_project, truth):
    (a, ca), (b, cb), *_ = _truth_rows(truth)
    path = demo_project / "samples.csv"
    path.write_text("filepath,tags,ground_truth.label\n"
                    f"/home/alice/datasets/animals/{a.rsplit('/', 1)[-1]},[],{ca}\n"
                    f"C:\\\\data\\\\{b.rsplit('/', 1)[-1]},[],{cb}\n")
    assert sniff(path) == "fiftyone-csv"
    out = import_labels(service, path)
    assert out["labeled"] == 2, out["problems"]
    assert _labels(service) == {a: ca, b: cb}  # absolute paths elsewhere: matched by their unique file name


def test_a_file_that_looks_like_label_studio_but_is_broken_is_refused(demo_project):
    path = demo_project / "broken.json"
    path.write_text(json.dumps([{"data": {"image": "x.png"}, "annotations": []}, {"annotations": []}]))
    with pytest.raises(LabelFileError, match="no 'data'"):
        read_labels(path)
