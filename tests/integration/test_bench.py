"""Smoke run of the benchmark harness at toy sizes: every benchmark reports a baseline and a ratio.

No timing is asserted: the figures of a toy run mean nothing; ``python -m bench`` measures.
"""
from __future__ import annotations

import pytest

from bench.__main__ import NAMES, main, markers

BENCHMARKS = {  # harness name -> the table rows it must produce
    "interaction": ["interaction p95", "card image: server time per card"],
    "embedding": ["embedding throughput"],
    "backbones": ["backbone throughput"],
    "rounds": ["round latency", "round: heads only"],
    "neighbours": ["neighbourhood view p95", "kNN graph (k=15)"],
    "memory": ["round peak memory"],
    "map": ["map (UMAP)"],
    "session": [],  # a real browser session: not run under --tiny (python -m bench --quick measures it)
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    import bench.__main__ as harness

    rows = []
    original = harness.run

    def keep(*args, **kwargs):
        rows.extend(original(*args, **kwargs))
        return rows

    results = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    results.write_text("# Measured results\n\nEarlier text stays.\n", encoding="utf-8")
    harness.run = keep
    try:
        assert main(["--tiny", "--device", "cpu", "--results", str(results)]) == 0
    finally:
        harness.run = original
    return rows, results.read_text(encoding="utf-8")


def test_every_benchmark_has_a_baseline_and_a_ratio(tiny_run):
    rows, _ = tiny_run
    assert set(BENCHMARKS) == set(NAMES)
    names = {r["benchmark"] for r in rows}
    for harness_name, expected in BENCHMARKS.items():
        for name in expected:
            assert name in names, f"{harness_name}: no '{name}' row"
    for r in rows:
        assert r["baseline"], r
        assert r["baseline_value"] is not None and r["baseline_value"] > 0, r
        assert r["value"] is not None and r["value"] > 0, r
        assert r["ratio"] is not None and r["ratio"] > 0, r
        assert r["ratio_means"], r


def test_results_file_gets_the_table_with_machine_and_date(tiny_run):
    rows, text = tiny_run
    assert text.startswith("# Measured results\n\nEarlier text stays.")
    begin, end = markers("tiny")
    section = text[text.index(begin):text.index(end)]
    assert "torch" in section and "cores" in section and "device cpu" in section
    for r in rows:
        assert f"| {r['benchmark']} | {r['case']} |" in section


def test_only_runs_the_named_benchmarks(tmp_path, capsys):
    assert main(["--tiny", "--only", "map", "--no-write"]) == 0
    out = capsys.readouterr().out
    assert "map (UMAP)" in out and "round latency" not in out
