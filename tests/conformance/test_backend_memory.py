"""The in-memory backend passes the backend conformance suite
(:mod:`eventlog.conformance`)."""

from __future__ import annotations

from typing import Any

from eventlog.backend import Backend, Chunk
from eventlog.backends.memory import MemoryBackend
from eventlog.conformance import BackendTests


def _memory(b: Backend) -> MemoryBackend:
    assert isinstance(b, MemoryBackend)
    return b


def _bad_chunk(c: Chunk) -> Chunk:
    """A chunk whose size reads text, as a damaged row would (past the checks of
    :class:`Chunk`)."""
    bad = object.__new__(Chunk)
    for name in ("hash", "flags", "data"):
        object.__setattr__(bad, name, getattr(c, name))
    object.__setattr__(bad, "size", "big?")
    return bad


class TestMemoryBackend(BackendTests):
    def make_backend(self, **options: Any) -> Backend:
        return MemoryBackend(None, max_cell_bytes=options.get("max_cell_bytes", 2_000_000))

    def another_handle(self, backend: Backend, *, readonly: bool = False) -> Backend:
        return _memory(backend).handle(readonly=readonly)

    def damage(self, backend: Backend, kind: str, *, sid: int = 0, seq: int = 0, hash: bytes = b"") -> None:
        def change(s: Any) -> None:
            x = s.sessions[sid]
            if kind == "event_column":
                pos, _, frame, refs = x.events[seq]
                x.events[seq] = (pos, "when?", frame, refs)
            elif kind == "event_frame":
                pos, ts, _, refs = x.events[seq]
                x.events[seq] = (pos, ts, "text", refs)
            elif kind == "event_missing":
                del x.events[seq]
            elif kind == "session_column":
                x.seq = "head?"
            elif kind == "snapshot_seq":
                x.snapshots["where?"] = x.snapshots.pop(seq)
            elif kind == "snapshot_frame":
                x.snapshots[seq] = ("text", x.snapshots[seq][1])
            elif kind == "chunk_column":
                s.chunks[hash] = _bad_chunk(s.chunks[hash])
            elif kind == "chunk_missing":
                del s.chunks[hash]
            else:
                raise AssertionError(kind)

        _memory(backend).poke(change)


def test_import_eventlog_does_not_import_the_suite() -> None:
    """The suite needs the test extra: the library must not import it (or pytest)."""
    import subprocess
    import sys

    code = "import sys, eventlog; eventlog.open('memory:').close(); print(sorted(m for m in sys.modules " \
           "if m.split('.')[0] in ('pytest', 'hypothesis') or m == 'eventlog.conformance'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"
