"""Find and jump: items by file name, path or id; labeled items by class and source; the queue narrowed
by suggested class and disagreement."""
from __future__ import annotations

import numpy as np
import pytest

from labeling.service import LabelingService
from labeling.views.find import find_items, label_sources, labeled_items


def test_items_are_found_by_part_of_their_name_path_or_id(trained_project):
    service = LabelingService(trained_project)
    item = service.queue(1)[0]
    name = item.uri.rsplit("/", 1)[-1]
    hits = find_items(service, name.upper()[:-4])  # any case, part of the name
    assert hits[0].item_id == item.item_id and hits[0].label is None
    assert find_items(service, f"#{item.item_id}")[0].item_id == item.item_id
    assert find_items(service, "no-such-file") == []
    assert find_items(service, "%") == []  # a wildcard is a plain character (no path holds one)
    with pytest.raises(ValueError):
        find_items(service, "   ")


def test_labeled_items_by_class_and_source_newest_first(trained_project):
    service = LabelingService(trained_project)
    item = service.queue(1)[0].item_id
    service.label([item], "zebra", user="ann", source="lasso")
    zebras = labeled_items(service, label="zebra")
    assert zebras[0].item_id == item and all(f.label == "zebra" for f in zebras)
    assert [f.item_id for f in labeled_items(service, source="lasso")] == [item]
    assert "lasso" in label_sources() and "manual" in label_sources()


def test_the_queue_narrows_to_a_suggested_class_and_a_disagreement_range(trained_project):
    service = LabelingService(trained_project)
    _rnd, p = service.predictions()
    cls = service.queue(1)[0].pseudo_label
    only = service.queue(10, suggested=cls)
    assert only and all(q.pseudo_label == cls for q in only)
    bald = p.scores["bald"]
    lo, hi = float(np.quantile(bald, 0.25)), float(np.quantile(bald, 0.5))
    row_of = p.row_of()
    narrowed = service.queue(10, disagreement=(lo, hi))
    assert narrowed and all(lo <= bald[row_of[q.item_id]] <= hi for q in narrowed)
    assert service.queue(5, suggested="no-such-class") == []
