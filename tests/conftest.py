"""Shared fixtures: small real projects built once per test session."""
from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

import pytest


def copy_project(src: Path, dest: Path) -> Path:
    """Copy a project directory after closing this process's lingering handle on its database.

    A database file stays open for a moment after its last transaction (see storage.db); copying
    while it closes would race with the write-ahead log being checkpointed and removed.
    """
    from storage.db import release_files

    release_files()
    shutil.copytree(src, dest)
    return dest


def two_blobs(n: int = 200, d: int = 16, *, seed: int = 0):
    """Vectors in two well-separated blobs: rows < n/2 around -6, the rest around +6 on the first axis."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[: n // 2, 0] -= 6.0
    x[n // 2:, 0] += 6.0
    return x


@pytest.fixture(autouse=True)
def _fast_password_hashes(monkeypatch):
    """Hash passwords at scrypt N=2^14 instead of the real 2^17 (128 MiB, ~0.3 s a hash): the suite signs
    in often. ``tests/unit/team/test_sign_in_throttle.py`` checks the real cost itself."""
    from labeling.team import auth

    monkeypatch.setattr(auth, "SCRYPT_N", 2 ** 14)


class FakeClock:
    """A wall clock that moves only when a test moves it (``clock.t += seconds``)."""

    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    """Sign-in throttling's clock, faked: tests of back-off move it instead of sleeping."""
    from labeling.team import auth

    c = FakeClock()
    monkeypatch.setattr(auth, "_clock", c)
    return c


@pytest.fixture
def small_project(tmp_path):
    """An empty project in a temporary folder."""
    from labeling.project import Project

    return Project(tmp_path / "p", create=True)


@pytest.fixture(scope="session")
def demo_project_template(tmp_path_factory) -> Path:
    """A 200-image Animal-MNIST demo project (imported, embedded, first round), built once."""
    from labeling.data.demo import create_demo

    root = tmp_path_factory.mktemp("demo-template") / "demo"
    create_demo(root, limit=200, device="cpu", progress=False)
    return root


@pytest.fixture
def demo_project(demo_project_template, tmp_path) -> Path:
    """A private copy of the demo project, free to change."""
    dest = tmp_path / "demo"
    copy_project(demo_project_template, dest)
    return dest


@pytest.fixture
def truth(demo_project) -> dict[str, str]:
    import csv

    with open(demo_project / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        return {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}


def _truth_of(root: Path) -> dict[str, str]:
    import csv

    with open(root / ".quorum" / "demo_truth.csv", encoding="utf-8") as fh:
        return {r["uri"]: r["true_class"] for r in csv.DictReader(fh)}


def true_rows(root: Path, per_class: int) -> list[dict[str, str]]:
    """``{uri, label}`` rows of a demo project's first ``per_class`` images of each class (by uri), with
    their true class: what a simulated annotator labels. Classes in the order their first uri sorts."""
    by_class: dict[str, list[str]] = {}
    for uri, cls in sorted(_truth_of(root).items()):
        by_class.setdefault(cls, []).append(uri)
    return [{"uri": u, "label": c} for c, uris in by_class.items() for u in uris[:per_class]]


@pytest.fixture(scope="session")
def trained_project_template(demo_project_template, tmp_path_factory) -> Path:
    """The demo project with 3 true labels per class (a simulated annotator) and a trained round."""
    from labeling.model.rounds import train_round
    from labeling.service import LabelingService

    root = tmp_path_factory.mktemp("trained-template") / "demo"
    copy_project(demo_project_template, root)
    service = LabelingService(root)
    service.label_table(true_rows(root, 3), user="seed")
    train_round(service.project, device="cpu", cv=False)
    return root


@pytest.fixture
def trained_project(trained_project_template, tmp_path) -> Path:
    dest = tmp_path / "trained"
    copy_project(trained_project_template, dest)
    return dest


@pytest.fixture
def app_env(monkeypatch):
    """Point the app at a project, without the background worker (tests drive rounds themselves)."""
    def _use(root: Path) -> None:
        monkeypatch.setenv("QUORUM_PROJECT", str(root))
        monkeypatch.setenv("QUORUM_WORKER", "0")
        monkeypatch.setenv("QUORUM_USER", "tester")
    return _use


def open_app(root: Path, monkeypatch, page: str | None = None, *, user: str = "tester", **env: str):
    """The app in ``AppTest`` on ``root`` (no background worker), switched to ``page`` (e.g.
    ``"app_pages/model.py"``) when given; fails on an exception in the first runs."""
    from streamlit.testing.v1 import AppTest

    for key, value in {"QUORUM_PROJECT": str(root), "QUORUM_WORKER": "0", "QUORUM_USER": user, **env}.items():
        monkeypatch.setenv(key, value)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.run()
    if page is not None:
        at.switch_page(page)
        at.run()
    assert not at.exception, at.exception
    return at


# ---- a real server -------------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
REPO = Path(__file__).resolve().parent.parent


TRAINING_LIBRARIES = ("torch", "torchvision", "sklearn", "faiss")


def training_libraries_imported(code: str, **env: str) -> list[str]:
    """Run ``code`` in a fresh Python in the repository (with ``env`` added to the environment) and return
    which of :data:`TRAINING_LIBRARIES` it imported; fails with its stderr when the code fails."""
    import os
    import subprocess
    import sys

    probe = f"{code}\nimport sys\nprint(sorted(m for m in {TRAINING_LIBRARIES!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import ast

    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def require_chromium() -> None:
    """Skip a browser test (with the reason) on a machine without Chromium or Playwright; with ``CI=true``
    fail instead: CI must run it."""
    import os

    import importlib.util

    missing = not Path(CHROMIUM).exists() or importlib.util.find_spec("playwright") is None
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the browser test: install Debian chromium ({CHROMIUM}) and playwright")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium) or no playwright package")


@contextlib.contextmanager
def served_page(root: Path, log: Path, *, width: int = 1400, height: int = 900, **server_args):
    """``python -m labeling serve ROOT`` and one headless Chromium page on it (1400 × 900 by default);
    yields ``(page, url)``, and stops both afterwards. ``server_args`` go to :func:`start_server`."""
    from playwright.sync_api import sync_playwright

    require_chromium()
    srv = start_server(root, log=log, **server_args)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"])
            try:
                yield browser.new_page(viewport={"width": width, "height": height}), srv.url
            finally:
                browser.close()
    finally:
        stop_server(srv)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running ``python -m labeling serve DIR --headless``: the ``serve`` process, its address, its log."""

    def __init__(self, proc, port: int, log_path: Path | None, log_fh) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log_fh = log_fh

    def healthy(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                return r.read() == b"ok"
        except OSError:
            return False

    def log_tail(self, n: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log kept)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def streamlit_pid(self) -> int:
        """The Streamlit server process itself: ``serve`` runs it as its one child (Linux: read from /proc)."""
        path = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        kids = path.read_text().split() if path.exists() else []
        assert len(kids) == 1, f"serve (pid {self.proc.pid}) should run exactly one Streamlit child, has {kids}"
        return int(kids[0])


def start_server(root: Path, *, log: Path | None = None, retrain_events: int | None = None,
                 retrain_seconds: float | None = None, env: dict | None = None, port: int | None = None,
                 timeout: float = 90.0) -> Server:
    """Start ``python -m labeling serve ROOT --port P --headless`` and wait until ``/_stcore/health`` says ok.

    The server gets ``QUORUM_MAP_BUILD=0`` (the PCA map only: a finished UMAP reloads a page mid-gesture),
    no source file watcher, the given ``QUORUM_RETRAIN_*`` values and ``env`` on top. Its output goes to
    ``log`` (or nowhere). Stop it with ``stop_server``.
    """
    import os
    import subprocess
    import sys
    import time

    port = port or free_port()
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "QUORUM_MAP_BUILD": "0",
                "STREAMLIT_SERVER_FILE_WATCHER_TYPE": "none"}
    if retrain_events is not None:  # a fixed threshold from the first label on (no early every-label rounds)
        full_env["QUORUM_RETRAIN_EVENTS"] = str(retrain_events)
        full_env["QUORUM_RETRAIN_EARLY"] = "0"
    if retrain_seconds is not None:
        full_env["QUORUM_RETRAIN_SECONDS"] = str(retrain_seconds)
    full_env.update(env or {})
    log_fh = open(log, "a") if log is not None else None
    proc = subprocess.Popen([sys.executable, "-m", "labeling", "serve", str(root), "--port", str(port), "--headless"],
                            env=full_env, cwd=REPO, stdin=subprocess.DEVNULL,
                            stdout=log_fh if log_fh else subprocess.DEVNULL, stderr=subprocess.STDOUT)
    server = Server(proc, port, log, log_fh)
    deadline = time.monotonic() + timeout
    while not server.healthy():
        if proc.poll() is not None:
            stop_server(server)
            raise AssertionError(f"serve exited with code {proc.returncode} before answering on port {port}:\n"
                                 f"{server.log_tail()}")
        if time.monotonic() > deadline:
            stop_server(server)
            raise AssertionError(f"the server on port {port} did not answer /_stcore/health with ok within "
                                 f"{timeout:.0f} s:\n{server.log_tail()}")
        time.sleep(0.5)
    return server


def stop_server(server: Server, timeout: float = 20.0) -> None:
    """Stop ``serve`` (it passes SIGTERM on to Streamlit), kill it if it lingers, and close its log."""
    import subprocess

    if server.proc.poll() is None:
        server.proc.terminate()
        try:
            server.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout)
    if server._log_fh is not None:
        server._log_fh.close()
        server._log_fh = None


TINY_CLIP = {"embed_dim": 32,
             "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8},
             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}}


@pytest.fixture
def tiny_clip(tmp_path, monkeypatch):
    """``clip_tiny``: a 3M-parameter CLIP registered with open_clip and in the backbone registry; returns its
    seeded random weights saved as a state-dict file (loaded the way a user's file is)."""
    import json
    from types import MappingProxyType

    import torch

    from labeling.embed import backbones, foundation

    open_clip = pytest.importorskip("open_clip")
    config = tmp_path / "quorum-tiny-clip.json"
    config.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(str(config))
    monkeypatch.setitem(foundation.CLIP, "clip_tiny", foundation.Clip("quorum-tiny-clip", "openai"))
    spec = backbones.BackboneSpec("clip_tiny", 32, 32, "tiny CLIP (tests)", backbones._foundation("clip_tiny"),
                                  fixed_size=True)
    monkeypatch.setattr(backbones, "BACKBONES", MappingProxyType({**backbones.BACKBONES, "clip_tiny": spec}))
    model = backbones.get_backbone("clip_tiny", weights="none").model.model
    path = tmp_path / "tiny-clip.pt"
    torch.save(model.state_dict(), path)
    return path
