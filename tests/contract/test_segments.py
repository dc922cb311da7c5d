"""Segmented snapshots: a snapshot keeps the unchanged segments of the one before and
writes the rest, and reads back exactly as a full replay."""

from __future__ import annotations

import base64
import random
import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import codec
from eventlog.backend import NewSnapshot
from eventlog.backends.sqlite import SQLiteBackend
from eventlog.chunks import ChunkWrites
from eventlog.codec import Framer
from eventlog.errors import CorruptionError
from eventlog.log import SNAPSHOT
from eventlog.snapshots import FLAG_STRINGREF, Segment
from eventlog.testing import histories, mutate, sessions
from eventlog.values import same

from ..helpers import largest_cell_and_row

SMALL = {"image_size": 40_000, "big": 40_000}
#: Segments of about 1 KB (chunk_bytes // 2), kept from 256 bytes up.
TINY = {"chunk_bytes": 2048, "max_cell_bytes": 16_384, "synchronous": "OFF"}


def _path() -> str:
    return str(Path(tempfile.mkdtemp()) / "s.db")


def _entry(i: int, size: int = 300) -> dict[str, Any]:
    return {"id": f"e{i}", "role": "user", "text": random.Random(i).randbytes(size // 2).hex()}


def _stored(n: int = 100) -> tuple[str, dict[str, Any]]:
    """A store file holding session ``s`` of ``n`` entries and a snapshot of it."""
    path = _path()
    data = {"entries": [_entry(i) for i in range(n)]}
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        store.snapshot("s")
    return path, data


def _manifest(path: str, name: str = "s") -> tuple[int, int, bytes, list[Segment]]:
    """The newest snapshot of ``name``: ``(sid, seq, frame, segments)``."""
    con = sqlite3.connect(path)
    sid, seq, frame, key = con.execute(
        "SELECT n.sid, n.seq, n.frame, s.key FROM snapshots n JOIN sessions s ON s.sid = n.sid WHERE s.name = ? "
        "ORDER BY n.seq DESC LIMIT 1",
        (name,),
    ).fetchone()
    con.close()
    flags, payload = Framer.open(frame, codec.Place(SNAPSHOT, sid, key, seq))
    assert flags & codec.FLAG_SEGMENTS and frame[0] == codec.FRAME_VERSION_KEYED_SEGMENTS
    body = Framer().decompress(flags, payload, 1 << 30)
    wire, _ = codec.loads(body)
    return sid, seq, frame, [Segment.from_wire(w, 1 << 30) for w in wire[1]]


class _Writes:
    """Counts the bytes written to chunks and snapshot rows."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chunks = 0
        self.snapshots = 0
        append, put_snapshot = SQLiteBackend.append, SQLiteBackend.put_snapshot

        def appended(backend: SQLiteBackend, events: Any, chunks: Any = (), **kw: Any) -> Any:
            heads = append(backend, events, chunks, **kw)
            self.chunks += sum(len(c.data) for c in chunks)  # (the chunks given are the ones not stored)
            return heads

        def snapshot(backend: SQLiteBackend, snap: NewSnapshot, chunks: Any = ()) -> bool:
            stored = put_snapshot(backend, snap, chunks)
            self.snapshots += len(snap.frame)
            self.chunks += sum(len(c.data) for c in chunks)
            return stored

        monkeypatch.setattr(SQLiteBackend, "append", appended)
        monkeypatch.setattr(SQLiteBackend, "put_snapshot", snapshot)

    def take(self) -> int:
        total, self.chunks, self.snapshots = self.chunks + self.snapshots, 0, 0
        return total


def test_a_snapshot_writes_what_changed_and_keeps_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    path = _path()
    writes = _Writes(monkeypatch)
    data: dict[str, Any] = {"title": "t", "entries": [_entry(i) for i in range(300)]}
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        store.snapshot("s")
        first = writes.take()
        _, _, _, before = _manifest(path)
        assert len(before) > 50 and sum(s.count for s in before) == 300

        data["entries"] += [_entry(i) for i in range(300, 303)]  # appended
        store.save("s", data)
        writes.take()
        store.snapshot("s")
        _, _, _, after = _manifest(path)
        assert after[: len(before) - 1] == before[:-1]  # all kept but, at most, the last
        assert writes.take() < first / 10

        data["entries"][7] = {**data["entries"][7], "text": "edited"}  # changed in place
        store.save("s", data)
        del data["entries"][150]  # one removed in the middle
        store.save("s", data)
        data["entries"].insert(200, _entry(999))  # one inserted
        store.save("s", data)
        writes.take()
        store.snapshot("s")
        _, _, _, edited = _manifest(path)
        kept = set(after) & set(edited)
        assert len(kept) >= len(after) - 4  # the three touched, and the last
        assert writes.take() < first / 5
        assert store.load("s") == data
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == data
        assert store.verify().ok
        assert store.verify().garbage_chunks == 0  # what old snapshots alone used is freed


def test_small_sessions_keep_their_snapshot_in_one_row() -> None:
    path = _path()
    with eventlog.open(path, snapshot_every=0) as store:
        store.save("s", {"entries": [_entry(i) for i in range(5)]})
        store.snapshot("s")
        assert store.stats()["chunks"]["rows"] == 0
    frame = sqlite3.connect(path).execute("SELECT frame FROM snapshots").fetchone()[0]
    assert frame[0] == codec.FRAME_VERSION_KEYED and not frame[1] & codec.FLAG_SEGMENTS


@settings(max_examples=60, deadline=None)
@given(st.data(), histories(**SMALL), st.integers(1, 3))
def test_segmented_snapshots_fold_as_full_replay(data: st.DataObject, history: list[Any], every: int) -> None:
    """Any history (appends, edits in place, removals, field changes, large values),
    then the last state edited in place a few times: with a snapshot every few events
    each built on the one before, every load and every fold equals a replay of the
    log alone; no cell is over budget; nothing is left unreferenced."""
    history = list(history)
    state = history[-1]
    for _ in range(data.draw(st.integers(0, 6))):
        state = mutate(data.draw, state)
        history.append(state)
    snap_path, plain_path = _path(), _path()
    with (
        eventlog.open(snap_path, snapshot_every=every, **TINY) as snap,
        eventlog.open(plain_path, snapshot_every=0, synchronous="OFF") as plain,
    ):
        for k, state in enumerate(history, 1):
            snap.save("s", state)
            plain.save("s", state)
            if k % every == 0:
                snap.snapshot("s")  # besides the policy's: each built on the one before
            assert same(snap.load("s"), state)
    with eventlog.open(snap_path, **TINY) as snap, eventlog.open(plain_path) as plain:
        assert same(snap.load("s"), history[-1])
        for k in range(1, len(history) + 1):
            assert same(snap.fold("s", at=k), plain.fold("s", at=k))
        report = snap.verify()
        assert report.ok, report.problems
        assert report.garbage_chunks == 0
    cell, row = largest_cell_and_row(snap_path)
    assert cell <= TINY["max_cell_bytes"] and row <= TINY["max_cell_bytes"]


@settings(max_examples=30, deadline=None)
@given(st.lists(sessions(**SMALL), min_size=1, max_size=4), st.data())
def test_snapshots_of_several_sessions_share_nothing_they_should_not(
    states: list[dict[str, Any]], data: st.DataObject
) -> None:
    """Sessions with equal entries share segment chunks; deleting one and compacting
    frees only what no other session uses."""
    path = _path()
    with eventlog.open(path, snapshot_every=1, **TINY) as store:
        for i, state in enumerate(states):
            store.save(f"s{i}", state)
            store.save(f"s{i}", state)
        gone = data.draw(st.integers(0, len(states) - 1))
        store.delete(f"s{gone}")
        store.compact()
        for i, state in enumerate(states):
            if i != gone:
                assert same(store.load(f"s{i}"), state)
        report = store.verify()
        assert report.ok and report.garbage_chunks == 0


def _damage_first_segment(path: str) -> bytes:
    _, _, _, segments = _manifest(path)
    digest = segments[0].hashes[:32]
    con = sqlite3.connect(path)
    con.execute("UPDATE chunks SET data = CAST(zeroblob(length(data)) AS BLOB) WHERE hash = ?", (digest,))
    con.commit()
    con.close()
    return digest


def test_a_damaged_segment_falls_back_to_the_log_and_compaction_repairs_it() -> None:
    path, data = _stored()
    _damage_first_segment(path)
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == data  # from the log
        report = store.verify()
        assert not report.ok and "chunk" in str(report.problems)
        # The floor of a shortened history is built from what was read, and the
        # damaged chunk it would dedup onto is rewritten.
        store.compact(retain=0)
        assert store.info("s").history_start == 1
        assert store.verify().ok
        assert store.load("s") == data
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == data


def test_a_partial_read_past_a_damaged_segment_reads_from_the_log() -> None:
    """items() and tail() decode only the segments holding what they return; when
    one of those is damaged they read as load() does (the snapshot is a cache),
    rather than fail where load() succeeds."""
    path, data = _stored()
    _damage_first_segment(path)
    with eventlog.open(path, **TINY) as store:
        assert store.items("s", 0, 3) == data["entries"][:3]
        assert store.tail("s", len(data["entries"])) == data["entries"]
        assert store.items("s", -2) == data["entries"][-2:]


def test_a_damaged_segment_of_a_floor_names_the_session_and_position() -> None:
    path = _path()
    data = {"entries": [_entry(i) for i in range(100)]}
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        store.compact(retain=0)
    _damage_first_segment(path)
    with eventlog.open(path, **TINY) as store:
        with pytest.raises(CorruptionError) as raised:
            store.load("s")
        assert raised.value.session_id == "s" and raised.value.seq == 1
        assert "segment 0" in str(raised.value)
        with pytest.raises(CorruptionError) as raised:  # a partial read too: the floor is the only copy
            store.items("s", 0, 2)
        assert raised.value.session_id == "s"


def _reseal(path: str, edit: Any) -> None:
    """Rewrite the newest snapshot's manifest through ``edit(wire)``, with a valid CRC."""
    sid, seq, frame, _ = _manifest(path)
    key = _key(path, sid)
    flags, payload = Framer.open(frame, codec.Place(SNAPSHOT, sid, key, seq))
    wire, _ = codec.loads(Framer().decompress(flags, payload, 1 << 30))
    edit(wire)
    new = Framer.seal(codec.FLAG_SEGMENTS, codec.dumps(wire), codec.key_binding(SNAPSHOT, key, seq), keyed=True)
    con = sqlite3.connect(path)
    con.execute("UPDATE snapshots SET frame = ? WHERE sid = ? AND seq = ?", (new, sid, seq))
    con.commit()
    con.close()


def _key(path: str, sid: int) -> bytes:
    con = sqlite3.connect(path)
    try:
        key: bytes = con.execute("SELECT key FROM sessions WHERE sid = ?", (sid,)).fetchone()[0]
        return key
    finally:
        con.close()


def _set(index: int, value: Any) -> Any:
    def edit(wire: Any) -> None:
        wire[1][0][index] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_set(0, 1000), "malformed snapshot segment"),  # more entries than it holds
        (_set(2, 1 << 40), "malformed snapshot segment"),  # claims a terabyte
        (_set(4, b"\x01" * 32), "is missing"),  # a chunk that is not there
        (_set(5, b"\x02" * 32), "large values inside"),  # lies about the chunks it uses
        (lambda wire: wire[1].extend([wire[1][0]] * 150), "limit"),  # one segment 150 times: over max_body_bytes
        (lambda wire: wire[1].append([1, 0]), "malformed snapshot segment"),
    ],
)
def test_a_hostile_manifest_is_refused(edit: Any, message: str) -> None:
    path = _path()
    data = {"entries": [_entry(i, 3000) for i in range(40)]}
    with eventlog.open(path, snapshot_every=0, max_body_bytes=200_000, **TINY) as store:
        store.save("s", data)
        store.compact(retain=0)  # the snapshot is the only copy: its errors surface
    _reseal(path, edit)
    with eventlog.open(path, max_body_bytes=200_000, **TINY) as store:
        with pytest.raises(CorruptionError, match=message) as raised:
            store.load("s")
        assert raised.value.session_id == "s" and raised.value.seq == 1
        assert not store.verify().ok


def test_an_event_frame_flagged_as_a_manifest_is_damage() -> None:
    path = _path()
    with eventlog.open(path, **TINY) as store:
        store.save("s", {"entries": [_entry(1)]})
    con = sqlite3.connect(path)
    sid, seq, ts, frame, key = con.execute(
        "SELECT sid, e.seq, e.ts_ms, e.frame, s.key FROM events e JOIN sessions s USING (sid)"
    ).fetchone()
    flags, payload = Framer.open(frame, codec.Place(b"E", sid, key, seq, ts))
    new = Framer.seal(flags | codec.FLAG_SEGMENTS | codec.FLAG_TIMED, payload, codec.key_binding(b"E", key, seq, ts),
                      keyed=True)  # fmt: skip
    con.execute("UPDATE events SET frame = ?", (new,))
    con.commit()
    con.close()
    with eventlog.open(path, **TINY) as store, pytest.raises(CorruptionError, match="manifest"):
        store.load("s")


def test_a_snapshot_written_before_segments_is_read_and_built_on() -> None:
    """A store whose snapshot is one frame (as written before segments) loads, and
    the next snapshot folds it and writes segments."""
    from eventlog.fold import state_to_wire

    path = _path()
    data = {"entries": [_entry(i) for i in range(100)]}
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        log, backend = store._log, store._backend
        row = backend.head("s")
        writes = ChunkWrites()
        with backend.reading():
            state = log.fold("s", row.sid, row.key, row.seq, rehydrate=False)
            frame, refs, size = log.frame(SNAPSHOT, row.key, row.seq, state_to_wire(state), writes=writes)
        snap = NewSnapshot(row.sid, row.seq, frame, size, refs)
        assert log.chunks.submit(writes, lambda give: backend.put_snapshot(snap, give), "s", row.seq)
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        assert store.load("s") == data
        data["entries"].append(_entry(100))
        store.save("s", data)
        store.snapshot("s")
        assert len(_manifest(path)[3]) > 10
        assert store.load("s") == data
        assert store.verify().ok


def test_a_manifest_claiming_huge_counts_costs_nothing_to_build_on() -> None:
    """A checksummed manifest whose segment claims 200 million entries: loads fall
    back to the log, and a snapshot built on it neither allocates per entry nor
    fails (it falls back to a full fold)."""
    path, data = _stored(60)

    def huge(wire: Any) -> None:
        wire[1][0][0] = wire[1][0][2] = 200_000_000

    _reseal(path, huge)
    with eventlog.open(path, snapshot_every=1, **TINY) as store:
        assert store.load("s") == data
        data["entries"].append(_entry(60))
        store.save("s", data)
        assert store.snapshot("s") == 2  # built on the hostile manifest
        assert store.load("s") == data
        assert store.stats()["snapshots"]["events_after_newest"] == (0, 0)
        # The hostile one (kept as the older of two) is still reported; the new one reads.
        assert [(p.session_id, p.seq) for p in store.verify().problems] == [("s", 1)]
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == data


@pytest.mark.parametrize("edit_first", [False, True])
def test_a_new_snapshot_does_not_carry_a_damaged_segment(edit_first: bool) -> None:
    """Once a load finds a snapshot damaged, the next snapshot is built by a full
    fold, which rewrites the damaged chunk instead of keeping it unread; and one
    that must read a damaged segment (an edit inside it) does the same."""
    path, data = _stored()
    _damage_first_segment(path)
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        if edit_first:
            data["entries"][0] = _entry(1000)
        else:
            assert store.load("s") == data  # finds the damage
            data["entries"].append(_entry(100))
        store.save("s", data)
        store.snapshot("s")
        # The new snapshot reads; the old one is fixed too when the new one shares
        # (and so rewrote) the damaged segment, else still reported.
        problems = store.verify().problems
        assert all(p.seq in (1, None) for p in problems) and bool(problems) == edit_first, problems
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == data
        assert store.stats()["snapshots"]["events_after_newest"] == (0, 0)


def test_building_on_a_snapshot_works_on_runs_not_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The positions of the snapshot built on stay ranges while events are replayed
    over them: the work grows with what changed, not with the session."""
    from eventlog import snapshots

    seen: list[int] = []
    cut = snapshots.SnapshotBuilder._cut

    def spy(self: Any, name: str, seq: int, pieces: list[Any], *args: Any, **kwargs: Any) -> Any:
        seen.append(len(pieces))
        return cut(self, name, seq, pieces, *args, **kwargs)

    monkeypatch.setattr(snapshots.SnapshotBuilder, "_cut", spy)
    path = _path()
    data = {"entries": [_entry(i, 40) for i in range(3000)]}
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        store.snapshot("s")
        data["entries"][1500] = _entry(0, 40)
        data["entries"].append(_entry(3000, 40))
        store.save("s", data)
        store.snapshot("s")
        assert store.load("s") == data
    assert seen[0] == 3000  # the first: a full fold, entry by entry
    assert seen[1] <= 4  # then: a range, the edited entry, a range, the new entry


def test_a_snapshot_taken_again_at_the_same_position_frees_what_the_old_one_used() -> None:
    path, data = _stored()
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        for i in (100, 101):  # small entries: each snapshot adds a small segment
            data["entries"].append(_entry(i, 60))
            seq = store.save("s", data)
            store.snapshot("s")  # built on the one before: ends unlike a full cut
        incremental = set(_manifest(path)[3])
        store._log.damaged.add((store._backend.head("s").sid, seq))  # so the next is built anew
        store.snapshot("s")  # the same position, by a full fold
        assert set(_manifest(path)[3]) != incremental
        assert store.verify().garbage_chunks == 0
        assert store.load("s") == data


@st.composite
def _ops(draw: st.DrawFn, n: int) -> list[Any]:
    """Operations valid on a list of ``n`` entries, as a save would write them."""
    from eventlog.fold import Delete, Insert, Replace

    ops: list[Any] = []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.sampled_from(["insert", "replace", "delete"] if n else ["insert"]))
        if kind == "insert":
            k = draw(st.integers(1, 3))
            ops.append(Insert(draw(st.integers(0, n)), [f"new{len(ops)}.{j}" for j in range(k)]))
            n += k
        elif kind == "replace":
            ops.append(Replace(draw(st.integers(0, n - 1)), f"rep{len(ops)}"))
        else:
            i = draw(st.integers(0, n - 1))
            c = draw(st.integers(1, n - i))
            ops.append(Delete(i, c))
            n -= c
    return ops


@given(st.integers(0, 40).flatmap(lambda n: st.tuples(st.just(n), _ops(n))))
def test_the_layout_of_a_snapshot_being_built_is_the_list_the_ops_make(case: tuple[int, list[Any]]) -> None:
    """Replaying operations over old positions kept as ranges gives the same list as
    replaying them over the positions one by one."""
    from eventlog import fold
    from eventlog.snapshots import _Layout

    n, ops = case
    plain = fold.State({"entries": codec.ENTRIES}, [("old", q) for q in range(n)])
    layout = _Layout(n)
    fold.apply(plain, ops)
    fold.apply(fold.State({"entries": codec.ENTRIES}, layout), ops)  # type: ignore[arg-type]
    expanded = [("old", q) for piece in layout.pieces if type(piece) is range for q in piece]
    flat: list[Any] = []
    for piece in layout.pieces:
        flat += [("old", q) for q in piece] if type(piece) is range else [piece]
    assert flat == plain.entries and len(layout) == len(plain.entries)
    assert all(type(p) is not range or len(p) > 0 for p in layout.pieces)
    assert len(expanded) == sum(1 for e in plain.entries if type(e) is tuple)


def _for_the_worker(monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any], int, int, int]:
    """A store file whose session ``s`` is only a snapshot (its errors surface) of
    enough segments for the worker thread, on two cores: ``(path, data, segments,
    a, b)``, where the worker's two runs start at ``a`` and ``b``."""
    from eventlog import log as log_module

    monkeypatch.setattr(log_module, "_cores", lambda: 2)
    path = _path()
    data = {"entries": [_entry(i, 3000) for i in range(60)]}
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.save("s", data)
        store.compact(retain=0)
    n = len(_manifest(path)[3])
    assert n >= log_module.AHEAD_MIN_SEGMENTS
    return path, data, n, max(1, n * log_module.AHEAD_A // 100), max(2, n * log_module.AHEAD_B // 100)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_large_snapshot_is_decompressed_partly_on_a_worker_and_damage_is_named(
    monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A snapshot of many segments has all but its first tenth decompressed on a
    worker thread, in two runs, while the first ones are decoded; it loads exactly as
    one by one.
    A segment whose size does not match its frame is named by index wherever it is."""
    from eventlog import codec as codec_module
    from eventlog import log as log_module

    path, data, n, a, b = _for_the_worker(monkeypatch)
    calls: list[int] = []
    decompress_run = codec_module.decompress_run

    def spy(items: Any, sizes: Any) -> Any:
        calls.append(len(items))
        return decompress_run(items, sizes)

    monkeypatch.setattr(codec_module, "decompress_run", spy)
    with eventlog.open(path, **TINY) as store:
        assert same(store.load("s"), data)
    assert calls == [b - a, n - b]
    monkeypatch.setattr(log_module, "_cores", lambda: 1)
    with eventlog.open(path, **TINY) as store:
        assert same(store.load("s"), data)  # one by one: the same
    assert calls == [b - a, n - b]
    monkeypatch.setattr(log_module, "_cores", lambda: 2)
    index = {"first": 0, "middle": (a + b) // 2, "last": n - 1}[where]  # here, in the short run, in the long one

    def edit(wire: Any) -> None:
        wire[1][index][2] += 1  # its decompressed size, one more than the frame says

    _reseal(path, edit)
    with eventlog.open(path, **TINY) as store:
        with pytest.raises(CorruptionError, match=f"segment {index} .*zstd frame claims") as raised:
            store.load("s")
        assert raised.value.session_id == "s"


def test_a_load_that_stops_early_waits_for_its_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """When a segment fails after runs went to the worker, the load raises only once
    the worker is done with them: no decompression outlives the load."""
    import threading
    import time

    from eventlog import codec as codec_module

    path, *_ = _for_the_worker(monkeypatch)
    runs: list[str] = []
    decompress_run = codec_module.decompress_run

    def slow(items: Any, sizes: Any) -> Any:
        runs.append(threading.current_thread().name)
        time.sleep(0.2)  # still at work when the damaged segment is met
        out = decompress_run(items, sizes)
        runs.append("done")
        return out

    monkeypatch.setattr(codec_module, "decompress_run", slow)

    def edit(wire: Any) -> None:
        wire[1][0][2] += 1  # the first segment, which this thread decodes itself

    _reseal(path, edit)
    with eventlog.open(path, **TINY) as store:
        with pytest.raises(CorruptionError, match="segment 0 "):
            store.load("s")
        assert runs[-1] == "done" and runs.count("done") == 2
        assert all(r == "done" or r.startswith("eventlog-zstd") for r in runs)


def test_a_load_reads_in_order_when_no_thread_can_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """At interpreter shutdown no new thread can start (``submit`` raises
    RuntimeError): the load reads every segment itself, and gives the same."""
    from concurrent.futures import ThreadPoolExecutor

    path, data, *_ = _for_the_worker(monkeypatch)

    def refuse(*_: Any, **__: Any) -> Any:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(ThreadPoolExecutor, "submit", refuse)
    with eventlog.open(path, **TINY) as store:
        assert same(store.load("s"), data)


def test_a_storage_error_while_reading_ahead_waits_for_the_run_started(monkeypatch: pytest.MonkeyPatch) -> None:
    """A storage error while reading the second run's payloads comes out as itself,
    once the first run (already on the worker) is done."""
    import threading
    import time

    from eventlog import codec as codec_module
    from eventlog import log as log_module
    from eventlog.errors import StorageError

    path, _, _, a, b = _for_the_worker(monkeypatch)
    runs: list[str] = []
    decompress_run = codec_module.decompress_run

    def slow(items: Any, sizes: Any) -> Any:
        runs.append(threading.current_thread().name)
        time.sleep(0.2)
        out = decompress_run(items, sizes)
        runs.append("done")
        return out

    monkeypatch.setattr(codec_module, "decompress_run", slow)
    payload = log_module.Log._payload
    calls = [0]

    def failing(self: Any, segment: Any, seen: Any) -> Any:
        calls[0] += 1
        if calls[0] > b - a:  # the first payload of the second run
            raise StorageError("disk I/O error")
        return payload(self, segment, seen)

    monkeypatch.setattr(log_module.Log, "_payload", failing)
    with eventlog.open(path, **TINY) as store, pytest.raises(StorageError, match="disk I/O error"):
        store.load("s")
    assert runs == ["eventlog-zstd_0", "done"]


def _replace_payload(path: str, index: int, payload: bytes) -> None:
    """Store ``payload`` as chunks (valid addresses) and point segment ``index`` at it."""
    with eventlog.open(path, **TINY) as store:
        writes = ChunkWrites()
        hashes = store._log.chunks.put(payload, writes)
        for digest in writes.pieces:  # stored as rows of their own, used by nothing (yet)
            c = store._log.chunks.chunk(writes, digest)
            store._backend.db.con.execute("INSERT OR IGNORE INTO chunks(hash, flags, size, data) VALUES (?, ?, ?, ?)",
                                          (c.hash, c.flags, c.size, c.data))  # fmt: skip

    def edit(wire: Any) -> None:
        wire[1][index][3], wire[1][index][4] = len(payload), hashes

    _reseal(path, edit)


@pytest.mark.parametrize("where", ["first", "run A", "run B", "last"])
@pytest.mark.parametrize("damage", ["bytes after", "frame after", "cut", "flipped"])
def test_a_damaged_segment_payload_is_named_with_or_without_the_worker(
    monkeypatch: pytest.MonkeyPatch, where: str, damage: str
) -> None:
    """A segment whose stored bytes are whole chunks (their addresses check out) but
    not exactly one good zstd frame of its size fails the load, naming it, whether
    the worker or this thread decompresses it: a file never loads on two cores and
    fails on one.  Undamaged, the worker's buffers are what is decoded."""
    import zstandard

    from eventlog import log as log_module

    path, data, n, a, b = _for_the_worker(monkeypatch)
    segments = _manifest(path)[3]
    index = {"first": 0, "run A": a, "run B": b + 1, "last": n - 1}[where]
    bodies: list[str] = []
    entries = log_module.Log._segment_entries

    def spy(self: Any, segment: Any, body: Any, *args: Any) -> Any:
        bodies.append(type(body).__name__)
        return entries(self, segment, body, *args)

    monkeypatch.setattr(log_module.Log, "_segment_entries", spy)
    with eventlog.open(path, **TINY) as store:
        assert same(store.load("s"), data)
        frame = store._log._payload(segments[index], None)
    assert bodies == ["bytes"] * n  # decompressed here up to a, by the worker from a on
    raw = zstandard.ZstdDecompressor().decompress(frame)
    whole = zstandard.ZstdCompressor(write_content_size=True).compress(raw)
    payload = {
        "bytes after": whole + b"\x00junk",
        "frame after": whole + zstandard.ZstdCompressor(write_content_size=True).compress(b"more"),
        "cut": whole[:-5],
        "flipped": whole[:-20] + bytes(x ^ 0x5A for x in whole[-20:]),
    }[damage]
    _replace_payload(path, index, payload)
    for cores in (1, 2):
        monkeypatch.setattr(log_module, "_cores", lambda cores=cores: cores)
        with eventlog.open(path, **TINY) as store, pytest.raises(CorruptionError, match=f"segment {index} ") as raised:
            store.load("s")
        assert raised.value.session_id == "s"


def _with_images(n: int) -> dict[str, Any]:
    """A session of ``n`` entries, every fifth with its own screenshot-sized image."""
    rng = random.Random(7)
    entries = []
    for i in range(n):
        entry: dict[str, Any] = {"id": f"e{i}", "text": f"turn {i} " + "w" * 200}
        if i % 5 == 0:
            entry["image"] = "data:image/png;base64," + base64.b64encode(rng.randbytes(40_000)).decode()
        entries.append(entry)
    return {"entries": entries, "leafId": entries[-1]["id"]}


def _counting_reads(store: eventlog.Store) -> list[int]:
    """Patch the store's backend to record the size of each batch of chunks read."""
    backend = store._backend  # (the engine's one way to storage)
    plain = backend.chunks
    calls: list[int] = []

    def chunks(hashes: Any) -> Any:
        calls.append(len(hashes))
        return plain(hashes)

    backend.chunks = chunks  # type: ignore[method-assign]
    return calls


def test_a_snapshot_load_reads_its_chunks_in_batches_not_one_by_one() -> None:
    """Two-phase decode: a segmented snapshot's manifest names the chunks of its
    segments and of the large values inside them, so a cold load reads them in a
    few batched calls; before, each segment and each large value cost a query."""
    path = _path()
    data = _with_images(400)
    with eventlog.open(path, chunk_bytes=64 * 1024) as store:
        store.save("s", data)
        store.snapshot("s")
    with eventlog.open(path, chunk_bytes=64 * 1024) as store:
        calls = _counting_reads(store)
        assert same(store.load("s"), data)
    wanted = sum(calls)
    assert wanted >= 80  # 80 images and the segments, each named once
    assert len(calls) <= 3, calls


def test_reading_ahead_stays_bounded_and_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """With little room to read ahead, the large values are read in many windows
    (never more held than the bound), and the load is the same."""
    from eventlog import chunks as chunk_module
    from eventlog import log as log_module

    path = _path()
    data = _with_images(400)
    with eventlog.open(path, chunk_bytes=64 * 1024) as store:
        store.save("s", data)
        store.snapshot("s")
    monkeypatch.setattr(chunk_module, "AHEAD_BYTES", 1 << 20)
    monkeypatch.setattr(log_module, "AHEAD_BYTES", 1 << 20)
    with eventlog.open(path, chunk_bytes=64 * 1024) as store:
        held: list[int] = []
        plain = chunk_module.Chunks.prefetch

        def prefetch(self: Any, digests: Any) -> None:
            plain(self, digests)
            held.append(self._ahead_bytes)

        monkeypatch.setattr(chunk_module.Chunks, "prefetch", prefetch)
        calls = _counting_reads(store)
        assert same(store.load("s"), data)
        assert store._log.chunks._ahead == {}  # let go once the load is done
    assert len(calls) > 3 and max(held) <= 1 << 20, (calls, held)


def _shared(depth: int) -> Any:
    v: Any = "leaf"
    for _ in range(depth):
        v = [v, v]
    return v


@pytest.mark.parametrize(
    "value",
    [
        [_shared(60)],  # a few hundred bytes that are 2**60 values as a tree
        [{"when": __import__("datetime").datetime(2026, 1, 1, tzinfo=__import__("datetime").timezone.utc)}],
        [{"re": __import__("re").compile("x+")}],
        [b"\x00" * 10, {"k": "v"}],  # not one entry per stated entry
    ],
    ids=["shared values", "datetime", "regex", "count"],
)
def test_a_hostile_string_referencing_segment_is_damage(value: Any) -> None:
    """Segments with string references are read by cbor2's own tag handling (the
    fast path): what it makes of tags eventlog never writes is refused as before,
    and shared values that would expand beyond what the segment's bytes hold as a
    tree are refused without walking them (they would take 2**60 steps)."""
    import blake3
    import cbor2

    path = _path()
    data = {"entries": [_entry(i, 3000) for i in range(40)]}
    with eventlog.open(path, snapshot_every=0, max_body_bytes=200_000, **TINY) as store:
        store.save("s", data)
        store.compact(retain=0)  # the snapshot is the only copy: its errors surface
    raw = cbor2.dumps(value, value_sharing=True, string_referencing=True)
    digest = blake3.blake3(raw).digest()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO chunks(hash, flags, size, data) VALUES (?, 0, ?, ?)", (digest, len(raw), raw))
    con.commit()
    con.close()
    _reseal(path, lambda wire: wire[1].__setitem__(0, [1, FLAG_STRINGREF, len(raw), len(raw), digest, b""]))
    with eventlog.open(path, max_body_bytes=200_000, **TINY) as store:
        with pytest.raises(CorruptionError, match="snapshot is damaged") as raised:
            store.load("s")
        assert raised.value.session_id == "s" and raised.value.seq == 1


def test_reused_segments_are_written_with_string_references_and_all_read() -> None:
    """A snapshot holds both kinds: the segments large enough to be reused, with
    string references; the small tail, plain.  Loads read both."""
    path, data = _stored(300)
    with eventlog.open(path, snapshot_every=0, **TINY) as store:
        store.append("s", [{"id": "z"}])
        store.snapshot("s")
        data = store.load("s")
    segments = _manifest(path)[3]
    kinds = [s.stringref for s in segments]
    assert kinds[-1] is False and all(kinds[:-1]), [(s.raw, s.flags) for s in segments]
    with eventlog.open(path, **TINY) as store:
        assert same(store.load("s"), data) and store.verify().ok
