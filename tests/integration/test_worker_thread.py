"""The retrain worker as a real thread on a real project: trains rounds, pauses, stands by, recovers."""
from __future__ import annotations

import os
import time

from labeling.service import LabelingService
from labeling.model.trainer_process import NICE as TRAINER_NICE
from labeling.model.worker import RetrainWorker


def _wait_for(predicate, timeout=120.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


def test_worker_trains_after_new_events_and_respects_pause(demo_project):
    service = LabelingService(demo_project)
    first_round = service.predictions()[0]["id"]
    worker = RetrainWorker(demo_project, min_new_events=3, max_wait_s=600, poll_s=0.05, device="cpu", cv=False,
                           early_labels=0).start()
    try:
        assert _wait_for(lambda: worker.status.state == "idle", 30)
        if hasattr(os, "getpriority"):  # rounds train in a child process that yields the CPU to the pages
            assert worker.train.pid is not None and worker.train.pid != os.getpid()  # rounds train in a child
            assert os.getpriority(os.PRIO_PROCESS, worker.train.pid) >= os.getpriority(os.PRIO_PROCESS, 0) + TRAINER_NICE
        queue = service.queue(4)
        service.label([queue[0].item_id], "cat", user="ann")
        service.label([queue[1].item_id], "dog", user="ann")
        time.sleep(0.5)  # two events: below the threshold, nothing trains
        assert service.predictions()[0]["id"] == first_round
        service.label([queue[2].item_id], "dog", user="ann")
        assert _wait_for(lambda: service.predictions()[0]["id"] > first_round)
        rnd = service.predictions()[0]
        assert rnd["n_labels"] == 3 and worker.status.rounds_trained == 1

        worker.pause()
        for k in range(4):
            service.label([service.queue(1)[0].item_id], "cat" if k % 2 else "dog", user="ann")
        time.sleep(0.5)
        assert service.predictions()[0]["id"] == rnd["id"]  # paused: no new round
        worker.trigger()  # a manual trigger trains even while paused
        assert _wait_for(lambda: service.predictions()[0]["id"] > rnd["id"])
        assert service.predictions()[0]["n_labels"] == 7
    finally:
        worker.stop()


def test_second_worker_on_the_same_project_stands_by(demo_project):
    a = RetrainWorker(demo_project, poll_s=0.05, device="cpu", cv=False, process=False).start()
    try:
        assert _wait_for(lambda: a.status.state in ("idle", "training"), 30)
        b = RetrainWorker(demo_project, poll_s=0.05, device="cpu", cv=False, process=False).start()
        try:
            assert _wait_for(lambda: b.status.state == "standby", 30)
        finally:
            b.stop()
    finally:
        a.stop()


def test_worker_marks_interrupted_rounds_discarded(demo_project):
    from storage import rounds as rounds_q

    service = LabelingService(demo_project)
    with service.project.db.session() as con:  # a round left running by a killed process
        rid = rounds_q.start_round(con, n_labels=0, last_event_id=0, backbone="x", vector_version="v", head_config={})
    worker = RetrainWorker(demo_project, poll_s=0.05, device="cpu", cv=False, process=False).start()
    try:
        assert _wait_for(lambda: any(r["id"] == rid and r["status"] == "discarded" for r in service.rounds()), 30)
        assert service.predictions()[0]["status"] == "finished"
    finally:
        worker.stop()
