"""The transaction journal: SQLite in WAL mode with synchronous=FULL, versioned schema, persistent counters.

A sale row is written (status 'pending') before its request leaves for the host and completed when
the answer arrives; rows hold the masked PAN only. At boot, rows left 'pending' by a crash become
'unknown' (the host may or may not have approved them).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from .errors import JournalError

log = logging.getLogger(__name__)

STATUSES = ("pending", "approved", "declined", "failed", "unknown")

_MIGRATIONS: tuple[str, ...] = (
    # 1: transactions and counters
    """
    CREATE TABLE transactions (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        kind          TEXT NOT NULL,
        method        TEXT NOT NULL,
        entry_mode    TEXT NOT NULL,
        amount        INTEGER NOT NULL CHECK (amount > 0),
        currency      TEXT NOT NULL,
        status        TEXT NOT NULL,
        stan          INTEGER NOT NULL,
        masked_pan    TEXT NOT NULL DEFAULT '',
        response_code TEXT NOT NULL DEFAULT '',
        auth_code     TEXT NOT NULL DEFAULT '',
        rrn           TEXT NOT NULL DEFAULT '',
        note          TEXT NOT NULL DEFAULT '',
        terminal_id   TEXT NOT NULL,
        merchant_id   TEXT NOT NULL,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL
    );
    CREATE INDEX transactions_created ON transactions (created_at);
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    """,
)


@dataclass(frozen=True)
class NewSale:
    """What is known of a sale before it goes to the host (no card data beyond the mask)."""

    method: str
    entry_mode: str
    amount: int
    currency: str
    masked_pan: str
    terminal_id: str
    merchant_id: str


class Journal:
    """One SQLite file; every write is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise JournalError(f"{path}: cannot open the journal: {exc}") from None
        self.path = path

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(_MIGRATIONS):
            raise JournalError(f"journal schema {version} is newer than this firmware ({len(_MIGRATIONS)})")
        for number, script in enumerate(_MIGRATIONS[version:], start=version + 1):
            log.info("journal: migrating schema to version %d", number)
            self._db.executescript(f"BEGIN IMMEDIATE; {script}; PRAGMA user_version = {number}; COMMIT;")

    def close(self) -> None:
        """Close the database (a crash simply never calls this)."""
        self._db.close()

    def counter(self, name: str) -> int | None:
        """The last value handed out for a counter, or None."""
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def _advance(self, name: str, first: int, step: Callable[[int], int]) -> int:
        # Caller holds a transaction.
        last = self.counter(name)
        value = first if last is None else step(last)
        self._db.execute("INSERT INTO counters (name, value) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (name, value))
        return value

    def take_counter(self, name: str, first: int, step: Callable[[int], int] = lambda v: v + 1) -> int:
        """Durably take the next value of a counter: `first` on first use, then `step(last)`."""
        with self._tx():
            return self._advance(name, first, step)

    def _tx(self) -> "_Tx":
        return _Tx(self._db)

    def begin_sale(self, sale: NewSale, now: datetime) -> tuple[int, int]:
        """Take the next STAN (1..999999, wrapping) and write a pending sale row; returns (row id, stan)."""
        stamp = now.isoformat(timespec="seconds")
        with self._tx():
            stan = self._advance("stan", 1, lambda v: v % 999_999 + 1)
            cur = self._db.execute(
                "INSERT INTO transactions (kind, method, entry_mode, amount, currency, status, stan, masked_pan,"
                " terminal_id, merchant_id, created_at, updated_at)"
                " VALUES ('sale', ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?)",
                (sale.method, sale.entry_mode, sale.amount, sale.currency, stan, sale.masked_pan,
                 sale.terminal_id, sale.merchant_id, stamp, stamp))
            return int(cur.lastrowid), stan

    def finish(self, row_id: int, status: str, now: datetime, *, response_code: str = "",
               auth_code: str = "", rrn: str = "", note: str = "") -> None:
        """Complete a pending row with its outcome. A row already completed is left as it is."""
        if status not in STATUSES or status == "pending":
            raise JournalError(f"not a final status: {status!r}")
        with self._tx():
            cur = self._db.execute(
                "UPDATE transactions SET status = ?, response_code = ?, auth_code = ?, rrn = ?, note = ?,"
                " updated_at = ? WHERE id = ? AND status = 'pending'",
                (status, response_code, auth_code, rrn, note, now.isoformat(timespec="seconds"), row_id))
            if cur.rowcount != 1:
                log.warning("journal: row %d was not pending; outcome %s not recorded", row_id, status)

    def recover(self, now: datetime) -> list[dict[str, Any]]:
        """At boot: rows a crash left pending become 'unknown'; returns them."""
        with self._tx():
            rows = [dict(r) for r in self._db.execute("SELECT * FROM transactions WHERE status = 'pending'")]
            self._db.execute("UPDATE transactions SET status = 'unknown', note = 'interrupted before the host answer',"
                             " updated_at = ? WHERE status = 'pending'", (now.isoformat(timespec="seconds"),))
        for r in rows:
            log.warning("journal: sale %d (stan %06d) was interrupted; its outcome is unknown", r["id"], r["stan"])
        return rows

    def rows(self) -> list[dict[str, Any]]:
        """Every transaction row, oldest first."""
        return [dict(r) for r in self._db.execute("SELECT * FROM transactions ORDER BY id")]


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
