"""Bulk labels from the Map: a person's labels are left alone unless overwritten, items can be left out,
items are found by id, file name or path."""
from __future__ import annotations

import pytest

from labeling.embed.pipeline import load_vectors
from labeling.service import LabelingService
from labeling.views.bulk import label_selection, plan_bulk, resolve_selection, selection_rows
from storage import labels as labels_q


@pytest.fixture
def service(demo_project) -> LabelingService:
    return LabelingService(demo_project)


def _ids(service, n):
    return [int(i) for i in load_vectors(service.project).item_ids[:n]]


def _label_events(service):
    with service.project.db.session() as con:
        return [e for e in labels_q.all_events(con) if e.kind == "label"]


def test_one_lasso_batch_repeats_once_and_bad_input_refused(service):
    ids = _ids(service, 7)
    result = label_selection(service, ids + ids[:2], " dog ", user="ann")
    events = _label_events(service)
    assert sorted(e.item_id for e in events) == sorted(ids) == sorted(result.labeled)  # repeats labeled once
    assert {e.batch_id for e in events} == {result.batch_id} and {e.source for e in events} == {"lasso"}
    with pytest.raises(ValueError, match="select"):
        label_selection(service, [], "dog", user="ann")
    with pytest.raises(ValueError, match="class"):
        label_selection(service, ids, "  ", user="ann")
    with pytest.raises(LookupError):
        label_selection(service, [10**9], "dog", user="ann")


def test_a_persons_label_is_left_alone_unless_overwrite(service):
    ids = _ids(service, 5)
    service.label([ids[0]], "elephant", user="alice")  # a person's label among the selection
    service.label([ids[1]], None, user="alice")  # a skip is no label: the bulk action labels it
    rows = selection_rows(service, ids, user="mapper")
    assert [(r.label, r.annotator, r.source) for r in rows[:3]] == [("elephant", "alice", "manual"),
                                                                     (None, "alice", "manual"), (None, None, None)]
    result = label_selection(service, ids, "bear", user="mapper")
    assert result.kept == [ids[0]] and result.labeled == ids[1:]
    labels = service.current_labels()
    assert labels[ids[0]][:2] == ("elephant", "alice")
    assert all(labels[i][0] == "bear" for i in ids[1:])

    with pytest.raises(ValueError, match="overwrite"):
        label_selection(service, [ids[0]], "bear", user="mapper")
    again = label_selection(service, ids[:2], "cat", user="mapper", overwrite=True, leave_out=[ids[1]])
    assert again.labeled == [ids[0]] and again.left_out == [ids[1]]
    assert service.current_labels()[ids[0]][0] == "cat" and service.current_labels()[ids[1]][0] == "bear"
    service.undo(again.batch_id, user="mapper", role="reviewer")
    assert service.current_labels()[ids[0]][:2] == ("elephant", "alice")  # undo gives the person's label back


def test_plan_splits_kept_left_out_and_to_label(service):
    ids = _ids(service, 4)
    service.label(ids[:2], "cow", user="alice")
    rows = selection_rows(service, ids)
    assert plan_bulk(rows) == (ids[2:], ids[:2], [])
    assert plan_bulk(rows, overwrite=True, leave_out=[ids[3]]) == (ids[:3], [], [ids[3]])


def test_items_are_found_by_id_file_name_or_path(service):
    rows = selection_rows(service, _ids(service, 3))
    a, b, c = rows
    text = f"{a.item_id} {b.item_id}, {c.name}; {a.uri}"
    assert resolve_selection(service, text) == [a.item_id, b.item_id, c.item_id]
    with pytest.raises(ValueError, match="no-such.png"):
        resolve_selection(service, "no-such.png")
    assert resolve_selection(service, " ") == []
