"""When to snapshot a session.

A snapshot is the whole folded state of a session at one position, written as a frame
(spilled to chunks when larger than a cell) so that loading reads the newest snapshot
and replays only the events after it.  Snapshots are a cache: a missing or damaged one
falls back to an older one or to full replay (see :meth:`eventlog.log.Log.fold`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """Snapshot a session once ``every`` events, or ``bytes`` of event frames, have
    been written since its last snapshot (0 disables either trigger), but only when
    those frames add up to at least ``tail_ratio`` of the last snapshot's size.
    Keep the newest ``keep``.

    The event count bounds what a load replays event by event (each event has a
    fixed cost); the byte count bounds the bytes it replays.  The size condition
    keeps snapshot writing proportional to what is appended: a snapshot costs about
    the session's size, so without it a big session with many small events would be
    snapshotted (and re-encoded whole) again and again, and saving would grow with
    the square of the session's length.
    """

    every: int = 1000
    bytes: int = 64 << 20
    tail_ratio: float = 0.5
    keep: int = 2

    def due(self, seq: int, snap_seq: int, snap_bytes: int, bytes_since: int) -> bool:
        """Whether a session now at ``seq`` should be snapshotted."""
        triggered = (self.every > 0 and seq - snap_seq >= self.every) or (0 < self.bytes <= bytes_since)
        return triggered and bytes_since >= self.tail_ratio * snap_bytes
