"""The back office's outbox as the forwarder reads it: the oldest pending snapshots, and deleting those the back
office acknowledged. Its own SQLite connection, for the forwarder's thread (the journal's stays the loop's).

The rows are written by the journal's triggers (schema migration 12) in the same transaction as each change, so
the queue is exactly as durable as the journal. Deleting acknowledged rows commits without waiting for the disk
(synchronous=NORMAL): a power cut may bring some back, and the back office keeps each version once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.errors import JournalError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pending:
    """One snapshot to send: `seq` is its place in the queue and its version."""

    seq: int
    entity: str  # "transaction" | "line" | "settlement" | "signature"
    row_id: int
    line_no: int
    body: dict[str, Any]

    def wire(self) -> dict[str, Any]:
        """As the back office's API takes it."""
        return {
            "seq": self.seq,
            "entity": self.entity,
            "row_id": self.row_id,
            "line_no": self.line_no,
            "body": self.body,
        }


# A row as the journal holds it now, for the outbox (the views the journal's own triggers queue from).
_REQUEUE = {
    "transaction": "SELECT 'transaction', id, 0, body FROM forward_transaction WHERE id = ?",
    "line": "SELECT 'line', transaction_id, line_no, body FROM forward_line WHERE transaction_id = ?"
    " AND (line_no = ? OR ? = 0) ORDER BY line_no",
    "settlement": "SELECT 'settlement', batch, 0, body FROM forward_settlement WHERE batch = ?",
    "signature": "SELECT 'signature', transaction_id, 0, body FROM forward_signature WHERE transaction_id = ?",
}


class ForwardQueue:
    """Reads and acknowledges the outbox; every method runs in the thread that made the object."""

    def __init__(self, path: Path) -> None:
        try:
            self._db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            self._db.execute("PRAGMA synchronous=NORMAL")  # an acknowledgement lost to a power cut is only a resend
            self._db.execute("SELECT 1 FROM forward_queue LIMIT 0")
        except sqlite3.Error as exc:
            raise JournalError(f"{path}: cannot read the back office's outbox: {exc}") from None

    def oldest(self, limit: int) -> list[Pending]:
        """Up to `limit` snapshots, oldest first."""
        rows = self._db.execute(
            "SELECT seq, entity, row_id, line_no, body FROM forward_queue ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [Pending(seq, entity, row_id, line_no, json.loads(body)) for seq, entity, row_id, line_no, body in rows]

    def identity(self) -> int | None:
        """This journal's identity for the back office (set when forwarding was turned on), or None."""
        row = self._db.execute("SELECT value FROM counters WHERE name = 'journal_id'").fetchone()
        return int(row[0]) if row and row[0] else None

    def depth(self) -> int:
        """How many snapshots wait (two probes of the key: only ever the oldest are deleted, and seq has no gaps)."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq) - MIN(seq) + 1, 0) FROM forward_queue").fetchone()[0])

    def requeue(self, after: int, entity: str, row_id: int, line_no: int = 0) -> bool:
        """Queue a row anew, as the journal holds it now, because the back office asked for it again (it set aside
        version `after` of it). Nothing is queued when a version newer than `after` already waits (it is on its
        way). False when the journal does not hold the row."""
        select = _REQUEUE.get(entity)
        if select is None:
            return False
        lines = (line_no, line_no) if entity == "line" else (0, 0)
        waiting = self._db.execute(
            "SELECT 1 FROM forward_queue WHERE entity = ? AND row_id = ? AND (line_no = ? OR ? = 0) AND seq > ?",
            (entity, row_id, *lines, after),
        ).fetchone()
        if waiting:
            return True
        args = (row_id, *lines) if entity == "line" else (row_id,)
        queued = self._db.execute(f"INSERT INTO forward_queue (entity, row_id, line_no, body) {select}", args)
        return queued.rowcount > 0

    def acknowledge(self, up_to: int) -> int:
        """Delete what the back office has stored (every seq up to `up_to`); returns how many went."""
        return self._db.execute("DELETE FROM forward_queue WHERE seq <= ?", (up_to,)).rowcount

    def close(self) -> None:
        self._db.close()
