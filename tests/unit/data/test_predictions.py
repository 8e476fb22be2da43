"""A person's own model's predictions: read from the formats people have, stored as suggestions only."""
from __future__ import annotations

import csv
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from labeling.data.predictions import (PredictionFileError, check_model_name, import_predictions, read_predictions,
                                       set_model_weight)
from labeling.model.rounds import train_round
from labeling.project import Project
from labeling.service import LabelingService


def _uris(root, n=None):
    with open(root / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        rows = sorted((r["uri"], r["true_class"]) for r in csv.DictReader(fh))
    return rows[:n] if n else rows


def _write_wide(path, rows, classes, *, right=0.8, seed=0):
    """A model that is right with probability ``right``: 0.7 on its guess, the rest spread."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", *[f"prob_{c}" for c in classes]])
        for uri, true in rows:
            guess = true if rng.random() < right else classes[int(rng.integers(len(classes)))]
            w.writerow([uri, *[0.7 if c == guess else round(0.3 / (len(classes) - 1), 4) for c in classes]])


def test_long_rows_add_up_a_top_k_list_and_leave_the_rest_to_the_other_classes(tmp_path):
    f = tmp_path / "p.csv"
    f.write_text("filename,prediction,confidence\na.png,cat,0.6\na.png,dog,0.3\nb.png,dog,\n", encoding="utf-8")
    rows, problems, base, named = read_predictions(f)
    assert problems == [] and base == tmp_path and named is None
    assert [r["probs"] for r in rows] == [{"cat": 0.6}, {"dog": 0.3}, {"dog": 1.0}]
    assert [r["file_name"] for r in rows] == ["a.png", "a.png", "b.png"]


def test_wide_columns_dict_columns_and_plain_class_columns_read_as_distributions(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"file_name": "a.png", "probabilities": {"cat": 0.2, "dog": 0.8}}) + "\n"
                 + json.dumps({"file_name": "b.png", "probabilities": "not an object"}) + "\n", encoding="utf-8")
    rows, problems, _, _ = read_predictions(f)
    assert rows[0]["probs"] == {"cat": 0.2, "dog": 0.8} and rows[0]["kind"] == "wide"
    assert problems == ["line 2: 'probabilities' is not an object of class: probability, row ignored"]
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"filepath": ["a.png"], "cat": [0.25], "dog": [0.75]}), plain)
    rows, _, _, _ = read_predictions(plain)
    assert rows[0]["probs"] == {"cat": 0.25, "dog": 0.75}


def test_label_studio_predictions_read_with_their_model_version(tmp_path):
    tasks = [{"id": 1, "data": {"image": "/data/local-files/?d=images/a.png"},
              "predictions": [{"model_version": "resnet-v2", "score": 0.9,
                               "result": [{"from_name": "choice", "to_name": "image", "type": "choices",
                                           "value": {"choices": ["cat"]}}]}]},
             {"id": 2, "data": {"image": "/data/upload/1/8f2a1c3e-b.png"}, "annotations": [], "predictions": []}]
    f = tmp_path / "ls.json"
    f.write_text(json.dumps(tasks), encoding="utf-8")
    rows, problems, _, named = read_predictions(f)
    assert named == "resnet-v2" and problems == []
    assert rows == [{"item_id": None, "uri": None, "file_name": "images/a.png", "where": "task 1",
                     "probs": {"cat": 0.9}, "kind": "long"}]


@pytest.mark.parametrize("text, why", [
    ("file_name,other\na.png,x\n", "needs a predicted class"),
    ("label,score\ncat,0.5\n", "needs a column naming the image"),
])
def test_a_file_without_the_needed_columns_is_refused_with_the_reason(tmp_path, text, why):
    f = tmp_path / "p.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(PredictionFileError, match=why):
        read_predictions(f)


def test_model_names_are_plain(tmp_path):
    assert check_model_name(" resnet50.v2 ") == "resnet50.v2"
    for bad in ("../x", ".hidden", "a/b", "x" * 65, ""):
        with pytest.raises(PredictionFileError, match="model name"):
            check_model_name(bad)


def test_predictions_become_suggestions_on_the_card_never_labels(demo_project):
    """Before any label: the model alone suggests; the card names it; no label or event is written."""
    service = LabelingService(demo_project)
    classes = list(service.class_names().values())
    rows = _uris(demo_project)
    f = demo_project.parent / "preds.csv"
    _write_wide(f, rows, classes, right=1.0)
    before = service.summary()["labels"]
    with service.project.db.session() as con:
        events = con.execute("SELECT count(*) FROM annotations").fetchone()[0]
    out = import_predictions(service.project, f, name="oracle")
    assert out["items"] == len(rows) and out["new_classes"] == [] and out["model"] == "oracle"
    train_round(service.project, device="cpu", cv=False)
    service = LabelingService(demo_project)
    assert service.summary()["labels"] == before
    with service.project.db.session() as con:
        assert con.execute("SELECT count(*) FROM annotations").fetchone()[0] == events
    _, preds = service.predictions()
    row = 7
    card = service.item_card(int(preds.item_ids[row]))
    truth = dict(rows)[card.uri]
    assert card.pseudo_label == truth and card.models[0][:2] == ("oracle", truth)
    assert [m for m, _ in card.votes] == ["model:oracle"]


def test_a_model_joins_the_ensemble_changes_the_queue_and_can_be_turned_off(trained_project):
    service = LabelingService(trained_project)
    classes = list(service.class_names().values())
    order_before = [q.item_id for q in service.queue(40)]
    f = trained_project.parent / "preds.csv"
    _write_wide(f, _uris(trained_project), classes, right=0.9)
    import_predictions(service.project, f, name="mine")
    train_round(service.project, device="cpu", cv=True)
    rnd, preds = LabelingService(trained_project).predictions()
    assert preds.member_names[-1] == "model:mine" and preds.member_weights[-1] > 0
    # cross-validated with the model joined, and the learner's own figure kept for the next round's share
    assert 0 <= rnd["metrics"]["cv_accuracy"] <= 1 and 0 <= rnd["metrics"]["learner_cv_accuracy"] <= 1
    got = rnd["metrics"]["models"][0]
    assert got["model"] == "mine" and got["checked_on"] == 30 and got["accuracy"] >= 0.7
    order_after = [q.item_id for q in LabelingService(trained_project).queue(40)]
    assert order_after != order_before
    set_model_weight(service.project, "mine", "off")
    train_round(service.project, device="cpu", cv=False)
    _, preds = LabelingService(trained_project).predictions()
    assert "model:mine" not in preds.member_names and preds.model_names == []
    set_model_weight(service.project, "mine", 0.4)
    train_round(service.project, device="cpu", cv=False)
    _, preds = LabelingService(trained_project).predictions()
    assert preds.member_weights[-1] == pytest.approx(0.4)


def test_unknown_classes_are_created_and_unmatched_rows_named(demo_project):
    f = demo_project.parent / "p.csv"
    uri = _uris(demo_project, 1)[0][0]
    f.write_text(f"file_name,label,score\n{uri},unicorn,0.9\nnowhere.png,cat,0.5\n", encoding="utf-8")
    out = import_predictions(Project(demo_project), f)
    assert out["new_classes"] == ["unicorn"] and out["model"] == "p"
    assert out["problems"] == ["line 3: no item matches 'nowhere.png'"]
    f.write_text("file_name,label\nnowhere.png,cat\n", encoding="utf-8")
    with pytest.raises(PredictionFileError, match="no row names an image of the project"):
        import_predictions(Project(demo_project), f)


def test_command_line_imports_lists_and_weighs(trained_project, capsys):
    from labeling.cli import main

    service = LabelingService(trained_project)
    f = trained_project.parent / "preds.csv"
    _write_wide(f, _uris(trained_project), list(service.class_names().values()))
    assert main(["import-predictions", str(trained_project), str(f), "--name", "resnet"]) == 0
    out = capsys.readouterr().out
    assert "imported predictions of 'resnet' for 200 images" in out and "no label written" in out
    assert main(["models", str(trained_project), "resnet", "--weight", "off", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"][0]["weight"] == "off"
    assert main(["models", str(trained_project), "resnet", "--weight", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == "error: a model's weight is auto, off or a share in [0, 1], not '1.5'"


def test_the_browser_upload_needs_an_admin_and_stays_in_the_projects_folder(demo_project):
    from labeling.session import AuthError, Session, sign_in
    from labeling.team import auth

    service = LabelingService(demo_project)
    for name, role in (("root", "admin"), ("rita", "reviewer"), ("ann", "annotator")):
        auth.add_user(service.project, name, "correct horse", role=role, by=None)
    auth.set_mode(service.project, "team", by=auth.Identity("root", "admin"))
    uri, cls = _uris(demo_project, 1)[0]
    data = f"file_name,label,score\n{uri},{cls},0.8\n".encode()
    ann = Session(service, sign_in(service, "ann", "correct horse"))
    with pytest.raises(AuthError, match="admin"):
        ann.data.run_prediction_import("p.csv", data)
    root = Session(service, sign_in(service, "root", "correct horse"))
    got = root.data.run_prediction_import("../../evil name.csv", data, model="mine")
    assert got["model"] == "mine" and got["items"] == 1
    saved = list((demo_project / ".quorum" / "models" / "sources").iterdir())
    assert [p.name for p in saved] == ["evil name.csv"]
    assert not (demo_project.parent.parent / "evil name.csv").exists()
    with pytest.raises(AuthError, match="reviewer"):
        ann.model.set_model_weight("mine", "off")
    assert Session(service, sign_in(service, "rita", "correct horse")).model.set_model_weight("mine", "off")["enabled"] is False


def test_a_model_that_predicted_nothing_for_an_item_shows_no_vote_on_its_card(trained_project):
    service = LabelingService(trained_project)
    (uri, cls), (other, _) = _uris(trained_project, 2)
    f = trained_project.parent / "one.csv"
    f.write_text(f"file_name,label,score\n{uri},{cls},0.9\n", encoding="utf-8")
    import_predictions(service.project, f, name="one")
    train_round(service.project, device="cpu", cv=False)
    service = LabelingService(trained_project)
    covered = service.item_card(service.item_id_for_uri(uri))
    # the model names one class only, so its whole mass is on it
    assert ("model:one", cls) in covered.votes and covered.models == [("one", cls, pytest.approx(1.0))]
    bare = service.item_card(service.item_id_for_uri(other))
    assert not any(m.startswith("model:") for m, _ in bare.votes) and bare.models == []
