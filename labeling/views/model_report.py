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

from labeling.team import autoaccept, sampling
from labeling.team.autoaccept import Candidate
from labeling.model.round_files import RoundPredictions, cv_file, load_predictions
from labeling.service import LabelingService
from storage import items as items_q
from storage import labels as labels_q

HISTORY_COLUMNS = ("id", "status", "labels", "cv_accuracy", "ece", "seconds", "finished", "error")
PER_CLASS_COLUMNS = ("class_id", "class", "support", "predicted", "precision", "recall")
RELIABILITY_COLUMNS = ("bin", "lower", "upper", "confidence", "accuracy", "count")
THRESHOLD_COLUMNS = ("class_id", "class", "threshold", "held_out", "support", "precision", "lower", "upper",
                     "candidates", "note")


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
    """One row per class: ``THRESHOLD_COLUMNS``: its threshold (NaN: accepts nothing, ``note`` says why),
    held-out items predicted as it, those above the threshold (support) and their precision with its
    Clopper-Pearson interval (lower, upper), and the unlabeled candidates it would accept."""
    candidates: list[Candidate]
    """Unlabeled items that clear their class threshold, most confident first."""
    bound: float | None
    """One-sided lower confidence bound on the precision of what is accepted, from the held-out human
    labels above the thresholds (None when no class has a threshold): the figure to show."""
    interval: tuple[float, float] | None
    """The bound and its upper counterpart: the two-sided ``2 * confidence - 1`` interval."""
    support: int
    """Held-out human labels above the thresholds: what the bound rests on."""
    held_out: int
    """All held-out human labels of the round."""
    confidence: float
    """Confidence level of the bound (0.95: one-sided 95 %)."""
    class_names: dict[int, str]

    @property
    def estimated_precision(self) -> float | None:
        """The honest estimate: the lower bound (None without candidates)."""
        return self.bound if self.candidates else None

    def to_text(self) -> str:
        """The plan as the command line prints it: the bound, what it rests on, one line per class."""
        lines = [f"round {self.round_id}: target {self.target_precision:.1%}, {len(self.candidates)} candidates"]
        if self.bound is None:
            lines.append(f"  no class reaches the target with {self.held_out} held-out labels: nothing to accept")
        else:
            lo, hi = self.interval
            lines.append(f"  precision at least {lo:.1%} ({self.confidence:.0%} lower bound; interval {lo:.1%}-{hi:.1%}) "
                         f"on {self.support} of {self.held_out} held-out labels")
        lines.append(f"  {'class':<20}{'threshold':>10}{'held-out':>9}{'above':>7}{'bound':>8}{'accept':>8}  note")
        for r in self.to_dict()["classes"]:
            t = "-" if r["threshold"] is None else f"{r['threshold']:.3f}"
            b = "-" if r["lower"] is None else f"{r['lower']:.1%}"
            lines.append(f"  {str(r['class'])[:19]:<20}{t:>10}{r['held_out']:>9}{r['support']:>7}{b:>8}"
                         f"{r['candidates']:>8}  {r['note']}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Plain data for ``--format json``: the rule, its evidence and every candidate."""
        classes = []
        for row in self.thresholds.to_dict("records"):
            classes.append({k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()})
        return {"round_id": self.round_id, "target_precision": self.target_precision, "confidence": self.confidence,
                "bound": self.bound, "interval": None if self.interval is None else list(self.interval),
                "support": self.support, "held_out": self.held_out, "classes": classes,
                "candidates": [{"item_id": c.item_id, "class_id": c.class_id,
                                "class": self.class_names.get(c.class_id, str(c.class_id)),
                                "confidence": c.confidence, "calibrated": c.calibrated} for c in self.candidates]}


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


CV_LOOKBACK = 20
"""How many of the newest rounds auto-accept looks through for one with held-out outputs."""


def _cv(service: LabelingService) -> tuple[dict, RoundPredictions] | None:
    """The newest round with its predictions, when it stored held-out outputs."""
    got = service.predictions()
    if got is None or len(got[1].cv.get("item_ids", ())) == 0:
        return None
    return got


def cross_validated_round(service: LabelingService) -> tuple[dict, RoundPredictions] | None:
    """The newest round that stored held-out outputs, with its predictions: what auto-accept uses.

    A round's cross-validation is stored after its predictions, and skipped when a newer round comes
    first; while people label, the newest round is often still without it. Auto-accept then uses
    the newest round that has it (its thresholds and suggestions come from the same model), rather
    than saying nothing until the labeling stops.
    """
    got = service.predictions()
    if got is None:
        return None
    if len(got[1].cv.get("item_ids", ())):
        return got
    for rnd in reversed(service.rounds(newest=CV_LOOKBACK)):
        if rnd["status"] != "finished" or rnd["id"] == got[0]["id"] or not rnd.get("predictions_file"):
            continue
        path = service.project.data_dir / "rounds" / rnd["predictions_file"]
        if cv_file(path).is_file():
            pred = load_predictions(path)
            if len(pred.cv.get("item_ids", ())):
                return rnd, pred
    return None


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
    min_support: int = autoaccept.MIN_CLASS_HELD_OUT,
    confidence: float = autoaccept.DEFAULT_CONFIDENCE,
) -> AutoAcceptPlan | None:
    """Per-class thresholds for ``target_precision`` and the items they would accept: the one engine
    function behind the Model page and ``python -m labeling auto-accept``.

    Thresholds come from ``autoaccept.select_thresholds`` on the newest round's held-out outputs: the
    one-sided Clopper-Pearson lower bound at ``confidence`` on the held-out precision of everything
    accepted reaches the target, and a class with fewer than ``min_support`` held-out items gets no
    threshold. Candidates are the round's pseudo-labels of items without a human decision, with their
    confidence calibrated (isotonic) on the held-out outputs.

    Returns
    -------
    AutoAcceptPlan, or None when the newest round has no cross-validated outputs.

    Raises
    ------
    ValueError
        If the target or the confidence is out of range.
    """
    got = cross_validated_round(service)
    if got is None:
        return None
    rnd, pred = got
    cv = pred.cv
    names = _names(pred)
    rule = autoaccept.select_thresholds(cv["confidence"], cv["predicted"], cv["predicted"] == cv["true"],
                                        target=target_precision, confidence_level=confidence,
                                        min_held_out=min_support, classes=pred.class_ids.tolist())
    candidates = autoaccept.preview(pred, rule.thresholds(), exclude_item_ids=_decided_items(service),
                                    calibrator=rule.calibrator)
    counts: dict[int, int] = {}
    for cand in candidates:
        counts[cand.class_id] = counts.get(cand.class_id, 0) + 1
    nan = float("nan")
    table = pd.DataFrame(
        [{"class_id": c, "class": names.get(c, str(c)), "threshold": nan if r.threshold is None else r.threshold,
          "held_out": r.held_out, "support": r.support, "precision": nan if r.precision is None else r.precision,
          "lower": nan if r.lower is None else r.lower, "upper": nan if r.upper is None else r.upper,
          "candidates": counts.get(c, 0), "note": r.reason} for c, r in rule.classes.items()],
        columns=list(THRESHOLD_COLUMNS))
    interval = None if rule.lower is None else (float(rule.lower), float(rule.upper))
    return AutoAcceptPlan(int(rnd["id"]), float(target_precision), table, candidates, rule.lower, interval,
                          rule.support, rule.held_out, float(confidence), names)


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
    list of dict with item_id, class (name), confidence, calibrated (the confidence calibrated on
    held-out labels, or None) and image (thumbnail path, or the image itself when no thumbnail was made).
    """
    sample = sampling.audit_sample(plan.candidates, n=n, rng=np.random.default_rng(seed))
    return candidate_cards(service, sample, plan.class_names)


def candidate_cards(service: LabelingService, candidates: Sequence[Candidate], class_names: dict[int, str]) -> list[dict]:
    """What a person needs to check proposals: item_id, class (name), confidence, calibrated (or
    None) and image (thumbnail path, or the image itself when no thumbnail was made), in order."""
    with service.project.db.session() as con:
        info = items_q.items_by_ids(con, [c.item_id for c in candidates])
    out = []
    for cand in candidates:
        item = info[cand.item_id]
        thumb = service.project.thumb_path(item["sha256"]) if item["sha256"] else None
        image = thumb if thumb is not None and thumb.exists() else service.project.resolve_uri(item["uri"])
        out.append({"item_id": cand.item_id, "class": class_names.get(cand.class_id, str(cand.class_id)),
                    "confidence": cand.confidence, "calibrated": cand.calibrated, "image": str(image)})
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
