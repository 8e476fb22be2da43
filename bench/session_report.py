"""The session benchmark's report: rows for the suite table and the detail section of RESULTS.md, from
the log of key presses and the rounds the run left in the project (:mod:`bench.session` drives it)."""
from __future__ import annotations

import os
from datetime import timezone
from pathlib import Path

import numpy as np

from bench.suite import row

LABEL_COUNTS = (2, 10, 20, 50, 100, 500)
MAX_CLASSES = 9  # the Label page has keys 1..9
ORDERS = ("Default policy", "Random", "Most confident first", "Margin", "Entropy")
"""The five sessions' queue orders (the Label page's "Order" box): each works its own way through
the queue, so they seldom meet on one item."""
APP_PHASES = ("one", "open5", "five")
"""The phases that label with the app: one session; five open, one pressing; five pressing at once."""
WARM_REPEATS = 3
"""The warm baseline is the best of this many calls per label count (the floor on a busy machine)."""



def _epoch(ts) -> float | None:
    if ts is None:
        return None
    if ts.tzinfo is None:  # DuckDB current_timestamp: UTC
        ts = ts.replace(tzinfo=timezone.utc)
    return ts.timestamp()


def round_table(root: Path, truth: dict) -> list[dict]:
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


def _pct(values, q) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.percentile(values, q)) if values else None


def _curve(log: list, rounds: list, t0: float, buckets: int = 8) -> list[dict]:
    """Suggestion accuracy against the oracle over wall-clock time since the first card."""
    done = [r for r in log if r["phase"] in APP_PHASES and "error" not in r]
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


def report(log, rounds, warm, out, t0, truth, classes, p, build_s, *, images: int) -> tuple[list[dict], str]:
    lat = {ph: [r["latency_ms"] for r in log if r["phase"] == ph and r.get("latency_ms") is not None]
           for ph in ("bare", "bare5", *APP_PHASES)}
    errors = {ph: sum(1 for r in log if r["phase"] == ph and "error" in r) for ph in ("bare", "bare5", *APP_PHASES)}
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
    def against_one(phase: str, what: str, note: str) -> dict:
        """A key-press row of ``phase`` against the one-session p95 (target: at most 1.5 times it)."""
        both = p95[phase] and p95["one"]
        return row("session: key press to next image p95", f"{case}, {what}, {len(lat[phase])} presses", p95[phase],
                   "ms", "the same, one session", p95["one"], ratio=p95[phase] / p95["one"] if both else None,
                   ratio_means="x one session", target="<= 1.5x one session",
                   met=p95[phase] <= 1.5 * p95["one"] if both else None,
                   note=f"p50 {_f(p50[phase])} ms; {note}; {_cpu_note(out.get('cpu', {}).get(phase))}; "
                        f"lost presses {errors[phase]}")

    if lat["open5"]:
        rows.append(against_one("open5", "five sessions open, one pressing", "the four other sessions stay open on "
                                "the Label page, signed in, polling for new rounds"))
    rows.append(against_one("five", "five sessions at once",
                            f"the bare page with five sessions: p95 {_f(p95['bare5'])} ms, "
                            f"{_f(p95['bare5'] / p95['bare'] if p95['bare5'] and p95['bare'] else None, '.2g')} x "
                            f"its one session; orders: {', '.join(ORDERS)}"))
    finished = [r for r in rounds if r["status"] == "finished" and r["seconds"] is not None and r["started"]
                and r["started"] >= t0 - 1]
    stored = sum(1 for r in log if r["phase"] in APP_PHASES and "error" not in r)
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
    shown = [r for r in log if r["phase"] in APP_PHASES and "error" not in r and r["suggestion"] is not None]
    tail = shown[-max(1, len(shown) // 3):]
    acc = float(np.mean([r["suggestion"] == r["true"] for r in tail])) if tail else None
    chance = 1 / len(classes)
    rows.append(row("session: suggestion accuracy on screen", f"{case}, the last third of suggested cards "
                    f"({len(tail)})", acc * 100 if acc is not None else None, "%",
                    f"chance (one class in {len(classes)})", chance * 100,
                    ratio=acc / chance if acc else None, ratio_means="x chance",
                    note="over wall-clock time: see the session section"))
    return rows, _detail(curve, rounds, warm, lat, p50, p95, out, t0, p, case)


def _cpu_note(c: dict | None) -> str:
    """Where the cores went during a phase, in one phrase."""
    if not c or not c.get("wall"):
        return "CPU by process not measured here"
    return (f"CPU in this phase, of {2 * c['wall']:.0f} core-seconds ({c['wall']:.0f} s on {os.cpu_count()} cores): "
            f"browsers {c['browsers']:.0f} s, training process {c['training process']:.0f} s, "
            f"server {c['server']:.0f} s")


def _f(v, fmt: str = ".0f") -> str:
    return "–" if v is None else format(v, fmt)


def _detail(curve, rounds, warm, lat, p50, p95, out, t0, p, case) -> str:
    lines = [f"{case}. The oracle waits {p['think_s']:g} s on each card, then presses Enter when the suggestion "
             "is right, the class's digit when it is not. The server is `python -m labeling serve` with the "
             "retrain worker at the app's defaults (no `QUORUM_RETRAIN_*` set); one "
             f"session labels {p['presses']} items; then five sessions are open and one of them labels "
             f"{p.get('open_presses', 0)} more while the other four sit idle on the Label page; then all five label "
             f"{p['five_presses']} each at once. "
             "Key press latency is measured in the page: `keydown` to the first animation frame where the "
             "next image is in the DOM and decoded.", "",
             "| phase | presses | p50 ms | p95 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for ph, name in (("bare", "bare Streamlit page, one session"),
                     ("bare5", "bare Streamlit page, five sessions at once"),
                     ("one", "Quorum, one session"), ("open5", "Quorum, five sessions open, one pressing"),
                     ("five", "Quorum, five sessions at once")):
        lines.append(f"| {name} | {len(lat[ph])} | {_f(p50[ph])} | {_f(p95[ph])} | "
                     f"{_f(max(lat[ph]) if lat[ph] else None)} |")
    cpu = out.get("cpu", {})
    if cpu:
        lines += ["", "Where the cores went in each phase (CPU seconds by process; the browsers share the server's "
                  f"{os.cpu_count()} cores, as on one person's machine; per press: the group's CPU over the "
                  "phase's presses):", "",
                  "| phase | wall s | browsers s | server s | training process s | benchmark s | other s | "
                  "browsers per press ms | server per press ms |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for ph in ("bare", "bare5", *APP_PHASES):
            c = cpu.get(ph)
            if c:
                n = max(len(lat[ph]), 1)
                lines.append(f"| {ph} | {c['wall']:.0f} | {c['browsers']:.1f} | {c['server']:.1f} | "
                             f"{c['training process']:.1f} | {c['benchmark']:.1f} | {c['other']:.1f} | "
                             f"{1000 * c['browsers'] / n:.0f} | {1000 * c['server'] / n:.0f} |")
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
