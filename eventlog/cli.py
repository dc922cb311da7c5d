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
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from .demo import run

            return 0 if run(args.path, entries=args.entries) else 1
    except EventLogError as e:
        print(f"eventlog: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into a command that stopped reading
        sys.stderr.close()
        return 0
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
