"""Progress callbacks: how a long operation (``verify``, ``compact``) reports how far
it has got, without printing anything itself.

A callback is called as ``progress(step, done, total)``: ``step`` names what the
operation is doing (``"chunks"``, ``"sessions"``, ...), ``done`` how many of that
step's items are finished and ``total`` how many there are (``None`` when not
known, e.g. SQLite's own integrity check or a VACUUM, which report nothing until
they end).  Each step starts with ``done == 0``; steps come in the order the
operation documents.  The callback runs on the thread doing the work, inside its
transactions: it should return quickly, and an exception it raises ends the
operation (a ``compact`` so interrupted leaves a consistent store).
"""

from __future__ import annotations

from collections.abc import Callable

#: ``progress(step, done, total)``; see the module docstring.
Progress = Callable[[str, int, int | None], None]
