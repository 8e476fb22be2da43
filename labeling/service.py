"""The facade the pages and the command line call: one project, its queue, labels and rounds."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from labeling.active.queue_order import QUEUE_ORDERS, QUEUE_STRATEGIES, blind_first, narrowed
from labeling.data.table_rows import table_targets
from labeling.project import Project
from labeling.results import CurrentLabel, GridCell, ItemCard, Neighbour, QueueItem
from labeling.team.auth import Identity, require
from labeling.model.round_files import RoundPredictions, latest_predictions
from storage import items as items_q
from storage import labels as labels_q
from storage import rounds as rounds_q
from storage import snapshot as snapshot_q

LOG = logging.getLogger(__name__)

def matching_neighbours(neighbours: Sequence[Neighbour], label: str, min_similarity: float) -> list[int]:
    """The ids of the unlabeled ``neighbours`` above ``min_similarity`` whose suggestion is ``label``:
    what "accept the neighbourhood" labels with the item."""
    return [n.item_id for n in neighbours
            if n.similarity >= min_similarity and n.label is None and n.pseudo_label == label]


class UnknownClass(LookupError):
    """A class named that does not exist (and was not to be created)."""


def _queue_item(p, r: int, names: dict[int, str], info: dict, base) -> QueueItem:
    """The queue entry of row ``r`` of the round's predictions ``p``."""
    item_id = int(p.item_ids[r])
    top = [(names.get(int(c), str(c)), float(pr)) for c, pr in zip(p.top_idx[r], p.top_p[r]) if c >= 0]
    pseudo = names.get(int(p.pseudo[r])) if p.pseudo[r] >= 0 else None
    if pseudo is None and p.suggestions is not None:
        pseudo = f"{p.suggestions[r]} (ImageNet)"
    return QueueItem(item_id, info[item_id]["uri"], pseudo, float(p.confidence[r]), float(base[r]), top)


class LabelingService:
    """Everything a person or a script does to one project."""

    WINDOWS_UP_TO = 1_024
    """The queue looks up labels of windows of the ranking up to this size, then all labels at once."""

    def __init__(self, root: str | Path, *, create: bool = False) -> None:
        self.project = Project(root, create=create)
        self._pred_cache: tuple[tuple, RoundPredictions, dict] | None = None
        self._last_snapshot: snapshot_q.Snapshot | None = None
        self._previews = None  # labeling.data.previews.Prefetcher, made on first use

    # ---- reading -------------------------------------------------------------------------
    FULL_STATE_UP_TO = 20_000
    """Projects up to this many items read every item's current label at once, once per change of the
    database, and answer a card's, a neighbourhood's and the queue's questions from it; larger ones
    ask about just the items in view."""

    def _snapshot(self) -> snapshot_q.Snapshot:
        """What every page run reads, in one transaction per change of the database (shared)."""
        def read(con):
            snap = snapshot_q.read(con, full_state_up_to=self.FULL_STATE_UP_TO, previous=self._last_snapshot)
            self._last_snapshot = snap  # the next change re-reads only the items it touched
            return snap
        return self.project.db.cached("snapshot", read)

    def _names(self) -> dict[int, str]:
        """class id -> name (shared: do not modify)."""
        return self._snapshot().names

    def _latest(self) -> dict | None:
        return self._snapshot().latest

    def _state(self, items: Sequence[int] | None) -> list:
        """The current state rows of every item with a live event, or of those among ``items``."""
        every = self._snapshot().state
        if every is not None:
            if items is None:
                return list(every.values())
            return [every[i] for i in sorted({int(i) for i in items}) if i in every]
        with self.project.db.session() as con:
            return labels_q.current_state(con, items)

    def predictions(self) -> tuple[dict, RoundPredictions] | None:
        """The newest finished round and its predictions (cached until a newer round finishes or its
        cross-validation is stored)."""
        rnd = self._latest()
        if rnd is None:
            return None
        key = (rnd["id"], rnd["metrics"].get("cv_status"))  # reloaded once its cross-validation lands
        if self._pred_cache is None or self._pred_cache[0] != key:
            got = latest_predictions(self.project)
            if got is None:
                return None
            self._pred_cache = (key, got[1], rnd)
        return self._pred_cache[2], self._pred_cache[1]

    def newest_round_id(self) -> int | None:
        """The id of the newest finished round (one small query; pages poll it)."""
        rnd = self._latest()
        return None if rnd is None else int(rnd["id"])

    def class_names(self) -> dict[int, str]:
        return dict(self._names())

    def queue(self, n: int, *, strategy: str = "default", seed: int = 0, exclude: Sequence[int] = (),
              user: str | None = None, suggested: str | None = None,
              disagreement: tuple[float, float] | None = None) -> list[QueueItem]:
        """The next ``n`` unlabeled items, most useful first, from the newest round; only those suggested
        as ``suggested``, and only those whose disagreement (BALD) lies in ``disagreement``, when given.

        With ``user`` and an overlap set, overlap items others labeled but ``user`` has not voted on yet
        (and that still lack votes) come first, and items ``user`` already voted on never come back.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        try:
            order_of = QUEUE_ORDERS[strategy]
        except KeyError:
            raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(QUEUE_STRATEGIES)}") from None
        got = self.predictions()
        if got is None:
            raise LookupError(f"no finished round yet; run 'python -m labeling train {self.project.root}'")
        rnd, p = got
        from labeling.team.review import blind_items

        blind = blind_items(self.project, user)
        skip = {int(i) for i in exclude}
        names = self._names()
        order, base = order_of(p, seed)
        order = narrowed(p, np.asarray(order), {v: k for k, v in names.items()}, suggested, disagreement)
        picked = blind_first(p, order, blind, skip, n)
        picked += self._open_rows(order, p.item_ids, n - len(picked), skip=skip, blind=blind)
        with self.project.db.session() as con:
            info = items_q.items_by_ids(con, [int(p.item_ids[r]) for r in picked])
        return [_queue_item(p, r, names, info, base) for r in picked]

    def _open_rows(self, order: np.ndarray, item_ids: np.ndarray, n: int, *, skip: set[int],
                   blind: set[int]) -> list[int]:
        """The first ``n`` rows of ``order`` whose items are open: no live label or skip (or one ``blind``
        hides), and not in ``skip``. Looks up labels window by window (each four times the last), so
        the cost follows how far down the order the open items are, not how many labels exist."""
        picked: list[int] = []
        start, size, every = 0, max(64, 4 * n), None
        while len(picked) < n and start < len(order):
            if size > self.WINDOWS_UP_TO and every is None:  # far down the order: one look at every label
                every = {int(r.item_id) for r in self._state(None)} - blind
                size = len(order)
            rows = np.asarray(order[start:start + size], dtype=np.int64)
            ids = item_ids[rows]
            if every is None:
                labeled = {int(r.item_id) for r in self._state(ids.tolist())} - blind
            else:
                labeled = every
            for r, i in zip(rows.tolist(), ids.tolist()):
                if i not in labeled and i not in skip:
                    picked.append(r)
                    if len(picked) == n:
                        break
            start, size = start + size, size * 4
        return picked

    def rounds(self, *, newest: int | None = None) -> list[dict]:
        """Every round, oldest first (only the ``newest`` few when given: what a sidebar polls)."""
        if newest is not None:  # what the sidebar polls every few seconds: read again only after a change
            rows = self.project.db.cached(f"rounds:{int(newest)}",
                                          lambda con: rounds_q.list_rounds(con, newest=int(newest)))
            return [dict(r) for r in rows]
        with self.project.db.session() as con:
            return rounds_q.list_rounds(con, newest=newest)

    def summary(self) -> dict:
        """Items, labels, classes and the round in use."""
        snap = self._snapshot()
        counts, latest = snap.counts, snap.latest
        return {"root": str(self.project.root), "items": counts.get("ok", 0),
                "unreadable": counts.get("unreadable", 0), "duplicates": counts.get("duplicate", 0),
                "labels": snap.labeled, "classes": list(snap.names.values()),
                "round": None if latest is None else {"round_id": latest["id"], "labels": latest["n_labels"],
                                                      "finished_at": latest["finished_at"],
                                                      "metrics": latest["metrics"]}}

    def is_open(self, item_id: int, *, user: str | None = None) -> bool:
        """True while the item has neither a label nor a skip (it belongs in the queue), or, for ``user``,
        while it is an overlap item awaiting their independent vote."""
        if not self._state([int(item_id)]):
            return True
        from labeling.team.review import blind_items

        return int(item_id) in blind_items(self.project, user, [int(item_id)])

    def item_id_for_uri(self, uri: str) -> int | None:
        with self.project.db.session() as con:
            return items_q.id_for_uri(con, [uri]).get(uri)

    def current_labels(self, user: str | None = None,
                       items: Sequence[int] | None = None) -> dict[int, tuple[str | None, str, str]]:
        """item_id -> (class name or None for skip, user, source) of every item with a live event, or of
        those among ``items`` (then only their events are read: a card or a neighbourhood costs the
        same at any number of labels).

        With ``user``, overlap items whose labels that person may not see yet are left out.
        """
        from labeling.team.review import blind_items

        blind = blind_items(self.project, user, items)
        names, state = self._names(), self._state(items)
        return {int(r.item_id): (names.get(r.class_id) if r.kind == "label" else None, r.user_name, r.source)
                for r in state if int(r.item_id) not in blind}

    def _graph(self) -> tuple[np.ndarray, np.ndarray, dict[int, int], np.ndarray]:
        """The kNN graph of the active vectors: (sims, rows, item_id -> row, row -> item_id).

        Cached on the project, keyed by the vector version (not the backbone): items embedded after
        the service opened get their neighbours on the next call.
        """
        from labeling.embed.pipeline import knn_graph_cached, load_vectors, vector_version

        def build():
            pv = load_vectors(self.project)
            graph = knn_graph_cached(self.project, pv)
            rows = {int(i): r for r, i in enumerate(pv.item_ids.tolist())}
            return graph.sims, graph.idx, rows, pv.item_ids

        return self.project.caches.get("neighbour_view", vector_version(self.project) or "", build)

    def item_card(self, item_id: int, *, user: str | None = None) -> ItemCard:
        """Everything the label page shows about one item."""
        with self.project.db.session() as con:
            info = items_q.items_by_ids(con, [item_id]).get(int(item_id))
        names = self._names()
        if info is None:
            raise LookupError(f"no item {item_id}")
        extra: dict = {}
        got = self.predictions()
        if got is not None:
            rnd, p = got
            row = p.row_of().get(int(item_id))
            if row is not None:
                extra["round_id"] = rnd["id"]
                if p.pseudo[row] >= 0:
                    extra["pseudo_label"] = names.get(int(p.pseudo[row]))
                    extra["confidence"] = float(p.confidence[row])
                elif p.suggestions is not None and self._hints_shown(rnd["id"], p, row):
                    extra["hint"] = (str(p.suggestions[row]), float(p.confidence[row]))
                extra["scores"] = {k: float(v[row]) for k, v in p.scores.items()}
                extra["top"] = [(names.get(int(c), str(c)), float(pr)) for c, pr in zip(p.top_idx[row], p.top_p[row])
                                if c >= 0]
                covered = {f"model:{m}" for m, t in zip(p.model_names, p.model_top[:, row] if p.model_names else [])
                           if t >= 0}  # an imported model that predicted nothing here has no vote to show
                extra["votes"] = [(m, names.get(int(v), str(v))) for m, v in zip(p.member_names, p.votes[:, row])
                                  if not m.startswith("model:") or m in covered]
                if p.member_weights is not None:
                    extra["weights"] = [float(w) for w in p.member_weights]
                if p.model_names:
                    extra["models"] = [(m, names.get(int(t), str(t)), float(pr)) for m, t, pr in
                                       zip(p.model_names, p.model_top[:, row], p.model_p[:, row]) if t >= 0]
        current = self.current_labels(user, [int(item_id)]).get(int(item_id))
        from labeling.data.previews import card_image, inline_url  # the image library only where an image is shown

        path = str(self.project.resolve_uri(info["uri"]))
        shown = card_image(self.project.data_dir, path)
        return ItemCard(int(item_id), info["uri"], path, info["width"], info["height"],
                        current=None if current is None else CurrentLabel(*current), image=shown.path,
                        image_format=shown.format, image_url=inline_url(shown), image_problem=shown.problem,
                        **extra)

    def prepare_images(self, item_ids: Callable[[], Sequence[int]]) -> None:
        """Make, in the background, the previews of the items ``item_ids()`` names (the next cards)."""
        if self._previews is None:
            from labeling.data.previews import Prefetcher

            self._previews = Prefetcher(self.project.data_dir)
        resolve = self.project.resolve_uri

        def paths() -> list[str]:
            ids = [int(i) for i in item_ids()]
            with self.project.db.session() as con:
                info = items_q.items_by_ids(con, ids)
            return [str(resolve(info[i]["uri"])) for i in ids if i in info]
        self._previews.submit(paths)

    def _hints_shown(self, round_id: int, p: RoundPredictions, row: int) -> bool:
        """Whether this item's ImageNet guess is meaningful enough to show (:mod:`labeling.active.coldstart`)."""
        from labeling.active.coldstart import HINT_MIN_CONFIDENCE, hints_are_meaningful

        ok = self.project.caches.get("hints_meaningful", round_id,
                                     lambda: hints_are_meaningful(p.suggestions, p.confidence))
        return bool(ok) and float(p.confidence[row]) >= HINT_MIN_CONFIDENCE

    def neighbours(self, item_id: int, *, k: int = 12, user: str | None = None) -> list[Neighbour]:
        """The k nearest items (cosine similarity) with their human label or pseudo-label.

        Reads only these items' events and rows, so its cost does not grow with the project's labels.
        """
        sims, idx, rows, ids = self._graph()
        row = rows.get(int(item_id))
        if row is None:
            return []
        keep = [(int(ids[j]), float(s)) for j, s in zip(idx[row], sims[row]) if j >= 0][:k]
        got = self.predictions()
        current = self.current_labels(user, [n for n, _ in keep])
        names = self._names()
        with self.project.db.session() as con:
            info = items_q.items_by_ids(con, [n for n, _ in keep])
        pseudo = {}
        if got is not None:
            p = got[1]
            prow = p.row_of()
            for nid, _ in keep:
                r = prow.get(nid)
                if r is not None and p.pseudo[r] >= 0:
                    pseudo[nid] = (names.get(int(p.pseudo[r])), float(p.confidence[r]))
        return [Neighbour(nid, info[nid]["uri"], sim, str(self.project.thumb_path(info[nid]["sha256"])),
                          current.get(nid, (None,))[0], *pseudo.get(nid, (None, None))) for nid, sim in keep]

    def neighbourhood_candidates(self, item_id: int, label: str, *, k: int = 12, min_similarity: float = 0.8,
                                 user: str | None = None) -> list[int]:
        """Unlabeled neighbours above ``min_similarity`` whose suggestion is ``label``."""
        return matching_neighbours(self.neighbours(item_id, k=k, user=user), label, min_similarity)

    def accept_neighbourhood(self, item_id: int, label: str, *, user: str, k: int = 12,
                             min_similarity: float = 0.8, model_round: int | None = None) -> tuple[str, list[int]]:
        """Label the item and its matching neighbours as one batch; returns (batch id, item ids)."""
        items = [int(item_id)] + self.neighbourhood_candidates(item_id, label, k=k, min_similarity=min_similarity,
                                                               user=user)
        batch = self.label(items, label, user=user, source="accept_neighbourhood", model_round=model_round)
        return batch, items

    def grid(self, label: str, *, n: int = 36, user: str | None = None) -> list[GridCell]:
        """Up to ``n`` unlabeled items suggested as ``label``, most confident first (with ``user``, the
        overlap items still open to that person count as unlabeled)."""
        got = self.predictions()
        if got is None:
            return []
        rnd, p = got
        by_name = {v: k for k, v in self.class_names().items()}
        if label not in by_name:
            raise UnknownClass(f"unknown class {label!r}")
        done = set(self.current_labels(user))
        rows = np.flatnonzero(p.pseudo == by_name[label])
        rows = rows[np.argsort(-p.confidence[rows], kind="stable")]
        picked = [int(r) for r in rows if int(p.item_ids[r]) not in done][:n]
        with self.project.db.session() as con:
            info = items_q.items_by_ids(con, [int(p.item_ids[r]) for r in picked])
        return [GridCell(int(p.item_ids[r]), info[int(p.item_ids[r])]["uri"],
                         str(self.project.thumb_path(info[int(p.item_ids[r])]["sha256"])), float(p.confidence[r]))
                for r in picked]

    def accept_grid(self, item_ids: Sequence[int], misfits: Sequence[int], label: str, *, user: str,
                    model_round: int | None = None) -> str | None:
        """Accept every shown item except the misfits as one batch; misfits stay in the queue."""
        keep = [int(i) for i in item_ids if int(i) not in set(int(m) for m in misfits)]
        if not keep:
            return None
        return self.label(keep, label, user=user, source="grid", model_round=model_round)

    # ---- writing -------------------------------------------------------------------------
    def label(
        self,
        item_ids: Sequence[int],
        label: str | None,
        *,
        user: str,
        source: str = "manual",
        create_class: bool = True,
        model_round: int | None = None,
        role: str = "annotator",
        times: Sequence | None = None,
    ) -> str:
        """Give every item ``label`` (None: skip/unsure) as one batch; returns the batch id.

        The events are committed before this returns: an acknowledged label is durable. Writing an
        ``adjudication`` needs the reviewer role (``role`` is the acting session's). ``times`` (one per
        item, UTC without zone, None for now) keeps when imported labels were made.
        """
        if not user or not user.strip():
            raise ValueError("a user name is required")
        if source == "adjudication":
            require(Identity(user, role), "reviewer", "adjudicate")
        batch_id = str(uuid.uuid4())
        with self.project.db.session() as con:
            known = items_q.items_by_ids(con, item_ids)
            missing = [i for i in item_ids if int(i) not in known or known[int(i)]["status"] != "ok"]
            if missing:
                raise LookupError(f"unknown or unreadable item ids: {missing[:10]}")
            class_id = None
            if label is not None:
                existing = {n: i for i, n in labels_q.classes(con)}
                if label not in existing and not create_class:
                    raise UnknownClass(f"unknown class {label!r}; known: {sorted(existing)}")
                class_id = labels_q.ensure_classes(con, [label], user=user)[label]
            kind = "label" if class_id is not None else "skip"
            when = list(times) if times is not None else [None] * len(item_ids)
            events = [labels_q.Event(int(i), class_id, kind, t) for i, t in zip(item_ids, when)]
            labels_q.append_events(con, events, user=user, source=source, batch_id=batch_id, model_round=model_round)
        return batch_id

    def batch_owners(self, batch_id: str) -> set[str]:
        """Who wrote the events of a batch (empty for an unknown batch)."""
        with self.project.db.session() as con:
            return labels_q.batch_owners(con, batch_id)

    def undo(self, batch_id: str | None = None, *, user: str, role: str = "annotator") -> list[int]:
        """Undo a batch (default: the user's newest live batch); returns the items it touched.

        Undoing someone else's batch needs the reviewer role (``role`` is the acting session's, from
        :mod:`labeling.team.auth`; the command line acts with the project owner's rights).
        """
        with self.project.db.session() as con:
            target = batch_id or labels_q.last_live_batch(con, user=user)
            if target is None:
                raise labels_q.UnknownBatch("nothing to undo")
            owners = labels_q.batch_owners(con, target)
            if owners - {user}:
                require(Identity(user, role), "reviewer",
                        f"undo a batch by {', '.join(sorted(owners))} (annotators undo only their own batches)")
            return labels_q.undo_batch(con, target, user=user, undo_batch_id=str(uuid.uuid4()))

    def label_table(self, rows: Sequence[dict], *, user: str, source: str = "manual") -> dict:
        """Apply rows with ``uri`` or ``item_id`` and ``label``; one batch per label value.

        A label that cannot be a class name (:func:`storage.labels.check_class_name`) refuses the
        whole table with :class:`storage.labels.InvalidName` before anything is written."""
        by_uri, problems = table_targets(rows)
        with self.project.db.session() as con:
            ids_for = items_q.id_for_uri(con, [t[1] for t in by_uri if t[1]])
        groups: dict[str | None, list[tuple[int, object]]] = {}
        for item_id, uri, label, k, when in by_uri:
            if item_id is None:
                item_id = ids_for.get(uri)
                if item_id is None:
                    problems.append(f"line {k}: no item with uri {uri!r}")
                    continue
            label = None if label in (None, "") else str(label).strip()
            groups.setdefault(label, []).append((item_id, when))
        written = 0
        for label, pairs in groups.items():
            ids = [i for i, _ in pairs]
            try:
                self.label(ids, label, user=user, source=source, times=[t for _, t in pairs])
                written += len(ids)
            except LookupError as exc:
                problems.append(str(exc))
        return {"labeled": written, "problems": problems}

    # ---- team review -----------------------------------------------------------------------
    def adjudicate(self, item_ids: Sequence[int], label: str | None, *, user: str, role: str) -> str:
        """Settle items (a conflict, a suspected error or an audit) with a reviewer's decision; one batch.

        The adjudication overrides every vote on those items until it is undone.
        """
        got = self.predictions()
        return self.label(item_ids, label, user=user, source="adjudication", role=role,
                          model_round=None if got is None else got[0]["id"])

    def set_overlap(self, fraction: float, votes: int = 2, *, role: str) -> None:
        """Send ``fraction`` of the items to ``votes`` people each (admins only)."""
        from labeling.team.review import set_overlap

        require(Identity("this session", role), "admin", "change the overlap setting")
        set_overlap(self.project, fraction, votes)

    def history(self, item_id: int, *, user: str | None = None) -> list[dict]:
        """Every event on one item (who, when, source, the round they saw, undone or not).

        With ``user``, an overlap item awaiting their vote shows only their own events.
        """
        from labeling.team.review import blind_items, history

        events = history(self.project, item_id)
        if int(item_id) in blind_items(self.project, user, [int(item_id)]):
            events = [e for e in events if e["user"] == user]
        return events

    def batches(self, *, limit: int = 200, user: str | None = None) -> list[dict]:
        """The newest label batches, live or undone."""
        with self.project.db.session() as con:
            return labels_q.recent_batches(con, limit=limit, user=user)
