"""The facade the pages and the command line call: one project, its queue, labels and rounds."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from labeling.acquisition import STRATEGIES
from labeling.project import Project
from labeling.rounds import RoundPredictions, latest_predictions
from storage import items as items_q
from storage import labels as labels_q
from storage import rounds as rounds_q

LOG = logging.getLogger(__name__)

QUEUE_STRATEGIES = ("default", *sorted(set(STRATEGIES) - {"random", "most_confident"}), "most_confident", "random")


class UnknownClass(LookupError):
    """A class named that does not exist (and was not to be created)."""


@dataclass
class QueueItem:
    item_id: int
    uri: str
    pseudo_label: str | None
    confidence: float
    score: float
    top: list[tuple[str, float]]

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "uri": self.uri, "pseudo_label": self.pseudo_label,
                "confidence": round(float(self.confidence), 4), "score": round(float(self.score), 4),
                "top": [{"label": n, "p": round(float(p), 4)} for n, p in self.top]}


class LabelingService:
    """Everything a person or a script does to one project."""

    def __init__(self, root: str | Path, *, create: bool = False) -> None:
        self.project = Project(root, create=create)
        self._pred_cache: tuple[int, RoundPredictions, dict] | None = None

    # ---- reading -------------------------------------------------------------------------
    def predictions(self) -> tuple[dict, RoundPredictions] | None:
        """The newest finished round and its predictions (cached until a newer round finishes)."""
        with self.project.db.session() as con:
            rnd = rounds_q.latest_finished(con)
        if rnd is None:
            return None
        if self._pred_cache is None or self._pred_cache[0] != rnd["id"]:
            got = latest_predictions(self.project)
            if got is None:
                return None
            self._pred_cache = (rnd["id"], got[1], rnd)
        return self._pred_cache[2], self._pred_cache[1]

    def class_names(self) -> dict[int, str]:
        with self.project.db.session() as con:
            return dict(labels_q.classes(con))

    def queue(self, n: int, *, strategy: str = "default", seed: int = 0) -> list[QueueItem]:
        """The next ``n`` unlabeled items, most useful first, from the newest round."""
        if n < 1:
            raise ValueError("n must be at least 1")
        if strategy not in QUEUE_STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; valid: {', '.join(QUEUE_STRATEGIES)}")
        got = self.predictions()
        if got is None:
            raise LookupError(f"no finished round yet; run 'python -m labeling train {self.project.root}'")
        rnd, p = got
        with self.project.db.session() as con:
            done = {int(r[0]) for r in labels_q.current_state(con)}
            names = dict(labels_q.classes(con))
        score_name = {"default": None, "bald": "bald"}.get(strategy, strategy)
        if strategy == "default":
            order = p.default_order
            base = p.scores.get("margin", p.scores.get("typicality"))
        elif strategy == "random":
            order = np.random.default_rng(seed).permutation(len(p.item_ids))
            base = np.zeros(len(p.item_ids))
        elif strategy == "most_confident":
            order = np.argsort(-p.confidence, kind="stable")
            base = p.confidence
        else:
            if score_name not in p.scores:
                raise ValueError(f"round {rnd['id']} has no {strategy!r} scores (it had no labels yet)")
            base = p.scores[score_name]
            order = np.argsort(-base, kind="stable")
        picked = []
        for r in order:
            if int(p.item_ids[r]) in done:
                continue
            picked.append(int(r))
            if len(picked) == n:
                break
        with self.project.db.session() as con:
            info = items_q.items_by_ids(con, [int(p.item_ids[r]) for r in picked])
        out = []
        for r in picked:
            item_id = int(p.item_ids[r])
            top = [(names.get(int(c), str(c)), float(pr)) for c, pr in zip(p.top_idx[r], p.top_p[r]) if c >= 0]
            pseudo = names.get(int(p.pseudo[r])) if p.pseudo[r] >= 0 else None
            out.append(QueueItem(item_id, info[item_id]["uri"], pseudo, float(p.confidence[r]), float(base[r]), top))
        return out

    def rounds(self) -> list[dict]:
        with self.project.db.session() as con:
            return rounds_q.list_rounds(con)

    def summary(self) -> dict:
        with self.project.db.session() as con:
            counts = items_q.counts(con)
            n_labels = len(labels_q.current_labels(con)[0])
            classes = labels_q.classes(con)
            latest = rounds_q.latest_finished(con)
        return {"root": str(self.project.root), "items": counts.get("ok", 0),
                "unreadable": counts.get("unreadable", 0), "duplicates": counts.get("duplicate", 0),
                "labels": n_labels, "classes": [n for _, n in classes],
                "round": None if latest is None else {"id": latest["id"], "labels": latest["n_labels"],
                                                      "finished_at": str(latest["finished_at"]),
                                                      "metrics": latest["metrics"]}}

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
    ) -> str:
        """Give every item ``label`` (None: skip/unsure) as one batch; returns the batch id.

        The events are committed before this returns: an acknowledged label is durable.
        """
        if not user or not user.strip():
            raise ValueError("a user name is required")
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
            events = [labels_q.Event(int(i), class_id, kind) for i in item_ids]
            labels_q.append_events(con, events, user=user, source=source, batch_id=batch_id, model_round=model_round)
        return batch_id

    def undo(self, batch_id: str | None = None, *, user: str) -> list[int]:
        """Undo a batch (default: the user's newest live batch); returns the items it touched."""
        with self.project.db.session() as con:
            target = batch_id or labels_q.last_live_batch(con, user=user)
            if target is None:
                raise labels_q.UnknownBatch("nothing to undo")
            return labels_q.undo_batch(con, target, user=user, undo_batch_id=str(uuid.uuid4()))

    def label_table(self, rows: Sequence[dict], *, user: str, source: str = "manual") -> dict:
        """Apply rows with ``uri`` or ``item_id`` and ``label``; one batch per label value."""
        by_uri, problems = [], []
        for k, row in enumerate(rows, start=2):
            if row.get("item_id") not in (None, ""):
                try:
                    by_uri.append((int(row["item_id"]), None, row.get("label"), k))
                except ValueError:
                    problems.append(f"line {k}: item_id {row['item_id']!r} is not a number")
            elif row.get("uri"):
                by_uri.append((None, str(row["uri"]), row.get("label"), k))
            else:
                problems.append(f"line {k}: needs a uri or an item_id")
        with self.project.db.session() as con:
            ids_for = items_q.id_for_uri(con, [u for _, u, _, _ in by_uri if u])
        groups: dict[str | None, list[int]] = {}
        for item_id, uri, label, k in by_uri:
            if item_id is None:
                item_id = ids_for.get(uri)
                if item_id is None:
                    problems.append(f"line {k}: no item with uri {uri!r}")
                    continue
            label = None if label in (None, "") else str(label).strip()
            groups.setdefault(label, []).append(item_id)
        written = 0
        for label, ids in groups.items():
            try:
                self.label(ids, label, user=user, source=source)
                written += len(ids)
            except LookupError as exc:
                problems.append(str(exc))
        return {"labeled": written, "problems": problems}
