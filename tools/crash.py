"""Crash injection, the long run: ``tools/crash [--kills N] [--seconds S]``.

A writer process saves sessions (large images, huge tool outputs and frames
spilled into chunks included), appends, builds snapshots, creates child sessions,
deletes trees and compacts; it is killed with ``kill -9`` at random moments,
hundreds of times.  After each kill the store must open, pass ``verify()`` and hold
every save that had returned, exactly (and the operation in flight entirely or not
at all).  The machinery is ``tools/crashing.py``, which
``tests/robustness/test_crash.py`` runs for a few kills in CI.

Prints a summary; exits 1 on the first broken promise, keeping the store file.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools import crashing  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/crash", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=300, help="how many times to kill the writer (default 300)")
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long, even with kills left")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run (default: random, printed)")
    parser.add_argument("--max-wait", type=float, default=0.5, help="longest wait before a kill, in seconds")
    parser.add_argument("--keep", default="crash-store.db", help="where to keep the store if a check fails")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    limit = f", at most {args.seconds:g} s" if args.seconds else ""
    print(f"tools/crash: seed {seed}, {args.kills} kills{limit}", flush=True)
    started = time.monotonic()

    def progress(run: crashing.CrashRun) -> None:
        if run.kills % 25 == 0:
            print(f"  {run.kills} kills, {time.monotonic() - started:.0f} s, all checks passed", flush=True)

    with tempfile.TemporaryDirectory(prefix="eventlog-crash-") as tmp:
        path = str(Path(tmp) / "store.db")
        try:
            run = crashing.run_mixed(
                path,
                Path(tmp),
                kills=args.kills,
                seconds=args.seconds,
                seed=seed,
                max_wait=args.max_wait,
                progress=progress,
            )
        except AssertionError:
            traceback.print_exc()
            for suffix in ("", "-wal", "-shm"):
                if Path(path + suffix).exists():
                    shutil.copy(path + suffix, args.keep + suffix)
            print(f"\nFAILED (seed {seed}); the store is kept in {args.keep}", flush=True)
            return 1
    print("\n" + crashing.summary(run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
