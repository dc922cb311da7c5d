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

from . import chunking, compare, contention, core, durability, trees

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "suite",
        nargs="?",
        default="all",
        choices=["all", "core", "chunking", "trees", "durability", "compare", "contention"],
        help="which benchmarks (contention runs only when named)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (well under a minute)")
    parser.add_argument("--synchronous", default="NORMAL", choices=["OFF", "NORMAL", "FULL"],
                        help="SQLite synchronous setting for every system (default: %(default)s)")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.time()
    RESULTS.mkdir(exist_ok=True)
    suffix = "-quick" if args.quick else ""
    ok = True
    if args.suite in ("all", "chunking"):
        rows = chunking.run(args.quick)
        table = _table(rows)
        print(table)
        (RESULTS / f"chunking{suffix}.md").write_text(table + "\n")
    if args.suite in ("all", "trees"):
        table = _table(trees.run(args.quick))
        print(table)
        (RESULTS / f"trees{suffix}.md").write_text(table + "\n")
    if args.suite in ("all", "durability"):
        _durability(args, suffix)
    if args.suite in ("all", "core"):
        ok = _core(args, started, suffix)
    if args.suite in ("all", "compare"):
        ok = _compare(args, suffix) and ok
    if args.suite == "contention":
        machine = f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}"
        text = f"{machine}\n\n{_table(contention.run(args.quick))}"
        print(text)
        (RESULTS / f"contention{suffix}.md").write_text(text + "\n")
    return 0 if ok else 1


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _durability(args: argparse.Namespace, suffix: str) -> None:
    machine, measured = durability.run(args.quick)
    table = _table(durability.rows(measured))
    warning = durability.fs_warning(machine)
    text = f"{machine}\n\n{table}" + (f"\n\n{warning}" if warning else "")
    print(text)
    (RESULTS / f"durability{suffix}.md").write_text(text + "\n")
    (RESULTS / f"durability{suffix}.json").write_text(
        json.dumps(durability.to_json(machine, measured), indent=2) + "\n"
    )


def _core(args: argparse.Namespace, started: float, suffix: str) -> bool:
    figures, _series = core.run(args.quick, args.synchronous)
    machine = (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}, "
        f"synchronous={args.synchronous}, WAL{', quick' if args.quick else ''}"
    )
    marks = {None: "-", True: "yes", False: "NO"}
    rows = [["figure", "measured", "ratio", "target", "ok"]]
    rows += [[f.name, f.measured, f"{f.ratio:.3g}", f.target, marks[f.ok]] for f in figures]
    table = _table(rows)
    print(machine)
    print(table)
    stem = f"core{suffix}"
    (RESULTS / f"{stem}.md").write_text(f"{machine}\n\n{table}\n")
    report = {"machine": machine, "seconds": round(time.time() - started, 1), "figures": [asdict(f) for f in figures]}
    (RESULTS / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    return all(f.ok is not False for f in figures)


def _compare(args: argparse.Namespace, suffix: str) -> bool:
    report = compare.run(args.quick, args.synchronous)
    parts = [report.machine, ""]
    for section in report.sections:
        parts += [f"{section.title}:", "", _table(section.rows()), ""]
    marks = {None: "-", True: "yes", False: "NO"}
    rows = [["target", "measured", "ratio", "target", "ok"]]
    rows += [[t.name, t.measured, "-" if t.ratio is None else f"{t.ratio:.3g}", t.target, marks[t.ok]]
             for t in report.targets]  # fmt: skip
    parts += ["Targets of issue 5 (ratios from this run):", "", _table(rows)]
    png = RESULTS / f"compare-latency{suffix}.png"
    note = compare.plot(report, png)
    if note.startswith("wrote"):
        parts += ["", f"![per-save latency, coding workload]({png.name})"]
    text = "\n".join(parts)
    print(text)
    print(note)
    (RESULTS / f"compare{suffix}.md").write_text(text + "\n")
    (RESULTS / f"compare{suffix}.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return all(t.ok is not False for t in report.targets)


if __name__ == "__main__":
    sys.exit(main())
