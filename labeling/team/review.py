"""Team review: overlap, disagreements, suspected label errors, audits of bulk batches, adjudication, history.

Everything here reads the event log through ``storage`` and the newest round's predictions; pages call it
through :class:`labeling.service.LabelingService` or directly, and tests call it without Streamlit.

Overlap
    A project setting sends a fraction of the items to ``votes`` (default 2) different people. Which items
    is decided by a salted hash of the item id, so every session agrees without coordination. Until an
    overlap item has its ``votes`` votes, a person who has not voted on it does not see the others' labels
    (the item stays in their queue, first), and the round does not train on it, so the suggestion shown to
    the second person is not the first person's label played back by the model.

Suspected label errors
    A human label is suspect when a confident ensemble and the item's neighbours both contradict it, in the
    manner of confident learning (Northcutt et al.) and leave-one-out kNN: the round's cross-validated
    prediction (held-out, so it never saw the item's own label) names another class with at least that
    class's typical confidence, and the neighbours' vote, leaving the item out, goes mostly elsewhere.

Audits
    Each bulk or automatic batch (neighbourhood, grid, lasso, auto-accept, import), and each person's labels
    given one by one (manual, accepted suggestion), gets a fixed random sample drawn from its items (seeded
    by the batch id). A reviewer confirms or corrects each sampled item; both
    write an ``adjudication`` event, and the share confirmed estimates the batch's, and its source's,
    precision.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from labeling.project import Project
from storage import items as items_q
from storage import labels as labels_q
from storage import rounds as rounds_q

OVERLAP_FRACTION = "overlap_fraction"
OVERLAP_VOTES = "overlap_votes"
OVERLAP_SALT = "overlap_salt"
BULK_SOURCES = ("accept_neighbourhood", "grid", "lasso", "auto_accept", "import")
SINGLE_SOURCES = ("manual", "accept_suggestion")
AUDIT_SIZE = 10


# ---- overlap ------------------------------------------------------------------------------------
def overlap_settings(project: Project, con=None) -> tuple[float, int, str]:
    """(fraction of items sent to several people, votes wanted on each, the hash salt)."""
    if con is None:  # the settings every page run reads, re-read only after a change
        settings = project.db.cached("settings", rounds_q.all_settings)
        return (float(settings.get(OVERLAP_FRACTION) or 0), int(settings.get(OVERLAP_VOTES) or 2),
                settings.get(OVERLAP_SALT) or "0")
    fraction = float(rounds_q.get_setting(con, OVERLAP_FRACTION, "0") or 0)
    votes = int(rounds_q.get_setting(con, OVERLAP_VOTES, "2") or 2)
    return fraction, votes, rounds_q.get_setting(con, OVERLAP_SALT, "0") or "0"


def set_overlap(project: Project, fraction: float, votes: int = 2) -> None:
    """Set the overlap (callers check the admin role: see ``LabelingService.set_overlap``)."""
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"overlap fraction must be between 0 and 1, got {fraction}")
    if int(votes) < 2:
        raise ValueError(f"an overlapped item needs at least 2 votes, got {votes}")
    if project.setting(OVERLAP_SALT) is None:
        project.set_setting(OVERLAP_SALT, hashlib.sha256(str(project.root).encode()).hexdigest()[:16])
    project.set_setting(OVERLAP_FRACTION, repr(float(fraction)))
    project.set_setting(OVERLAP_VOTES, str(int(votes)))


def in_overlap(item_ids: Sequence[int] | np.ndarray, fraction: float, salt: str) -> np.ndarray:
    """Boolean mask: which items belong to the overlap set (a salted hash below ``fraction``)."""
    ids = np.asarray(item_ids, dtype=np.uint64)
    if fraction <= 0 or ids.size == 0:
        return np.zeros(ids.shape, dtype=bool)
    # splitmix64 of (id ^ salt): uniform, stable across processes and versions
    with np.errstate(over="ignore"):
        z = ids ^ np.uint64(int(salt, 16) & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def overlap_state(project: Project, con=None, items: Sequence[int] | None = None) -> tuple[dict[int, set[str]], int]:
    """(item -> voters for every voted item in the overlap set, votes wanted); empty without overlap.
    With ``items``, only those items are looked at."""
    if con is None:
        fraction, votes, _ = overlap_settings(project)
        if fraction <= 0:  # no overlap (the usual case): no transaction at all
            return {}, int(votes)
        with project.db.session() as c:
            return overlap_state(project, c, items)
    fraction, votes, salt = overlap_settings(project, con)
    if fraction <= 0:
        return {}, votes
    voted = labels_q.voters(con, items)
    if not voted:
        return {}, votes
    ids = np.fromiter(voted, dtype=np.int64, count=len(voted))
    mask = in_overlap(ids, fraction, salt)
    return {int(i): voted[int(i)] for i in ids[mask]}, votes


def pending_overlap(project: Project, con=None) -> set[int]:
    """Overlap items that have votes but fewer than wanted: not trained on yet."""
    state, votes = overlap_state(project, con)
    return {i for i, who in state.items() if len(who) < votes}


def blind_items(project: Project, user: str | None, items: Sequence[int] | None = None) -> set[int]:
    """Items whose labels ``user`` must not see yet: pending overlap items they have not voted on
    (among ``items`` when given: a view of a few items need not read every vote)."""
    if user is None:
        return set()
    state, votes = overlap_state(project, items=items)
    return {i for i, who in state.items() if len(who) < votes and user not in who}


# ---- disagreements ------------------------------------------------------------------------------
def _vote_entropy(counts: Sequence[int]) -> float:
    total = sum(counts)
    return -sum(c / total * math.log(c / total) for c in counts if c) if total else 0.0


def disagreements(project: Project, *, include_settled: bool = False, limit: int = 500) -> list[dict]:
    """Items where people's label votes differ, most contested first; settled ones only if asked.

    Each entry: item_id, uri, votes [(user, class, source)], tally {class: n}, current (class), settled_by,
    entropy.
    """
    with project.db.session() as con:
        votes = labels_q.votes(con)
        settled = {int(r.item_id): r for r in labels_q.adjudications(con)}
        names = dict(labels_q.classes(con))
        current = {int(r.item_id): r for r in labels_q.current_state(con)}
    by_item: dict[int, list[labels_q.Vote]] = {}
    for v in votes:
        by_item.setdefault(int(v.item_id), []).append(v)
    out = []
    for item, vs in by_item.items():
        tally = Counter(names.get(v.class_id, str(v.class_id)) for v in vs)
        if len(tally) < 2 or (item in settled and not include_settled):
            continue
        cur = current.get(item)
        out.append({"item_id": item, "votes": [(v.user_name, names.get(v.class_id, str(v.class_id)), v.source)
                                               for v in vs],
                    "tally": dict(tally), "entropy": _vote_entropy(list(tally.values())),
                    "current": names.get(cur.class_id) if cur is not None and cur.kind == "label" else None,
                    "settled_by": settled[item].user_name if item in settled else None})
    out.sort(key=lambda d: (-d["entropy"], -len(d["votes"]), d["item_id"]))
    out = out[:limit]
    attach_uris(project, out)
    return out


def attach_uris(project: Project, rows: list[dict]) -> None:
    with project.db.session() as con:
        info = items_q.items_by_ids(con, [r["item_id"] for r in rows])
    for r in rows:
        meta = info.get(r["item_id"], {})
        r["uri"] = meta.get("uri")
        r["thumb"] = str(project.thumb_path(meta["sha256"])) if meta.get("sha256") else None
        r["image"] = str(project.resolve_uri(meta["uri"])) if meta.get("uri") else None  # the full image


# ---- suspected label errors ---------------------------------------------------------------------
def _label_vector(state: dict, rows: dict, n: int, class_ids: list) -> np.ndarray:
    """Each graph row's label column (-1 where unlabeled or the class is unknown)."""
    col = {c: k for k, c in enumerate(class_ids)}
    labels = np.full(n, -1, dtype=np.int64)
    for item, r in state.items():
        row = rows.get(item)
        if row is not None and r.class_id in col:
            labels[row] = col[r.class_id]
    return labels


def _ensemble_view(p, state: dict) -> dict[int, tuple[int, float]]:
    """The ensemble's view of each labeled item: held out when the round cross-validated, else in-sample."""
    pred: dict[int, tuple[int, float]] = {}
    row_of = p.row_of()
    for item in state:
        r = row_of.get(item)
        if r is not None and p.pseudo[r] >= 0:
            pred[item] = (int(p.pseudo[r]), float(p.confidence[r]))
    if p.cv and len(p.cv.get("item_ids", ())):
        for item, c, conf in zip(p.cv["item_ids"].tolist(), p.cv["predicted"].tolist(), p.cv["confidence"].tolist()):
            pred[int(item)] = (int(c), float(conf))
    return pred


def _class_thresholds(pred: dict[int, tuple[int, float]], state: dict) -> dict[int, float]:
    """Confident learning: a class's threshold is the mean confidence of predictions of it on items labeled it."""
    per_class: dict[int, list[float]] = {}
    for item, (c, conf) in pred.items():
        if state[item].class_id == c:
            per_class.setdefault(c, []).append(conf)
    return {c: float(np.mean(v)) for c, v in per_class.items()}


def _neighbour_disagreement(knn: np.ndarray, row) -> float:
    return float(knn[row]) if row is not None and not np.isnan(knn[row]) else float("nan")


def _suspect(item: int, c: int, conf: float, current: labels_q.LabelState, names: dict, threshold: float, nd: float,
             min_neighbour_disagreement: float) -> dict | None:
    """The suspected-error entry for one labeled item, or None when its label stands."""
    given = current.class_id
    if c == given:
        return None
    if conf < threshold or not nd >= min_neighbour_disagreement:
        return None
    return {"item_id": item, "label": names.get(given), "suggested": names.get(c), "confidence": conf,
            "threshold": threshold, "neighbour_disagreement": nd, "score": conf * nd,
            "labeled_by": current.user_name, "source": current.source}


SUSPECT_KEYS = ("item_id", "uri", "label", "suggested", "confidence", "threshold", "neighbour_disagreement", "score",
                "labeled_by", "source")
"""The fields of a suspected error that the command line reports."""


def format_suspects(rows: list[dict]) -> str:
    """Suspected errors as a plain-text table, most likely first."""
    lines = [f"{len(rows)} suspected label errors, most likely first",
             f"{'item_id':>8}  {'label':<16}{'suggested':<16}{'conf':>6}{'nbrs':>6}  uri"]
    lines += [f"{r['item_id']:>8}  {str(r['label'])[:15]:<16}{str(r['suggested'])[:15]:<16}{r['confidence']:>6.2f}"
              f"{r['neighbour_disagreement']:>6.2f}  {r.get('uri')}" for r in rows]
    return "\n".join(lines)


def suspected_errors(service, *, min_neighbour_disagreement: float = 0.5, limit: int | None = None) -> list[dict]:
    """Human labels contradicted by a confident held-out ensemble prediction and by the neighbours.

    ``service`` is a :class:`labeling.service.LabelingService` (for its cached round and kNN graph). Each
    entry: item_id, uri, label, suggested (the ensemble's class), confidence, threshold (that class's
    typical confidence), neighbour_disagreement, score, labeled_by, source. Most suspect first; every
    suspect unless ``limit`` (>= 0) caps them.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be non-negative; got {limit}")
    from labeling.model.propagation import loo_knn_disagreement

    got = service.predictions()
    if got is None:
        return []
    _, p = got
    project = service.project
    with project.db.session() as con:
        state = {int(r.item_id): r for r in labels_q.current_state(con) if r.kind == "label"}
        names = dict(labels_q.classes(con))
    if not state:
        return []
    sims, idx, rows, ids = service._graph()
    class_ids = sorted(names)
    labels = _label_vector(state, rows, len(ids), class_ids)
    knn = loo_knn_disagreement(sims, idx, labels, len(class_ids))
    pred = _ensemble_view(p, state)
    thresholds = _class_thresholds(pred, state)
    floor = 1.0 / max(len(class_ids), 2)
    out = []
    for item, (c, conf) in pred.items():
        entry = _suspect(item, c, conf, state[item], names, max(thresholds.get(c, 0.5), floor),
                         _neighbour_disagreement(knn, rows.get(item)), min_neighbour_disagreement)
        if entry is not None:
            out.append(entry)
    out.sort(key=lambda d: (-d["score"], d["item_id"]))
    out = out if limit is None else out[:limit]
    attach_uris(project, out)
    return out


# ---- audits of bulk and automatic batches -------------------------------------------------------
def audit_sample(item_ids: Sequence[int], batch_id: str, n: int = AUDIT_SIZE) -> list[int]:
    """A fixed random sample of a batch's items: the same for every reviewer and every visit."""
    seed = int(hashlib.sha256(batch_id.encode()).hexdigest()[:16], 16)
    items = sorted(int(i) for i in item_ids)
    rng = np.random.default_rng(seed)
    k = min(n, len(items))
    return sorted(int(items[j]) for j in rng.choice(len(items), size=k, replace=False)) if k else []


def _audit_members(batches: list[dict], rows, singles) -> dict[str, dict[int, int]]:
    """batch id -> {item: class given}; adds a group per person and single source to ``batches``."""
    members: dict[str, dict[int, int]] = {}
    for batch, item, cls in rows:
        members.setdefault(batch, {})[int(item)] = cls
    for v in singles:
        key = f"{v.source}:{v.user_name}"
        if key not in members:
            batches.append({"batch_id": key, "user": v.user_name, "source": v.source, "items": 0,
                            "created_at": v.created_at, "classes": "one by one", "undone": False})
        members.setdefault(key, {})[int(v.item_id)] = v.class_id
    for b in batches:
        if b["batch_id"] in members and ":" in b["batch_id"]:
            b["items"] = len(members[b["batch_id"]])
    return members


def _audit_entry(b: dict, given: dict[int, int], settled: dict, n: int) -> dict:
    """One batch's audit entry: its sample, and how many sampled items were checked and confirmed."""
    sample = audit_sample(list(given), b["batch_id"], n)
    checked = [i for i in sample if i in settled and settled[i].kind == "label"]
    confirmed = sum(1 for i in checked if settled[i].class_id == given[i])
    return {**b, "label": b["classes"], "sample": sample, "checked": len(checked), "confirmed": confirmed,
            "precision": confirmed / len(checked) if checked else None,
            "todo": [i for i in sample if i not in settled]}


def audits(project: Project, *, n: int = AUDIT_SIZE, limit: int = 100) -> list[dict]:
    """Every live bulk or automatic batch, and each person's one-by-one labels, with an audit sample.

    Bulk batches are audited one by one; a person's manual labels and accepted suggestions form one group
    per person and source (``batch_id`` ``"manual:alice"``), so single labels get a measured precision too.
    Each entry: batch_id, user, source, created_at, items, label, sample [item ids], checked, confirmed,
    precision (confirmed / checked, None before any check), todo [sampled items not yet checked].
    """
    with project.db.session() as con:
        batches = [b for b in labels_q.recent_batches(con, limit=10 * limit)
                   if b["source"] in BULK_SOURCES and not b["undone"]]
        settled = {int(r.item_id): r for r in labels_q.adjudications(con)}
        rows = labels_q.batch_labels(con, [b["batch_id"] for b in batches])
        singles = [v for v in labels_q.votes(con) if v.source in SINGLE_SOURCES]
    members = _audit_members(batches, rows, singles)
    return [_audit_entry(b, members.get(b["batch_id"], {}), settled, n) for b in batches[:limit]]


def source_precision(project: Project, *, n: int = AUDIT_SIZE) -> dict[str, dict]:
    """Per label source: audited items, confirmed, and the measured precision (from the audit samples)."""
    acc: dict[str, list[int]] = {}
    for a in audits(project, n=n, limit=10_000):
        c = acc.setdefault(a["source"], [0, 0])
        c[0] += a["checked"]
        c[1] += a["confirmed"]
    return {s: {"checked": c, "confirmed": k, "precision": k / c if c else None} for s, (c, k) in sorted(acc.items())}


# ---- provenance ---------------------------------------------------------------------------------
def history(project: Project, item_id: int) -> list[dict]:
    """Every event on an item, oldest first: who, when, what, how, the round they saw, and whether undone."""
    with project.db.session() as con:
        rows = labels_q.item_history(con, int(item_id))
        undone = labels_q.undone_batches_of_item(con, int(item_id))
    out = []
    for e in rows:
        out.append({"event_id": int(e.id), "when": e.created_at, "user": e.user_name, "kind": e.kind,
                    "label": e.class_name if e.kind == "label" else None, "source": e.source, "batch_id": e.batch_id,
                    "model_round": e.model_round, "revokes": e.revokes,
                    "undone": e.kind != "undo" and e.batch_id in undone})
    return out
