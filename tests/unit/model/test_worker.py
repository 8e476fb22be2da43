"""The retrain loop driven step by step: a fake trainer, a fake clock and a fake lock, no sleeps."""
from __future__ import annotations

import pytest

from labeling.model.worker import HISTORY_SIZE, FileLock, RetrainWorker, RoundTrainer
from labeling.service import LabelingService
from storage import labels as labels_q
from storage import rounds as rounds_q


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTrainer:
    """Records a finished round covering every event so far, as train_round would, without training."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = []
        self.fail = fail

    def __call__(self, project) -> int:
        self.calls.append(project)
        if self.fail:
            raise RuntimeError("boom")
        with project.db.session() as con:
            rid = rounds_q.start_round(con, n_labels=0, last_event_id=labels_q.last_event_id(con), backbone="fake",
                                       vector_version="v", head_config={})
            rounds_q.finish_round(con, rid, metrics={}, predictions_file="none.npz")
        return rid


class FakeLock:
    def __init__(self, free: bool = True) -> None:
        self.free = free
        self.released = 0

    def acquire(self) -> bool:
        return self.free

    def release(self) -> None:
        self.released += 1


@pytest.fixture
def service(demo_project):
    return LabelingService(demo_project)


def _worker(service, **kw):
    kw.setdefault("train", FakeTrainer())
    kw.setdefault("clock", FakeClock())
    kw.setdefault("lock", FakeLock())
    kw.setdefault("early_labels", 0)
    return RetrainWorker(service.project, min_new_events=3, max_wait_s=20, **kw)


def _label(service, n):
    """Label ``n`` unlabeled items (picked from the database: the fake rounds have no predictions)."""
    done = set(service.current_labels())
    with service.project.db.session() as con:
        ids = [int(r[0]) for r in con.execute("SELECT id FROM items WHERE status = 'ok' ORDER BY id").fetchall()]
    for item in [i for i in ids if i not in done][:n]:
        service.label([item], "cat", user="ann")


def test_worker_uses_the_project_it_is_handed(service):
    worker = _worker(service)
    assert worker.project is service.project
    assert worker.step() == "idle"
    _label(service, 3)
    assert worker.step() == "trained"
    assert worker.train.calls == [service.project]


def test_trains_once_enough_new_events_arrive(service):
    worker = _worker(service)
    _label(service, 2)
    assert worker.step() == "idle" and worker.status.pending_events == 2
    _label(service, 1)
    assert worker.step() == "trained"
    assert worker.status.rounds_trained == 1 and worker.status.last_round is not None
    assert worker.step() == "idle" and worker.status.pending_events == 0  # the round covered them


def test_every_event_makes_a_round_due_while_labels_are_few(service):
    worker = _worker(service, early_labels=50)
    _label(service, 1)
    assert worker.step() == "trained"  # the newest round has fewer than 50 labels: no waiting
    worker.early_labels = 0
    _label(service, 1)
    assert worker.step() == "idle"  # past them: min_new_events again


class DeferredTrainer(FakeTrainer):
    """A trainer with a pending cross-validation of ``folds`` folds that records what it was asked."""

    def __init__(self, folds: int = 3) -> None:
        super().__init__()
        self.folds = folds
        self.pending = None
        self.folds_run = []

    def __call__(self, project) -> int:
        rid = super().__call__(project)
        self.pending = rid
        return rid

    def cross_validate(self, project, should_stop):
        if self.pending is None:
            return None
        for fold in range(self.folds):
            if should_stop():
                return False
            self.folds_run.append((self.pending, fold))
        self.pending = None
        return True


def test_cross_validation_runs_after_the_round_and_yields_to_a_newer_one(service):
    trainer = DeferredTrainer()
    worker = _worker(service, train=trainer)
    _label(service, 3)
    assert worker.step() == "trained" and trainer.folds_run == []  # predictions first, nothing else
    first = trainer.pending
    _label(service, 3)  # a newer round is due before the first one's cross-validation ran
    assert worker.step() == "trained" and trainer.folds_run == []
    assert trainer.pending != first  # the stale round's figures are never computed
    assert worker.step() == "cross-validated"  # idle: now the newest round is cross-validated
    assert [f for _, f in trainer.folds_run] == [0, 1, 2] and worker.step() == "idle"
    _label(service, 3)
    worker.train.pending = None
    assert worker.step() == "trained"
    labels_during = []

    def stop_after_one_fold():
        labels_during.append(1)
        if len(labels_during) == 2:
            _label(service, 3)  # new labels arrive during the first fold
        return worker._round_due()

    trainer.folds_run.clear()
    assert trainer.cross_validate(service.project, stop_after_one_fold) is False
    assert len(trainer.folds_run) == 1  # interrupted between folds


def test_a_lone_event_trains_after_max_wait_on_the_clock(service):
    clock = FakeClock()
    worker = _worker(service, clock=clock)
    _label(service, 1)
    assert worker.step() == "idle"  # the wait starts now
    clock.now = 19.9
    assert worker.step() == "idle"
    clock.now = 20.0
    assert worker.step() == "trained"


def test_pause_holds_rounds_and_trigger_trains_anyway(service):
    worker = _worker(service)
    worker.pause()
    _label(service, 5)
    assert worker.step() == "paused" and worker.train.calls == []
    worker.trigger()
    assert worker.step() == "trained"
    worker.resume()
    assert worker.step() == "idle"


def test_trigger_trains_without_new_events(service):
    worker = _worker(service)
    worker.trigger()
    assert worker.step() == "trained"


def test_stands_by_while_another_holds_the_lock(service):
    worker = _worker(service, lock=FakeLock(free=False))
    _label(service, 5)
    assert worker.step() == "standby" and worker.status.state == "standby"
    assert worker.train.calls == []


def test_a_failed_round_is_kept_in_a_bounded_history(service):
    worker = _worker(service, train=FakeTrainer(fail=True))
    for _ in range(HISTORY_SIZE + 10):
        worker.trigger()
        assert worker.step() == "failed"
    assert worker.status.last_error == "RuntimeError: boom"
    assert len(worker.status.history) == HISTORY_SIZE


def test_first_lock_marks_interrupted_rounds_discarded(service):
    with service.project.db.session() as con:  # a round left running by a killed process
        rid = rounds_q.start_round(con, n_labels=0, last_event_id=0, backbone="x", vector_version="v", head_config={})
    worker = _worker(service)
    worker.step()
    assert {r["id"]: r["status"] for r in service.rounds()}[rid] == "discarded"


def test_a_round_started_after_the_worker_was_made_is_not_discarded(service):
    """``train`` from the command line while the server runs: its round starts after the server's worker
    was made, and the worker's first lock must not mark it interrupted (the command then failed)."""
    worker = _worker(service)
    with service.project.db.session() as con:
        rid = rounds_q.start_round(con, n_labels=0, last_event_id=0, backbone="x", vector_version="v", head_config={})
    worker.step()
    assert {r["id"]: r["status"] for r in service.rounds()}[rid] == "running"


def test_file_lock_is_exclusive_until_released(tmp_path):
    a, b = FileLock(tmp_path / "w.lock"), FileLock(tmp_path / "w.lock")
    assert a.acquire() and a.acquire()  # held again by its owner
    assert not b.acquire()
    a.release()
    assert b.acquire()
    b.release()


def test_default_trainer_trains_in_a_child_process_with_the_workers_settings(service):
    from labeling.model.trainer_process import ProcessTrainer

    worker = RetrainWorker(service.project, device="cpu", cv=False)
    assert isinstance(worker.train, ProcessTrainer) and worker.train.pid is None  # started on first use
    assert (worker.train.device, worker.train.cv) == ("cpu", False)
    in_thread = RetrainWorker(service.project, device="cpu", cv=True, process=False)
    assert isinstance(in_thread.train, RoundTrainer) and (in_thread.train.device, in_thread.train.cv) == ("cpu", True)


def test_imported_or_reweighed_predictions_make_a_round_due_without_new_labels(service):
    from storage import external_models as models_q

    worker = _worker(service)
    assert worker.step() == "idle"
    with service.project.db.session() as con:
        models_q.record(con, name="mine", file="mine.npz", n_items=1, n_classes=2, source="p.csv", user="ann")
    assert worker.step() == "trained"
    assert worker.step() == "idle"  # the round started after the import: nothing more is due
    with service.project.db.session() as con:
        models_q.set_weight(con, "mine", weight=None, enabled=False)
    assert worker.step() == "trained"


def test_waiting_for_events_reads_the_database_only_when_it_changed(service):
    """The worker asks twice a second (ten times while it cross-validates) in the server's process: asking
    again with nothing written costs two file stats, no query."""
    worker = _worker(service)
    _label(service, 1)
    assert worker.pending_events() == 1
    opened = []
    real = service.project.db.session

    def counting():
        opened.append(1)
        return real()
    service.project.db.session = counting
    try:
        assert [worker.pending_events() for _ in range(5)] == [1] * 5 and not opened
        _label(service, 1)  # a label from anywhere changes the file: read again
        opened.clear()
        assert worker.pending_events() == 2 and len(opened) == 1
    finally:
        del service.project.db.session
