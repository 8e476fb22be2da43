"""``python -m bench [--quick]``: benchmarks with their baselines measured in the same run."""
from __future__ import annotations

import argparse
import platform
import tempfile
from datetime import date
from pathlib import Path

from bench import interaction


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m bench")
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    a = p.parse_args()
    sizes = (2_000, 10_000) if a.quick else (10_000, 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        rows = interaction.run(Path(tmp), sizes=sizes, repeats=20 if a.quick else 50)
    base = rows[0]
    print(f"Interaction: label action + next item's data ({date.today()}, {platform.processor() or platform.machine()})")
    print(f"{'items':>9} {'p50 ms':>8} {'p95 ms':>8} {'p95 vs ' + str(base['items']):>14} {'target':>8}")
    for r in rows:
        print(f"{r['items']:>9} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} {r['p95_ms'] / base['p95_ms']:>14.2f} "
              f"{'<150':>8}")
    return 0


raise SystemExit(main())
