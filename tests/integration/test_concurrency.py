"""Many annotators at once while the retrain worker trains: nothing lost, nothing duplicated."""
from __future__ import annotations

import threading

from labeling.service import LabelingService
from labeling.model.worker import RetrainWorker
from storage import labels as labels_q
from storage.db import DatabaseBusy

ANNOTATORS = 8
ACTIONS = 500


def _replay(events) -> dict[int, tuple[int | None, str]]:
    """Sequential replay of the log, written independently of the SQL views.

    Undo events revoke their batch; each person's newest live event on an item is their vote; the
    newest live adjudication wins, else the majority of label votes (a tie: the class voted most
    recently); an item with only skip votes is skipped.
    """
    revoked = {e[7] for e in events if e[3] == "undo"}
    vote: dict[tuple[int, str], tuple[int, int | None, str]] = {}
    adjudicated: dict[int, tuple[int | None, str]] = {}
    for e in events:
        if e[3] not in ("label", "skip") or e[6] in revoked:
            continue
        if e[5] == "adjudication":
            adjudicated[e[1]] = (e[2], e[3])
        else:
            vote[(e[1], e[4])] = (e[0], e[2], e[3])
    by_item: dict[int, list[tuple[int, int | None, str]]] = {}
    for (item, _), v in vote.items():
        by_item.setdefault(item, []).append(v)
    state: dict[int, tuple[int | None, str]] = {}
    for item, vs in by_item.items():
        tally: dict[int, list[int]] = {}
        for eid, cls, kind in vs:
            if kind == "label":
                tally.setdefault(cls, []).append(eid)
        if tally:
            best = max(tally, key=lambda c: (len(tally[c]), max(tally[c])))
            state[item] = (best, "label")
        else:
            state[item] = (None, "skip")
    state.update(adjudicated)
    return state


def test_eight_annotators_times_500_actions_with_the_worker_running(trained_project):
    service = LabelingService(trained_project)
    ids = [q.item_id for q in service.queue(160)]
    worker = RetrainWorker(trained_project, min_new_events=200, max_wait_s=2, poll_s=0.2, device="cpu",
                           cv=False, process=False).start()
    acked: list[list[str]] = [[] for _ in range(ANNOTATORS)]
    errors: list[BaseException] = []

    def annotate(w: int) -> None:
        own = LabelingService(trained_project)  # each session has its own facade, as pages do
        try:
            for k in range(ACTIONS):
                if k % 10 == 9 and acked[w]:
                    own.undo(acked[w].pop(), user=f"ann{w}")  # undo my newest live batch
                    continue
                start = (w * 20 + k) % len(ids)
                items = ids[start:start + (1 if k % 4 else 3)]  # single labels and bulk accepts
                acked[w].append(own.label(items, ["cat", "dog", "cow", None][k % 4], user=f"ann{w}",
                                          source="manual" if k % 4 else "accept_neighbourhood"))
        except (DatabaseBusy, LookupError, ValueError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=annotate, args=(w,)) for w in range(ANNOTATORS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    worker.stop()
    assert not errors, errors[:3]
    with service.project.db.session() as con:
        events = labels_q.all_events(con)
        state = {int(r[0]): (r[1], r[2]) for r in labels_q.current_state(con)}
    ours = [e for e in events if e[4].startswith("ann")]
    n_labels = sum(1 for e in ours if e[3] in ("label", "skip"))
    n_batches = len({e[6] for e in ours if e[3] in ("label", "skip")})
    assert n_batches == ANNOTATORS * (ACTIONS - ACTIONS // 10)  # every label action stored, once
    assert len({e[0] for e in events}) == len(events)  # no duplicated event ids
    assert n_labels >= n_batches
    assert state == {i: v for i, v in _replay(events).items()}  # derived labels == sequential replay
    assert worker.status.rounds_trained >= 1  # training happened meanwhile
