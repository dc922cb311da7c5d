"""``python -m bench``: run the benchmarks and print the tables; ``--save`` also
writes them to bench/results/ (the committed results are replaced only when asked)."""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from eventlog import speedups

from . import chunking, compare, contention, core, durability, postgres, search, trees
from . import langgraph as langgraph_bench

RESULTS = Path(__file__).parent / "results"


def _write(args: argparse.Namespace, name: str, text: str) -> None:
    """Write a result file under bench/results/, only with ``--save``."""
    if args.save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / name).write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "suite",
        nargs="?",
        default="all",
        choices=["all", "core", "chunking", "trees", "durability", "compare", "contention", "postgres", "langgraph",
                 "search"],
        help="which benchmarks (contention, postgres, langgraph and search run only when named)",
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (well under a minute)")
    parser.add_argument("--synchronous", default="NORMAL", choices=["OFF", "NORMAL", "FULL"],
                        help="SQLite synchronous setting for every system (default: %(default)s)")  # fmt: skip
    parser.add_argument("--save", action="store_true", help="also write the results to bench/results/")
    args = parser.parse_args(argv)
    started = time.time()
    # A run without the C extension (EVENTLOG_NO_SPEEDUPS=1, or none built) is saved apart.
    suffix = ("-quick" if args.quick else "") + ("" if speedups.ACTIVE else "-no-c")
    ok = True
    if args.suite in ("all", "chunking"):
        rows = chunking.run(args.quick)
        table = _table(rows)
        print(table)
        _write(args, f"chunking{suffix}.md", table + "\n")
    if args.suite in ("all", "trees"):
        table = _table(trees.run(args.quick))
        print(table)
        _write(args, f"trees{suffix}.md", table + "\n")
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
        _write(args, f"contention{suffix}.md", text + "\n")
    if args.suite == "postgres":
        ok = _postgres(args, suffix, *postgres.run(args.quick), "postgres", "18")
    if args.suite == "langgraph":
        with tempfile.TemporaryDirectory() as tmp:
            ok = _postgres(args, suffix, *langgraph_bench.run(args.quick, Path(tmp)), "langgraph", "19")
    if args.suite == "search":
        with tempfile.TemporaryDirectory() as tmp:
            ok = _postgres(args, suffix, *search.run(args.quick, Path(tmp)), "search", "20")
    return 0 if ok else 1


def _postgres(
    args: argparse.Namespace,
    suffix: str,
    machine: str,
    sections: list[tuple[str, list[list[str]]]],
    targets: list[postgres.Target],
    stem: str,
    issue: str,
) -> bool:
    """Print (and with ``--save`` write) a run's tables and its targets."""
    parts = [machine, ""]
    for title, rows in sections:
        parts += [f"{title}:", "", _table(rows), ""]
    marks = {None: "-", True: "yes", False: "NO"}
    rows = [["target", "measured", "ratio", "target", "ok"]]
    rows += [[t.name, t.measured, "-" if t.ratio is None else f"{t.ratio:.3g}", t.target, marks[t.ok]]
             for t in targets]  # fmt: skip
    parts += [f"Targets of issue {issue} (ratios from this run):", "", _table(rows)]
    text = "\n".join(parts)
    print(text)
    _write(args, f"{stem}{suffix}.md", text + "\n")
    return all(t.ok is not False for t in targets)


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
    _write(args, f"durability{suffix}.md", text + "\n")
    _write(args, f"durability{suffix}.json", json.dumps(durability.to_json(machine, measured), indent=2) + "\n")


def _core(args: argparse.Namespace, started: float, suffix: str) -> bool:
    figures, _series = core.run(args.quick, args.synchronous)
    machine = (
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, {platform.machine()}, "
        f"synchronous={args.synchronous}, WAL, {speedups.describe()}{', quick' if args.quick else ''}"
    )
    marks = {None: "-", True: "yes", False: "NO"}
    rows = [["figure", "measured", "ratio", "target", "ok"]]
    rows += [[f.name, f.measured, f"{f.ratio:.3g}", f.target, marks[f.ok]] for f in figures]
    table = _table(rows)
    print(machine)
    print(table)
    stem = f"core{suffix}"
    _write(args, f"{stem}.md", f"{machine}\n\n{table}\n")
    report = {"machine": machine, "seconds": round(time.time() - started, 1), "figures": [asdict(f) for f in figures]}
    _write(args, f"{stem}.json", json.dumps(report, indent=2) + "\n")
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
    parts += ["Targets of issues 5 and 16 (ratios from this run):", "", _table(rows)]
    png = RESULTS / f"compare-latency{suffix}.png"
    note = compare.plot(report, png) if args.save else "plot not written (--save writes it)"
    if note.startswith("wrote"):
        parts += ["", f"![per-save latency, coding workload]({png.name})"]
    text = "\n".join(parts)
    print(text)
    print(note)
    _write(args, f"compare{suffix}.md", text + "\n")
    _write(args, f"compare{suffix}.json", json.dumps(report.to_json(), indent=2) + "\n")
    return all(t.ok is not False for t in report.targets)


if __name__ == "__main__":
    sys.exit(main())
