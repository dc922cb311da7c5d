"""``python -m bench``: run the benchmarks, print the table, write bench/results/."""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import time
from dataclasses import asdict
from pathlib import Path

from . import core

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller workloads (well under a minute)")
    parser.add_argument("--synchronous", default="NORMAL", choices=["OFF", "NORMAL", "FULL"],
                        help="SQLite synchronous setting for every system (default: %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.time()
    figures, _series = core.run(args.quick, args.synchronous)
    machine = (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}, "
        f"synchronous={args.synchronous}, WAL{', quick' if args.quick else ''}"
    )
    width = max(len(f.name) for f in figures)
    lines = [f"| {'figure':<{width}} | measured | ratio | target | ok |", f"|{'-' * (width + 2)}|---|---|---|---|"]
    lines += [
        f"| {f.name:<{width}} | {f.measured} | {f.ratio:.3g} | {f.target} | {'yes' if f.ok else 'NO'} |"
        for f in figures
    ]
    table = "\n".join(lines)
    print(machine)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stem = "core-quick" if args.quick else "core"
    (RESULTS / f"{stem}.md").write_text(f"{machine}\n\n{table}\n")
    report = {"machine": machine, "seconds": round(time.time() - started, 1), "figures": [asdict(f) for f in figures]}
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
