"""What the Model page shows: round history, cross-validated quality on human labels, calibration,
and auto-accepting confident pseudo-labels as one undoable batch.

Every figure comes from stored rounds: the metrics row of each round and the held-out predictions
on human labels saved with the round (``RoundPredictions.cv``), so nothing here retrains.
"""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from labeling.team import autoaccept
from labeling.team.autoaccept import Candidate
from labeling.model.rounds import RoundPredictions
from labeling.service import LabelingService
from storage import items as items_q
from storage import labels as labels_q

HISTORY_COLUMNS = ("id", "status", "labels", "cv_accuracy", "ece", "seconds", "finished", "error")
PER_CLASS_COLUMNS = ("class_id", "class", "support", "predicted", "precision", "recall")
RELIABILITY_COLUMNS = ("bin", "lower", "upper", "confidence", "accuracy", "count")
THRESHOLD_COLUMNS = ("class_id", "class", "threshold", "precision", "support", "candidates")


class Accepted(NamedTuple):
    """The outcome of ``accept_batch``."""

    batch_id: str
    item_ids: list[int]
    """Items written in the batch."""
    skipped: list[int]
    """Items left out: decided by a person after the preview, or their class is gone."""


@dataclass(frozen=True)
class AutoAcceptPlan:
    """What auto-accept would do with the newest round at one target precision."""

    round_id: int
    target_precision: float
    thresholds: pd.DataFrame
    """One row per class: ``THRESHOLD_COLUMNS``; threshold and precision are NaN where none qualifies."""
    candidates: list[Candidate]
    """Unlabeled items that clear their class threshold, most confident first."""
    estimated_precision: float | None
    """Candidate-weighted precision measured on held-out human labels (None without candidates)."""
    class_names: dict[int, str]


def _first_line(text: str | None) -> str:
    return "" if not text else text.strip().splitlines()[0]


def round_history(service: LabelingService) -> pd.DataFrame:
    """Every round, oldest first.

    Returns
    -------
    DataFrame with ``HISTORY_COLUMNS``: id, status (running / finished / failed / discarded),
    labels used, cross-validated accuracy and expected calibration error (NaN when not measured),
    training seconds, finish time, and the first line of the error of a failed round.
    """
    rows = []
    for r in service.rounds():
        m = r["metrics"]
        rows.append({"id": int(r["id"]), "status": r["status"], "labels": int(r["n_labels"] or 0),
                     "cv_accuracy": m.get("cv_accuracy"), "ece": m.get("ece"), "seconds": m.get("seconds"),
                     "finished": r["finished_at"], "error": _first_line(r["error"])})
    out = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    for col in ("cv_accuracy", "ece", "seconds"):
        out[col] = pd.to_numeric(out[col], errors="coerce").astype(float)
    return out


def failed_after_current(service: LabelingService) -> dict | None:
    """The newest round if it failed after the round in use finished, else None.

    Returns
    -------
    dict with ``id``, ``error`` (first line) and ``in_use`` (id of the round still in use, or None).
    """
    rounds = [r for r in service.rounds() if r["status"] in ("finished", "failed")]
    if not rounds or rounds[-1]["status"] != "failed":
        return None
    finished = [r["id"] for r in rounds if r["status"] == "finished"]
    return {"id": int(rounds[-1]["id"]), "error": _first_line(rounds[-1]["error"]),
            "in_use": int(finished[-1]) if finished else None}


def _cv(service: LabelingService) -> tuple[dict, RoundPredictions] | None:
    """The newest round with its predictions, when it stored held-out outputs."""
    got = service.predictions()
    if got is None or len(got[1].cv.get("item_ids", ())) == 0:
        return None
    return got


def _names(pred: RoundPredictions) -> dict[int, str]:
    return {int(c): n for c, n in zip(pred.class_ids.tolist(), pred.class_names)}


def per_class_report(service: LabelingService) -> pd.DataFrame:
    """Per-class precision and recall of the newest round, cross-validated on human labels.

    Returns
    -------
    DataFrame with ``PER_CLASS_COLUMNS``, one row per class that is labeled or predicted among the
    held-out items, ordered by class id: support (held-out items of the class), predicted (held-out
    items predicted as it), precision = correct / predicted and recall = correct / support (NaN where
    the denominator is 0). Empty when the round has no cross-validation.
    """
    got = _cv(service)
    if got is None:
        return pd.DataFrame(columns=list(PER_CLASS_COLUMNS))
    pred = got[1]
    names = _names(pred)
    true, guess = pred.cv["true"], pred.cv["predicted"]
    rows = []
    for c in np.union1d(true, guess).tolist():
        support = int((true == c).sum())
        predicted = int((guess == c).sum())
        hits = int(((true == c) & (guess == c)).sum())
        rows.append({"class_id": int(c), "class": names.get(int(c), str(c)), "support": support,
                     "predicted": predicted, "precision": hits / predicted if predicted else np.nan,
                     "recall": hits / support if support else np.nan})
    return pd.DataFrame(rows, columns=list(PER_CLASS_COLUMNS))


def reliability(service: LabelingService, *, n_bins: int = 10) -> pd.DataFrame:
    """Reliability diagram data of the newest round: held-out accuracy per confidence bin.

    Parameters
    ----------
    n_bins : int >= 1
        Equal-width bins over [0, 1]; confidence 1 falls in the last one.

    Returns
    -------
    DataFrame with ``RELIABILITY_COLUMNS``, non-empty bins only: bin index, bin edges, mean
    confidence, accuracy and count. Empty when the round has no cross-validation.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1; got {n_bins}")
    got = _cv(service)
    if got is None:
        return pd.DataFrame(columns=list(RELIABILITY_COLUMNS))
    cv = got[1].cv
    conf = cv["confidence"].astype(np.float64)
    correct = cv["predicted"] == cv["true"]
    bins = np.minimum((conf * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in np.unique(bins).tolist():
        sel = bins == b
        rows.append({"bin": int(b), "lower": b / n_bins, "upper": (b + 1) / n_bins,
                     "confidence": float(conf[sel].mean()), "accuracy": float(correct[sel].mean()),
                     "count": int(sel.sum())})
    return pd.DataFrame(rows, columns=list(RELIABILITY_COLUMNS))


def _decided_items(service: LabelingService) -> set[int]:
    """Items with a live human decision (a label or a skip)."""
    with service.project.db.session() as con:
        return {int(r.item_id) for r in labels_q.current_state(con)}


def auto_accept_plan(
    service: LabelingService,
    *,
    target_precision: float = 0.95,
    min_support: int = 5,
    z: float = 0.0,
) -> AutoAcceptPlan | None:
    """Per-class thresholds for ``target_precision`` and the items they would accept.

    Thresholds come from ``autoaccept.class_thresholds`` on the newest round's held-out outputs
    (empirical precision by default, the Wilson lower bound for ``z > 0``); candidates are the
    round's pseudo-labels of items without a human decision.

    Returns
    -------
    AutoAcceptPlan, or None when the newest round has no cross-validated outputs.
    """
    got = _cv(service)
    if got is None:
        return None
    rnd, pred = got
    cv = pred.cv
    names = _names(pred)
    per_class = autoaccept.class_thresholds(
        cv["confidence"], cv["predicted"], cv["predicted"] == cv["true"], target_precision=target_precision,
        min_support=min_support, z=z, classes=pred.class_ids.tolist())
    candidates = autoaccept.preview(pred, {c: t.threshold for c, t in per_class.items()},
                                    exclude_item_ids=_decided_items(service))
    counts: dict[int, int] = {}
    for cand in candidates:
        counts[cand.class_id] = counts.get(cand.class_id, 0) + 1
    table = pd.DataFrame(
        [{"class_id": c, "class": names.get(c, str(c)),
          "threshold": np.nan if t.threshold is None else t.threshold,
          "precision": np.nan if t.precision is None else t.precision,
          "support": t.support, "candidates": counts.get(c, 0)} for c, t in per_class.items()],
        columns=list(THRESHOLD_COLUMNS))
    estimate = autoaccept.estimated_precision(candidates, {c: t.precision for c, t in per_class.items()})
    return AutoAcceptPlan(int(rnd["id"]), float(target_precision), table, candidates, estimate, names)


def audit(
    service: LabelingService,
    plan: AutoAcceptPlan,
    *,
    n: int = 12,
    seed: int = 0,
) -> list[dict]:
    """A random sample of the plan's candidates for a person to check before accepting.

    The sample depends only on the candidates, ``n`` and ``seed``, so it stays put across reruns.

    Returns
    -------
    list of dict with item_id, class (name), confidence and image (thumbnail path, or the image
    itself when no thumbnail was made).
    """
    sample = autoaccept.audit_sample(plan.candidates, n=n, rng=np.random.default_rng(seed))
    with service.project.db.session() as con:
        info = items_q.items_by_ids(con, [c.item_id for c in sample])
    out = []
    for cand in sample:
        item = info[cand.item_id]
        thumb = service.project.thumb_path(item["sha256"]) if item["sha256"] else None
        image = thumb if thumb is not None and thumb.exists() else service.project.resolve_uri(item["uri"])
        out.append({"item_id": cand.item_id, "class": plan.class_names.get(cand.class_id, str(cand.class_id)),
                    "confidence": cand.confidence, "image": str(image)})
    return out


def accept_batch(
    service: LabelingService,
    items: Sequence[Candidate],
    *,
    user: str,
    model_round: int | None = None,
) -> Accepted:
    """Write the candidates' pseudo-labels as ONE batch with source ``auto_accept``.

    Each event carries its own class, so one batch holds several classes and
    ``service.undo(batch_id, user=...)`` revokes all of it. Items that got a human decision after
    the preview was made (a person's decision outranks a pseudo-label), or whose class has since
    been merged away, are left out and listed in ``Accepted.skipped``.

    Raises
    ------
    ValueError
        If ``user`` is empty or nothing is left to write.
    """
    if not user or not user.strip():
        raise ValueError("a user name is required")
    batch_id = str(uuid.uuid4())
    with service.project.db.session() as con:
        decided = {int(r.item_id) for r in labels_q.current_state(con)}
        active = {c for c, _ in labels_q.classes(con)}
        keep = [c for c in items if int(c.item_id) not in decided and int(c.class_id) in active]
        if not keep:
            raise ValueError("nothing to accept: every item was decided or its class is gone")
        labels_q.append_events(con, [labels_q.Event(int(c.item_id), int(c.class_id)) for c in keep],
                               user=user, source="auto_accept", batch_id=batch_id, model_round=model_round)
    written = [int(c.item_id) for c in keep]
    return Accepted(batch_id, written, sorted(set(int(c.item_id) for c in items) - set(written)))
