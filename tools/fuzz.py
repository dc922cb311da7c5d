"""Long fuzz run of every eventlog decoder: ``tools/fuzz [--seconds N]``.

Runs the targets of ``tools/fuzzing.py`` (the ones ``tests/robustness/test_fuzz.py``
and ``tests/robustness/test_damage.py`` run briefly in CI) on random inputs until
the time is up: arbitrary and structured CBOR, mutated event, snapshot and spilled frames, resealed
bodies (valid checksum, anything inside), spill pointers, chunk rows, zstd input,
and byte flips in a real store file.  Input ``i`` of a run is made by
``random.Random(f"{seed}:{i}")``, so ``--seed S --only I`` replays it.

Prints a summary per target; exits 1 if anything broke a promise (a foreign
exception, different data, a hang, runaway memory), with each finding's seed and
input number, and its input saved under ``--findings``.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import resource
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from eventlog import codec  # noqa: E402
from tools import fuzzing  # noqa: E402
from tools.fuzzing import Corpus, Finding  # noqa: E402

#: Longest one input may take before it counts as a hang (a damaged file: longer).
LIMIT = 10.0
FILE_LIMIT = 30.0
#: Growth of the process's peak memory that one input may cause.
MEMORY_GROWTH = 512 << 20


@dataclass
class Tally:
    inputs: int = 0
    findings: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Targets:
    """Each target makes one input from an ``rng`` and checks it (raising
    :class:`Finding` when a promise is broken)."""

    def __init__(self, workdir: Path) -> None:
        self.corpus: Corpus = fuzzing.build_corpus()
        self.frames = self.corpus.frames
        self.spilled = [s for s in self.frames if s.pointer is not None]
        self.zstd = [s for s in self.frames if s.frame[1] & codec.FLAG_ZSTD and s.pointer is None]
        self.workdir = workdir
        self._file: tuple[bytes, dict[str, Any], dict[Any, Any]] | None = None
        self.last_input: bytes = b""
        self.flips: collections.Counter[str] = collections.Counter()  # what byte flips in a file did

    def file(self) -> tuple[bytes, dict[str, Any], dict[Any, Any]]:
        if self._file is None:
            path = str(self.workdir / "pristine.db")
            expected = fuzzing.build_file(path)
            self._file = (Path(path).read_bytes(), expected, fuzzing.logical_content(path))
        return self._file

    def _mutated(self, rng: random.Random, data: bytes) -> bytes:
        out = fuzzing.mutate(data, fuzzing.random_mutations(rng))
        self.last_input = out
        return out

    def cbor(self, rng: random.Random) -> None:
        data = fuzzing.random_cbor(rng) if rng.random() < 0.5 else fuzzing.random_body(rng)
        if rng.random() < 0.3:
            data = fuzzing.mutate(data, fuzzing.random_mutations(rng))
        self.last_input = data
        fuzzing.check_loads(data)

    def bodies(self, rng: random.Random) -> None:
        fuzzing.check_loads(self._mutated(rng, rng.choice(self.frames).body))

    def frames_(self, rng: random.Random) -> None:
        sample = rng.choice(self.frames)
        fuzzing.check_frame(self.corpus, sample, self._mutated(rng, sample.frame))

    def resealed(self, rng: random.Random) -> None:
        sample = rng.choice(self.frames)
        if rng.random() < 0.5:
            body = self._mutated(rng, sample.body)
        else:
            body = fuzzing.random_body(rng)
            self.last_input = body
        fuzzing.check_resealed(self.corpus, sample, body, compress=rng.random() < 0.5)

    def pointers(self, rng: random.Random) -> None:
        sample = rng.choice(self.spilled)
        assert sample.pointer is not None
        if rng.random() < 0.1:
            pointer = rng.choice(list(fuzzing.hostile_pointers(sample)))
            self.last_input = pointer
        else:
            pointer = self._mutated(rng, sample.pointer)
        fuzzing.check_spill_pointer(self.corpus, sample, pointer)

    def chunks(self, rng: random.Random) -> None:
        sample = rng.choice(self.corpus.chunks)
        flags = rng.choice([sample.flags] * 6 + [sample.flags ^ 1, 2, -1, 1 << 70])
        size = rng.choice([sample.size] * 6 + [sample.size + 1, sample.size - 1, 0, 1 << 40, -1])
        data = self._mutated(rng, sample.data) if rng.random() < 0.9 else sample.data
        fuzzing.check_chunk(self.corpus.log.chunks, sample, flags, size, data)

    def decompress(self, rng: random.Random) -> None:
        if rng.random() < 0.7 and self.zstd:
            payload = rng.choice(self.zstd).frame[6:]
            data = self._mutated(rng, payload)
        else:
            data = b"\x28\xb5\x2f\xfd" + rng.randbytes(rng.randrange(64))
            self.last_input = data
        fuzzing.check_decompress(data, rng.choice((0, 100, 1 << 16, 1 << 20)))

    def file_flip(self, rng: random.Random) -> None:
        original, expected, before = self.file()
        pos, xor = rng.randrange(len(original)), rng.randrange(1, 256)
        self.last_input = f"{pos} {xor}".encode()
        outcome = fuzzing.check_flipped_file(original, expected, self.workdir / "damaged.db", pos, xor, before)
        self.flips[fuzzing.describe(outcome)] += 1


#: Target name -> (method name, share of the inputs).
TARGETS: dict[str, tuple[str, float]] = {
    "cbor": ("cbor", 3),
    "bodies": ("bodies", 2),
    "frames": ("frames_", 3),
    "resealed": ("resealed", 3),
    "pointers": ("pointers", 1),
    "chunks": ("chunks", 1),
    "decompress": ("decompress", 1),
    "file": ("file_flip", 0.2),  # ~7 ms an input, against ~0.1 ms: about 40% of the time
}


class Watchdog:
    """Ends the process if one input runs far past its limit (a hang in C code,
    which a Python signal handler cannot interrupt)."""

    def __init__(self) -> None:
        self.deadline = float("inf")
        self.what = ""
        threading.Thread(target=self._watch, daemon=True).start()

    def arm(self, seconds: float, what: str) -> None:
        self.what = what
        self.deadline = time.monotonic() + seconds

    def disarm(self) -> None:
        self.deadline = float("inf")

    def _watch(self) -> None:
        while True:
            time.sleep(1)
            if time.monotonic() > self.deadline:
                print(f"\nFINDING: {self.what} hung (no return after its limit); stopping", flush=True)
                os._exit(3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="how long to run (default 600)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the run (default: random, printed)")
    parser.add_argument("--target", choices=["all", *TARGETS], default="all", help="run one target only")
    parser.add_argument("--only", type=int, default=None, help="replay input number ONLY of the run")
    parser.add_argument("--findings", default="fuzz-findings", help="where to save failing inputs")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, resource.RLIM_INFINITY))  # a runaway allocation fails here
    names = list(TARGETS) if args.target == "all" else [args.target]
    weights = [TARGETS[n][1] for n in names]
    print(f"tools/fuzz: seed {seed}, {args.seconds:g} s, targets {', '.join(names)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="eventlog-fuzz-") as tmp:
        targets = Targets(Path(tmp))
        tallies: dict[str, Tally] = collections.defaultdict(Tally)
        watchdog = Watchdog()
        findings_dir = Path(args.findings)
        start = time.monotonic()
        i = -1
        while True:
            i += 1
            if args.only is not None:
                if i > args.only:
                    break
                if i < args.only:
                    continue
            elif time.monotonic() - start > args.seconds:
                break
            rng = random.Random(f"{seed}:{i}")
            name = rng.choices(names, weights)[0]
            check: Callable[[random.Random], None] = getattr(targets, TARGETS[name][0])
            tally = tallies[name]
            limit = FILE_LIMIT if name == "file" else LIMIT
            targets.last_input = b""
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
            t0 = time.perf_counter()
            watchdog.arm(limit * 3, f"input {i} ({name})")
            try:
                with fuzzing.time_limit(limit, f"input {i} ({name})"):
                    check(rng)
                grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - peak
                if grown > MEMORY_GROWTH:
                    raise Finding(f"input {i} ({name}) grew the process by {grown >> 20} MB")
            except Finding as e:
                tally.findings.append(f"input {i}: {e}")
                report(findings_dir, seed, i, name, str(e), targets.last_input)
            except Exception as e:  # a target's own failure is a finding too
                message = f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
                tally.findings.append(f"input {i}: {message}")
                report(findings_dir, seed, i, name, message, targets.last_input)
            finally:
                watchdog.disarm()
            tally.inputs += 1
            tally.seconds += time.perf_counter() - t0
        elapsed = time.monotonic() - start
    total = sum(t.inputs for t in tallies.values())
    found = sum(len(t.findings) for t in tallies.values())
    print(f"\n{total} inputs in {elapsed:.0f} s (seed {seed})")
    print(f"{'target':<12} {'inputs':>9} {'per s':>8} {'findings':>9}")
    for name in names:
        t = tallies[name]
        rate = t.inputs / t.seconds if t.seconds else 0.0
        print(f"{name:<12} {t.inputs:>9} {rate:>8.0f} {len(t.findings):>9}")
    if targets.flips:
        print("\nbyte flips in a store file:")
        for what, n in targets.flips.most_common():
            print(f"  {n:>7}  {what}")
    if found:
        print(f"\n{found} findings; inputs saved in {args.findings}/; replay one with --seed {seed} --only N")
        return 1
    print("no findings")
    return 0


def report(directory: Path, seed: int, i: int, name: str, message: str, data: bytes) -> None:
    print(f"\nFINDING in {name}, input {i} (replay: tools/fuzz --seed {seed} --only {i}):\n{message}", flush=True)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{seed}-{i}-{name}.bin").write_bytes(data)
    (directory / f"{seed}-{i}-{name}.txt").write_text(message)


if __name__ == "__main__":
    sys.exit(main())
