"""Classes declared before any label: the demo's ten animals, ``import --classes``, the Data page."""
from __future__ import annotations

import pytest

from labeling.data.demo import demo_classes
from labeling.data.importer import declare_classes, parse_class_list
from labeling.service import LabelingService


def test_class_list_parses_commas_and_lines_and_refuses_a_bad_name():
    assert parse_class_list("cat, dog,\nbird,, cat ") == ["cat", "dog", "bird"]
    with pytest.raises(ValueError):
        parse_class_list("cat,\x07bell")


def test_declared_classes_keep_their_order_and_existing_ones_stay(small_project):
    assert declare_classes(small_project, ["zebra", "ant"]) == {"created": ["zebra", "ant"], "existing": []}
    assert declare_classes(small_project, ["ant", "bee"]) == {"created": ["bee"], "existing": ["ant"]}
    assert list(LabelingService(small_project.root).class_names().values()) == ["zebra", "ant", "bee"]


def test_the_demo_declares_its_ten_animals_in_the_data_sets_order(demo_project):
    assert list(LabelingService(demo_project).class_names().values()) == demo_classes()
    assert len(demo_classes()) == 10


def test_a_round_speaks_only_of_classes_with_labels(demo_project, truth):
    """Ten declared classes, three labeled: the round's suggestions and cross-validation see three."""
    from labeling.model.rounds import train_round

    service = LabelingService(demo_project)
    rows, per = [], {}
    for uri, cls in sorted(truth.items()):
        if cls in ("cat", "dog", "zebra") and per.get(cls, 0) < 4:
            per[cls] = per.get(cls, 0) + 1
            rows.append({"uri": uri, "label": cls})
    service.label_table(rows, user="tester")
    train_round(service.project, device="cpu", cv=True)
    rnd, preds = LabelingService(demo_project).predictions()
    assert sorted(preds.class_names) == ["cat", "dog", "zebra"]
    assert rnd["metrics"]["n_classes"] == 3
    assert {q.pseudo_label for q in LabelingService(demo_project).queue(20)} <= {"cat", "dog", "zebra"}


def test_import_declares_classes_in_order_and_refuses_a_bad_name_before_writing(tmp_path, capsys):
    from labeling.cli import main

    root = tmp_path / "p"
    assert main(["import", str(root), "--classes", "zebra, ant,zebra"]) == 0
    assert "declared 2 classes" in capsys.readouterr().out
    assert main(["import", str(root), "--classes", "ant,bee"]) == 0
    assert "ant already there" in capsys.readouterr().out
    assert list(LabelingService(root).class_names().values()) == ["zebra", "ant", "bee"]
    assert main(["import", str(root), "--classes", "cat,\x07bell"]) == 2
    assert "cat" not in LabelingService(root).class_names().values()

