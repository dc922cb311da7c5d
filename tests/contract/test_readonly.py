"""Read-only stores (``open(path, readonly=True)``) and the read commands, which use
them: reading never changes the file, not even to upgrade an older one."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

import eventlog
from eventlog.backends.sqlite.schema import SCHEMA_VERSION

from ..helpers import run, to_version_3
from .test_trees import to_version_1

KEY = bytes(range(100, 132))


def blob(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


#: A screenshot as a runtime sends it: base64 text (stored decoded, in one chunk).
IMAGE = base64.b64encode(blob(1, 150_000)).decode()


def session(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"version": 5, "entries": list(entries), "leafId": entries[-1]["id"]}


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def user_version(path: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute("PRAGMA user_version").fetchone()[0])
    finally:
        con.close()


def fill(path: str, **options: Any) -> dict[str, dict[str, Any]]:
    """A small store: a session with a large value and history, a child, and a
    snapshot; returns what each session loads as."""
    img = IMAGE
    with eventlog.open(path, snapshot_every=2, **options) as store:
        store.save("root", session({"id": "1", "role": "user", "img": img}))
        store.save("root", session({"id": "1", "role": "user", "img": img}, {"id": "2", "role": "assistant"}))
        store.save("root", session({"id": "1", "role": "user", "img": img}, {"id": "3", "role": "assistant"}))
        store.save("child", session({"id": "c", "role": "user", "text": "sub-task"}), parent_id="root")
        return {name: store.load(name) or {} for name in store.sessions()}


def to_version_2(path: str) -> None:
    to_version_3(path)
    con = sqlite3.connect(path)
    con.executescript("DROP TABLE meta; PRAGMA user_version = 2;")
    con.close()


@pytest.fixture(params=[SCHEMA_VERSION, 3, 2, 1])
def old_or_new(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, dict[str, Any]], int]:
    """A store file at the current schema version, or made into a version 3, 2 or 1 one."""
    path = str(tmp_path / "store.db")
    expected = fill(path)
    version: int = request.param
    if version == 3:
        to_version_3(path)
    elif version == 2:
        to_version_2(path)
    elif version == 1:
        to_version_1(path)
    assert user_version(path) == version
    return path, expected, version


# ----------------------------------------------------------------------------- the API


def test_a_read_only_store_reads_everything_and_changes_nothing(
    old_or_new: tuple[str, dict[str, dict[str, Any]], int],
) -> None:
    path, expected, version = old_or_new
    before = digest(path)
    with eventlog.open(path, readonly=True) as store:
        assert store.readonly
        assert sorted(store.sessions()) == sorted(expected)
        for name, data in expected.items():
            assert store.load(name) == data
            assert store.fold(name) == data
        assert store.fold("root", at=1)["entries"][0]["img"] == IMAGE
        assert [e.seq for e in store.events("root")] == [1, 2, 3]
        assert store.children("root") == ["child"] and store.tree("root") == ["child"]
        assert store.parent("child") == "root"
        assert store.info("root").seq == 3
        assert store.stats()["sessions"]["count"] == 2
        report = store.verify()
        assert report.ok, report.problems
        assert (report.sessions, report.events, report.snapshots, report.chunks) == (2, 4, 1, 1)
    assert digest(path) == before
    assert user_version(path) == version  # not upgraded
    with eventlog.open(path) as store:  # a writer still upgrades it
        assert store.load("root") == expected["root"]
    assert user_version(path) == SCHEMA_VERSION


def test_every_write_raises_read_only_error(db_path: str) -> None:
    fill(db_path)
    before = digest(db_path)
    with eventlog.open(db_path, readonly=True) as store:
        writes = {
            "save": lambda: store.save("root", {"x": 1}),
            "append": lambda: store.append("new", [{"id": "x"}]),
            "delete": lambda: store.delete("root"),
            "snapshot": lambda: store.snapshot("root"),
            "compact": lambda: store.compact(),
        }
        for what, write in writes.items():
            with pytest.raises(eventlog.ReadOnlyError, match=rf"{what}\(\) on a store opened with readonly=True"):
                write()
        with pytest.raises(eventlog.StorageError):  # ReadOnlyError is a StorageError
            store.save("root", {})
        # The connection itself is read-only too, whatever the store's own checks.
        with pytest.raises(eventlog.ReadOnlyError):
            store._backend.db.write().__enter__()
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            store._backend.db.con.execute("DELETE FROM events")
        assert store.verify().ok
    assert digest(db_path) == before


def test_a_reader_sees_what_a_writer_commits_meanwhile(db_path: str) -> None:
    fill(db_path)
    with eventlog.open(db_path, synchronous="NORMAL") as writer, eventlog.open(db_path, readonly=True) as reader:
        assert reader.load("late") is None
        writer.save("late", session({"id": "1"}))  # in the WAL, not checkpointed
        assert reader.load("late") == session({"id": "1"})
        writer.save("root", session({"id": "9"}))
        assert reader.load("root") == session({"id": "9"})  # the reader's cache is caught up
        assert reader.verify().ok


def test_a_read_only_keyed_store_needs_its_key(db_path: str) -> None:
    expected = fill(db_path, chunk_key=KEY)
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(db_path, readonly=True)
    with eventlog.open(db_path, readonly=True, chunk_key=KEY) as store:
        assert store.load("root") == expected["root"]
        assert store.verify().ok


def test_read_only_opens_nothing_that_is_not_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    with pytest.raises(eventlog.StorageError, match="no store file"):
        eventlog.open(str(missing), readonly=True)
    assert not missing.exists()
    with pytest.raises(eventlog.InvalidValueError, match="needs a store file"):
        eventlog.open(":memory:", readonly=True)
    with pytest.raises(eventlog.InvalidValueError, match="readonly must be"):
        eventlog.open(str(missing), readonly="yes")
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    with pytest.raises(eventlog.UnsupportedVersionError, match="empty"):
        eventlog.open(str(empty), readonly=True)
    assert empty.read_bytes() == b""
    # Foreign files and newer schemas: tests/robustness/test_codec.py, with and without readonly.


# ----------------------------------------------------------------------------- the command line


READ_COMMANDS: list[list[str]] = [
    ["verify", "{path}"],
    ["sessions", "{path}", "--tree"],
    ["log", "{path}", "root"],
    ["show", "{path}", "root", "--at", "2"],
    ["replay", "{path}", "root"],
    ["diff", "{path}", "root", "1", "3"],
    ["export", "{path}", "root", "-o", "{out}.json"],
    ["view", "{path}", "root", "-o", "{out}.html"],
    ["stats", "{path}", "--json"],
]


def test_read_commands_leave_the_file_unchanged(
    old_or_new: tuple[str, dict[str, dict[str, Any]], int], tmp_path: Path
) -> None:
    """``eventlog verify`` (and every other read command) on a current, a version 2
    and a version 1 file: it works, and the file's bytes are the same after."""
    path, expected, version = old_or_new
    before = digest(path)
    for command in READ_COMMANDS:
        args = [a.format(path=path, out=tmp_path / command[0]) for a in command]
        res = run(*args)
        assert res.returncode == 0, f"{args}: {res.stdout}{res.stderr}"
        assert digest(path) == before, f"{command[0]} changed the file"
    assert user_version(path) == version
    assert run("verify", path).stdout.startswith("ok: 2 sessions, 4 events, 1 snapshot, 1 chunk")
    exported = json.loads((tmp_path / "export.json").read_text())
    assert exported["entries"][1] == expected["root"]["entries"][1]
    # the writing commands still upgrade it
    assert run("delete", path, "child").returncode == 0
    assert user_version(path) == SCHEMA_VERSION


def test_verify_of_a_keyed_store_takes_the_key(db_path: str, tmp_path: Path) -> None:
    fill(db_path, chunk_key=KEY)
    before = digest(db_path)
    res = run("verify", db_path)
    assert res.returncode == 1 and "--chunk-key-file" in res.stderr and "Traceback" not in res.stderr, res.stderr
    raw, hexed, bad = tmp_path / "raw.key", tmp_path / "hex.key", tmp_path / "bad.key"
    raw.write_bytes(KEY)
    hexed.write_text(KEY.hex() + "\n")
    bad.write_text("not a key\n")
    for key_file in (raw, hexed):
        res = run("verify", db_path, "--chunk-key-file", str(key_file))
        assert res.returncode == 0 and res.stdout.startswith("ok: 2 sessions"), res.stdout + res.stderr
    res = run("verify", db_path, "--chunk-key-file", str(bad))
    assert res.returncode == 1 and "32 raw bytes or 64 hex digits" in res.stderr, res.stderr
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(bytes(32))
    res = run("sessions", db_path, "--chunk-key-file", str(wrong))
    assert res.returncode == 1 and "not the key this store was created with" in res.stderr, res.stderr
    assert digest(db_path) == before
    # the environment variable works for writing commands too
    env_run = run_with_env({"EVENTLOG_CHUNK_KEY_FILE": str(hexed)}, "delete", db_path, "child")
    assert env_run.returncode == 0, env_run.stderr
    assert run("compact", db_path, "--chunk-key-file", str(raw)).returncode == 0


def run_with_env(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventlog", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1", **env},
    )


def test_import_can_create_a_keyed_store(tmp_path: Path) -> None:
    source = tmp_path / "imported.json"  # session JSON: the id is the file name
    source.write_text(json.dumps({"entries": [{"id": "a", "img": blob(5, 60_000).hex()}], "leafId": "a"}))
    key_file = tmp_path / "k.key"
    key_file.write_bytes(KEY)
    target = str(tmp_path / "new.db")
    res = run("import", target, str(source), "--chunk-key-file", str(key_file))
    assert res.returncode == 0, res.stderr
    with pytest.raises(eventlog.KeyMismatchError):
        eventlog.open(target)
    with eventlog.open(target, chunk_key=KEY, readonly=True) as store:
        assert store.load("imported") == json.loads(source.read_text())
        assert store.stats()["chunks"]["rows"] == 1


# ----------------------------------------------------------------------------- where the reader cannot write
#
# A store in a directory the reader may not write (a shared store read by another
# user), on a read-only mount, or a store file the reader may not write (0444): a read
# must work there, show the latest data or say why it cannot, and create nothing.

#: CI runs as root and sets this: there the tests that need root (reading as another
#: user, a read-only bind mount) fail instead of being skipped when they cannot run.
REQUIRE_ROOT = bool(os.environ.get("EVENTLOG_REQUIRE_ROOT_TESTS"))
IS_ROOT = os.geteuid() == 0
NOBODY = 65534


def unavailable(why: str) -> NoReturn:
    if REQUIRE_ROOT:
        pytest.fail(f"EVENTLOG_REQUIRE_ROOT_TESTS is set, but {why}")
    pytest.skip(why)


def _become_nobody() -> None:  # runs in the child, between fork and exec
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


def as_reader(argv: list[str], *, as_root: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the reader: ``nobody`` when the tests run as root (unless
    ``as_root``), else the user running them.  ``setpriv`` (when there is one) execs
    with root's capabilities still held, so an interpreter under ``/root`` runs too."""
    env = {**os.environ, "NO_COLOR": "1"}
    options: dict[str, Any] = {"capture_output": True, "text": True, "timeout": 300, "env": env, "cwd": "/"}
    if IS_ROOT and not as_root:
        if shutil.which("setpriv"):
            argv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *argv]
        else:
            options["preexec_fn"] = _become_nobody
    return subprocess.run(argv, **options)


@pytest.fixture(scope="module")
def other_user() -> None:
    """As root, check that ``nobody`` can run this Python and import eventlog."""
    if IS_ROOT:
        res = as_reader([sys.executable, "-c", "import eventlog"])
        if res.returncode != 0:
            unavailable(f"user nobody cannot run {sys.executable} with eventlog: {res.stderr[-500:]}")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may read (pytest's own temporary directories are
    private to the user running it), with ``store/`` for the store and ``out/``, which
    every user may write, for what the reader writes."""
    base = Path(tempfile.mkdtemp(prefix="eventlog-readonly-"))
    base.chmod(0o755)
    (base / "store").mkdir(mode=0o755)
    (base / "out").mkdir()
    (base / "out").chmod(0o777)
    try:
        yield base
    finally:
        for d in (base, base / "store", base / "out"):
            d.chmod(0o755)
        shutil.rmtree(base)


def forbid_writes(directory: Path) -> None:
    """Make ``directory`` one the reader may not write: as root it already is for
    ``nobody`` (root's, mode 0755); otherwise take our own write permission away."""
    if not IS_ROOT:
        directory.chmod(0o555)


def give_to_reader(directory: Path) -> None:
    """Make the reader the owner of ``directory`` and of the files in it."""
    if IS_ROOT:
        for p in (directory, *directory.iterdir()):
            os.chown(p, NOBODY, NOBODY)


def listing(directory: Path) -> dict[str, tuple[int, int, int, int, str]]:
    """Every file in ``directory``: mode, owner, size, modification time, content digest."""
    out = {}
    for p in sorted(directory.iterdir()):
        s = p.stat()
        out[p.name] = (s.st_mode, s.st_uid, s.st_size, s.st_mtime_ns, digest(str(p)))
    return out


LATE = session({"id": "w", "role": "user", "text": "written last"})

#: What is next to the store file when it is read: ``clean`` (nothing: its last writer
#: closed it), ``merged`` (an empty ``-wal`` and a ``-shm`` left by a writer that was
#: killed after a checkpoint), ``unmerged`` (a ``-wal`` holding the last write, and the
#: ``-shm``, left by a writer that was killed), and those without the ``-shm``.
STATES = ["clean", "merged", "merged-no-shm", "shm-only", "unmerged", "unmerged-no-shm"]

_KILLED_WRITER = r"""
import os, sys, json, eventlog
store = eventlog.open(sys.argv[1])
store.save("late", json.loads(sys.argv[2]))
if sys.argv[3] == "merged":
    assert store._backend.checkpoint()
os._exit(0)  # no close: SQLite neither merges nor removes the -wal
"""


def prepare(path: Path, state: str) -> dict[str, dict[str, Any]]:
    """A store (:func:`fill`) left in ``state``; returns what each session reads as."""
    expected = fill(str(path))
    if state != "clean":
        kind = "merged" if state in ("merged", "merged-no-shm", "shm-only") else "unmerged"
        subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(path), json.dumps(LATE), kind], check=True)
        expected["late"] = LATE
        wal, shm = Path(f"{path}-wal"), Path(f"{path}-shm")
        assert wal.exists() and shm.exists()
        assert (wal.stat().st_size == 0) == (kind == "merged")
        if state.endswith("no-shm"):
            shm.unlink()
        if state == "shm-only":
            wal.unlink()
    return expected


#: Run by the reader: every read of the API, then the read commands given (a JSON
#: list of argument lists); prints what they read as JSON.
_API_READER = r"""
import json, sys
import eventlog
try:
    with eventlog.open(sys.argv[1], readonly=True) as store:
        names = store.sessions()
        report = store.verify()
        api = {
            "sessions": names,
            "load": {n: store.load(n) for n in names},
            "fold": {n: store.fold(n) for n in names},
            "fold_at_1": store.fold("root", at=1),
            "events": {n: [e.seq for e in store.events(n)] for n in names},
            "tree": store.tree("root"),
            "count": store.stats()["sessions"]["count"],
            "verify": [report.ok, report.sessions, report.events, [str(p) for p in report.problems]],
        }
except eventlog.EventLogError as e:
    api = {"error": type(e).__name__, "message": str(e)}
# then every read command, in this process (one process start, not one a command)
from click.testing import CliRunner
from eventlog.cli import main
cli = []
for argv in json.loads(sys.argv[2]):
    res = CliRunner().invoke(main, argv, env={"NO_COLOR": "1"})
    cli.append({"code": res.exit_code, "stdout": res.stdout, "stderr": res.stderr})
print(json.dumps({"api": api, "cli": cli}))
"""

#: The read commands, each with what its output must hold.
CLI_READS: list[tuple[list[str], str]] = [
    (["verify", "{path}"], "ok: {n} sessions"),
    (["sessions", "{path}", "--tree"], "child"),
    (["log", "{path}", "root"], "replace"),
    (["show", "{path}", "root", "--at", "2"], "root at seq 2"),
    (["replay", "{path}", "root"], "message/user: img="),  # (an image field with no content: shown, not hidden)
    (["diff", "{path}", "root", "1", "3"], "leafId"),
    (["export", "{path}", "root", "-o", "{out}/export.json"], ""),
    (["view", "{path}", "root", "-o", "{out}/view.html"], ""),
    (["stats", "{path}", "--json"], '"count": {n}'),
]


Runner = Callable[[list[str]], subprocess.CompletedProcess[str]]
Reads = tuple[dict[str, Any], list[tuple[list[str], subprocess.CompletedProcess[str]]]]


def read_everything(path: Path, out: Path, runner: Runner) -> Reads:
    """Every read of the API and every read command, in one process run by
    ``runner``: what the API read, and each command's arguments and outcome."""
    argvs = [[a.format(path=path, out=out) for a in args] for args, _ in CLI_READS]
    res = runner([sys.executable, "-c", _API_READER, str(path), json.dumps(argvs)])
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout)
    cli = [
        (argv, subprocess.CompletedProcess(argv, r["code"], r["stdout"], r["stderr"]))
        for argv, r in zip(argvs, done["cli"], strict=True)
    ]
    return done["api"], cli


def check_reads(reads: Reads, expected: dict[str, dict[str, Any]], out: Path) -> None:
    """The reader read exactly ``expected``, through the API and every read command."""
    api, cli = reads
    assert "error" not in api, api
    names = sorted(expected)
    assert sorted(api["sessions"]) == names
    assert api["load"] == expected and api["fold"] == expected
    assert api["fold_at_1"]["entries"][0]["img"] == IMAGE
    assert api["events"]["root"] == [1, 2, 3]
    assert api["tree"] == ["child"] and api["count"] == len(names)
    assert api["verify"] == [True, len(names), len(names) + 2, []]
    for (args, res), (_, wanted) in zip(cli, CLI_READS, strict=True):
        assert res.returncode == 0 and res.stderr == "", f"{args}: {res.stderr}"
        assert wanted.format(n=len(names)) in res.stdout, f"{args}: {res.stdout}"
    if "late" in expected:
        assert "late" in cli[1][1].stdout  # eventlog sessions lists the session written last
    assert json.loads((out / "export.json").read_text()) == expected["root"]


def check_refused(reads: Reads) -> None:
    """The reader was told, through the API and every read command, that the store
    cannot be read correctly here and why; it was shown nothing."""
    api, cli = reads
    assert api.get("error") == "StorageError", api
    assert "-wal" in api["message"] and "not yet merged" in api["message"], api
    for args, res in cli:
        assert res.returncode == 1 and res.stdout == "", f"{args}: {res.stdout}"
        err = res.stderr
        assert err.startswith("eventlog: ") and err.count("\n") == 1 and "not yet merged" in err, f"{args}: {err}"


@pytest.mark.parametrize("state", STATES)
def test_reading_a_store_in_a_directory_the_reader_cannot_write(state: str, shared: Path, other_user: None) -> None:
    """As another user (nobody, when run as root) or with the directory's write
    permission taken away: every read works and shows the latest writes (also those
    still in the ``-wal``), or, where that is impossible without a ``-shm``, fails
    saying so; nothing in the directory is created or changed."""
    store_dir, out = shared / "store", shared / "out"
    path = store_dir / "store.db"
    expected = prepare(path, state)
    forbid_writes(store_dir)
    before = listing(store_dir)
    reads = read_everything(path, out, as_reader)
    if state == "unmerged-no-shm":
        check_refused(reads)
    else:
        check_reads(reads, expected, out)
    assert listing(store_dir) == before


def test_a_side_file_the_reader_may_not_read_is_named(shared: Path, other_user: None) -> None:
    """SQLite's own message is "unable to open database file"; the error names the
    file the reader may not read, and nothing is changed."""
    store_dir = shared / "store"
    path = store_dir / "store.db"
    prepare(path, "unmerged")
    shm = Path(f"{path}-shm")
    forbid_writes(store_dir)
    before = listing(store_dir)
    shm.chmod(0o600 if IS_ROOT else 0o000)  # root's: nobody may not read it
    res = as_reader([sys.executable, "-m", "eventlog", "sessions", str(path)])
    assert res.returncode == 1 and res.stdout == "", res.stdout
    assert res.stderr == f"eventlog: cannot read {str(path)!r}: this process may not read {str(shm)!r} " + (
        "(SQLite reads a store with its -wal and -shm files)\n"
    )
    shm.chmod(0o644)
    assert listing(store_dir) == before


_READ_ONLY_MOUNT = """
mount --bind "$1" "$1" || exit 97
mount -o remount,bind,ro "$1" || exit 97
[ ! -w "$1" ] || exit 98
shift
exec "$@"
"""


def on_read_only_mount(directory: Path, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (as root) in a mount namespace where ``directory`` is a
    read-only bind mount of itself."""
    if not IS_ROOT:
        unavailable("a read-only bind mount needs root")
    if shutil.which("unshare") is None:
        unavailable("there is no unshare command")
    res = as_reader(["unshare", "-m", "sh", "-c", _READ_ONLY_MOUNT, "sh", str(directory), *argv], as_root=True)
    if res.returncode == 97 or "unshare failed" in res.stderr:
        unavailable(f"cannot make a read-only bind mount here: {res.stderr.strip()[-300:]}")
    assert res.returncode != 98, "the bind mount is still writable"
    return res


@pytest.mark.parametrize("state", STATES)
def test_reading_a_store_on_a_read_only_mount(state: str, shared: Path) -> None:
    """On a read-only file system (a bind mount made read-only, so even root cannot
    write there): the same reads, the same results, nothing changed."""
    store_dir, out = shared / "store", shared / "out"
    path = store_dir / "store.db"
    expected = prepare(path, state)
    before = listing(store_dir)
    reads = read_everything(path, out, lambda argv: on_read_only_mount(store_dir, argv))
    if state == "unmerged-no-shm":
        check_refused(reads)
    else:
        check_reads(reads, expected, out)
    assert listing(store_dir) == before


@pytest.mark.parametrize("reader", ["owner", "root"])
def test_a_read_of_a_store_its_owner_cannot_write_leaves_it_writable(
    reader: str, shared: Path, other_user: None
) -> None:
    """A read command on a 0444 store made no side files (SQLite would make them 0444
    too, owned by the store's owner), so after ``chmod 644`` the owner writes again.
    The owner is nobody when the tests run as root; ``root`` reads it as root."""
    if reader == "root" and not IS_ROOT:
        unavailable("reading as root needs root")
    store_dir = shared / "store"
    path = store_dir / "store.db"
    expected = fill(str(path))
    give_to_reader(store_dir)
    path.chmod(0o444)
    before = listing(store_dir)
    res = as_reader([sys.executable, "-m", "eventlog", "sessions", str(path)], as_root=reader == "root")
    assert res.returncode == 0 and "child" in res.stdout, res.stderr
    assert listing(store_dir) == before  # no -wal, no -shm
    path.chmod(0o644)
    res = as_reader([sys.executable, "-m", "eventlog", "delete", str(path), "child"])
    assert res.returncode == 0, res.stderr
    write = as_reader([sys.executable, "-c", f"import eventlog; eventlog.open({str(path)!r}).save('new', {{}})"])
    assert write.returncode == 0, write.stderr
    with eventlog.open(str(path), readonly=True) as store:
        assert store.sessions() == ["root", "new"]
        assert store.load("root") == expected["root"]


def test_a_read_makes_only_the_side_files_a_writer_would(db_path: str, tmp_path: Path) -> None:
    """What "a read changes nothing" means: the store file's bytes never change; where
    the reader may write the store, SQLite may leave an empty ``-wal`` and the ``-shm``
    index (it needs them to read a store other processes may be writing), made as a
    writer of the store would make them: with the store file's mode and owner."""
    fill(db_path)
    before = digest(db_path)
    owner = os.stat(db_path)
    for args, _ in CLI_READS:
        res = run(*(a.format(path=db_path, out=tmp_path) for a in args))
        assert res.returncode == 0, res.stderr
    assert digest(db_path) == before
    made = sorted(p.name for p in Path(db_path).parent.iterdir() if p.name.startswith("store.db"))
    assert set(made) <= {"store.db", "store.db-wal", "store.db-shm", "store.db-lock"}
    assert not os.path.exists(db_path + "-wal") or os.path.getsize(db_path + "-wal") == 0
    for name in made:
        s = os.stat(tmp_path / name)
        assert (s.st_mode, s.st_uid, s.st_gid) == (owner.st_mode, owner.st_uid, owner.st_gid)


# ------------------------------------------------------- the same, in this process (a store file it may not write)


def unwritable(path: str) -> None:
    """Make the store file one this process may not write or, as root, one whose
    owner may not (both keep a read from making side files)."""
    os.chmod(path, 0o444)


@pytest.mark.parametrize("state", STATES)
def test_reading_a_store_file_this_process_may_not_write(state: str, tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    expected = prepare(path, state)
    unwritable(str(path))
    before = listing(tmp_path)
    if state == "unmerged-no-shm":
        with pytest.raises(eventlog.StorageError, match="not yet merged") as raised:
            eventlog.open(str(path), readonly=True)
        assert "-wal" in str(raised.value)
    else:
        with eventlog.open(str(path), readonly=True) as store:
            assert {n: store.load(n) for n in store.sessions()} == expected
            assert store.verify().ok
    assert listing(tmp_path) == before


def test_an_unlocked_reader_sees_a_writer_that_comes_later(db_path: str) -> None:
    """A store opened ``immutable`` (no side files could be made) is read without
    locks; once a writer has come (its ``-wal`` appeared, or the file changed), the
    next read opens it again, as a read-only open would now, and sees its writes."""
    expected = fill(db_path)
    unwritable(db_path)
    with eventlog.open(db_path, readonly=True) as reader:
        assert reader._backend.db.immutable
        assert reader.load("root") == expected["root"]
        os.chmod(db_path, 0o644)
        with eventlog.open(db_path) as writer:
            writer.save("late", LATE)
            assert reader.load("late") == LATE  # through the writer's -wal and -shm
            assert not reader._backend.db.immutable
            writer.save("root", LATE)
            assert reader.load("root") == LATE
        assert reader.load("late") == LATE and reader.verify().ok


def test_an_unlocked_read_during_which_the_file_changed_is_refused(db_path: str) -> None:
    """Without locks nothing keeps a writer from changing the file under a read: such
    a read raises :class:`StorageError` rather than return what it read, and the next
    read sees the new state."""
    expected = fill(db_path)
    unwritable(db_path)
    with eventlog.open(db_path, readonly=True) as reader:
        assert reader._backend.db.immutable
        with pytest.raises(eventlog.StorageError, match="changed while it was read"), reader._backend.reading():
            assert reader._backend.names() == ["root", "child"]
            os.chmod(db_path, 0o644)
            with eventlog.open(db_path) as writer:
                writer.save("late", LATE)
            # the writer closed: its writes are in the file, its -wal is gone
            assert not os.path.exists(db_path + "-wal")
        assert reader.load("late") == LATE
        assert reader.load("root") == expected["root"]


@pytest.mark.parametrize("state", ["unmerged", "unmerged-no-shm"])
def test_a_store_read_through_a_symbolic_link(state: str, tmp_path: Path) -> None:
    """SQLite names the side files after the store file's real path: those are the
    ones looked at (a ``-wal`` next to the link would not be the store's)."""
    (tmp_path / "real").mkdir()
    path = tmp_path / "real" / "store.db"
    expected = prepare(path, state)
    unwritable(str(path))
    link = tmp_path / "link.db"
    link.symlink_to(path)
    if state == "unmerged-no-shm":
        with pytest.raises(eventlog.StorageError, match="not yet merged"):
            eventlog.open(str(link), readonly=True)
    else:
        with eventlog.open(str(link), readonly=True) as store:
            assert {n: store.load(n) for n in store.sessions()} == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.db", "real"]
