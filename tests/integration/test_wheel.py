"""The wheel runs on its own: built from the source tree, installed into a fresh virtual environment,
``quorum --version``, ``quorum demo`` and ``quorum serve`` (health check) work from a folder outside the
checkout. The fresh environment reaches the already installed dependencies (torch and the rest) through
a path file, so nothing is downloaded but the build backend."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO, free_port

import labeling


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "app.py", "asgi.py"):
        shutil.copy2(REPO / name, source / name)
    for name in ("labeling", "storage", "app_pages", "assets"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    built = _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(work / "dist")])
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((work / "dist").glob("quorum-*.whl"))
    venv = work / "venv"
    made = _run([sys.base_prefix + "/bin/python3", "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    site = Path(_run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
                .stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")  # torch & co, already here
    got = _run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps", "-q",
                str(wheel)])
    assert got.returncode == 0, got.stderr[-2000:]
    return venv


def test_the_installed_wheel_runs_demo_and_serve_outside_the_checkout(installed, tmp_path):
    quorum = str(installed / "bin" / "quorum")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QUORUM_PROJECT")}
    version = _run([quorum, "--version"], cwd=tmp_path, env=env)
    assert version.returncode == 0 and version.stdout.strip() == f"quorum {labeling.__version__}"
    where = _run([str(installed / "bin" / "python"), "-c", "import labeling, sys; print(labeling.__file__)"],
                 cwd=tmp_path, env=env)
    assert str(installed) in where.stdout  # the installed copy, not the checkout
    demo = _run([quorum, "demo", str(tmp_path / "demo"), "--limit", "20", "--device", "cpu"], cwd=tmp_path, env=env)
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert (tmp_path / "demo" / "quorum.duckdb").exists()

    port = free_port()
    proc = subprocess.Popen([quorum, "serve", str(tmp_path / "demo"), "--port", str(port), "--headless"], cwd=tmp_path,
                            env={**env, "QUORUM_WORKER": "0"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline, healthy = time.monotonic() + 90, False
        while time.monotonic() < deadline and not healthy and proc.poll() is None:
            try:
                healthy = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok"
            except OSError:
                time.sleep(0.5)
        assert healthy, f"serve did not answer: {proc.poll()}"
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read()
        assert b"<html" in page.lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
