"""Durability through the real server: SIGKILL mid-stream loses no acknowledged label.

``python -m labeling serve`` runs on a copy of the trained project with a retrain worker that trains
after every 3 new events (or 1 s after one). Three annotators label at the same time, each in its own
browser context of one headless Chromium (fully concurrent: one asyncio loop drives the three pages,
so their key presses and the server's script runs overlap), each under its own name typed into the
sidebar's Annotator box. A session presses Enter (accept the suggestion) or a digit (pick a class).

Acknowledgement: the toast the Label page shows after a label is stored, "URI → LABEL". The page
records the label before it reruns, and the toast comes with that rerun, so a toast names exactly
what was committed (which item, which label); the session records it with its own name. Key presses
without a toast yet are unacknowledged: they may or may not be stored. A key press on an item another
session labeled a moment earlier is dropped, or stored for the next item when that item's button is
the same one (the toast then names the next item): the toast, not the screen, says what counts.

Once every session has acknowledged labels and a model round is ``running``, the Streamlit server
process itself (the child ``serve`` runs) is killed with SIGKILL while the sessions keep pressing
keys. (Should that round finish in the instant between seeing it and the kill, the server is started
and killed again.) The server is restarted on the project (its worker now never trains), one page is
loaded, and: every acknowledged label is stored exactly once and no annotator's item was stored twice,
no round is left running, the interrupted round is ``discarded``, the newest round finished before the
kill is still the one in use (in the engine and in the sidebar), and the app shows an item and stores
a label again.
"""
from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from conftest import CHROMIUM, require_chromium, start_server, stop_server

from labeling.service import LabelingService
from storage import labels as labels_q
from storage.db import release_files

pytestmark = pytest.mark.browser

NAMES = ("ann1", "ann2", "ann3")
ORDERS = ("Default policy", "Random", "Most confident first")
"""Each session works through the queue in its own order, so they seldom meet on one item."""
MIN_ACKS_EACH = 3
"""Each session has this many acknowledged labels from the running server before it is killed."""
ACTION_TIMEOUT_S = 30.0
DROPPED_S = 3.0
"""A key press whose item changed under it (another session labeled it first) and that brought no toast
this long after is counted as dropped: nothing was acknowledged, the session goes on."""
KILLS = 3
GRACE_S = 2.0
"""After the kill, how long a session still watches for the toast of its last key press."""
CAPTION = '[data-testid="stImageCaption"]'
TOAST = '[data-testid="stToast"]'
ACK = re.compile(r"(\S+) → (.+)")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


def _state(root: Path) -> tuple[list[tuple], list[dict]]:
    """All label events and rounds, read from this process; the file is let go at once for the server."""
    service = LabelingService(root)
    try:
        with service.project.db.session() as con:
            events = labels_q.all_events(con)
        return events, service.rounds()
    finally:
        release_files()


def _acks_in(texts: list[str], seen: set[str]) -> list[tuple[str, str]]:
    found = []
    for text in texts:
        text = text.strip()
        m = ACK.search(text)
        if m and text not in seen:
            seen.add(text)
            found.append((m.group(1), m.group(2).strip()))
    return found


async def _open_session(browser, url: str, name: str, order: str):
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    await page.goto(url)
    await page.get_by_text("Suggestion:").first.wait_for(timeout=90_000)
    await page.locator('[data-testid="stSelectbox"]').filter(has_text="Order").first.click()
    await page.get_by_role("option", name=order, exact=True).click()
    await page.wait_for_timeout(500)
    box = page.get_by_role("textbox", name="Annotator")
    await box.fill(name)
    await box.press("Enter")  # commits the name: every label of this session is stored under it
    await page.wait_for_timeout(1000)
    await page.evaluate("document.activeElement && document.activeElement.blur()")  # keys go to the page
    return page


async def _annotate(page, name: str, acks: list[dict], pressed: Counter, dropped: Counter, killed: dict) -> None:
    """Label item after item until the server is killed; record every acknowledged label."""
    caption = page.locator(CAPTION).first
    toasts = page.locator(TOAST)
    seen = {t.strip() for t in await toasts.all_inner_texts()}
    k = 0
    while killed["at"] is None:
        shown = await caption.inner_text()
        key = "Enter" if k % 2 == 0 else str(1 + k % 3)
        k += 1
        await page.keyboard.press(key)
        pressed[name] += 1
        deadline = time.monotonic() + ACTION_TIMEOUT_S
        acked = False
        changed_at = None
        while not acked:
            for uri, label in _acks_in(await toasts.all_inner_texts(), seen):
                acks.append({"user": name, "uri": uri, "label": label, "shown": shown, "key": key})
                acked = True
            if acked:
                break
            now = time.monotonic()
            if killed["at"] is not None and now > killed["at"] + GRACE_S:
                return
            if changed_at is None and await caption.inner_text() != shown:
                changed_at = now
            if changed_at is not None and now > changed_at + DROPPED_S:
                dropped[name] += 1
                break
            if now > deadline:
                raise AssertionError(f"{name}: no toast within {ACTION_TIMEOUT_S:.0f} s after pressing {key} on {shown}")
            await asyncio.sleep(0.05)
        while acked and killed["at"] is None and await caption.inner_text() == shown:  # the next item is on screen
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: {shown} stayed on screen after its label was acknowledged")
            await asyncio.sleep(0.05)


async def _label_until_killed(browser, server, root: Path, acks: list[dict], pressed: Counter,
                              dropped: Counter) -> list[int]:
    """Three sessions label concurrently; SIGKILL the Streamlit process once each has acknowledged labels
    and a round is running. Returns the rounds seen running just before the kill."""
    pages = await asyncio.gather(*(_open_session(browser, server.url, n, o) for n, o in zip(NAMES, ORDERS)))
    killed: dict = {"at": None}
    first = len(acks)
    tasks = [asyncio.create_task(_annotate(pg, n, acks, pressed, dropped, killed)) for pg, n in zip(pages, NAMES)]
    try:
        deadline = time.monotonic() + 60
        while True:
            failed = [t for t in tasks if t.done()]
            if failed:  # a session failed before the kill: raise its error (the others are cancelled below)
                failed[0].result()
            if all(sum(a["user"] == n for a in acks[first:]) >= MIN_ACKS_EACH for n in NAMES):
                _events, rounds = await asyncio.to_thread(_state, root)
                running = [r["id"] for r in rounds if r["status"] == "running"]
                if running:
                    break
            assert time.monotonic() < deadline, (
                f"no round running with {MIN_ACKS_EACH} acknowledged labels per session within 60 s: "
                f"{Counter(a['user'] for a in acks[first:])}\n{server.log_tail()}")
            await asyncio.sleep(0.3)
        await asyncio.sleep(random.uniform(0.0, 0.1))  # the server has the database again: kill it at work
        pid = server.streamlit_pid()
        os.kill(pid, signal.SIGKILL)  # the Streamlit server process itself, mid-stream and mid-round
        killed["at"] = time.monotonic()
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pg in pages:
            await pg.context.close()
    await asyncio.to_thread(server.proc.wait, 30)  # serve ends with the server it ran
    assert not Path(f"/proc/{pid}").exists(), "the killed Streamlit process is still there"
    return running


async def _label_once(browser, url: str, expected_round: int) -> tuple[str, str]:
    """A fresh page shows an item and the round from before the kill; one Enter is acknowledged."""
    page = await browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        await page.goto(url)
        await page.get_by_text("Suggestion:").first.wait_for(timeout=90_000)
        await page.get_by_text(re.compile(rf"Round\s+{expected_round}\b")).first.wait_for(timeout=30_000)
        await page.wait_for_timeout(1000)
        shown = await page.locator(CAPTION).first.inner_text()
        seen = {t.strip() for t in await page.locator(TOAST).all_inner_texts()}
        await page.keyboard.press("Enter")
        deadline = time.monotonic() + ACTION_TIMEOUT_S
        while True:
            got = _acks_in(await page.locator(TOAST).all_inner_texts(), seen)
            if got:
                assert got[0][0] == shown
                return got[0]
            assert time.monotonic() < deadline, "the restarted server did not acknowledge a label"
            await asyncio.sleep(0.05)
    finally:
        await page.close()


async def _scenario(root: Path, tmp_path: Path, acks: list[dict], pressed: Counter, dropped: Counter) -> dict:
    from playwright.async_api import async_playwright

    out: dict = {"t0": time.monotonic()}
    async with async_playwright() as p:
        launching = asyncio.create_task(p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS))
        try:
            # A round seen running may finish in the instant before the kill (rounds take about a second on a
            # fast machine): then the server is started again and killed again, at most KILLS times.
            for kill in range(KILLS):
                server = await asyncio.to_thread(start_server, root, log=tmp_path / f"server-{kill}.log",
                                                 retrain_events=3, retrain_seconds=1)
                try:
                    browser = await launching  # Chromium started while the server came up
                    out.setdefault("t_up", time.monotonic())
                    seen_running = await _label_until_killed(browser, server, root, acks, pressed, dropped)
                    out["t_killed"] = time.monotonic()
                finally:
                    stop_server(server)
                # the state the kill left, read before anything recovers it
                _events, rounds = _state(root)
                out["interrupted"] = [r["id"] for r in rounds if r["status"] == "running"]
                out["kills"] = kill + 1
                if out["interrupted"]:
                    break
            assert out["interrupted"], f"{KILLS} kills found no running round (last seen: {seen_running}): {rounds}"
            out["before_kill"] = max(r["id"] for r in rounds if r["status"] == "finished")

            # restart; its retrain worker never trains, so the round in use stays the one from before the kill
            server = await asyncio.to_thread(
                start_server, root, log=tmp_path / "server-restarted.log", retrain_events=10**6,
                retrain_seconds=10**6, env={"QUORUM_USER": "after-restart"})
            try:
                # the page load opens the project: the worker takes it over and discards the interrupted round
                out["after_restart"] = await _label_once(browser, server.url, out["before_kill"])
                deadline = time.monotonic() + 30
                while True:
                    out["events"], out["rounds"] = _state(root)
                    if not any(r["status"] == "running" for r in out["rounds"]):
                        break
                    assert time.monotonic() < deadline, f"the restarted server left rounds running: {out['rounds']}"
                    await asyncio.sleep(0.3)
            finally:
                stop_server(server)
        finally:
            await (await launching).close()
    out["t_end"] = time.monotonic()
    return out


def test_sigkill_of_the_server_mid_stream_loses_no_acknowledged_label(trained_project, tmp_path):
    require_chromium()
    root = trained_project
    base_events, base_rounds = _state(root)
    base_id = base_events[-1][0]
    acks: list[dict] = []
    pressed: Counter = Counter()
    dropped: Counter = Counter()
    out = asyncio.run(_scenario(root, tmp_path, acks, pressed, dropped))
    events, rounds, interrupted, before_kill = out["events"], out["rounds"], out["interrupted"], out["before_kill"]
    uri, label = out["after_restart"]

    service = LabelingService(root)
    names = service.class_names()
    new = [e for e in events if e[0] > base_id]
    stored = Counter((e[4], e[1], names.get(e[2])) for e in new if e[3] == "label")
    ids = {a["uri"]: service.item_id_for_uri(a["uri"]) for a in acks}
    release_files()
    for a in acks:  # every acknowledged label is there, exactly once
        assert stored[(a["user"], ids[a["uri"]], a["label"])] == 1, (a, stored)
    per_item = Counter((e[4], e[1]) for e in new)
    assert max(per_item.values()) == 1, [k for k, n in per_item.items() if n > 1]  # nothing stored twice
    assert {e[4] for e in new} <= {*NAMES, "after-restart"}
    assert all(sum(a["user"] == n for a in acks) >= MIN_ACKS_EACH for n in NAMES)
    assert len(new) - 1 <= sum(pressed.values())  # one event per key press at most (plus the one after restart)
    assert ("after-restart", service.item_id_for_uri(uri), label) in stored

    by_id = {r["id"]: r for r in rounds}
    assert not [r for r in rounds if r["status"] == "running"]
    for rid in interrupted:  # the interrupted round is discarded, the previous one stays in use
        assert by_id[rid]["status"] == "discarded" and by_id[rid]["error"] == "interrupted", by_id[rid]
    assert service.predictions()[0]["id"] == before_kill
    release_files()
    assert before_kill >= max(r["id"] for r in base_rounds if r["status"] == "finished")
    print(f"server up {out['t_up'] - out['t0']:.1f} s, killed after {out['t_killed'] - out['t_up']:.1f} s of "
          f"labeling, restart and checks {out['t_end'] - out['t_killed']:.1f} s; "
          f"acknowledged {len(acks)} labels ({dict(Counter(a['user'] for a in acks))}), key presses "
          f"{sum(pressed.values())}, events stored {len(new) - 1}, interrupted round(s) {interrupted}, "
          f"round in use {before_kill}, kills {out['kills']}, key presses dropped (item labeled by another session first) "
          f"{dict(dropped)}, acknowledged for another item than the one on screen "
          f"{sum(a['uri'] != a['shown'] for a in acks)}")
