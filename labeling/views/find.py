"""Find and jump on the Label page: items by file name or path, and the labeled items of a class or source
(to look at them again or correct them). The queue's own filters (suggested class, disagreement range)
live with its orders (:mod:`labeling.active.queue_order`)."""
from __future__ import annotations

from typing import NamedTuple

from labeling.service import LabelingService
from storage import items as items_q
from storage import labels as labels_q

MAX_QUERY = 200
"""The longest search text taken (a file path rarely needs more)."""


class Found(NamedTuple):
    item_id: int
    uri: str
    label: str | None  # the current label (None: unlabeled or skipped)
    source: str | None


def find_items(service: LabelingService, text: str, *, limit: int = 20, user: str | None = None) -> list[Found]:
    """Items whose path in the project contains ``text`` (any case), file-name matches first, each with
    its current label as ``user`` may see it. An item id (``"#12"`` or ``"12"``) finds that item too.

    Raises
    ------
    ValueError
        For an empty or over-long search.
    """
    query = str(text or "").strip()
    if not query:
        raise ValueError("type part of a file name or path")
    if len(query) > MAX_QUERY:
        raise ValueError(f"a search is at most {MAX_QUERY} characters")
    with service.project.db.session() as con:
        hits = items_q.search_uris(con, query, limit=limit)
        by_id = query.lstrip("#")
        if by_id.isdigit() and all(i != int(by_id) for i, _ in hits):
            known = items_q.items_by_ids(con, [int(by_id)])
            if int(by_id) in known and known[int(by_id)]["status"] == "ok":
                hits = [(int(by_id), known[int(by_id)]["uri"]), *hits][:limit]
    return _with_labels(service, hits, user)


def labeled_items(service: LabelingService, *, label: str | None = None, source: str | None = None,
                  limit: int = 200, user: str | None = None) -> list[Found]:
    """Labeled items, newest decision first, of one class and/or one source (``manual``,
    ``accept_suggestion``, ``lasso``, ``grid``, ``import``, ...), as ``user`` may see them."""
    current = service.current_labels(user=user)
    picked = [(i, lab, src) for i, (lab, _who, src) in current.items()
              if lab is not None and (label is None or lab == label) and (source is None or src == source)]
    picked.sort(key=lambda t: -t[0])
    ids = [i for i, _, _ in picked[:limit]]
    with service.project.db.session() as con:
        info = items_q.items_by_ids(con, ids)
    return [Found(i, info[i]["uri"], lab, src) for i, lab, src in picked[:limit] if i in info]


def label_sources() -> list[str]:
    """Every source a label can have, for a filter (a constant: the Label page draws the filter on every
    key press, and reading every label to list the sources in use would cost a full read each time)."""
    return sorted(labels_q.SOURCES)


def _with_labels(service: LabelingService, hits: list[tuple[int, str]], user: str | None) -> list[Found]:
    current = service.current_labels(user=user, items=[i for i, _ in hits])
    return [Found(i, uri, *(current[i][0], current[i][2]) if i in current else (None, None)) for i, uri in hits]


def find_by_text(service: LabelingService, text: str, *, limit: int = 20, user: str | None = None) -> list[Found]:
    """The items whose images are most like ``text`` (a CLIP backbone's text tower), each with its current
    label as ``user`` may see it."""
    from labeling.search.text import search

    hits = search(service.project, text, n=limit)
    current = service.current_labels(user, [h.item_id for h in hits])
    return [Found(h.item_id, h.uri, *(current[h.item_id][0::2] if h.item_id in current else (None, None)))
            for h in hits]
