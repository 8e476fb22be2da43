"""Auto-accept certified by checking a sample: propose a batch, record a person's checks, accept.

The statistics are in ``labeling.team.certify``; this module keeps the one open certification of a
project (a JSON value in the project's settings, so every session and the command line see the same
one) and derives its progress from the labels themselves: a sampled item is *right* when its live
human label is the proposed class, *wrong* when it is another class or a skip, or when a person
said it is wrong without giving the class; otherwise it is still to check. Undoing a check's label
makes the item unchecked again. A proposal is for one round; the batch, once started, is a fixed
list of (item, class) pairs, so a newer round does not change what the checks are about.

One try per round: a sample that failed, or was cancelled, cannot be replaced by a fresh sample
of the same round's batch. Drawing again until a sample comes back flawless would pass a batch
that misses the target far more often than 5 % of the time. The checks are labels, so the next
round (seconds later, with the wrong items labeled) can be checked again.
"""
from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from labeling.service import LabelingService
from labeling.team import autoaccept, certify
from labeling.team.autoaccept import Candidate
from labeling.views import model_report
from storage import labels as labels_q
from storage import rounds as rounds_q

SETTING = "auto_accept_certification"


@dataclass(frozen=True)
class Proposal:
    """The batch a flawless check of ``audit`` random items of it would certify at ``target``."""

    round_id: int
    target: float
    batch: list[Candidate]
    """The most confident proposals, most confident first (empty: no batch worth checking)."""
    audit: int
    """Items to check (0 when the batch is empty)."""
    bound: float | None
    """The precision the rest of the batch is certified at if every check is right."""
    proposals: int
    """Every unlabeled item with a suggestion: what the batch was cut from."""
    chance: float = 0.0
    """The chance that every check is right, from the batch's calibrated confidences (an estimate)."""
    confidence: float = certify.DEFAULT_CONFIDENCE

    @property
    def accepted_if_flawless(self) -> int:
        return max(len(self.batch) - self.audit, 0)


@dataclass(frozen=True)
class Certification:
    """The open certification and where its checks stand."""

    id: str
    round_id: int
    target: float
    confidence: float
    started_by: str
    started_at: str
    batch: list[Candidate]
    sample: list[int]
    """The items to check, in the order drawn."""
    right: list[int] = field(default_factory=list)
    wrong: list[int] = field(default_factory=list)
    todo: list[int] = field(default_factory=list)
    accepted_batch: str | None = None
    """The auto-accept batch written when it was accepted."""
    closed: bool = False
    """Cancelled, or closed after it failed: its round gets no other try."""

    @property
    def state(self) -> str:
        """``checking``, ``failed`` (a check was wrong), ``certified``, ``accepted`` or ``closed``."""
        if self.accepted_batch:
            return "accepted"
        if self.closed:
            return "closed"
        if self.wrong:
            return "failed"
        return "checking" if self.todo else "certified"

    @property
    def bound(self) -> float | None:
        """Certified precision of the unchecked items (None until every check is in)."""
        if self.todo:
            return None
        return certify.remainder_bound(len(self.batch), len(self.sample), len(self.wrong),
                                       confidence=self.confidence)

    @property
    def rest(self) -> list[Candidate]:
        """The batch without the sampled items: what accepting writes."""
        sampled = set(self.sample)
        return [c for c in self.batch if c.item_id not in sampled]


def propose(service: LabelingService, *, target: float) -> Proposal | None:
    """The batch to certify with the newest cross-validated round (``model_report.cross_validated_round``):
    its most confident suggestions for unlabeled items, cut where the most items are accepted in expectation (``certify.choose_level``), with the
    confidences calibrated on the round's held-out human labels. None without cross-validated outputs.

    Raises
    ------
    ValueError
        If ``target`` is not in (0, 1).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target precision must be in (0, 1); got {target}")
    got = model_report.cross_validated_round(service)
    if got is None:
        return None
    rnd, pred = got
    cv = pred.cv
    calibrator = autoaccept.fit_isotonic(cv["confidence"], cv["predicted"] == cv["true"])
    everything = {int(c): 0.0 for c in pred.class_ids.tolist()}
    pool = autoaccept.preview(pred, everything, exclude_item_ids=model_report._decided_items(service),
                              calibrator=calibrator)
    conf, cal = [c.confidence for c in pool], [c.calibrated for c in pool]
    held = (cv["confidence"], cv["predicted"] == cv["true"])
    size = certify.choose_level(conf, cal, target, held_confidence=held[0], held_correct=held[1])
    n = certify.audit_size(size, target) if size else None
    if not size or n is None:
        return Proposal(int(rnd["id"]), float(target), [], 0, None, len(pool))
    batch = pool[:size]
    return Proposal(int(rnd["id"]), float(target), batch, n, certify.remainder_bound(size, n, 0), len(pool),
                    certify.pass_chance(certify.batch_errors(conf, cal, *held)[size - 1], n))


def _now() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def _read(con) -> dict | None:
    raw = rounds_q.get_setting(con, SETTING)
    return None if not raw else json.loads(raw)


def _status(con, record: dict) -> Certification:
    proposed = {int(i): int(c) for i, c in record["batch"]}
    said_wrong = {int(i) for i in record.get("said_wrong", ())}
    live = {int(r.item_id): r for r in labels_q.current_state(con, record["sample"])}
    right, wrong, todo = [], [], []
    for i in record["sample"]:
        state = live.get(int(i))
        if state is not None and state.kind == "label" and state.class_id == proposed[int(i)]:
            right.append(int(i))
        elif state is not None or int(i) in said_wrong:
            wrong.append(int(i))
        else:
            todo.append(int(i))
    conf = {int(i): float(q) for i, q in zip((b[0] for b in record["batch"]), record["confidence_of"])}
    batch = [Candidate(int(i), int(c), conf[int(i)]) for i, c in record["batch"]]
    return Certification(record["id"], int(record["round"]), float(record["target"]), float(record["confidence"]),
                         record["started_by"], record["started_at"], batch, [int(i) for i in record["sample"]],
                         right, wrong, todo, record.get("accepted_batch"), bool(record.get("closed")))


def current(service: LabelingService) -> Certification | None:
    """The project's newest certification (open, accepted or closed) with its checks, or None."""
    with service.project.db.session() as con:
        record = _read(con)
        return None if record is None else _status(con, record)


def start(service: LabelingService, proposal: Proposal, *, user: str, seed: int | None = None) -> Certification:
    """Fix the proposal's batch and draw the items to check (uniformly, without replacement).

    Raises
    ------
    ValueError
        If ``user`` is empty, the proposal has no batch, a certification is still being checked, or
        the proposal's round already had a try that was not accepted.
    """
    if not user or not user.strip():
        raise ValueError("a user name is required")
    if not proposal.batch:
        raise ValueError("no batch to certify: the round has no suggestions confident enough to check")
    ident = str(uuid.uuid4())
    rng_seed = seed if seed is not None else int(uuid.UUID(ident).int % (2**32))
    sample = certify.draw_sample([c.item_id for c in proposal.batch], proposal.audit, seed=rng_seed)
    record = {"id": ident, "round": proposal.round_id, "target": proposal.target, "confidence": proposal.confidence,
              "started_by": user, "started_at": _now(), "batch": [[c.item_id, c.class_id] for c in proposal.batch],
              "confidence_of": [round(float(c.confidence), 6) for c in proposal.batch], "sample": sample,
              "said_wrong": []}
    with service.project.db.session() as con:
        old = _read(con)
        state = None if old is None else _status(con, old).state
        if state == "checking":
            raise ValueError(f"a certification started by {old['started_by']} is still being checked: "
                             "finish or cancel it first")
        if state in ("failed", "closed") and int(old["round"]) == proposal.round_id:
            raise ValueError(f"round {proposal.round_id} already had its sample checked: one try per round keeps the "
                             "95 % promise; label the wrong items, and the next round can be checked")
        rounds_q.set_setting(con, SETTING, json.dumps(record))
        return _status(con, record)


def record_checks(service: LabelingService, *, right: Sequence[int] = (), wrong: Sequence[int] = (),
                  user: str) -> Certification:
    """A person's verdicts on sampled items: ``right`` ones get their proposed class as a human label
    (source ``accept_suggestion``, the round that proposed it); ``wrong`` ones are noted and stay
    unlabeled for the Label page.

    Raises
    ------
    ValueError
        If ``user`` is empty, no certification is open, or an item is not in its sample.
    """
    if not user or not user.strip():
        raise ValueError("a user name is required")
    with service.project.db.session() as con:
        record = _read(con)
        if record is None or record.get("accepted_batch") or record.get("closed"):
            raise ValueError("no certification is open: start one on the Model page")
        sample = {int(i) for i in record["sample"]}
        stray = sorted({int(i) for i in (*right, *wrong)} - sample)
        if stray:
            raise ValueError(f"items {stray[:10]} are not in the sample being checked")
        proposed = {int(i): int(c) for i, c in record["batch"]}
        decided = {int(r.item_id) for r in labels_q.current_state(con, list(sample))}
        events = [labels_q.Event(int(i), proposed[int(i)]) for i in right if int(i) not in decided]
        if events:
            labels_q.append_events(con, events, user=user, source="accept_suggestion",
                                   batch_id=str(uuid.uuid4()), model_round=int(record["round"]))
        record["said_wrong"] = sorted({*record.get("said_wrong", ()), *(int(i) for i in wrong)} - set(map(int, right)))
        rounds_q.set_setting(con, SETTING, json.dumps(record))
        return _status(con, record)


def accept(service: LabelingService, *, user: str) -> model_report.Accepted:
    """Accept the rest of a certified batch as one undoable auto-accept batch.

    Raises
    ------
    ValueError
        If no certification is open or it is not certified (checks to do, or a wrong one).
    """
    cert = current(service)
    if cert is None or cert.state in ("accepted", "closed"):
        raise ValueError("no certification is open: start one on the Model page")
    if cert.state != "certified":
        why = (f"{len(cert.todo)} of {len(cert.sample)} checks still to do" if cert.state == "checking"
               else f"{len(cert.wrong)} of the checked items were wrong")
        raise ValueError(f"the batch is not certified: {why}")
    done = model_report.accept_batch(service, cert.rest, user=user, model_round=cert.round_id)
    with service.project.db.session() as con:
        record = _read(con)
        if record is not None and record["id"] == cert.id:
            record["accepted_batch"] = done.batch_id
            rounds_q.set_setting(con, SETTING, json.dumps(record))
    return done


def cancel(service: LabelingService) -> None:
    """Close the open certification (its round gets no other try); the checks made stay as labels."""
    with service.project.db.session() as con:
        record = _read(con)
        if record is not None and not record.get("accepted_batch"):
            record["closed"] = True
            rounds_q.set_setting(con, SETTING, json.dumps(record))
