"""What the store does on its own is logged with the standard ``logging`` module,
under the ``eventlog`` logger: a failed snapshot, a damaged snapshot skipped, a
damaged chunk rewritten, a schema upgraded.  Nothing is printed unless the
application configures logging, and normal use logs nothing at WARNING."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import eventlog
from eventlog.agents import EventlogSession
from eventlog.backends.sqlite.schema import SCHEMA_VERSION

from ..helpers import to_version_3
from .test_segments import TINY, _damage_first_segment, _stored


def _records(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("eventlog") and r.levelno >= level]


def test_every_module_logs_under_the_eventlog_logger() -> None:
    from eventlog import chunks, compaction, log, snapshots, store, writer
    from eventlog.backends.sqlite import connection, turnstile

    for module in (chunks, compaction, log, snapshots, store, writer):
        assert module.logger.name == module.__name__
    # The SQLite backend logs under one name, whichever of its modules speaks.
    assert connection._log.name == turnstile.logger.name == "eventlog.sqlite"
    assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger("eventlog").handlers)


def _fill_past_the_body_limit(path: str) -> list[dict[str, Any]]:
    """Appends whose snapshot cannot be written: each event fits ``max_body_bytes``,
    the whole session does not."""
    entries = [{"id": f"e{i}", "text": str(i) * 400} for i in range(6)]
    with eventlog.open(path, snapshot_every=2, max_body_bytes=1024, synchronous="OFF") as store:
        for entry in entries:
            store.append("s", [entry])
        assert store.load("s") == {"entries": entries, "leafId": "e5"}
    return entries


def test_a_failed_snapshot_is_a_warning_once_and_loses_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before, ``except EventLogError: pass``: nothing said loads of the session now
    replay every event."""
    caplog.set_level(logging.DEBUG, logger="eventlog")
    path = str(tmp_path / "s.db")
    entries = _fill_past_the_body_limit(path)
    warnings = _records(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    record = warnings[0]
    assert record.name == "eventlog.writer" and record.levelno == logging.WARNING
    assert "snapshot of session 's' at 4 failed" in record.getMessage()
    assert "over the limit of 1024" in record.getMessage()
    # Each later attempt (after every write: the policy says one is due) is DEBUG.
    retries = [m for name, m in _records_at(caplog, logging.DEBUG) if name == "eventlog.writer" and "failed" in m]
    assert [m.split(" failed")[0] for m in retries] == ["snapshot of session 's' at 5", "snapshot of session 's' at 6"]
    built = [m for name, m in _records_at(caplog, logging.DEBUG) if name == "eventlog.writer" and "built" in m]
    assert built and built[0].startswith("snapshot of session 's' built at 2")
    with eventlog.open(path) as store:
        assert store.load("s") == {"entries": entries, "leafId": "e5"}
        assert store.verify().ok


def _damage_snapshot(path: str, seq: int) -> None:
    con = sqlite3.connect(path)
    con.execute(
        "UPDATE snapshots SET frame = CAST(zeroblob(length(frame)) AS BLOB) WHERE seq = ?",
        (seq,),
    )
    assert con.total_changes == 1
    con.commit()
    con.close()


@pytest.mark.parametrize("older", [False, True])
def test_a_damaged_snapshot_skipped_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture, older: bool) -> None:
    """Before, a load that skipped a damaged snapshot and replayed from an older one,
    or from the first event, said nothing."""
    path = str(tmp_path / "s.db")
    data: dict[str, Any] = {"entries": []}
    with eventlog.open(path, snapshot_every=0) as store:
        for i in range(4):
            data["entries"].append({"id": str(i)})
            store.save("s", data)
            if i in ((1, 3) if older else (3,)):
                store.snapshot("s")
    _damage_snapshot(path, 4)
    caplog.set_level(logging.DEBUG, logger="eventlog")
    with eventlog.open(path) as store:
        assert store.load("s") == data
    [record] = _records(caplog)
    assert record.name == "eventlog.log"
    instead = "the snapshot at 2" if older else "its first event"
    assert record.getMessage().startswith("snapshot of session 's' at 4 skipped (")
    assert record.getMessage().endswith(f"): folded from {instead} instead")


def test_a_damaged_segment_rewritten_by_compaction_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    path, data = _stored()
    digest = _damage_first_segment(path)
    caplog.set_level(logging.DEBUG, logger="eventlog")
    with eventlog.open(path, **TINY) as store:
        assert store.load("s") == data
        assert [r.name for r in _records(caplog)] == ["eventlog.log"]  # the snapshot skipped
        caplog.clear()
        store.compact(retain=0)
        assert store.verify().ok
    messages = [(r.name, r.getMessage()) for r in _records(caplog)]
    rewritten = f"chunk {digest.hex()} is damaged: rewriting it from the bytes being written"
    assert ("eventlog.chunks", rewritten) in messages
    assert any(name == "eventlog.compaction" for name, _ in _records_at(caplog, logging.DEBUG))


def _records_at(caplog: pytest.LogCaptureFixture, level: int) -> list[tuple[str, str]]:
    return [(r.name, r.getMessage()) for r in caplog.records if r.levelno == level]


def test_a_schema_upgrade_is_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = str(tmp_path / "s.db")
    with eventlog.open(path) as store:
        store.save("s", {"a": 1})
    to_version_3(path)
    caplog.set_level(logging.DEBUG, logger="eventlog")
    with eventlog.open(path, readonly=True) as store:  # read through shims, not upgraded
        assert store.load("s") == {"a": 1}
    assert not _records(caplog, logging.INFO)
    with eventlog.open(path) as store:
        assert store.load("s") == {"a": 1}
    assert _records_at(caplog, logging.INFO) == [
        ("eventlog.sqlite", f"{path!r} upgraded from schema version 3 to {SCHEMA_VERSION}")
    ]
    caplog.clear()
    with eventlog.open(path) as store:  # already upgraded: nothing to say
        assert store.load("s") == {"a": 1}
    assert not _records(caplog, logging.INFO)


SCRIPT = """
import logging, sys
sys.path.insert(0, {root!r})
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.WARNING)
from tests.contract.test_logging import _fill_past_the_body_limit
_fill_past_the_body_limit(sys.argv[2])
print("done")
"""


@pytest.mark.parametrize("configured", [False, True])
def test_nothing_is_printed_unless_the_application_configures_logging(tmp_path: Path, configured: bool) -> None:
    """Without the NullHandler on ``eventlog``, Python's last-resort handler would
    print every warning to stderr of an application that never asked for logs."""
    root = str(Path(__file__).resolve().parents[2])
    mode = "configured" if configured else "silent"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(root=root), mode, str(tmp_path / "s.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout == "done\n"
    if configured:
        assert out.stderr.startswith("WARNING:eventlog.writer:snapshot of session 's' at 4 failed")
    else:
        assert out.stderr == ""


def test_normal_use_logs_nothing_at_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A workload of everything a store does, sync and async, several writers at once
    included: DEBUG records of snapshots, and not one WARNING."""
    caplog.set_level(logging.DEBUG, logger="eventlog")
    path = str(tmp_path / "s.db")
    image = "data:image/png;base64," + "QUJD" * 20_000
    with eventlog.open(path, snapshot_every=5, synchronous="NORMAL") as store:
        data: dict[str, Any] = {"entries": [], "title": "t"}
        for i in range(30):
            data["entries"].append({"id": str(i), "text": f"entry {i}", "image": image if i % 7 == 0 else None})
            if i % 3 == 0:
                data["entries"][0]["text"] = f"edited {i}"
            store.save("main", data, parent_id="root" if i == 0 else None)
            store.append(f"side{i % 3}", [{"id": f"{i}"}], parent_id="main")
        assert store.load("main") == data
        assert store.fold("main", at=10)["entries"][9]["id"] == "9"
        assert len(list(store.events("main"))) == 30
        store.snapshot("side0")
        assert store.tree("main") == ["side0", "side1", "side2"]
        store.delete("side2")
        store.compact(retain=5, vacuum=True)
        assert store.verify().ok and store.stats()["sessions"]["count"] == 3

    def writer(n: int) -> None:
        with eventlog.open(path, synchronous="NORMAL", snapshot_every=4) as s:
            for k in range(20):
                s.append(f"w{n}", [{"id": f"{n}.{k}"}])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    async def main() -> None:
        async with eventlog.open_async(path, synchronous="NORMAL") as astore:
            await asyncio.gather(*(astore.append(f"a{n}", [{"id": str(n)}]) for n in range(10)))
            assert await astore.load("main") == data
        async with EventlogSession("conv", path, snapshot_every=3) as session:
            for k in range(10):
                await session.add_items([{"id": str(k), "role": "user", "content": "hi"}])
            await session.pop_item()
            await session.clear_session()

    asyncio.run(main())
    with eventlog.open(path, readonly=True) as store:
        assert store.load("main") == data and store.verify().ok
    assert _records(caplog) == []
    assert any(r.getMessage().startswith("snapshot of session 'main' built at") for r in caplog.records)
