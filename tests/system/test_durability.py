"""Durability: a process killed with SIGKILL mid-stream loses no acknowledged label."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from labeling.service import LabelingService
from labeling.model.worker import RetrainWorker
from storage import labels as labels_q

ROOT = Path(__file__).resolve().parents[2]

WRITER = r"""
import sys, threading, json
from labeling.service import LabelingService
from labeling.model.worker import RetrainWorker

root = sys.argv[1]
worker = RetrainWorker(root, min_new_events=3, max_wait_s=1, poll_s=0.05, device="cpu", cv=False, process=False).start()
lock = threading.Lock()

def annotate(name, offset):
    service = LabelingService(root)
    ids = [q.item_id for q in service.queue(150)]
    k = offset
    while True:
        chunk = ids[k % len(ids): k % len(ids) + (1 + k % 3)]  # single labels and small bulk actions
        batch = service.label(chunk, ["cat", "dog", "cow"][k % 3], user=name)
        with lock:  # printed only after the commit returned: an acknowledged label
            print(json.dumps({"batch": batch, "items": chunk}), flush=True)
        k += 1

for w in range(4):
    threading.Thread(target=annotate, args=(f"ann{w}", 37 * w), daemon=True).start()
threading.Event().wait()
"""


def test_sigkill_mid_stream_loses_no_acknowledged_label(trained_project, tmp_path):
    service = LabelingService(trained_project)
    before_round = service.predictions()[0]["id"]
    with service.project.db.session() as con:
        before_events = len(labels_q.all_events(con))
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(trained_project)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked = []
    deadline = time.monotonic() + 120
    while len(acked) < 120 and time.monotonic() < deadline:  # let it write, and train, for a while
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(json.loads(line))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    rest = proc.stdout.read()
    acked += [json.loads(x) for x in rest.splitlines() if x.strip().startswith("{")]
    assert len(acked) >= 120

    # restart: a new worker takes the project over and cleans up an interrupted round
    worker = RetrainWorker(trained_project, poll_s=0.05, device="cpu", cv=False, min_new_events=10**9,
                           max_wait_s=10**9, early_labels=0, process=False).start()
    try:
        deadline = time.monotonic() + 30
        while worker.status.state not in ("idle", "paused") and time.monotonic() < deadline:
            time.sleep(0.05)
        with service.project.db.session() as con:
            events = labels_q.all_events(con)
        by_batch: dict[str, list[int]] = {}
        for e in events[before_events:]:
            by_batch.setdefault(e[6], []).append(e[1])
        for a in acked:  # every acknowledged batch is there, exactly once, whole
            assert sorted(by_batch.get(a["batch"], [])) == sorted(a["items"])
        assert len(set(e[0] for e in events)) == len(events)
        rounds = service.rounds()
        assert not [r for r in rounds if r["status"] == "running"]
        assert service.predictions()[0]["id"] >= before_round  # a finished round is in use
    finally:
        worker.stop()
