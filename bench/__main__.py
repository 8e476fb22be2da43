"""``python -m bench [--quick] [--device auto|cpu|cuda] [--only NAME ...]``

Runs every benchmark with its baseline measured in the same run, prints one table, and rewrites
the suite section of ``bench/RESULTS.md`` (date, machine, every figure beside its baseline).
``--quick`` takes 2 to 5 minutes on two cores, the full run (up to 1M items) 10 to 20 minutes; the
browser session (:mod:`bench.session`, needs ``/usr/bin/chromium``) adds about 5 and 15 minutes.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date
from pathlib import Path

from bench import session, stages, suite

NAMES = ("interaction", "embedding", "backbones", "rounds", "neighbours", "memory", "map", "session")
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
DETAILS: dict[str, str] = {}
"""Sections a benchmark writes beside the suite table (key -> markdown), e.g. the session's curves."""


def markers(key: str) -> tuple[str, str]:
    """The comments around one command's table in RESULTS.md (each command keeps its own table)."""
    return f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"


def machine(device: str) -> str:
    """CPU model, cores, GPU (when used), torch version."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else "no GPU used"
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, torch {torch.__version__}, device {device}"


def load() -> str:
    try:
        return " / ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def plan(profile: str, device: str) -> dict:
    """Sizes per profile. ``tiny`` is the test suite's smoke run (seconds; figures meaningless)."""
    if profile == "tiny":
        return {"interaction": dict(sizes=(300, 600), repeats=3),
                "embedding": dict(n_images=16), "backbones": dict(n_images=8, names=("efficientnet_lite0",)),
                "rounds": [(2_000, 64, 5, 100)],
                "neighbours": dict(view=(2_000, 64, 5, 100), graph=(1_000, 32), million=None),
                "memory": (2_000, 64, 5, 100), "map": dict(n=3, d=16),
                "session": None}  # a browser session: measured by --quick and the full run only
    if profile == "quick":
        return {"interaction": dict(sizes=(2_000, 10_000, (10_000, 5_000)), repeats=20),
                "embedding": dict(n_images=300), "backbones": dict(n_images=100),
                "rounds": [(10_000, 512, 10, 1_000), (20_000, 1280, 100, 2_000), (100_000, 512, 10, 10_000)],
                "neighbours": dict(view=(20_000, 1280, 100, 2_000), graph=(5_000, 512), million=None),
                "memory": (100_000, 512, 10, 10_000), "map": dict(n=3_000, d=512),
                "session": dict(images=600, presses=60, open_presses=20, five_presses=12, bare_presses=40)}
    rounds = [(10_000, 512, 10, 1_000), (100_000, 512, 10, 1_000), (100_000, 512, 10, 10_000),
              (100_000, 512, 100, 10_000), (100_000, 1280, 10, 10_000), (100_000, 1280, 100, 10_000),
              (1_000_000, 512, 10, 10_000)]
    return {"interaction": dict(sizes=(10_000, 100_000, (100_000, 50_000)), repeats=50),
            "embedding": dict(n_images=3_000), "backbones": dict(n_images=1_000),
            "rounds": rounds,
            "neighbours": dict(view=(100_000, 1280, 100, 10_000), graph=(50_000, 512),
                               million=(1_000_000, 512, 10, 10_000)),
            "memory": (1_000_000, 512, 10, 10_000), "map": dict(n=100_000, d=512),
            "session": dict(images=3_000, presses=300, open_presses=60, five_presses=40, bare_presses=100)}


def run(names, profile: str, device: str, work: Path) -> list[dict]:
    """Run the named benchmarks; rows in the order of ``NAMES``."""
    p = plan(profile, device)
    wanted = set(names)
    million = p["neighbours"]["million"]
    # Projects for rounds, the neighbourhood view and memory are built once and shared.
    cases = list(p["rounds"]) if "rounds" in wanted else []
    if "neighbours" in wanted:
        cases += [p["neighbours"]["view"]] + ([million] if million else [])
    if "memory" in wanted:
        cases.append(p["memory"])
    cases = list(dict.fromkeys(cases))
    index = build_s = None
    if million and "neighbours" in wanted:
        # The approximate index a 1M-item search would use, queried item by item.
        print(f"… IVF index {million[0]:,} x {million[1]}", file=sys.stderr, flush=True)
        x, _ = suite.project_data(*million[:2])
        build_s, index = suite.approximate_index(x, nlist=2_000, nprobe=64)
        del x
    rows: list[dict] = []
    roots: dict = {}
    DETAILS.clear()
    for name in NAMES:
        if name not in wanted:
            continue
        t0 = time.perf_counter()
        print(f"… {name}", file=sys.stderr, flush=True)
        if cases and not roots and name in ("rounds", "neighbours", "memory"):
            got, roots = suite.round_latency(cases, work / "rounds", device=device,
                                             repeats=1 if profile == "tiny" else 2)
            if "rounds" in wanted:
                keep = {_key(c) for c in p["rounds"]}
                rows += [r for r in got if r["case"] in keep and r["benchmark"] == "round latency"]
                rows += [r for r in got if r["case"] in keep and r["benchmark"] != "round latency"]
        if name == "interaction":
            rows += suite.interaction_rows(work / "interaction", **p["interaction"])
            from bench.interaction import card_image_row

            rows.append(card_image_row(work / "card-image", repeats=5 if profile == "tiny" else 20))
        elif name == "embedding":
            rows += stages.embedding(work, device=device, **p["embedding"])
        elif name == "backbones":
            from bench.backbones import backbone_rows

            rows += backbone_rows(work, device=device, **p["backbones"])
        elif name == "neighbours":
            rows += suite.neighbourhood_view(roots[p["neighbours"]["view"]],
                                             queries=20 if profile == "tiny" else 200)
            if million:
                rows += suite.neighbourhood_view(roots[million], target_ms=20, index=index,
                                                 index_build_s=build_s)
            rows += suite.knn_graph_vs_sklearn(*p["neighbours"]["graph"])
        elif name == "memory":
            rows += stages.memory(roots[p["memory"]], device=device)
        elif name == "map":
            rows += stages.map_layout(**p["map"])
        elif name == "session":
            if p["session"] is None:
                print("  session: not run at this size (a real browser session; python -m bench --quick runs it)",
                      file=sys.stderr, flush=True)
            else:
                got, detail = session.run(work / "session", device=device, **p["session"])
                if got:  # skipped (no Chromium here): the section of an earlier run stays
                    DETAILS["session"] = detail
                rows += got
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def _key(case) -> str:
    n, d, c, labels = case
    return f"{n:,} x {d}, {c} classes, {labels:,} labels"


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float) and abs(v) < 1000:
        return f"{v:.3g}" if abs(v) >= 0.001 else f"{v:.2g}"
    return f"{v:,.0f}"


def table(rows: list[dict]) -> str:
    lines = ["| benchmark | case | Quorum | baseline | baseline value | ratio | target | met | note |",
             "|---|---|---:|---|---:|---:|---|:-:|---|"]
    for r in rows:
        met = {True: "yes", False: "**no**", None: "–"}[r["met"]]
        ratio = "–" if r["ratio"] is None else f"{_fmt(r['ratio'])} {r['ratio_means']}"
        lines.append(f"| {r['benchmark']} | {r['case']} | {_fmt(r['value'])} {r['unit']} | {r['baseline']} | "
                     f"{_fmt(r['baseline_value'])} {r['unit']} | {ratio} | {r['target'] or ''} | {met} | "
                     f"{r['note']} |")
    return "\n".join(lines)


def write_results(rows: list[dict], *, command: str, device: str, seconds: float, loads: tuple[str, str],
                  path: Path = RESULTS) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Measured results\n"
    begin, end = markers(command.replace("python -m bench", "").replace("-", "").replace(" ", "") or "full")
    section = (f"{begin}\n## Benchmark suite: `{command}` ({date.today()})\n\n"
               f"Machine: {machine(device)}. Took {seconds / 60:.1f} min; load average (1/5/15 min) "
               f"{loads[0]} before, {loads[1]} after.\n\n"
               "Every figure is measured in the same run as its baseline. `met` is the issue's target at "
               "that size (– where none applies).\n\n"
               f"{table(rows)}\n{end}")
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def write_section(key: str, body: str, *, command: str, profile: str, path: Path = RESULTS) -> None:
    """A benchmark's own section (between its ``bench:KEY-PROFILE`` markers), replaced on every run
    of that profile."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Measured results\n"
    begin, end = markers(f"{key}-{profile}")
    section = f"{begin}\n## {key.capitalize()} benchmark in detail: `{command}` ({date.today()})\n\n{body}\n{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[1])
    p.add_argument("--quick", action="store_true", help="small sizes: every benchmark in a few minutes")
    p.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # the tests' smoke run
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--only", nargs="+", choices=NAMES, metavar="NAME", help=f"run only these: {', '.join(NAMES)}")
    p.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md as it is")
    p.add_argument("--results", type=Path, default=RESULTS, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    if device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA GPU")
    profile = "tiny" if a.tiny else "quick" if a.quick else "full"
    before, t0 = load(), time.perf_counter()
    with suite.scratch() as tmp:
        rows = run(a.only or NAMES, profile, device, Path(tmp))
    seconds = time.perf_counter() - t0
    print(f"Quorum benchmarks ({date.today()}, {machine(device)}, {seconds / 60:.1f} min)")
    print(table(rows))
    if not a.no_write:
        command = "python -m bench" + (" --quick" if a.quick else "") + (" --tiny" if a.tiny else "") + (
            f" --only {' '.join(a.only)}" if a.only else "")
        write_results(rows, command=command, device=device, seconds=seconds, loads=(before, load()),
                      path=a.results)
        for key, text in DETAILS.items():
            write_section(key, text, command=command, profile=profile, path=a.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
