"""Whether eventlog uses its optional C extension, decided once per process.

``eventlog._speedups`` (compiled at install where a C compiler exists) holds C twins
of five walks over Python objects: the mirror's check that a caller's entries did not
change (:mod:`eventlog.mirror`), value validation (:func:`eventlog.values.validate`,
:func:`~eventlog.values.decoded_ok`), :func:`~eventlog.values.copy`, and the copies
of deserialized LangGraph items that the checkpointer hands out
(:func:`eventlog.langgraph_objects.copies`).  It parses
no bytes (``cbor2`` is the codec) and changes nothing in the interpreter.  Every
function in it has a pure-Python twin that gives the same answers: without it,
eventlog does the same work more slowly (saving a long session after every entry
takes two to three times as long).

The environment variable ``EVENTLOG_NO_SPEEDUPS`` set to anything but ``""`` or
``"0"`` when eventlog is imported makes it ignore a built extension, as a pure-Python
install would run (CI runs the test suite both ways).  The extension is not built
for a free-threaded CPython: its walks rely on the GIL.

Running without it is logged once per process, at INFO on the logger
``eventlog.speedups``, when the first store is opened: it is a fact about the
installation that explains its speed, not a fault.
"""

from __future__ import annotations

import logging
import os
import threading
from types import ModuleType

logger = logging.getLogger(__name__)

#: The variable that, set (not to ``"0"``), makes eventlog ignore the C extension.
ENV = "EVENTLOG_NO_SPEEDUPS"


def _load() -> tuple[ModuleType | None, str]:
    if os.environ.get(ENV, "") not in ("", "0"):
        return None, f"{ENV} is set"
    try:
        from . import _speedups
    except ImportError as e:
        return None, f"it is not built here: {e}"
    return _speedups, ""


#: The C extension module, or ``None`` when eventlog runs on the pure-Python twins.
ext, why_not = _load()
#: ``True`` when the C extension is in use.
ACTIVE = ext is not None

def describe() -> str:
    """``"C extension in use"``, or ``"no C extension (why)"``: for reports."""
    return "C extension in use" if ACTIVE else f"no C extension ({why_not})"


_told = False
_lock = threading.Lock()


def note() -> None:
    """Log, once per process, that eventlog runs without the C extension (and why)."""
    global _told
    if ACTIVE or _told:
        return
    with _lock:
        if _told:
            return
        _told = True
    logger.info("eventlog runs without its C extension (%s): the pure-Python walks give the same results", why_not)
