"""The session benchmark's report, on a synthetic log: its targets are judged from the figures."""
from __future__ import annotations

from bench.session_report import report


def _press(phase, k, t0, latency, *, true="cat", suggestion=None, nxt=None):
    return {"phase": phase, "session": 0, "t_press": t0 + k, "t_settled": t0 + k + 0.2, "latency_ms": latency,
            "uri": f"u{k}", "true": true, "suggestion": suggestion, "key": "1", "next": f"u{k + 1}",
            "next_suggestion": nxt}


def test_report_judges_latency_rounds_and_first_suggestion():
    t0 = 1_000.0
    log = [_press("bare", k, t0 - 100, 50.0) for k in range(10)]
    log += [_press("bare5", k, t0 - 50, 100.0) for k in range(10)]
    log += [_press("one", 0, t0, 120.0, true="cat"), _press("one", 1, t0, 130.0, true="dog", nxt="dog")]
    log += [_press("one", k, t0, 140.0, true="dog", suggestion="dog", nxt="dog") for k in range(2, 12)]
    log += [_press("open5", k, t0 + 15, 180.0, true="dog", suggestion="dog") for k in range(5)]
    log += [_press("five", k, t0 + 20, 400.0, true="dog", suggestion="cat") for k in range(10)]
    log.append({"phase": "five", "session": 1, "t_press": t0 + 30, "error": "timeout"})
    rounds = [{"id": 2, "status": "finished", "n_labels": 2, "seconds": 1.5, "started": t0 + 1.5,
               "finished": t0 + 3.0, "accuracy": 0.6},
              {"id": 3, "status": "finished", "n_labels": 10, "seconds": 4.0, "started": t0 + 10,
               "finished": t0 + 14, "accuracy": 0.8}]
    out = {"app_cold": {"first_card_s": 6.0, "health_s": 1.0}, "bare_cold": {"first_card_s": 2.0, "health_s": 0.5},
           "log": log, "cpu": {"five": {"wall": 10.0, "browsers": 12.0, "server": 3.0, "training process": 4.0,
                                          "benchmark": 0.5, "other": 0.1}}}
    p = {"presses": 12, "five_presses": 10, "think_s": 0.5}
    rows, detail = report(log, rounds, {2: 1.0, 10: 2.0}, out, t0, {}, ["cat", "dog"], p, 20.0, images=100)
    one = next(r for r in rows if r["benchmark"].startswith("session: key press") and "one session" in r["case"])
    five = next(r for r in rows if "five sessions at once" in r["case"])
    open5 = next(r for r in rows if "five sessions open, one pressing" in r["case"])
    assert open5["met"] is True and open5["baseline_value"] == one["value"]  # 180 ms <= 1.5 x 140 ms
    assert abs(open5["ratio"] - 180 / 140) < 1e-9
    assert "| Quorum, five sessions open, one pressing | 5 | 180 | 180 | 180 |" in detail

    assert one["value"] < 150 and one["met"] is True  # 140 ms p95 <= 3 x 50 ms and < 500 ms
    assert five["value"] == 400.0 and five["met"] is False and "lost presses 1" in five["note"]
    rnd = [r for r in rows if r["benchmark"] == "session: background round"]
    assert [r["met"] for r in rnd[:2]] == [True, False]  # 1.5 s at 2 labels; 4.0 s at 10 labels
    assert all(r["value"] is None for r in rnd[2:])  # 20 labels and more: not reached
    first = next(r for r in rows if r["benchmark"] == "session: second class to first suggestion")
    assert abs(first["value"] - 0.2) < 1e-9 and first["met"] is True  # the dog press's own next card
    assert "| Quorum, five sessions at once | 10 | 400 | 400 | 400 |" in detail
    assert "browsers 12 s, training process 4 s, server 3 s" in five["note"]
    assert "| five | 10 | 12.0 | 3.0 | 4.0 | 0.5 | 0.1 | 1200 | 300 |" in detail  # 10 presses


def test_cpu_by_process_group_counts_this_process_as_the_benchmark():
    import sys

    from bench import cpu

    if not sys.platform.startswith("linux"):
        import pytest
        pytest.skip("CPU by process reads /proc (Linux)")
    before = cpu.snapshot()
    sum(i * i for i in range(3_000_000))  # about 0.2 s of CPU here
    spent = cpu.used(before, cpu.snapshot())
    assert spent["benchmark"] > 0.05
    assert set(spent) == set(cpu.GROUPS)
