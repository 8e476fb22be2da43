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
  frame where the new image is in the DOM and decoded), p50/p95, with one session and with five
  sessions open at once (each in its own order), against a bare Streamlit page that swaps one image
  per key press (:mod:`bench.bare_page`, the framework's floor on this machine);
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
from datetime import timezone
from pathlib import Path

import numpy as np

from bench.suite import ROOT, copy_project, row

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]
LABEL_COUNTS = (2, 10, 20, 50, 100, 500)
MAX_CLASSES = 9  # the Label page has keys 1..9
ORDERS = ("Default policy", "Random", "Most confident first", "Margin", "Entropy")
"""The five sessions' queue orders (the Label page's "Order" box): each works its own way through
the queue, so they seldom meet on one item."""
PRESS_TIMEOUT_MS = 60_000
WARM_REPEATS = 3
"""The warm baseline is the best of this many calls per label count (the floor on a busy machine)."""

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


async def _drive(root: Path, work: Path, truth: dict, classes: list[str], p: dict) -> dict:
    from playwright.async_api import async_playwright

    keys = {c: str(k + 1) for k, c in enumerate(classes)}  # the page's keys follow the sorted class names
    out: dict = {"log": []}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        try:
            # the floor: the bare page, one session
            print("  session: bare page", file=sys.stderr, flush=True)
            server, page, out["bare_cold"] = await _cold_start(
                browser, lambda: bare_server(root / "images", work / "bare.log"), bare=True)
            try:
                await annotate(page, presses=p["bare_presses"], truth=None, keys=None, think_s=p["think_s"],
                               log=out["log"], session=0, phase="bare", bare=True)
                await page.context.close()
                pages = []
                for _ in ORDERS:  # five sessions at once on the bare page: the framework's and browser's share
                    pages.append(await _new_page(browser))
                    await pages[-1].goto(server.url)
                    await _painted(pages[-1], None)
                await asyncio.gather(*(annotate(pg, presses=p["five_presses"], truth=None, keys=None,
                                                think_s=p["think_s"], log=out["log"], session=k + 1,
                                                phase="bare5", bare=True) for k, pg in enumerate(pages)))
                for pg in pages:
                    await pg.context.close()
            finally:
                server.stop()
            # the app: cold start, then one annotator, then five at once
            print("  session: the app, one session", file=sys.stderr, flush=True)
            server, page, out["app_cold"] = await _cold_start(
                browser, lambda: app_server(root, work / "app.log"), bare=False)
            out["t0"] = time.time()
            try:
                await annotate(page, presses=p["presses"], truth=truth, keys=keys, think_s=p["think_s"],
                               log=out["log"], session=0, phase="one")
                await page.context.close()
                print("  session: the app, five sessions", file=sys.stderr, flush=True)
                pages = []
                for k, order in enumerate(ORDERS):
                    pages.append(await _open_session(browser, server.url, f"oracle{k + 1}", order))
                await asyncio.gather(*(annotate(pg, presses=p["five_presses"], truth=truth, keys=keys,
                                                think_s=p["think_s"], log=out["log"], session=k + 1, phase="five")
                                       for k, pg in enumerate(pages)))
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


# ---- after the run ------------------------------------------------------------------------------
def _epoch(ts) -> float | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # DuckDB current_timestamp: UTC
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.timestamp()


def _rounds(root: Path, truth: dict) -> list[dict]:
    """Every round the run has, with its accuracy on the items still unlabeled when it was trained."""
    from labeling.model.rounds import load_predictions
    from labeling.service import LabelingService
    from storage import labels as labels_q
    from storage.db import release_files

    service = LabelingService(root)
    with service.project.db.session() as con:
        events = labels_q.all_events(con)
        uris = dict(con.execute("SELECT id, uri FROM items").fetchall())
    out = []
    for r in service.rounds():
        d = {"id": r["id"], "status": r["status"], "n_labels": r["n_labels"],
             "seconds": r["metrics"].get("seconds"), "started": _epoch(r["started_at"]),
             "finished": _epoch(r["finished_at"]), "accuracy": None}
        if r["status"] == "finished" and r["predictions_file"]:
            pr = load_predictions(service.project.data_dir / "rounds" / r["predictions_file"])
            name = dict(zip(pr.class_ids.tolist(), pr.class_names))
            labeled = {e[1] for e in events if e[0] <= r["last_event_id"]}
            hit = [name.get(int(c)) == truth.get(uris.get(int(i)))
                   for i, c in zip(pr.item_ids.tolist(), pr.pseudo.tolist()) if c >= 0 and int(i) not in labeled]
            d["accuracy"] = float(np.mean(hit)) if hit else None
        out.append(d)
    release_files()
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


def _pct(values, q) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.percentile(values, q)) if values else None


def _curve(log: list, rounds: list, t0: float, buckets: int = 8) -> list[dict]:
    """Suggestion accuracy against the oracle over wall-clock time since the first card."""
    done = [r for r in log if r["phase"] in ("one", "five") and "error" not in r]
    if not done:
        return []
    end = max(r["t_settled"] for r in done) - t0
    step = max(5.0, float(np.ceil(end / buckets / 5) * 5))
    out, lo = [], 0.0
    while lo < end:
        hi = lo + step
        here = [r for r in done if lo <= r["t_press"] - t0 < hi and r["suggestion"] is not None]
        live = [r for r in rounds if r["finished"] is not None and r["status"] == "finished"
                and r["finished"] - t0 < hi]
        rnd = max(live, key=lambda r: r["id"]) if live else None
        out.append({"to_s": hi, "labels": sum(r["t_press"] - t0 < hi for r in done),
                    "shown": len(here), "correct": sum(r["suggestion"] == r["true"] for r in here),
                    "round": rnd})
        lo = hi
    return out


def run(work: Path, *, images: int, presses: int, five_presses: int, bare_presses: int, think_s: float = 0.5,
        settle_s: float = 10.0, device: str = "cpu") -> tuple[list[dict], str]:
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
    p = dict(presses=presses, five_presses=five_presses, bare_presses=bare_presses, think_s=think_s,
             settle_s=settle_s)
    out = asyncio.run(_drive(root, work, truth, classes, p))
    log, t0 = out["log"], out["t0"]
    rounds = _rounds(root, truth)
    print("  session: warm train rounds", file=sys.stderr, flush=True)
    warm = warm_rounds(template, root, work, truth, device)
    return _report(log, rounds, warm, out, t0, truth, classes, p, build_s, images=len(truth))


def _report(log, rounds, warm, out, t0, truth, classes, p, build_s, *, images: int) -> tuple[list[dict], str]:
    lat = {ph: [r["latency_ms"] for r in log if r["phase"] == ph and r.get("latency_ms") is not None]
           for ph in ("bare", "bare5", "one", "five")}
    errors = {ph: sum(1 for r in log if r["phase"] == ph and "error" in r) for ph in ("bare", "bare5", "one", "five")}
    p50 = {ph: _pct(v, 50) for ph, v in lat.items()}
    p95 = {ph: _pct(v, 95) for ph, v in lat.items()}
    case = f"{images:,} demo images, {len(classes)} classes"
    rows = []
    cold, bare_cold = out["app_cold"]["first_card_s"], out["bare_cold"]["first_card_s"]
    rows.append(row("session: cold start", f"{case}, serve to the first card painted", cold, "s",
                    "bare Streamlit page, server start to its first image", bare_cold, ratio=cold / bare_cold,
                    ratio_means="x the bare page",
                    note=f"health check answered after {out['app_cold']['health_s']:.1f} s "
                         f"(bare page {out['bare_cold']['health_s']:.1f} s); project built in {build_s:.0f} s"))
    one_ok = None
    if p95["one"] and p95["bare"]:
        one_ok = p95["one"] <= 3 * p95["bare"] and p95["one"] < 500
    rows.append(row("session: key press to next image p95", f"{case}, one session, {len(lat['one'])} presses",
                    p95["one"], "ms", "bare Streamlit page, one image per key press", p95["bare"],
                    ratio=p95["one"] / p95["bare"] if p95["one"] and p95["bare"] else None,
                    ratio_means="x the bare page", target="<= 3x the bare page and < 500 ms", met=one_ok,
                    note=f"p50 {_f(p50['one'])} ms (bare page p50 {_f(p50['bare'])} ms, {len(lat['bare'])} presses); "
                         f"lost presses {errors['one']}"))
    five_ok = p95["five"] <= 1.5 * p95["one"] if p95["five"] and p95["one"] else None
    rows.append(row("session: key press to next image p95", f"{case}, five sessions at once, "
                    f"{len(lat['five'])} presses", p95["five"], "ms", "the same, one session", p95["one"],
                    ratio=p95["five"] / p95["one"] if p95["five"] and p95["one"] else None,
                    ratio_means="x one session", target="<= 1.5x one session", met=five_ok,
                    note=f"p50 {_f(p50['five'])} ms; the bare page with five sessions: p95 {_f(p95['bare5'])} ms, "
                         f"{_f(p95['bare5'] / p95['bare'] if p95['bare5'] and p95['bare'] else None, '.2g')} x its "
                         f"one session; orders: {', '.join(ORDERS)}; lost presses {errors['five']}"))
    finished = [r for r in rounds if r["status"] == "finished" and r["seconds"] is not None and r["started"]
                and r["started"] >= t0 - 1]
    stored = sum(1 for r in log if r["phase"] in ("one", "five") and "error" not in r)
    for n in LABEL_COUNTS:
        at = next((r for r in finished if r["n_labels"] >= n), None)
        wb = warm.get(n)
        if at is None:
            rows.append(row("session: background round", f"{case}, {n:,} labels", None, "s",
                            "the worker's train call, warm process, same labels", wb, target="< 3 s",
                            note=f"not reached in this run ({stored} key presses, newest round at "
                                 f"{max((r['n_labels'] for r in finished), default=0)} labels)"
                                 + ("" if wb else f"; the project has only {images:,} items")))
            continue
        rows.append(row("session: background round", f"{case}, {n:,} labels (round {at['id']} at "
                        f"{at['n_labels']} labels)", at["seconds"], "s",
                        "the worker's train call, warm process, same labels", wb,
                        ratio=at["seconds"] / wb if wb else None, ratio_means="x the warm call",
                        target="< 3 s", met=at["seconds"] < 3,
                        note=f"wall (started to finished in the database) "
                             f"{at['finished'] - at['started']:.1f} s" if at["finished"] else ""))
    upto = [r for r in finished if r["n_labels"] <= 500]
    if upto:
        slow = max(upto, key=lambda r: r["seconds"])
        near = min(warm, key=lambda n: abs(n - slow["n_labels"])) if warm else None
        rows.append(row("session: slowest background round", f"{case}, {len(upto)} rounds up to "
                        f"{max(r['n_labels'] for r in upto)} labels", slow["seconds"], "s",
                        f"the worker's train call, warm process, {near} labels", warm.get(near),
                        ratio=slow["seconds"] / warm[near] if near else None,
                        ratio_means="x the warm call", target="< 3 s at up to 500 labels",
                        met=slow["seconds"] < 3, note=f"round {slow['id']} at {slow['n_labels']} labels"))
    # the second class's first label -> the first suggestion on screen
    t2, seen = None, set()
    for r in (r for r in log if r["phase"] == "one" and "error" not in r):
        seen.add(r["true"])
        if len(seen) == 2:
            t2 = r["t_press"]
            break
    first = next((r for r in log if r["phase"] == "one" and "error" not in r and t2 is not None
                  and r["t_press"] >= t2 and r["next_suggestion"] is not None), None)
    wait_s = first["t_settled"] - t2 if first else None
    first_round = next((r for r in finished if r["n_labels"] >= 2), None)
    rows.append(row("session: second class to first suggestion", f"{case}, one session", wait_s, "s",
                    "the worker's train call at 2 labels, warm process", warm.get(2),
                    ratio=wait_s / warm[2] if wait_s and warm.get(2) else None, ratio_means="x the warm call",
                    target="<= 5 s", met=wait_s <= 5 if wait_s is not None else None,
                    note="the retrain worker at the app's defaults; a card stays on screen until it is "
                         "labeled, so a suggestion shows on the next card after its round"
                         + (f"; first round with 2 classes: round {first_round['id']} at "
                            f"{first_round['n_labels']} labels" if first_round else "")))
    curve = _curve(log, rounds, t0)
    shown = [r for r in log if r["phase"] in ("one", "five") and "error" not in r and r["suggestion"] is not None]
    tail = shown[-max(1, len(shown) // 3):]
    acc = float(np.mean([r["suggestion"] == r["true"] for r in tail])) if tail else None
    chance = 1 / len(classes)
    rows.append(row("session: suggestion accuracy on screen", f"{case}, the last third of suggested cards "
                    f"({len(tail)})", acc * 100 if acc is not None else None, "%",
                    f"chance (one class in {len(classes)})", chance * 100,
                    ratio=acc / chance if acc else None, ratio_means="x chance",
                    note="over wall-clock time: see the session section"))
    return rows, _detail(curve, rounds, warm, lat, p50, p95, out, t0, p, case)


def _f(v, fmt: str = ".0f") -> str:
    return "–" if v is None else format(v, fmt)


def _detail(curve, rounds, warm, lat, p50, p95, out, t0, p, case) -> str:
    lines = [f"{case}. The oracle waits {p['think_s']:g} s on each card, then presses Enter when the suggestion "
             "is right, the class's digit when it is not. The server is `python -m labeling serve` with the "
             "retrain worker at the app's defaults (no `QUORUM_RETRAIN_*` set); one "
             f"session labels {p['presses']} items, then five sessions label {p['five_presses']} each at once. "
             "Key press latency is measured in the page: `keydown` to the first animation frame where the "
             "next image is in the DOM and decoded.", "",
             "| phase | presses | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for ph, name in (("bare", "bare Streamlit page, one session"),
                     ("bare5", "bare Streamlit page, five sessions at once"),
                     ("one", "Quorum, one session"), ("five", "Quorum, five sessions at once")):
        lines.append(f"| {name} | {len(lat[ph])} | {_f(p50[ph])} | {_f(p95[ph])} | "
                     f"{_f(max(lat[ph]) if lat[ph] else None)} |")
    lines += ["", "Suggestion accuracy against the oracle over wall-clock time (seconds since the first card; "
              "five sessions from "
              f"{_f(min((r['t_press'] for r in out['log'] if r['phase'] == 'five'), default=t0) - t0)} s). "
              "`on screen`: the suggestions shown in that window; `round in use`: the newest round finished by "
              "then, scored on the items still unlabeled when it was trained.", "",
              "| until s | labels | suggested cards | on screen | round in use | its labels | round accuracy |",
              "|---:|---:|---:|---:|---:|---:|---:|"]
    for c in curve:
        rnd = c["round"]
        acc = f"{c['correct'] / c['shown']:.0%}" if c["shown"] else "–"
        racc = f"{rnd['accuracy']:.0%}" if rnd and rnd["accuracy"] is not None else "–"
        lines.append(f"| {c['to_s']:.0f} | {c['labels']} | {c['shown']} | {acc} | {rnd['id'] if rnd else '–'} | "
                     f"{rnd['n_labels'] if rnd else '–'} | {racc} |")
    lines += ["", "Every round of the run (the worker's; `seconds` is the round's own figure, `metrics.seconds`), "
              "and the worker's train call in this process on the same labels:", "",
              "| round | status | labels | started at s | finished at s | seconds | accuracy on unlabeled |",
              "|---:|---|---:|---:|---:|---:|---:|"]
    for r in rounds:
        at = {k: f"{r[k] - t0:.0f}" if r[k] and r[k] >= t0 - 1 else "before" for k in ("started", "finished")}
        lines.append(f"| {r['id']} | {r['status']} | {r['n_labels']} | {at['started']} | {at['finished']} | "
                     f"{_f(r['seconds'], '.2f')} | "
                     f"{_f(r['accuracy'] * 100 if r['accuracy'] is not None else None, '.0f')}"
                     f"{'%' if r['accuracy'] is not None else ''} |")
    lines += ["", f"Warm train call (best of {WARM_REPEATS}): "
              + ", ".join(f"{n} labels {s:.2f} s" for n, s in sorted(warm.items())) + "."]
    return "\n".join(lines)
