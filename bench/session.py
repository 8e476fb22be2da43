"""The session benchmark: the real app served and driven in headless Chromium as an annotator would.

A project is built from labeled image folders (the bundled Animal-MNIST demo written as class
folders; nine classes, so that every class has a key) with no labels: the class names are created,
the folders' classes stay with the benchmark, as the oracle's knowledge (``uri -> class``). Then
``python -m labeling serve`` runs with the app's own retrain worker and its default settings, and an
oracle annotator labels item after item from the keyboard: Enter when the suggestion on screen is
right, the class's digit when it is not (or when there is none), after a short think time.

Measured, each beside a baseline from the same run:

* cold start: ``serve`` started to the first card painted, against the same for the bare page;
* key press to the next image painted (in the page's own clock: ``keydown`` to the first animation
  frame where the new image is in the DOM and decoded), p50/p95, with one session; with five sessions
  open and one of them pressing (the other four idle on the Label page, polling for rounds as an
  open tab does); and with all five pressing at once (each in its own order), against a bare
  Streamlit page that swaps one image per key press (:mod:`bench.bare_page`, the framework's floor on
  this machine);
* each background round's duration (``metrics["seconds"]`` of the rounds the worker trained, read
  from the project after the run) at 2, 10, 20, 50, 100 and 500 labels, against the worker's own
  train call (:class:`labeling.model.worker.RoundTrainer` with the worker's default ``cv``) in this
  warm process on a copy of the project holding the same labels;
* the time from the first label of the second class to the first suggestion on screen;
* suggestion accuracy against the oracle over wall-clock time: what was on screen, and each round's
  accuracy on the items still unlabeled when it was trained.
"""
from __future__ import annotations

import asyncio
import importlib.util
import inspect
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from bench import cpu
from bench.session_report import LABEL_COUNTS, MAX_CLASSES, ORDERS, WARM_REPEATS, report, round_table
from bench.suite import ROOT, copy_project

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
PRESS_TIMEOUT_MS = 60_000
INIT_JS = "window.__kd = null; window.addEventListener('keydown', () => { window.__kd = performance.now(); }, true);"
PAINTED_JS = """(prev) => {
  const cap = document.querySelector('[data-testid="stImageCaption"]');
  if (!cap) return false;
  const uri = cap.innerText.trim();
  if (!uri || uri === prev) return false;
  const box = cap.closest('[data-testid="stImage"]') || cap.parentElement;
  const img = box && box.querySelector('img');
  if (!img || !img.complete || img.naturalWidth === 0) return false;
  return {uri: uri, t: performance.now(), kd: window.__kd};
}"""
"""The next card is painted: a new caption, and its image in the DOM and decoded. Checked on every
animation frame (``polling="raf"``), so the time is the frame that shows it."""
SETTLED_JS = """(uri) => {
  const stale = (el) => !!el.closest('[data-stale="true"]');
  const cap = document.querySelector('[data-testid="stImageCaption"]');
  if (!cap || (uri !== null && cap.innerText.trim() !== uri) || stale(cap)) return false;
  const hs = [...document.querySelectorAll('h3')].filter(
      (h) => /^(Suggestion:|No suggestion yet)/.test(h.innerText.trim()));
  if (hs.length === 0 || stale(hs[0])) return false;
  const t = hs[0].innerText.trim();
  return {uri: cap.innerText.trim(),
          suggestion: t.startsWith('Suggestion:') ? t.slice('Suggestion:'.length).trim() : null};
}"""
"""The card (``uri``, or whichever is shown for None) is settled: its right column is this run's too.
Returns the uri and the suggestion on screen (None: "No suggestion yet")."""


def missing() -> str | None:
    """Why the benchmark cannot run here (None when it can)."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "no playwright package"
    return None


def worker_cv() -> bool:
    """The retrain worker's own ``cv`` setting (its signature default), so the baseline follows it."""
    from labeling.model.worker import RetrainWorker

    return bool(inspect.signature(RetrainWorker).parameters["cv"].default)


def _trainer(device: str):
    """The worker's train call: ``RoundTrainer`` when the worker has one, else ``train_round``."""
    try:
        from labeling.model.worker import RoundTrainer

        return RoundTrainer(device=device, cv=worker_cv())
    except ImportError:  # pragma: no cover - an older worker
        from labeling.model.rounds import train_round

        return lambda project: train_round(project, device=device, cv=worker_cv())


# ---- the project -------------------------------------------------------------------------------
def build_project(root: Path, n_images: int, device: str) -> tuple[dict[str, str], list[str]]:
    """Class folders of the demo, imported without labels, embedded, the cold-start round trained (the
    queue needs a round) and the classes created. Returns the oracle (uri -> class) and the classes."""
    from labeling.data.demo import load_animal_mnist, write_images
    from labeling.data.importer import import_folder
    from labeling.embed.pipeline import embed_project
    from labeling.project import Project
    from storage import labels as labels_q
    from storage.db import release_files

    n_all = len(load_animal_mnist()[2])  # class-balanced over all classes; the ones without a key go
    written = write_images(root / "images", limit=-(-n_images * n_all // min(n_all, MAX_CLASSES)),
                           class_folders=True)
    names = sorted({c for _, c in written})
    keep = names[:MAX_CLASSES]
    for c in names[MAX_CLASSES:]:
        shutil.rmtree(root / "images" / c)
    by_file = {p.name: c for p, c in written if c in keep}
    project = Project(root, create=True)
    import_folder(project, root / "images", progress=False)  # no labels: the folders are the oracle's
    embed_project(project, device=device, progress=False)
    _trainer(device)(project)  # the cold-start round (typicality order), as the demo has
    with project.db.session() as con:
        labels_q.ensure_classes(con, keep, user="bench")
        uris = [u for (u,) in con.execute("SELECT uri FROM items WHERE status = 'ok'").fetchall()]
    release_files()
    truth = {u: by_file[Path(u).name] for u in uris if Path(u).name in by_file}
    return truth, keep


# ---- servers ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cmd: list[str], env: dict, log: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._fh = open(log, "a")
        self.proc = subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=self._fh, stderr=subprocess.STDOUT)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as r:
                return r.read() == b"ok"
        except OSError:
            return False

    def wait(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"server did not come up:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # serve passes SIGTERM on to Streamlit
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(20)
        self._fh.close()


def app_server(root: Path, log: Path) -> Server:
    """``python -m labeling serve ROOT --headless`` with the retrain worker at its default settings."""
    port = _free_port()
    return Server([sys.executable, "-m", "labeling", "serve", str(root), "--port", str(port), "--headless"],
                  {"QUORUM_MAP_BUILD": "0", "QUORUM_USER": "oracle"}, log, port)


def bare_server(images: Path, log: Path) -> Server:
    port = _free_port()
    return Server([sys.executable, "-m", "streamlit", "run", str(ROOT / "bench" / "bare_page.py"),
                   "--server.address", "127.0.0.1", "--server.port", str(port), "--server.headless", "true",
                   "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
                   "--server.fileWatcherType", "none", "--server.runOnSave", "false",
                   "--runner.postScriptGC", "false"],
                  {"BENCH_BARE_IMAGES": str(images)}, log, port)


# ---- the browser side ---------------------------------------------------------------------------
async def _new_page(browser):
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    await context.add_init_script(INIT_JS)
    return await context.new_page()


async def _painted(page, prev: str | None) -> dict:
    handle = await page.wait_for_function(PAINTED_JS, arg=prev, polling="raf", timeout=PRESS_TIMEOUT_MS)
    return await handle.json_value()


async def _settled(page, uri: str | None, bare: bool) -> str | None:
    return (await _card(page, uri, bare))["suggestion"]


async def _card(page, uri: str | None, bare: bool) -> dict:
    """``{"uri", "suggestion"}`` of the card on screen once settled (``uri``: wait for that one)."""
    if bare:
        got = await _painted(page, None)
        return {"uri": got["uri"], "suggestion": None}
    handle = await page.wait_for_function(SETTLED_JS, arg=uri, polling="raf", timeout=PRESS_TIMEOUT_MS)
    return await handle.json_value()


async def annotate(page, *, presses: int, truth: dict | None, keys: dict | None, think_s: float,
                   log: list, session: int, phase: str, bare: bool = False) -> None:
    """Press key after key as the oracle would; one record per press in ``log``."""
    card = await _card(page, None, bare)
    shown, suggestion = card["uri"], card["suggestion"]
    for _ in range(presses):
        true = truth.get(shown) if truth else None
        key = "Enter" if bare or suggestion == true else keys[true]
        t_press = time.time()
        await page.keyboard.press(key)
        try:
            got = await _painted(page, shown)
            nxt = await _settled(page, got["uri"], bare)
        except Exception as exc:  # noqa: BLE001 - a lost press is recorded, the session goes on
            log.append({"phase": phase, "session": session, "t_press": t_press, "error": repr(exc)[:200]})
            await page.reload()
            got = await _painted(page, None)
            nxt = await _settled(page, got["uri"], bare)
            shown, suggestion = got["uri"], nxt
            continue
        log.append({"phase": phase, "session": session, "t_press": t_press, "t_settled": time.time(),
                    "latency_ms": got["t"] - got["kd"] if got.get("kd") is not None else None,
                    "uri": shown, "true": true, "suggestion": suggestion, "key": key,
                    "next": got["uri"], "next_suggestion": nxt})
        shown, suggestion = got["uri"], nxt
        if think_s:
            await asyncio.sleep(think_s)


async def _cold_start(browser, start_server, *, bare: bool) -> tuple[object, object, dict]:
    """Start a server and load its page: seconds to the health check and to the first card painted."""
    page = await _new_page(browser)
    t0 = time.perf_counter()
    server = start_server()
    await asyncio.to_thread(server.wait)
    healthy = time.perf_counter() - t0
    await page.goto(server.url)
    got = await _painted(page, None)
    painted = time.perf_counter() - t0
    await _settled(page, got["uri"], bare)
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    return server, page, {"health_s": healthy, "first_card_s": painted}


async def _open_session(browser, url: str, name: str, order: str):
    page = await _new_page(browser)
    await page.goto(url)
    await _painted(page, None)
    await page.locator('[data-testid="stSelectbox"]').filter(has_text="Order").first.click()
    await page.get_by_role("option", name=order, exact=True).click()
    await page.wait_for_timeout(500)
    box = page.get_by_role("textbox", name="Annotator")
    await box.fill(name)
    await box.press("Enter")
    await page.wait_for_timeout(1000)
    await page.evaluate("document.activeElement && document.activeElement.blur()")
    return page


def _phase_start() -> tuple[float, dict]:
    return time.perf_counter(), cpu.snapshot()


def _phase_cpu(mark: tuple[float, dict]) -> dict:
    """The phase's wall time and each process group's CPU seconds (:mod:`bench.cpu`)."""
    return {"wall": time.perf_counter() - mark[0], **cpu.used(mark[1], cpu.snapshot())}


async def _drive(root: Path, work: Path, truth: dict, classes: list[str], p: dict) -> dict:
    from playwright.async_api import async_playwright

    keys = {c: str(k + 1) for k, c in enumerate(classes)}  # keys follow creation order (sorted, in build_project)
    out: dict = {"log": [], "cpu": {}}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            # the floor: the bare page, one session
            print("  session: bare page", file=sys.stderr, flush=True)
            server, page, out["bare_cold"] = await _cold_start(
                browser, lambda: bare_server(root / "images", work / "bare.log"), bare=True)
            try:
                mark = _phase_start()
                await annotate(page, presses=p["bare_presses"], truth=None, keys=None, think_s=p["think_s"],
                               log=out["log"], session=0, phase="bare", bare=True)
                out["cpu"]["bare"] = _phase_cpu(mark)
                await page.context.close()
                pages = []
                for _ in ORDERS:  # five sessions at once on the bare page: the framework's and browser's share
                    pages.append(await _new_page(browser))
                    await pages[-1].goto(server.url)
                    await _painted(pages[-1], None)
                mark = _phase_start()
                await asyncio.gather(*(annotate(pg, presses=p["five_presses"], truth=None, keys=None,
                                                think_s=p["think_s"], log=out["log"], session=k + 1,
                                                phase="bare5", bare=True) for k, pg in enumerate(pages)))
                out["cpu"]["bare5"] = _phase_cpu(mark)
                for pg in pages:
                    await pg.context.close()
            finally:
                server.stop()
            # the app: cold start, one annotator, one of five open sessions pressing, then five at once
            print("  session: the app, one session", file=sys.stderr, flush=True)
            server, page, out["app_cold"] = await _cold_start(
                browser, lambda: app_server(root, work / "app.log"), bare=False)
            out["t0"] = time.time()
            try:
                mark = _phase_start()
                await annotate(page, presses=p["presses"], truth=truth, keys=keys, think_s=p["think_s"],
                               log=out["log"], session=0, phase="one")
                out["cpu"]["one"] = _phase_cpu(mark)
                await page.context.close()
                print("  session: the app, five sessions open, then five pressing", file=sys.stderr, flush=True)
                pages = []
                for k, order in enumerate(ORDERS):
                    pages.append(await _open_session(browser, server.url, f"oracle{k + 1}", order))
                # five sessions open, one pressing: what the others' polling costs an annotator
                mark = _phase_start()
                await annotate(pages[0], presses=p["open_presses"], truth=truth, keys=keys, think_s=p["think_s"],
                               log=out["log"], session=1, phase="open5")
                out["cpu"]["open5"] = _phase_cpu(mark)
                mark = _phase_start()
                await asyncio.gather(*(annotate(pg, presses=p["five_presses"], truth=truth, keys=keys,
                                                think_s=p["think_s"], log=out["log"], session=k + 1, phase="five")
                                       for k, pg in enumerate(pages)))
                out["cpu"]["five"] = _phase_cpu(mark)
                for pg in pages:
                    await pg.context.close()
                out["t_end"] = time.time()
                await asyncio.sleep(p["settle_s"])  # the worker's round on the last labels
            except Exception:
                print(server.tail(), file=sys.stderr)
                raise
            finally:
                server.stop()
        finally:
            await browser.close()
    return out


def warm_rounds(template: Path, served: Path, work: Path, truth: dict, device: str,
                repeats: int = WARM_REPEATS) -> dict[int, float]:
    """The worker's train call in this (warm) process, on a copy of the project before the session,
    given the session's labels in their order up to each count (beyond what the session reached,
    oracle labels on more items): ``{labels: seconds}`` (``metrics["seconds"]``, as for the app; the
    best of ``repeats`` calls: the floor on this machine)."""
    from labeling.service import LabelingService
    from storage import labels as labels_q
    from storage.db import release_files

    with LabelingService(served).project.db.session() as con:
        events = [(e[1], e[2]) for e in labels_q.all_events(con) if e[3] == "label"]
        uris = dict(con.execute("SELECT id, uri FROM items").fetchall())
    release_files()
    root = copy_project(template, work / "warm")
    service = LabelingService(root)
    project = service.project
    with project.db.session() as con:
        cls = labels_q.ensure_classes(con, sorted(set(truth.values())), user="bench")
    seen, order = set(), []
    for item, c in events:  # the session's labels, each item once
        if item not in seen:
            seen.add(item)
            order.append((item, c))
    rest = [i for i in sorted(uris) if i not in seen and uris[i] in truth]
    rng = np.random.default_rng(0)
    order += [(int(i), cls[truth[uris[int(i)]]]) for i in rng.permutation(rest)]
    train = _trainer(device)
    out: dict[int, float] = {}
    done = 0
    for k, n in enumerate([LABEL_COUNTS[0], *LABEL_COUNTS]):
        if n > len(order):  # a project smaller than the count
            break
        with project.db.session() as con:
            labels_q.append_events(con, [labels_q.Event(int(i), int(c)) for i, c in order[done:n]], user="bench",
                                   source="manual", batch_id=str(uuid.uuid4()), model_round=None)
        done = n
        for _ in range(repeats if k else 1):  # the first call only warms the process up
            rid = train(project)
            if k:
                got = next(r for r in service.rounds() if r["id"] == rid)["metrics"]["seconds"]
                out[n] = min(out.get(n, got), got)
    release_files()
    return out


def run(work: Path, *, images: int, presses: int, five_presses: int, bare_presses: int, open_presses: int = 0,
        think_s: float = 0.5, settle_s: float = 10.0, device: str = "cpu") -> tuple[list[dict], str]:
    """Rows for the suite table, and the detail section (markdown) for RESULTS.md."""
    why = missing()
    if why:
        print(f"  session: skipped ({why})", file=sys.stderr, flush=True)
        return [], f"Skipped: {why}."
    work.mkdir(parents=True, exist_ok=True)
    root = work / "session"
    t_build = time.perf_counter()
    truth, classes = build_project(root, images, device)
    build_s = time.perf_counter() - t_build
    template = copy_project(root, work / "session-template")
    p = dict(presses=presses, five_presses=five_presses, bare_presses=bare_presses, open_presses=open_presses,
             think_s=think_s,
             settle_s=settle_s)
    out = asyncio.run(_drive(root, work, truth, classes, p))
    log, t0 = out["log"], out["t0"]
    rounds = round_table(root, truth)
    print("  session: warm train rounds", file=sys.stderr, flush=True)
    warm = warm_rounds(template, root, work, truth, device)
    return report(log, rounds, warm, out, t0, truth, classes, p, build_s, images=len(truth))
