"""People's own models in the app: the card names a model's suggestion; the Model page weighs it."""
from __future__ import annotations

import csv
from pathlib import Path

from streamlit.testing.v1 import AppTest

from conftest import open_app

from labeling.data.predictions import import_predictions
from labeling.model.rounds import train_round
from labeling.service import LabelingService
from storage import external_models as models_q

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def _oracle(root: Path) -> Path:
    """A predictions file that is always right: 0.9 on the true class, one probability column per class."""
    with open(root / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        truth = {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}
    classes = sorted(set(truth.values()))
    out = root.parent / "oracle.csv"
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", *[f"prob_{c}" for c in classes]])
        for uri, true in truth.items():
            w.writerow([uri, *[0.91 if c == true else 0.01 for c in classes]])
    return out


def test_the_card_shows_the_models_suggestion_marked_with_its_name(trained_project, app_env):
    service = LabelingService(trained_project)
    import_predictions(service.project, _oracle(trained_project), name="oracle")
    train_round(service.project, device="cpu", cv=False)
    app_env(trained_project)
    at = AppTest.from_file(APP, default_timeout=90)
    at.run()
    assert not at.exception, at.exception
    first = service.queue(1)[0]
    with open(trained_project / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        truth = {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}
    captions = [c.value for c in at.caption]
    assert f"Model “oracle” suggests {truth[first.uri]} (91%)" in captions, captions
    assert any(c.startswith("Votes of round") and "model:oracle" in c for c in captions)


def test_the_model_page_lists_imported_models_and_turns_one_off(trained_project, monkeypatch):
    service = LabelingService(trained_project)
    import_predictions(service.project, _oracle(trained_project), name="oracle")
    train_round(service.project, device="cpu", cv=False)
    at = open_app(trained_project, monkeypatch, "app_pages/model.py")
    table = next(df.value for df in at.dataframe if "checked_on" in df.value.columns)
    assert table["model"].tolist() == ["oracle"] and table["weight"].tolist() == ["auto"]
    assert table["accuracy"].tolist() == [1.0] and table["checked_on"].tolist() == [30]
    at.radio(key="model_weigh_how").set_value("off").run()
    at.button(key="model_weigh_apply").click().run()
    assert not at.exception, at.exception
    with service.project.db.session() as con:
        assert models_q.get(con, "oracle")["enabled"] is False
    assert any("weight off" in s.value for s in at.success)
