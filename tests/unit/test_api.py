"""The Python API: open a project as someone and run the loop, with the app's role checks."""
from __future__ import annotations

import subprocess
import sys

import pytest

import labeling
from labeling.team import auth


def test_import_labeling_stays_light():
    code = "import sys, labeling; print(labeling.__version__); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == labeling.__version__ and out[1] == "False"


def test_the_loop_from_python(demo_project, tmp_path):
    q = labeling.open_project(demo_project, user="ada")
    assert labeling.embed_images(q, device="cpu")["embedded"] == 0  # the demo is embedded already
    first = labeling.queue(q, 3)
    assert len(first) == 3 and first[0].uri
    batch = labeling.label(q, [first[0].item_id], "zebra")
    assert labeling.stats(q)["labels"] == 1
    assert labeling.undo(q, batch) == [first[0].item_id]
    labeling.label(q, [i.item_id for i in first[:2]], "bear")
    labeling.label(q, [first[2].item_id], "cat")
    round_id = labeling.train(q, device="cpu", cv=False)
    assert round_id > 1 and labeling.queue(q, 1)[0].pseudo_label in ("bear", "cat")
    out = labeling.export(q, "csv", tmp_path / "labels.csv", labeled_only=True)
    assert out["rows"] == 3
    with pytest.raises(AttributeError):
        labeling.nothing_like_this  # noqa: B018


def test_roles_hold_in_the_api(demo_project, tmp_path):
    project = labeling.open_project(demo_project).service.project
    auth.add_user(project, "root", "admin-password", role="admin", by=None)
    auth.add_user(project, "bob", "bob-password", role="annotator", by=None)
    auth.set_mode(project, "team", by=auth.local_identity(project, "me"))
    with pytest.raises(auth.AuthError, match="team mode"):
        labeling.open_project(demo_project, user="bob")
    bob = labeling.open_project(demo_project, user="bob", password="bob-password")
    with pytest.raises(PermissionError):
        labeling.export(bob, "csv", tmp_path / "x.csv")
    with pytest.raises(PermissionError):
        labeling.embed_images(bob)
    preds = tmp_path / "p.csv"
    preds.write_text("file_name,label,score\nimages/animal_00000.png,cat,0.9\n", encoding="utf-8")
    with pytest.raises(PermissionError):
        labeling.import_predictions(bob, preds)
    root = labeling.open_project(demo_project, user="root", password="admin-password")
    assert labeling.import_predictions(root, preds, name="mine")["items"] == 1
    assert labeling.label(bob, [labeling.queue(bob, 1)[0].item_id], "cat")
