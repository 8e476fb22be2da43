"""A model's predictions brought in from the browser: uploaded on the Data page, the retrain loop's next
round shows the model's suggestion on the Label page's card, and the Model page weighs it."""
from __future__ import annotations

import csv
import re

import pytest
from conftest import served_page

from labeling.service import LabelingService
from storage import external_models as models_q

pytestmark = pytest.mark.browser


def test_uploaded_predictions_show_on_the_card_named_by_their_model(trained_project, tmp_path):
    with open(trained_project / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        truth = {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}
    classes = sorted(set(truth.values()))
    preds = tmp_path / "resnet preds.csv"
    with open(preds, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["filepath", *[f"prob_{c}" for c in classes]])
        for uri, true in truth.items():
            w.writerow([f"/home/someone/photos/{uri.rsplit('/', 1)[-1]}", *[0.82 if c == true else 0.02 for c in classes]])
    labels_before = LabelingService(trained_project).summary()["labels"]
    with served_page(trained_project, tmp_path / "server.log") as (page, url):
        from playwright.sync_api import expect  # here: served_page skips with the reason without a browser

        page.goto(f"{url}/data")
        page.get_by_role("tab", name="Import").click()
        page.locator('.st-key-data_pred_upload input[type=file]').set_input_files(str(preds))
        page.get_by_role("button", name="Import predictions").click()
        page.get_by_text(re.compile(r"Imported the predictions of “resnet-preds” for 200 images")).wait_for(
            timeout=60_000)
        page.goto(url)
        first = page.locator('[data-testid="stImageCaption"]').first
        first.wait_for(timeout=60_000)
        model_line = page.get_by_text(re.compile(r"Model “resnet-preds” suggests \w+ \(82%\)"))
        model_line.first.wait_for(timeout=90_000)  # the retrain loop's round after the upload
        shown = first.inner_text()
        assert f"suggests {truth[shown]} " in model_line.first.inner_text()
        page.goto(f"{url}/model")
        page.get_by_text("Imported models").first.wait_for(timeout=60_000)
        expect(page.locator(".st-key-model_weigh_name input")).to_have_value("resnet-preds", timeout=30_000)
        page.locator(".st-key-model_weigh_how").get_by_text("off", exact=True).click()
        page.get_by_role("button", name="Apply").click()
        page.get_by_text("“resnet-preds”: weight off").wait_for(timeout=30_000)
    with LabelingService(trained_project).project.db.session() as con:
        assert models_q.get(con, "resnet-preds")["enabled"] is False
    assert LabelingService(trained_project).summary()["labels"] == labels_before  # suggestions, never labels
