"""``serve`` starts the app, and the command line keeps working on the project while it runs."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from conftest import start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "labeling", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)


def test_cli_works_while_the_server_runs(trained_project, tmp_path):
    server = start_server(trained_project, log=tmp_path / "serve.log", retrain_events=3, retrain_seconds=2)
    try:
        # a page load opens the project and starts the retrain worker inside the server
        urllib.request.urlopen(f"{server.url}/", timeout=10).read()
        res = _cli("queue", str(trained_project), "--n", "4", "--format", "json")
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)["result"]
        csv = tmp_path / "l.csv"
        csv.write_text("item_id,label\n" + "".join(f"{r['item_id']},{r['pseudo_label'] or 'cat'}\n" for r in rows))
        res = _cli("label", str(trained_project), "--csv", str(csv), "--user", "cli")
        assert res.returncode == 0, res.stderr
        res = _cli("train", str(trained_project), "--no-cv", "--format", "json")
        assert res.returncode == 0, res.stderr
        trained = json.loads(res.stdout)["result"]["round_id"]
        res = _cli("rounds", str(trained_project), "--format", "json")
        assert res.returncode == 0 and trained in [r["round_id"] for r in json.loads(res.stdout)["result"]]
        res = _cli("export", str(trained_project), "--to", "csv", "--out", str(tmp_path / "out.csv"))
        assert res.returncode == 0, res.stderr
        text = (tmp_path / "out.csv").read_text()
        assert sum(1 for line in text.splitlines() if ",cli," in line) == 4
    finally:
        stop_server(server)


def test_stopping_serve_stops_the_server_it_runs(trained_project, tmp_path):
    """SIGTERM to ``serve`` is passed on, and SIGKILL of ``serve`` still ends the server (no orphan holding
    the port and the project)."""
    import signal

    for sig in (signal.SIGTERM, signal.SIGKILL):
        server = start_server(trained_project, env={"QUORUM_WORKER": "0"})
        port = server.port
        server.proc.send_signal(sig)
        server.proc.wait(timeout=30)
        stop_server(server)
        deadline = time.monotonic() + 30
        while True:  # the port is free again: the streamlit child ended too
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) != 0:
                    break
            assert time.monotonic() < deadline, f"the server outlived serve after {sig.name}"
            time.sleep(0.3)
