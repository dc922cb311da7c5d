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
    """Snapshot after ``every`` events or ``bytes`` of event frames since the last
    snapshot, whichever comes first (0 disables that trigger); keep the newest
    ``keep`` snapshots of each session."""

    every: int = 1000
    bytes: int = 8 << 20
    keep: int = 2

    def due(self, seq: int, snap_seq: int, bytes_since: int) -> bool:
        """Whether a session now at ``seq`` should be snapshotted."""
        return (self.every > 0 and seq - snap_seq >= self.every) or (0 < self.bytes <= bytes_since)
