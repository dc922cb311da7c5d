"""The ``eventlog`` command line."""

from __future__ import annotations

import argparse
import sys

from .errors import EventLogError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="eventlog", description="A durable, event-sourced store for agent sessions.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="persist a session larger than the 2 MB cell limit, then replay it")
    demo.add_argument("--path", default="eventlog-demo.db", help="database file to write (default: %(default)s)")
    demo.add_argument("--entries", type=int, default=600, help="entries in the demo session (default: %(default)s)")
    verify = sub.add_parser("verify", help="check a store; exit 1 if anything is wrong")
    verify.add_argument("path", help="the store's database file")
    compact = sub.add_parser("compact", help="remove deleted sessions and free unreferenced chunks")
    compact.add_argument("path", help="the store's database file")
    compact.add_argument("--retain", type=int, default=None, help="keep only the last N events of each session")
    compact.add_argument("--vacuum", action="store_true", help="also VACUUM, shrinking the file (slow)")
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run

            return 0 if run(args.path, entries=args.entries) else 1
        if args.command in ("verify", "compact"):
            return _maintain(args)
    except EventLogError as e:
        print(f"eventlog: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into a command that stopped reading
        sys.stderr.close()
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


def _maintain(args: argparse.Namespace) -> int:
    import os

    from .store import open as open_store

    if not os.path.exists(args.path):
        print(f"eventlog: no such file: {args.path}", file=sys.stderr)
        return 1
    with open_store(args.path) as store:
        if args.command == "compact":
            c = store.compact(retain=args.retain, vacuum=args.vacuum)
            for skipped in c.skipped:
                print(f"history kept (cannot be folded): {skipped}")
            print(
                f"removed {c.sessions_removed} deleted sessions, {c.events_removed} events, "
                f"{c.snapshots_removed} snapshots; freed {c.chunks_freed} chunks ({c.bytes_freed} bytes); "
                f"{c.sessions_truncated} histories truncated; "
                + ("WAL truncated" if c.checkpointed else "WAL not truncated (another reader holds it)")
                + ("; vacuumed" if c.vacuumed else "")
            )
            return 0
        report = store.verify()
    for problem in report.problems:
        print(problem)
    print(
        f"{'ok' if report.ok else 'PROBLEMS: ' + str(len(report.problems))}: {report.sessions} sessions, "
        f"{report.events} events, {report.snapshots} snapshots, {report.chunks} chunks "
        f"({report.garbage_chunks} unreferenced, freed by compact)"
    )
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
