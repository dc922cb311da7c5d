"""The files of an SQLite store: recognising one, creating one (and removing it
again if setting it up fails), the identity of its files (to notice one replaced
under an open store), and the URI a read-only open uses.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import urllib.parse
from contextlib import suppress

from ...errors import StorageError

#: The first bytes of every SQLite database file.
SQLITE_MAGIC = b"SQLite format 3\x00"


#: The smallest SQLite database file that is not empty (one page of the smallest size).
SMALLEST_DATABASE = 512


def not_sqlite(path: str, *, any_size: bool = False) -> bool:
    """Whether ``path`` is a regular file with bytes in it that do not start as an
    SQLite database does (a text file, an image): not an eventlog store, rather than
    a damaged one.  ``False`` when it cannot be read.

    Unless ``any_size``, only a file shorter than :data:`SMALLEST_DATABASE` is read
    (SQLite would take a file of a byte or two for an empty database and write over
    it; of a longer one it reads the header itself and says it is not a database).
    Opening and closing a file that SQLite has open in this process drops every
    POSIX lock the process holds on it (they belong to the process, not to the
    descriptor): another process would then find the store unused, checkpoint and
    delete its ``-wal`` under the open connections.  So a store file in use, never
    shorter than a page, is not opened here; ``any_size`` is for a file SQLite has
    just refused as not a database."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return False
    if not size or (size >= SMALLEST_DATABASE and not any_size):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError:
        return False
    return bool(head) and head != SQLITE_MAGIC


def identity(path: str) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file at ``path``, ``None`` if there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


#: Files next to a store that SQLite (and :mod:`eventlog.turnstile`) make.
#: The files next to a store file that belong to it (SQLite's and the writers'
#: turnstile's), named by appending these to the store file's path.
SIDECARS = ("-wal", "-shm", "-journal", "-lock")


def create(path: str) -> tuple[tuple[int, int], list[str]] | None:
    """Create the store file if there is none: ``(its identity, the files next to it
    that do not exist yet)``, which are what a failed setup removes; ``None`` when
    the file was there (or cannot be made: SQLite then says why)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    real = os.path.realpath(path)
    return (st.st_dev, st.st_ino), [real + s for s in SIDECARS if not os.path.lexists(real + s)]


def remove_created(path: str, made: tuple[tuple[int, int], list[str]]) -> None:
    """Remove a store file that :func:`create` made (if it is still that file) and
    the files next to it that were not there before."""
    made_as, sidecars = made
    if identity(path) != made_as:
        return  # replaced meanwhile: not ours any more
    for name in (*sidecars, path):
        with suppress(OSError):
            os.unlink(name)


#: What is checked of a file to see whether it changed: device, inode, size and
#: modification time (``None``: there is no such file).
FileState = tuple[int, int, int, int] | None


def file_state(path: str) -> FileState:
    try:
        s = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise StorageError(f"cannot read {path!r}: {e.strerror}") from None
    return (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns)


def store_files(path: str) -> tuple[FileState, FileState]:
    """The state of the store file and of its ``-wal`` (SQLite names the side files
    after the store file's real path, symbolic links resolved)."""
    return file_state(path), file_state(os.path.realpath(path) + "-wal")


def may_make_side_files(path: str) -> bool:
    """Whether a read-only open may let SQLite make the store's ``-wal`` and ``-shm``
    files: only where this process could write the store itself (as any writer of it
    would make them).  SQLite makes them with the store file's mode and, when run by
    root, gives them the store file's owner: of a store file its owner may not write
    (0444) they would be files its owner may not write either, which keep every
    writer out even after the store file is made writable again, hence the check of
    the owner's write bit."""
    effective = os.access in os.supports_effective_ids
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    directory = os.path.dirname(os.path.abspath(path))
    return (
        bool(mode & stat.S_IWUSR)
        and os.access(path, os.W_OK, effective_ids=effective)
        and os.access(directory, os.W_OK | os.X_OK, effective_ids=effective)
    )


def readonly_uri(path: str) -> tuple[str, bool]:
    """The URI a read-only open of ``path`` uses, and whether it is ``immutable``.

    SQLite reads a WAL store with its ``-wal`` file (the writes not yet merged into
    the store file) and its ``-shm`` index, makes them when they are missing, and
    writes the ``-shm`` (and gives an empty ``-wal`` the store file's mode) where it
    may.  Where this process may make them (:func:`may_make_side_files`), the open
    is plain ``mode=ro``, as a writer of the store would open it.  Elsewhere (a
    directory or a store file this process may not write, a read-only mount) it
    touches neither: without a ``-wal``, or with an empty one, the store file alone
    is everything, and it is opened ``immutable=1`` (no side files, no locks; see
    :meth:`Database.read`); a ``-wal`` with writes in it is read through the
    existing ``-shm`` opened read-only (``readonly_shm=1``; SQLite then rebuilds the
    index in its own memory unless a writer keeps it up to date).  A non-empty
    ``-wal`` without a ``-shm`` cannot be read there, and the store file alone could
    be missing the writes in it: :class:`StorageError` (a ``-wal`` whose writes were
    all merged already, by a checkpoint that did not truncate it, is refused too:
    telling the two apart needs the index)."""
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro"
    real = os.path.realpath(path)
    wal, shm = real + "-wal", real + "-shm"
    uses: tuple[str, ...] = (path, wal, shm)
    if may_make_side_files(real):
        immutable = False
    else:
        state = file_state(wal)
        if state is None or state[2] == 0:
            uri, uses, immutable = uri + "&immutable=1", (path,), True
        elif file_state(shm) is not None:
            uri, immutable = uri + "&readonly_shm=1", False
        else:
            raise StorageError(
                f"cannot read {path!r} here: its -wal file is not empty, so it may hold writes not yet merged "
                "into the store file (its last writer did not close it), and reading them needs a -shm file, "
                "which cannot be made here (this process may not write the store or its directory); read "
                "without them, the store could be missing those writes. Open it once where it can be written "
                "(eventlog.open() and close(), or any command that writes), which merges them"
            )
    effective = os.access in os.supports_effective_ids
    for name in uses:
        if os.path.exists(name) and not os.access(name, os.R_OK, effective_ids=effective):
            also = "" if name == path else " (SQLite reads a store with its -wal and -shm files)"
            raise StorageError(f"cannot read {path!r}: this process may not read {name!r}{also}")
    return uri, immutable


def live_names(path: str) -> list[str] | None:
    """The ids of the live sessions with events of the SQLite store at ``path``,
    read without SQLite's WAL machinery (``immutable``: looking creates no ``-wal``
    or ``-shm`` file beside anything, and writes in a ``-wal`` are not seen);
    ``None`` when it is not an eventlog store or cannot be read."""
    from .schema import APPLICATION_ID

    try:
        with open(path, "rb") as f:
            head = f.read(72)
    except OSError:
        return None
    if head[:16] != SQLITE_MAGIC or head[68:72] != APPLICATION_ID.to_bytes(4, "big"):
        return None
    uri = f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro&immutable=1"
    try:
        con = sqlite3.connect(uri, uri=True)
        try:
            rows = con.execute("SELECT name FROM sessions WHERE deleted_ms IS NULL AND seq > 0").fetchall()
        finally:
            con.close()
    except (sqlite3.Error, UnicodeDecodeError):
        return None
    return [r[0] for r in rows]
