"""Damaged database files: bytes flipped anywhere in a real store file.

``load`` gives the data that was saved or raises a documented error naming the
session; ``verify`` never raises and reports every flip that changed what SQLite
reads, except in the few columns nothing checks (see
``tools/fuzzing.py:UNCHECKED_COLUMNS``).  Flips in free space and unused bytes change
nothing and go unreported.  ``tools/fuzz --target file`` runs many more flips.
"""

from __future__ import annotations

import collections
import functools
import random
import sqlite3
import struct
from pathlib import Path
from typing import Any

import pytest

import eventlog
from tools import fuzzing
from tools.fuzzing import FILE_OPTIONS


@functools.cache
def pristine(tmp: str) -> tuple[bytes, dict[str, dict[str, Any]], dict[Any, Any], dict[str, list[int]]]:
    """The store file, what each session loads as, what SQLite reads from it, and
    the pages of each table and index (b-tree pages, not overflow or free ones)."""
    path = str(Path(tmp) / "pristine.db")
    expected = fuzzing.build_file(path)
    pages: dict[str, list[int]] = collections.defaultdict(list)
    con = sqlite3.connect(path)
    try:
        for name, pageno in con.execute("SELECT name, pageno FROM dbstat WHERE pagetype != 'overflow'"):
            pages[name].append(pageno)
    except sqlite3.OperationalError:  # SQLite built without dbstat
        pass
    finally:
        con.close()
    return Path(path).read_bytes(), expected, fuzzing.logical_content(path), dict(pages)


@pytest.fixture
def file(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[bytes, dict[str, dict[str, Any]], dict[Any, Any], dict[str, list[int]]]:
    return pristine(str(tmp_path_factory.getbasetemp()))


def flip_and_check(file: Any, tmp_path: Path, positions: list[tuple[int, int]]) -> collections.Counter[str]:
    original, expected, before, _ = file
    outcomes: collections.Counter[str] = collections.Counter()
    for pos, xor in positions:
        with fuzzing.time_limit(20, f"checking byte {pos} ^ {xor:#x}"):
            outcome = fuzzing.check_flipped_file(original, expected, tmp_path / "damaged.db", pos, xor, before)
        outcomes[fuzzing.describe(outcome)] += 1
    return outcomes


def test_flips_anywhere_in_the_file(file: Any, tmp_path: Path) -> None:
    rng = random.Random(6)
    size = len(file[0])
    outcomes = flip_and_check(file, tmp_path, [(rng.randrange(size), rng.randrange(1, 256)) for _ in range(250)])
    print(dict(outcomes))
    reported = sum(n for what, n in outcomes.items() if what.endswith("verify reports"))
    assert reported > 20


def test_flips_in_the_pages_of_tables_and_indexes(file: Any, tmp_path: Path) -> None:
    """Record headers, cell pointers, keys: where a flip changes structure, types
    and index entries rather than payload."""
    pages = [p for name, ps in file[3].items() for p in ps]
    if not pages:
        pytest.skip("SQLite without dbstat")
    rng = random.Random(7)
    positions = [((rng.choice(pages) - 1) * 4096 + rng.randrange(4096), rng.randrange(1, 256)) for _ in range(250)]
    outcomes = flip_and_check(file, tmp_path, positions)
    print(dict(outcomes))


# ----------------------------------------------------------------------------- regressions


def damaged(file: Any, tmp_path: Path, change: Any) -> str:
    """A copy of the pristine file with ``change(bytearray)`` applied."""
    data = bytearray(file[0])
    change(data)
    path = tmp_path / "damaged.db"
    path.write_bytes(data)
    return str(path)


def replace_once(data: bytearray, old: bytes, new: bytes, start: int = 0, end: int | None = None) -> None:
    at = data.find(old, start, end)
    assert at >= 0, old
    data[at : at + len(old)] = new


def test_schema_text_that_is_not_utf8_is_corruption_at_open(file: Any, tmp_path: Path) -> None:
    """Regression: SQLite quotes the damaged schema text in its message, and
    ``sqlite3`` then raised ``UnicodeDecodeError`` out of ``open``."""
    path = damaged(file, tmp_path, lambda d: replace_once(d, b"AUTOINCREMENT", b"AUTOINCREMEN\x92"))
    with pytest.raises(eventlog.CorruptionError, match="database file is damaged"):
        eventlog.open(path, **FILE_OPTIONS)


def test_a_renamed_column_is_corruption_at_open(file: Any, tmp_path: Path) -> None:
    """Regression: a flip that renames a column still parses; the store opened and
    every later read failed with StorageError "no such column"."""
    path = damaged(file, tmp_path, lambda d: replace_once(d, b"ts_ms INTEGER", b"ts_mz INTEGER"))
    with pytest.raises(eventlog.CorruptionError, match=r"the schema of .* is damaged: the columns of events"):
        eventlog.open(path, **FILE_OPTIONS)
    path = damaged(file, tmp_path, lambda d: replace_once(d, b"DEFAULT 0", b"DEFAULT 8"))
    with pytest.raises(eventlog.CorruptionError, match="the columns of sessions"):
        eventlog.open(path, **FILE_OPTIONS)


def test_a_schema_seen_sound_in_this_process_does_not_vouch_for_another(file: Any, tmp_path: Path) -> None:
    """Opening a sound store again checks its schema text by one query (the same
    text is the same schema); a file whose text differs by one byte gets the whole
    check, whatever was opened before."""
    sound = tmp_path / "sound.db"
    sound.write_bytes(file[0])
    for _ in range(2):
        eventlog.open(str(sound), **FILE_OPTIONS).close()
    path = damaged(file, tmp_path, lambda d: replace_once(d, b"ts_ms INTEGER", b"ts_mz INTEGER"))
    with pytest.raises(eventlog.CorruptionError, match=r"the schema of .* is damaged: the columns of events"):
        eventlog.open(path, **FILE_OPTIONS)


def test_a_damaged_schema_version_is_corruption_at_open(file: Any, tmp_path: Path) -> None:
    """Regression: version 2 read as 1 ran the migration on version 2 tables, which
    failed with StorageError."""
    path = damaged(file, tmp_path, lambda d: d.__setitem__(slice(60, 64), struct.pack(">I", 1)))
    with pytest.raises(eventlog.CorruptionError, match="says schema version 1, but its tables are not"):
        eventlog.open(path, **FILE_OPTIONS)


def test_a_session_id_that_is_not_utf8_is_corruption(file: Any, tmp_path: Path) -> None:
    """Regression: ``sqlite3`` fails to decode the TEXT column; that was a
    StorageError, raised out of ``verify`` too."""
    path = damaged(file, tmp_path, lambda d: d.__setitem__(slice(None), d.replace(b"small", b"sm\xe1ll")))
    with eventlog.open(path, **FILE_OPTIONS) as s:
        with pytest.raises(eventlog.CorruptionError, match="Could not decode to UTF-8"):
            s.sessions()
        report = s.verify()
        assert not report.ok and "Could not decode to UTF-8" in str(report.problems)


def _page_of(file: Any, name: str) -> tuple[int, int]:
    pages = file[3].get(name)
    if not pages:
        pytest.skip("SQLite without dbstat")
    return (pages[0] - 1) * 4096, pages[0] * 4096


def test_a_damaged_index_entry_is_found_by_verify(file: Any, tmp_path: Path) -> None:
    """Regression: a flip in the index of session ids hides a session from ``load``
    (which finds it through the index), and ``verify`` (which walks the table) said
    all was well; now SQLite's integrity check runs first."""
    start, end = _page_of(file, "sessions_name")
    path = damaged(file, tmp_path, lambda d: replace_once(d, b"browser", b"brawser", start, end))
    with eventlog.open(path, **FILE_OPTIONS) as s:
        assert s.load("browser") is None  # what load cannot tell from a missing session
        report = s.verify()
        assert not report.ok and "missing from index sessions_name" in str(report.problems)


def test_ids_out_of_order_do_not_make_verify_or_compact_go_round_forever(file: Any, tmp_path: Path) -> None:
    """Regression: a flip in the header of the sessions table's page made SQLite
    read rows with id 0 again and again; verify's scan by increasing id never
    ended.  Every flip of that header now ends, in documented errors."""
    start, _ = _page_of(file, "sessions")
    for offset in range(8):
        for xor in (0x01, 0x10, 0x80, 0xB2):
            path = damaged(file, tmp_path, lambda d: d.__setitem__(start + offset, d[start + offset] ^ xor))  # noqa: B023
            with fuzzing.time_limit(20, f"sessions page header byte {offset} ^ {xor:#x}"):
                try:
                    with eventlog.open(path, **FILE_OPTIONS) as s:
                        assert not s.verify().ok
                        s.compact()
                except eventlog.EventLogError:
                    pass


def test_a_damaged_chunk_index_is_reported_not_raised(file: Any, tmp_path: Path) -> None:
    """Regression: the chunk index giving a row for another hash made verify raise
    KeyError or IndexError."""
    _, end = _page_of(file, "sqlite_autoindex_chunks_1")
    at = end - 10  # in the hash of the cell at the end of the page (the first inserted)
    path = damaged(file, tmp_path, lambda d: d.__setitem__(at, d[at] ^ 0x42))
    with eventlog.open(path, **FILE_OPTIONS) as s:
        report = s.verify()
    assert not report.ok


def _sql(path: str, *statements: str) -> None:
    con = sqlite3.connect(path)
    for statement in statements:
        con.execute(statement)
    con.commit()
    con.close()


def test_a_damaged_head_is_corruption(file: Any, tmp_path: Path) -> None:
    """Regression: the head (``sessions.seq``, a plain column) made one smaller made
    ``load`` return the session as it was one save earlier, and verify said ok."""
    path = damaged(file, tmp_path, lambda d: None)
    _sql(path, "UPDATE sessions SET seq = seq - 1 WHERE name = 'spill'")
    with eventlog.open(path, **FILE_OPTIONS) as s:
        with pytest.raises(eventlog.CorruptionError, match="head says 1, its log ends at 2") as err:
            s.load("spill")
        assert err.value.session_id == "spill"
        with pytest.raises(eventlog.CorruptionError):
            s.fold("spill", at=1)
        report = s.verify()
        assert "the log goes on after the session's head" in str(report.problems)


def test_missing_last_events_are_corruption(file: Any, tmp_path: Path) -> None:
    """Regression: with the last events gone, replay stopped early without a word
    and ``load``, ``fold`` and ``events`` gave an older session."""
    path = damaged(file, tmp_path, lambda d: None)
    _sql(
        path,
        "DELETE FROM snapshots",
        "DELETE FROM events WHERE seq = 2 AND sid = (SELECT sid FROM sessions WHERE name = 'spill')",
    )
    with eventlog.open(path, **FILE_OPTIONS) as s:
        with pytest.raises(eventlog.CorruptionError, match="head says 2, its log ends at 1") as err:
            s.load("spill")
        assert err.value.session_id == "spill"
        with pytest.raises(eventlog.CorruptionError, match="head says 2, its log ends at 1"):
            s.fold("spill", at=2)
        with pytest.raises(eventlog.CorruptionError, match="event 2 is missing"):
            list(s.events("spill"))
        assert not s.verify().ok


def test_columns_of_the_wrong_type_are_corruption(file: Any, tmp_path: Path) -> None:
    """Regression: a damaged record reads NULL, text or a float where an integer
    was written; that came out as a timestamp of the wrong type, or TypeError and
    struct.error from deep inside."""
    path = damaged(file, tmp_path, lambda d: None)
    _sql(
        path, "UPDATE events SET ts_ms = 'noon' WHERE seq = 1 AND sid = (SELECT sid FROM sessions WHERE name = 'small')"
    )
    with eventlog.open(path, **FILE_OPTIONS) as s:
        with pytest.raises(eventlog.CorruptionError, match="an events row is damaged") as err:
            list(s.events("small"))
        assert err.value.session_id == "small"
        assert not s.verify().ok
    path = damaged(file, tmp_path, lambda d: None)
    _sql(path, "UPDATE sessions SET base_seq = 'x' WHERE name = 'small'")
    with eventlog.open(path, **FILE_OPTIONS) as s:
        with pytest.raises(eventlog.CorruptionError, match="the sessions table is damaged"):
            s.load("small")
        assert not s.verify().ok
    path = damaged(file, tmp_path, lambda d: None)
    _sql(path, "UPDATE snapshots SET seq = seq + 0.5")  # damaged snapshots: skipped, as a cache
    with eventlog.open(path, **FILE_OPTIONS) as s:
        for sid, want in file[1].items():
            assert fuzzing.canon(s.load(sid)) == fuzzing.canon(want)
        assert "not in the log: its row is damaged" in str(s.verify().problems)
    path = damaged(file, tmp_path, lambda d: None)
    _sql(path, "UPDATE chunks SET size = 'big' WHERE cid = 1")
    with eventlog.open(path, **FILE_OPTIONS) as s:
        assert "the chunks table is damaged" in str(s.verify().problems) or not s.verify().ok


def test_a_damaged_id_counter_is_reported(file: Any, tmp_path: Path) -> None:
    """Regression (found by tools/fuzz): a flip in the name of a table in
    ``sqlite_sequence`` loses its AUTOINCREMENT counter, so positions of deleted
    events could be handed out again; verify said ok."""
    for change in ("UPDATE sqlite_sequence SET name = 'evenus' WHERE name = 'events'",
                   "UPDATE sqlite_sequence SET seq = 1 WHERE name = 'events'"):  # fmt: skip
        path = damaged(file, tmp_path, lambda d: None)
        _sql(path, change)
        with eventlog.open(path, **FILE_OPTIONS) as s:
            assert "the id counter of events reads" in str(s.verify().problems)
