"""``python -m bench postgres``: eventlog on PostgreSQL against what people build on
PostgreSQL today, on the same server, in one run.

Systems (each in a schema of its own, so its bytes are its tables'):

* **eventlog**: ``eventlog.open("postgresql://...")``, ``save()`` after every turn;
* **row per message (JSONB)**: the design of the Agents SDK's SQLAlchemy session and
  ADK's database service: a row per message (``jsonb``), a row per session for the
  other fields; a save inserts the messages beyond those stored (the adapter knows
  how many, which favours it);
* **one JSONB document**: the whole session as one ``jsonb`` value, rewritten on every
  save (``INSERT ... ON CONFLICT DO UPDATE``);
* **eventsourcing**: the ``eventsourcing`` library's PostgreSQL recorder (its insert function,
  ``enable_db_functions``: its pipelined insert stalls on events of ~1 MB here), an event per
  entry (as in ``bench compare``), full replay on load.

Workloads: the coding agent (N entries, saved after every entry), the browser agent
(turns with ~1 MB base64 screenshots, half of them repeats), a cold load of a
10,000-entry session (open + load in a fresh process, best of 3), and 8 writer
processes appending one entry at a time to sessions of their own, against a plain
``INSERT`` of the same bytes per append (the floor).  Every system commits with the
server's defaults (``synchronous_commit = on``).

The server is ``EVENTLOG_BENCH_POSTGRES`` (a URL of a role that may create schemas;
default: the test suite's, ``postgresql://eventlog:eventlog@localhost/eventlog_test``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import eventlog
from eventlog.samples import browser_session, bulk_entries, coding_session

DEFAULT = "postgresql://eventlog:eventlog@localhost/eventlog_test"
SID = "agent-session"


def server() -> str:
    return os.environ.get("EVENTLOG_BENCH_POSTGRES", os.environ.get("EVENTLOG_TEST_POSTGRES", DEFAULT))


def _psycopg() -> Any:
    import psycopg

    return psycopg


@contextmanager
def schema() -> Iterator[str]:
    """A new schema on the server, dropped after; the URL whose connections use it."""
    name = f"b_{uuid.uuid4().hex[:12]}"
    with _psycopg().connect(server(), autocommit=True) as con:
        con.execute(f"CREATE SCHEMA {name}")
    sep = "&" if "?" in server() else "?"
    try:
        yield f"{server()}{sep}options={quote('-csearch_path=' + name)}"
    finally:
        with _psycopg().connect(server(), autocommit=True) as con:
            con.execute(f"DROP SCHEMA {name} CASCADE")


def schema_bytes(url: str) -> int:
    """What the schema's tables take on the server (heap, TOAST and indexes)."""
    with _psycopg().connect(url, autocommit=True) as con:
        row = con.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"
        ).fetchone()
    return int(row[0])


# ---------------------------------------------------------------------- systems


class System:
    name = ""

    def save(self, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def append(self, entry: Any) -> None:
        raise NotImplementedError

    def load(self) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Eventlog(System):
    name = "eventlog"

    def __init__(self, url: str) -> None:
        self.store = eventlog.open(url)

    def save(self, data: dict[str, Any]) -> None:
        self.store.save(SID, data)

    def append(self, entry: Any) -> None:
        self.store.append(SID, [entry])

    def load(self) -> Any:
        return self.store.load(SID)

    def close(self) -> None:
        self.store.close()


class Rows(System):
    name = "row per message (JSONB)"

    def __init__(self, url: str, create: bool = True) -> None:
        self.con = _psycopg().connect(url, autocommit=True)
        if create:
            self.con.execute("CREATE TABLE IF NOT EXISTS agent_sessions (id text PRIMARY KEY, fields jsonb NOT NULL)")
            self.con.execute("CREATE TABLE IF NOT EXISTS agent_messages (session_id text NOT NULL, seq integer "
                             "NOT NULL, message jsonb NOT NULL, PRIMARY KEY (session_id, seq))")  # fmt: skip
        self.stored = 0

    def save(self, data: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        entries = data.get("entries") or []
        fields = {k: v for k, v in data.items() if k != "entries"}
        with self.con.transaction():
            self.con.execute("INSERT INTO agent_sessions VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET fields = "
                             "EXCLUDED.fields", (SID, Jsonb(fields)))  # fmt: skip
            new = entries[self.stored :]
            if new:
                with self.con.cursor() as cur:
                    cur.executemany("INSERT INTO agent_messages VALUES (%s, %s, %s)",
                                    [(SID, self.stored + i, Jsonb(e)) for i, e in enumerate(new)])  # fmt: skip
        self.stored = len(entries)

    def append(self, entry: Any) -> None:
        from psycopg.types.json import Jsonb

        self.con.execute("INSERT INTO agent_messages VALUES (%s, %s, %s)", (SID, self.stored, Jsonb(entry)))
        self.stored += 1

    def load(self) -> Any:
        fields = self.con.execute("SELECT fields FROM agent_sessions WHERE id = %s", (SID,)).fetchone()
        rows = self.con.execute("SELECT message FROM agent_messages WHERE session_id = %s ORDER BY seq", (SID,))
        return {**(fields[0] if fields else {}), "entries": [r[0] for r in rows]}

    def close(self) -> None:
        self.con.close()


class Document(System):
    name = "one JSONB document"

    def __init__(self, url: str, create: bool = True) -> None:
        self.con = _psycopg().connect(url, autocommit=True)
        if create:
            self.con.execute("CREATE TABLE IF NOT EXISTS agent_documents (id text PRIMARY KEY, doc jsonb NOT NULL)")

    def save(self, data: dict[str, Any]) -> None:
        from psycopg.types.json import Jsonb

        self.con.execute("INSERT INTO agent_documents VALUES (%s, %s) ON CONFLICT (id) DO UPDATE SET doc = "
                         "EXCLUDED.doc", (SID, Jsonb(data)))  # fmt: skip

    def load(self) -> Any:
        row = self.con.execute("SELECT doc FROM agent_documents WHERE id = %s", (SID,)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.con.close()


class Eventsourcing(System):
    def __init__(self, url: str, create: bool = True) -> None:
        from importlib import metadata

        from eventsourcing.persistence import DatetimeAsISO, EventStore, JSONTranscoder, Mapper, UUIDAsHex
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        from .systems import EntryAdded

        self.name = f"eventsourcing {metadata.version('eventsourcing')} (PostgreSQL recorder)"
        u = urlsplit(url)
        name = url.rsplit("%3D", 1)[1]
        self.datastore = PostgresDatastore(u.path.lstrip("/"), u.hostname or "localhost", u.port or 5432,
                                           u.username or "", u.password or "", schema=name,
                                           enable_db_functions=True)  # fmt: skip
        self.recorder = PostgresApplicationRecorder(self.datastore)
        if create:
            self.recorder.create_table()
        transcoder = JSONTranscoder()
        transcoder.register(UUIDAsHex())
        transcoder.register(DatetimeAsISO())
        self.events: Any = EventStore(Mapper(transcoder), self.recorder)
        self.version = 0
        self.oid = uuid.uuid5(uuid.NAMESPACE_URL, SID)
        self.entry_added = EntryAdded

    def save(self, data: dict[str, Any]) -> None:
        from eventsourcing.domain import DomainEvent

        entries = data.get("entries") or []
        now = DomainEvent.create_timestamp()
        new = [self.entry_added(originator_id=self.oid, originator_version=self.version + i, timestamp=now, entry=e)
               for i, e in enumerate(entries[self.version :], 1)]  # fmt: skip
        self.events.put(new)
        self.version += len(new)

    def append(self, entry: Any) -> None:
        self.save({"entries": [None] * self.version + [entry]})

    def load(self) -> Any:
        return {"entries": [e.entry for e in self.events.get(self.oid)]}

    def close(self) -> None:
        self.datastore.close()


SYSTEMS: dict[str, Callable[..., System]] = {
    "eventlog": Eventlog,
    "rows": Rows,
    "document": Document,
    "eventsourcing": Eventsourcing,
}


# ---------------------------------------------------------------------- measurements


@dataclass
class Result:
    system: str
    status: str = "ok"
    metrics: dict[str, Any] = field(default_factory=dict)


def _p50(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def saved_every_turn(states: Iterator[dict[str, Any]], keys: Sequence[str], skip: Sequence[str] = ()) -> list[Result]:
    """Each system saves every state (the same list of states for all, built once)."""
    states = list(states)
    tenth = max(1, len(states) // 10)
    out = []
    for key in keys:
        if key in skip:
            out.append(Result(key, "n/a: rewrites the whole session (hundreds of MB) on every save"))
            continue
        with schema() as url:
            try:
                system = SYSTEMS[key](url)
            except ImportError as e:
                out.append(Result(key, f"not installed: {e}"))
                continue
            r = Result(system.name)
            times = []
            start = time.perf_counter()
            for data in states:
                t = time.perf_counter()
                system.save(data)
                times.append(time.perf_counter() - t)
            r.metrics["total"] = time.perf_counter() - start
            r.metrics["early"] = _p50(times[:tenth])
            r.metrics["late"] = _p50(times[-tenth:])
            system.close()
            r.metrics["bytes"] = schema_bytes(url)
            system = SYSTEMS[key](url, **({} if key == "eventlog" else {"create": False}))
            t = time.perf_counter()
            loaded = system.load()
            r.metrics["load"] = time.perf_counter() - t
            r.metrics["entries"] = len(loaded["entries"]) if loaded else 0
            system.close()
            out.append(r)
    return out


def _cold_main(argv: list[str]) -> int:
    key, url = argv
    _psycopg()  # (imports done before the clock starts, as in bench compare's cold load)
    if key == "eventsourcing":
        import eventsourcing.postgres  # noqa: F401
    t = time.perf_counter()
    system = SYSTEMS[key](url, **({} if key == "eventlog" else {"create": False}))
    data = system.load()
    took = time.perf_counter() - t
    system.close()
    print(json.dumps({"cold": took, "entries": len(data["entries"])}))
    return 0


def cold_load(n: int, keys: Sequence[str], reps: int) -> list[Result]:
    """Each system holds one ``n``-entry session, written entry by entry (eventlog:
    appended, then saved, as compare's cold load); open + load in a fresh process."""
    data = list(coding_session(n, seed=5))[-1]
    out = []
    root = str(Path(__file__).resolve().parent.parent)
    for key in keys:
        with schema() as url:
            try:
                system = SYSTEMS[key](url)
            except ImportError as e:
                out.append(Result(key, f"not installed: {e}"))
                continue
            r = Result(system.name)
            if key == "eventlog":
                for entry in data["entries"]:
                    system.append(entry)
                system.save(data)
            elif key == "document":
                system.save(data)
            else:
                for entry in data["entries"]:
                    system.append(entry)
                if key == "rows":
                    system.save(data)
            system.close()
            best = float("inf")
            for _ in range(reps):
                code = "import sys; from bench.postgres import _cold_main; sys.exit(_cold_main(sys.argv[1:]))"
                done = subprocess.run([sys.executable, "-c", code, key, url], cwd=root, capture_output=True, text=True,
                                      check=True, env={**os.environ, "PYTHONPATH": root})  # fmt: skip
                got = json.loads(done.stdout)
                if got["entries"] != n:
                    r.status = f"WRONG: loaded {got['entries']} entries"
                best = min(best, got["cold"])
            r.metrics["cold"] = best
            r.metrics["bytes"] = schema_bytes(url)
            out.append(r)
    return out


def _writer(key: str, url: str, sid: str, entries: list[Any]) -> tuple[float, float]:
    """In a writer process: append ``entries`` one per transaction; (start, end)."""
    if key == "eventlog":
        with eventlog.open(url) as store:
            store.append(sid, [entries[0]])  # (the session made before the clock starts)
            start = time.time()
            for e in entries[1:]:
                store.append(sid, [e])
            return start, time.time()
    import cbor2
    import zstandard

    with _psycopg().connect(url, autocommit=True) as con:
        z = zstandard.ZstdCompressor(level=1)
        start = time.time()
        for i, e in enumerate(entries[1:], 1):
            con.execute("INSERT INTO floor_events(session_id, seq, body) VALUES (%s, %s, %s)",
                        (sid, i, z.compress(cbor2.dumps(e))))  # fmt: skip
        return start, time.time()


def writers(processes: int, per_writer: int) -> list[Result]:
    """``processes`` writers at once, each appending ``per_writer`` entries of ~1 KB
    one per transaction to a session of its own: appends per second, over the span
    from the first writer's start to the last one's end."""
    entries = bulk_entries(per_writer + 1, seed=3)
    out = []
    ctx = multiprocessing.get_context("spawn")
    for key, name in (("floor", "plain INSERT per append (floor)"), ("eventlog", "eventlog append()")):
        with schema() as url:
            if key == "floor":
                with _psycopg().connect(url, autocommit=True) as con:
                    con.execute("CREATE TABLE floor_events (pos bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                                "session_id text NOT NULL, seq integer NOT NULL, body bytea NOT NULL, "
                                "UNIQUE (session_id, seq))")  # fmt: skip
            else:
                eventlog.open(url).close()
            with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
                spans = list(pool.map(_writer, [key] * processes, [url] * processes,
                                      [f"w{i}" for i in range(processes)], [entries] * processes))  # fmt: skip
            span = max(e for _, e in spans) - min(s for s, _ in spans)
            r = Result(name)
            r.metrics["rate"] = processes * per_writer / span
            out.append(r)
    return out


# ---------------------------------------------------------------------- the run


@dataclass
class Target:
    name: str
    measured: str
    ratio: float | None
    target: str
    ok: bool | None


def _ms(s: float) -> str:
    return f"{s * 1000:.2f} ms" if s < 1 else f"{s:.2f} s"


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def run(quick: bool) -> tuple[str, list[tuple[str, list[list[str]]]], list[Target]]:
    """The tables and the targets of issue 18."""
    coding, turns, cold, per_writer = (200, 40, 2000, 100) if quick else (1000, 150, 10_000, 500)
    with _psycopg().connect(server(), autocommit=True) as con:
        version = con.execute("SHOW server_version").fetchone()[0]
    machine = f"PostgreSQL {version}, {os.cpu_count()} CPUs, synchronous_commit=on{', quick' if quick else ''}"
    keys = ["eventlog", "rows", "document", "eventsourcing"]
    sections: list[tuple[str, list[list[str]]]] = []

    def table(results: list[Result], cols: list[tuple[str, Callable[[Result], str]]]) -> list[list[str]]:
        rows = [["system", "status", *(c for c, _ in cols)]]
        for r in results:
            rows.append([r.system, r.status, *((f(r) if r.status == "ok" else "-") for _, f in cols)])
        return rows

    save_cols: list[tuple[str, Callable[[Result], str]]] = [
        ("total", lambda r: _ms(r.metrics["total"])),
        ("save p50, first tenth", lambda r: _ms(r.metrics["early"])),
        ("save p50, last tenth", lambda r: _ms(r.metrics["late"])),
        ("late/early", lambda r: f"{r.metrics['late'] / r.metrics['early']:.2f}"),
        ("load", lambda r: _ms(r.metrics["load"])),
        ("bytes on the server", lambda r: _mb(r.metrics["bytes"])),
    ]
    code = saved_every_turn(coding_session(coding, seed=1), keys)
    sections.append((f"Coding agent: {coding:,} entries, saved after every entry", table(code, save_cols)))
    browse = saved_every_turn(browser_session(turns, seed=2), keys, skip=["document"])
    sections.append((f"Browser agent: {turns} turns, a 750 KB screenshot each (about half repeat), saved after "
                     "every turn", table(browse, save_cols)))  # fmt: skip
    colds = cold_load(cold, keys, 3)
    sections.append((f"Cold load: a {cold:,}-entry session, open + load in a fresh process (best of 3)",
                     table(colds, [("open + load", lambda r: _ms(r.metrics["cold"])),
                                   ("bytes on the server", lambda r: _mb(r.metrics["bytes"]))])))  # fmt: skip
    procs = 8
    writes = writers(procs, per_writer)
    sections.append((f"{procs} writer processes, {per_writer} appends of ~1 KB each, one per transaction",
                     table(writes, [("appends/s", lambda r: f"{r.metrics['rate']:,.0f}")])))  # fmt: skip

    def get(results: list[Result], prefix: str) -> Result | None:
        return next((r for r in results if r.system.startswith(prefix) and r.status == "ok"), None)

    targets = []
    ev, rows = get(browse, "eventlog"), get(browse, "row per message")
    if ev and rows:
        ratio = ev.metrics["bytes"] / rows.metrics["bytes"]
        targets.append(Target("browser workload: bytes, eventlog / row per message",
                              f"{_mb(ev.metrics['bytes'])} / {_mb(rows.metrics['bytes'])}", ratio, "<= 0.4",
                              ratio <= 0.4))  # fmt: skip
    ev = get(code, "eventlog")
    if ev:
        ratio = ev.metrics["late"] / ev.metrics["early"]
        targets.append(Target("coding workload: eventlog save p50, last tenth / first tenth",
                              f"{_ms(ev.metrics['late'])} / {_ms(ev.metrics['early'])}", ratio, "<= 1.5",
                              ratio <= 1.5))  # fmt: skip
    ev, floor = get(writes, "eventlog"), get(writes, "plain INSERT")
    if ev and floor:
        ratio = ev.metrics["rate"] / floor.metrics["rate"]
        targets.append(Target(f"{procs} writer processes: eventlog appends/s / plain INSERT floor",
                              f"{ev.metrics['rate']:,.0f} / {floor.metrics['rate']:,.0f}", ratio, ">= 0.5",
                              ratio >= 0.5))  # fmt: skip
    ev, rows = get(colds, "eventlog"), get(colds, "row per message")
    if ev and rows:
        ratio = rows.metrics["cold"] / ev.metrics["cold"]
        targets.append(Target(f"cold load of {cold:,} entries: row per message / eventlog",
                              f"{_ms(rows.metrics['cold'])} / {_ms(ev.metrics['cold'])}", ratio, ">= 2",
                              ratio >= 2))  # fmt: skip
    return machine, sections, targets
