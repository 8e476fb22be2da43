"""Bulk labeling from the Map: what the selected items carry now, which of them a label would change,
and the one batch that labels the rest.

A bulk action never overwrites a person's label by surprise: items that already have a label are left
as they are unless the caller asks to ``overwrite`` them, single items can be left out, and no class is
chosen for the caller. Skipped items ("unsure") have no label and are labeled like unlabeled ones.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

from labeling.service import LabelingService
from storage import items as items_q

SOURCE = "lasso"
"""The source of every event a bulk Map action writes (one batch, undone as one)."""


class SelectedItem(NamedTuple):
    """One selected item as the person choosing it should see it."""

    item_id: int
    uri: str
    name: str  # the file name
    label: str | None  # the current label, None when unlabeled or skipped
    annotator: str | None
    source: str | None  # how the current label (or skip) was given


class BulkPlan(NamedTuple):
    """Which selected items a bulk label writes, and which it leaves alone (and why)."""

    to_label: list[int]
    kept: list[int]  # items a person labeled, left as they are (no ``overwrite``)
    left_out: list[int]  # items the person dropped from the selection


class BulkResult(NamedTuple):
    batch_id: str
    labeled: list[int]
    kept: list[int]
    left_out: list[int]


def file_name(uri: str) -> str:
    """The last part of an item's path: what a person calls the image."""
    return str(uri).replace("\\", "/").rsplit("/", 1)[-1]


def selection_rows(service: LabelingService, item_ids: Sequence[int], *, user: str | None = None) -> list[SelectedItem]:
    """The selected items in order (repeats once, unknown ids dropped) with their current labels; with
    ``user``, labels that person may not see yet (pending overlap votes) are hidden, as on their cards."""
    ids = list(dict.fromkeys(int(i) for i in item_ids))
    with service.project.db.session() as con:
        info = items_q.items_by_ids(con, ids)
    current = service.current_labels(user=user, items=ids)
    out = []
    for i in ids:
        if i not in info:
            continue
        label, annotator, source = current.get(i, (None, None, None))
        out.append(SelectedItem(i, info[i]["uri"], file_name(info[i]["uri"]), label, annotator, source))
    return out


def plan_bulk(rows: Sequence[SelectedItem], *, overwrite: bool = False, leave_out: Sequence[int] = ()) -> BulkPlan:
    """Split a selection into the items a bulk label writes, those a person labeled (left alone unless
    ``overwrite``), and those left out by hand."""
    dropped = {int(i) for i in leave_out}
    to_label, kept, left_out = [], [], []
    for r in rows:
        if r.item_id in dropped:
            left_out.append(r.item_id)
        elif r.label is not None and not overwrite:
            kept.append(r.item_id)
        else:
            to_label.append(r.item_id)
    return BulkPlan(to_label, kept, left_out)


def label_selection(service: LabelingService, item_ids: Sequence[int], label: str, *, user: str,
                    overwrite: bool = False, leave_out: Sequence[int] = ()) -> BulkResult:
    """Label the selected items ``label`` as one batch (source ``"lasso"``); the class is created when new.

    Items that already carry a person's label are left as they are unless ``overwrite``; items in
    ``leave_out`` are not touched. Repeated ids count once.

    Raises
    ------
    ValueError
        Nothing selected, a blank class name, or nothing left to label (every item kept or left out).
    LookupError
        An item id is unknown or unreadable (nothing is written).
    """
    ids = list(dict.fromkeys(int(i) for i in item_ids))
    if not ids:
        raise ValueError("select at least one item")
    name = (label or "").strip()
    if not name:
        raise ValueError("choose a class first")
    rows = selection_rows(service, ids, user=user)
    unknown = sorted(set(ids) - {r.item_id for r in rows})
    if unknown:
        raise LookupError(f"unknown or unreadable item ids: {unknown[:10]}")
    plan = plan_bulk(rows, overwrite=overwrite, leave_out=leave_out)
    if not plan.to_label:
        why = "already labeled by a person (tick overwrite to relabel them)" if plan.kept else "left out"
        raise ValueError(f"nothing to label: every selected item is {why}")
    got = service.predictions()
    model_round = None if got is None else int(got[0]["id"])
    batch = service.label(plan.to_label, name, user=user, source=SOURCE, model_round=model_round)
    return BulkResult(batch, plan.to_label, plan.kept, plan.left_out)


_SPLIT = re.compile(r"[,;\n]+")


def resolve_selection(service: LabelingService, text: str) -> list[int]:
    """Items typed by a person: ids (``"3, 7 12"``), file names (``"cat_0012.png"``) or project paths
    (``"images/cat/cat_0012.png"``), separated by commas, semicolons or new lines; in order, once each.

    Raises
    ------
    ValueError
        Naming the first entry that matches no item, or a file name that several items share.
    """
    tokens: list[str] = []
    for part in _SPLIT.split(str(text)):
        part = part.strip()
        if part and all(t.isdigit() for t in part.split()):
            tokens += part.split()  # "3 7 12": ids separated by spaces
        elif part:
            tokens.append(part)
    names = [t for t in tokens if not t.isdigit()]
    with service.project.db.session() as con:
        found = items_q.ids_by_name(con, names)
    out: list[int] = []
    for t in tokens:
        if t.isdigit():
            item = int(t)
        else:
            hits = found.get(t, [])
            if not hits:
                raise ValueError(f"no item is named {t!r} (type an id, a file name or a path in the project)")
            if len(hits) > 1:
                raise ValueError(f"{len(hits)} items are named {t!r}: type its path in the project instead")
            item = hits[0]
        if item not in out:
            out.append(item)
    return out
