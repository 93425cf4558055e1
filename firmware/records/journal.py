"""The transaction journal: SQLite in WAL mode with synchronous=FULL, versioned schema, persistent counters.

A sale row is written (status 'pending') before its request leaves for the host and completed when
the answer arrives; rows hold the masked PAN only. A sale whose outcome is unknown (no usable answer,
or 'pending' at boot after a power cut) gets a reversal row in the same database transaction: that
row is the persistent reversal queue ('queued' until the host acknowledges it; the sale is then
'reversed').
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date as _date
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from firmware.core.items import BasketLine, Item
from firmware.errors import JournalError
from firmware.records.counters import CounterCopy, one_way, stan_of, storage_error
from firmware.records.schema import MIGRATIONS

log = logging.getLogger(__name__)

# Sale, void and refund statuses; reversal rows are 'queued' then 'acknowledged'.
STATUSES = ("pending", "approved", "declined", "failed", "unknown", "reversed", "voided", "cancelled")
FOLLOW_UPS = ("void", "refund")
CANCEL_MARK = "cancel@"  # a wallet sale's idem_key once a cancel of its order may have been sent

AUDIT_GENESIS = "0" * 64


def audit_hash(prev: str, at: str, actor: str, action: str, detail: str) -> str:
    """SHA-256 of an audit entry chained to the previous entry's hash."""
    return hashlib.sha256("\x1f".join((prev, at, actor, action, detail)).encode("utf-8")).hexdigest()


# Tables whose AUTOINCREMENT high-water mark the counters' copy keeps (as these names): a transaction id or an
# outbox version is never handed out twice, whatever happens to the journal file.
HIGH_WATER = {"transactions": "transaction_id_seq", "forward_queue": "forward_seq"}
MIN_FREE = 1 << 20  # bytes free on the journal's disk before a sale, void or refund may start
STAN_STEP: Callable[[int], int] = lambda v: v % 999_999 + 1  # noqa: E731 - 1..999999, wrapping


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
    transmitted_at: str = ""  # ISO 8583 field 7 (MMDDhhmmss UTC) of the request, for a later reversal
    provider: str = ""  # wallet payments: "alipay", ...
    order_no: str = ""  # wallet payments: the terminal's order number at the provider
    card_token: str = ""  # card payments: keyed token of the PAN (never the PAN)
    lines: tuple[BasketLine, ...] = ()  # the basket, when the amount came from the item catalogue
    operator: str = ""  # who was signed in at the till
    chip_swiped: bool = False  # a chip card's stripe was swiped (service code 2xx/6xx): fallback
    cvm: str = ""  # chip cards: how the cardholder was verified (none | online_pin | cdcvm)
    aid: str = ""  # chip cards: the application, its label and cryptogram, for the receipt
    app_label: str = ""
    cryptogram: str = ""
    reversal_icc: str = ""  # chip sales: field 55 of a reversal (TVR, IAD, ATC...: no card data), BER-TLV hex


@dataclass(frozen=True)
class FollowUp:
    """A void or refund row with what its message must say of the original sale."""

    id: int
    kind: str  # "void" | "refund"
    method: str  # "card" | "wallet" (back the way it came) | "cash"
    stan: int
    amount: int
    idem_key: str
    transmitted_at: str
    original_id: int
    original_stan: int
    original_transmitted_at: str
    original_amount: int
    original_rrn: str
    original_auth_code: str
    terminal_id: str
    merchant_id: str
    original_order_no: str = ""  # wallet sales: the order at the provider


@dataclass(frozen=True)
class QueuedSettlement:
    """A settlement request sent (or about to be) and not yet answered: resent as it is."""

    batch: int
    stan: int
    debits: int
    debit_amount: int
    credits: int
    credit_amount: int
    created_at: str
    attempts: int


@dataclass(frozen=True)
class QueuedReversal:
    """A reversal waiting for the host's acknowledgement, with what its 0400 must say of the original."""

    id: int
    stan: int
    attempts: int
    original_id: int
    original_stan: int
    original_transmitted_at: str
    amount: int
    currency: str
    terminal_id: str
    merchant_id: str
    original_created_at: str = ""  # when the sale was journaled (ISO 8601 with its offset)
    original_icc: str = ""  # a chip sale's field 55 for its reversal (BER-TLV hex), "" for others


# The schema's refusals of a void or refund (its triggers' messages), as the screen says them.
REFUSALS = {
    "the original is not an approved sale": "SALE IS NOT APPROVED",
    "refunds would exceed the original amount": "REFUNDS WOULD EXCEED",
    "the sale already has a refund or a void": "ALREADY REFUNDED OR VOIDED",
}


def _rowid(cur: sqlite3.Cursor) -> int:
    """The id of the row an INSERT just made (sqlite3 types lastrowid as optional)."""
    assert cur.lastrowid is not None
    return cur.lastrowid


class Journal:
    """One SQLite file; every write is its own committed transaction.

    Opening checks the file before anything is written to it: a journal that fails SQLite's integrity
    check, or that is missing or empty although this terminal has handed out counters before (their copy
    says so), is refused with JournalError and left untouched. Counters the copy holds are never behind it.
    """

    def __init__(self, path: Path, counters: Path | None = None, *, start_empty: bool = False) -> None:
        self.path = path
        self._copy_path = counters or path.parent / "keys" / f"{path.stem}.counters.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error(f"{path.parent}: cannot make the data folder", exc) from None
        self._copy = CounterCopy(self._copy_path)
        self._copy_pending: dict[str, int] = {}
        if _read_only(path.parent):
            raise JournalError(
                f"{path.parent} is on a read-only file system: the journal cannot be written (a "
                f"worn SD card is often remounted read-only; check `dmesg`, then the card)",
                screen="DISK READ-ONLY",
            )
        had_rows = path.exists() and path.stat().st_size > 0
        if not had_rows and not start_empty:
            self._refuse_if_emptied(0)  # before SQLite makes an empty file where the journal was
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            raise JournalError(f"{path}: cannot open the journal: {exc}") from None
        try:
            self._db.row_factory = sqlite3.Row
            if had_rows:
                self._check_integrity()
            if not start_empty:
                self._refuse_if_emptied(self._db.execute("PRAGMA user_version").fetchone()[0])
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
            self._catch_up_counters()
        except sqlite3.Error as exc:
            self._db.close()
            raise _journal_error(f"{path}: cannot open the journal", exc) from None
        except JournalError:
            self._db.close()
            raise

    def _check_integrity(self) -> None:
        """Refuse a journal SQLite finds damaged (flipped or truncated pages, an index that lies)."""
        try:
            problems = [r[0] for r in self._db.execute("PRAGMA integrity_check(5)")]
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                raise  # cannot read it (storage), which is not damage
            problems = [str(exc)]
        if problems != ["ok"]:
            raise JournalError(
                f"{self.path} is damaged ({'; '.join(problems)[:300]}). The terminal will not "
                f"start on it and has not changed it. Stop the terminal, keep this file for the "
                f"records, and copy the latest backup of the journal in its place (see README, "
                f"'When the journal is damaged')",
                screen="JOURNAL DAMAGED",
            )

    def _refuse_if_emptied(self, schema: int) -> None:
        """A journal with no schema where this terminal already handed out counters lost its rows."""
        if schema != 0:
            return
        history = {k: v for k, v in self._copy.values().items() if v}
        if history:
            raise JournalError(
                f"{self.path} is missing or empty, but this terminal has used it before (STAN "
                f"{stan_of(history['stan_seq']) if history.get('stan_seq') else 0}, per {self._copy_path}). "
                "Its rows (sales, queued reversals) would "
                f"be lost. Copy the latest backup of the journal in its place; to start an empty journal on "
                f"purpose (counters continue, nothing is reused), run `countertop journal new`",
                screen="JOURNAL MISSING",
            )

    def _catch_up_counters(self) -> None:
        """No counter is ever behind its copy or behind the journal: each one-way counter goes to the higher
        of the two (a restored older journal continues from the copy; a copy restored from a backup is
        brought up to the journal), and the STAN follows its sequence."""
        with self._tx():
            if self.counter("stan") is not None and self.counter("stan_seq") is None:
                self._set("stan_seq", self.counter("stan") or 0)  # a journal from before the sequence
            copied = self._copy.values()
            for name, value in copied.items():
                if one_way(name) and value > (self.counter(name) or 0):
                    level = logging.WARNING if value - (self.counter(name) or 0) > 1 else logging.INFO
                    log.log(
                        level,
                        "journal: counter %s was %s, its copy %d: continuing from the copy",
                        name,
                        self.counter(name),
                        value,
                    )
                    self._set(name, value)
            seq = self.counter("stan_seq")
            if seq is not None and self.counter("stan") != stan_of(seq):
                self._set("stan", stan_of(seq))
            self._restore_high_water(copied)
            self._copy_pending.update(self._one_way_counters())  # the copy never behind the journal

    def _set(self, name: str, value: int) -> None:
        # Caller holds a transaction.
        self._db.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (name, value),
        )

    def _one_way_counters(self) -> dict[str, int]:
        return {name: value for name, value in self._db.execute("SELECT name, value FROM counters") if one_way(name)}

    @classmethod
    def start_new(cls, path: Path, counters: Path | None = None) -> Journal:
        """An empty journal in place of a missing one, on purpose: the counters continue from their copy.
        Refuses to replace a journal file that holds anything."""
        if path.exists() and path.stat().st_size > 0:
            raise JournalError(f"{path} exists and is not empty: move it away first (it is kept, never overwritten)")
        journal = cls(path, counters, start_empty=True)
        log.warning(
            "journal: a new empty journal was started at %s; counters continue from %s", path, journal._copy_path
        )
        return journal

    def check_room(self) -> None:
        """JournalError (DISK FULL, DISK READ-ONLY) when the journal's disk cannot take a transaction's rows.
        Checked before money moves, so a sale is refused rather than left without its outcome."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError as exc:
            raise storage_error(f"{self.path.parent}: cannot check free space", exc) from None
        if st.f_flag & os.ST_RDONLY:
            raise JournalError(f"{self.path.parent} is mounted read-only", screen="DISK READ-ONLY")
        free = st.f_bavail * st.f_frsize
        if free < MIN_FREE:
            raise JournalError(
                f"only {free // 1024} KiB free on the journal's disk ({self.path.parent}); "
                f"{MIN_FREE // 1024} KiB are needed before a sale starts",
                screen="DISK FULL",
            )

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise JournalError(f"journal schema {version} is newer than this firmware ({len(MIGRATIONS)})")
        if version == len(MIGRATIONS):
            return
        # Every pending step in one transaction: a new journal costs one synced commit instead of one per step
        # (16 on a first boot), and an upgrade is all or nothing.
        log.info("journal: migrating schema from version %d to %d", version, len(MIGRATIONS))
        steps = "".join(f"{script};\n" for script in MIGRATIONS[version:])
        self._db.executescript(f"BEGIN IMMEDIATE; {steps} PRAGMA user_version = {len(MIGRATIONS)}; COMMIT;")

    def close(self) -> None:
        """Close the database (a crash simply never calls this)."""
        self._db.close()

    def counter(self, name: str) -> int | None:
        """The last value handed out for a counter, or None."""
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def _advance(self, name: str, first: int, step: Callable[[int], int]) -> int:
        # Caller holds a transaction; a one-way counter's copy is written before it commits.
        last = self.counter(name)
        value = first if last is None else step(last)
        self._set(name, value)
        if name == "stan":  # the STAN wraps; the sequence behind it does not
            seq = (self.counter("stan_seq") or 0) + 1
            self._set("stan_seq", seq)
            self._copy_pending["stan_seq"] = seq
        if one_way(name):
            self._copy_pending[name] = value
        return value

    def take_counter(self, name: str, first: int, step: Callable[[int], int] = lambda v: v + 1) -> int:
        """Durably take the next value of a counter: `first` on first use, then `step(last)`."""
        with self._tx():
            return self._advance(name, first, step)

    def set_counter(self, name: str, value: int) -> None:
        """Durably set a counter."""
        with self._tx():
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (name, value),
            )

    def _tx(self) -> _Tx:
        return _Tx(self._db, self._before_commit)

    def _before_commit(self, committing: bool) -> None:
        pending, self._copy_pending = self._copy_pending, {}
        if committing and pending:
            pending.update(self._high_water())  # the copy is written anyway: ids and versions go with it
            self._copy.write(pending)

    def _high_water(self) -> dict[str, int]:
        """The highest transaction id and outbox version handed out (AUTOINCREMENT's own record of them)."""
        return {
            HIGH_WATER[name]: seq
            for name, seq in self._db.execute("SELECT name, seq FROM sqlite_sequence")
            if name in HIGH_WATER
        }

    def _restore_high_water(self, copied: dict[str, int]) -> None:
        """A journal behind its copy (restored from a backup, or started new) continues transaction ids and
        outbox versions after the highest ever handed out, so the back office never takes a new row for an old
        one. Caller holds a transaction."""
        for table, key in HIGH_WATER.items():
            if copied.get(key, 0) > self._high_water().get(key, 0):
                log.warning("journal: %s continue after %d, per the counters' copy", table, copied[key])
                self._db.execute("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
                self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, copied[key]))

    def set_forwarding(self, on: bool) -> None:
        """Forwarding to the back office on or off ([office] configured or not). Turned on, the outbox starts
        with every row as it is now (the back office keeps the newest version of each); turned off, it is
        emptied and nothing more is queued."""
        with self._tx():
            was = self.counter("forwarding") == 1
            self._set("forwarding", int(on))
            if on and not self.counter("journal_id"):  # who this journal is, for the back office (counters.py)
                self._set("journal_id", secrets.randbits(62) or 1)
                self._copy_pending["journal_id"] = self.counter("journal_id") or 0
            if on and not was:
                for sql in (
                    "SELECT 'transaction', id, 0, body FROM forward_transaction ORDER BY id",
                    "SELECT 'line', transaction_id, line_no, body FROM forward_line ORDER BY transaction_id, line_no",
                    "SELECT 'settlement', batch, 0, body FROM forward_settlement ORDER BY batch",
                    "SELECT 'signature', transaction_id, 0, body FROM forward_signature ORDER BY transaction_id",
                ):
                    self._db.execute(f"INSERT INTO forward_queue (entity, row_id, line_no, body) {sql}")
                self._copy_pending.update(self._high_water())
            elif not on:
                self._db.execute("DELETE FROM forward_queue")

    def current_batch(self) -> int:
        """The open batch's number (record_settlement closes it)."""
        return self.counter("batch") or 1

    def batch_totals(self, batch: int) -> tuple[int, int, int, int]:
        """(sales, sales amount, refunds, refunds amount) that went through the acquirer in `batch`:
        approved card sales not voided or reversed, approved card refunds."""
        debits = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM transactions WHERE batch = ?"
            " AND kind = 'sale' AND method = 'card' AND status = 'approved'",
            (batch,),
        ).fetchone()
        credits = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM transactions WHERE batch = ?"
            " AND kind = 'refund' AND method = 'card' AND status = 'approved'",
            (batch,),
        ).fetchone()
        return int(debits[0]), int(debits[1]), int(credits[0]), int(credits[1])

    def record_settlement(
        self,
        batch: int,
        totals: tuple[int, int, int, int],
        host: tuple[int, int, int, int] | None,
        response_code: str,
        in_balance: bool,
        now: datetime,
    ) -> int:
        """Record the host's answer to a settlement and close the batch, in one transaction; returns
        the new batch number. JournalError when the batch was settled already."""
        try:
            with self._tx():
                self._db.execute(
                    "INSERT INTO settlements VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        batch,
                        now.isoformat(timespec="seconds"),
                        *totals,
                        *(host or (None,) * 4),
                        response_code,
                        int(in_balance),
                    ),
                )
                self._db.execute("DELETE FROM settlement_queue WHERE batch = ?", (batch,))
                return self._advance("batch", 2, lambda v: v + 1)
        except sqlite3.IntegrityError:
            raise JournalError(f"batch {batch} is settled already") from None

    def begin_settlement(self, now: datetime) -> QueuedSettlement:
        """The settlement of the open batch, queued before its 0500 leaves (with its STAN and the totals it
        states); the one already queued, unchanged, when there is one."""
        with self._tx():
            queued = self.queued_settlement()
            if queued is not None:
                return queued
            batch = self.current_batch()
            totals = self.batch_totals(batch)
            stan = self._advance("stan", 1, STAN_STEP)
            self._db.execute(
                "INSERT INTO settlement_queue (batch, stan, debits, debit_amount, credits, credit_amount,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (batch, stan, *totals, now.isoformat(timespec="seconds")),
            )
        queued = self.queued_settlement()
        assert queued is not None
        return queued

    def queued_settlement(self) -> QueuedSettlement | None:
        """The settlement whose answer has not come yet, if any."""
        row = self._db.execute(
            "SELECT batch, stan, debits, debit_amount, credits, credit_amount, created_at, attempts"
            " FROM settlement_queue ORDER BY batch LIMIT 1"
        ).fetchone()
        return None if row is None else QueuedSettlement(*row)

    def note_settlement_attempt(self, batch: int, note: str) -> None:
        """Count a settlement attempt that got no usable answer."""
        with self._tx():
            self._db.execute(
                "UPDATE settlement_queue SET attempts = attempts + 1, note = ? WHERE batch = ?", (note[:200], batch)
            )

    def begin_sale(self, sale: NewSale, now: datetime) -> tuple[int, int]:
        """Take the next STAN (1..999999, wrapping) and write a pending sale row; returns (row id, stan)."""
        stamp = now.isoformat(timespec="seconds")
        with self._tx():
            stan = self._advance("stan", 1, STAN_STEP)
            # Every sale gets a reference (wallet sales: their order number at the provider).
            reference = sale.order_no or f"{sale.terminal_id}{now:%y%m%d%H%M%S}{stan:06d}"
            cur = self._db.execute(
                "INSERT INTO transactions (kind, method, entry_mode, amount, currency, status, stan, masked_pan,"
                " terminal_id, merchant_id, created_at, updated_at, transmitted_at, batch, provider, order_no,"
                " card_token, operator, chip_swiped, cvm, aid, app_label, cryptogram, reversal_icc)"
                " VALUES ('sale', ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sale.method,
                    sale.entry_mode,
                    sale.amount,
                    sale.currency,
                    stan,
                    sale.masked_pan,
                    sale.terminal_id,
                    sale.merchant_id,
                    stamp,
                    stamp,
                    sale.transmitted_at,
                    self.current_batch(),
                    sale.provider,
                    reference,
                    sale.card_token,
                    sale.operator,
                    int(sale.chip_swiped),
                    sale.cvm,
                    sale.aid,
                    sale.app_label,
                    sale.cryptogram,
                    sale.reversal_icc,
                ),
            )
            row = _rowid(cur)
            self._db.executemany(
                "INSERT INTO sale_lines (transaction_id, line_no, plu, name, quantity, unit_price, tax_rate_bp)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (row, n, ln.plu, ln.name, ln.quantity, ln.unit_price, ln.tax_rate_bp)
                    for n, ln in enumerate(sale.lines, start=1)
                ],
            )
            return row, stan

    # --- the item catalogue ---------------------------------------------------------------------

    def import_items(self, items: list[Item], now: datetime, replace: bool = False) -> tuple[int, int]:
        """Add or update catalogue items (all or nothing); with `replace`, items not in the list go.
        Returns (items written, items removed)."""
        stamp = now.isoformat(timespec="seconds")
        with self._tx():
            removed = 0
            if replace:
                keep = {i.plu for i in items}
                gone = [p for (p,) in self._db.execute("SELECT plu FROM items") if p not in keep]
                self._db.executemany("DELETE FROM items WHERE plu = ?", [(p,) for p in gone])
                removed = len(gone)
            self._db.executemany(
                "INSERT INTO items (plu, name, price, tax_rate_bp, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(plu) DO UPDATE SET name = excluded.name, price = excluded.price,"
                " tax_rate_bp = excluded.tax_rate_bp, updated_at = excluded.updated_at",
                [(i.plu, i.name, i.price, i.tax_rate_bp, stamp) for i in items],
            )
        return len(items), removed

    def item(self, plu: str) -> Item | None:
        """The catalogue item with this PLU (its primary key: one index probe, whatever the catalogue's size)."""
        r = self._db.execute("SELECT plu, name, price, tax_rate_bp FROM items WHERE plu = ?", (plu,)).fetchone()
        return None if r is None else Item(r[0], r[1], r[2], r[3])

    def has_items(self) -> bool:
        """True when the catalogue holds at least one item."""
        return self._db.execute("SELECT EXISTS (SELECT 1 FROM items)").fetchone()[0] == 1

    def catalog(self) -> dict[str, Item]:
        """The catalogue, by PLU."""
        return {
            r[0]: Item(r[0], r[1], r[2], r[3])
            for r in self._db.execute("SELECT plu, name, price, tax_rate_bp FROM items ORDER BY plu")
        }

    def lines_of(self, transaction_id: int) -> list[BasketLine]:
        """The basket of a sale (empty for a plain amount)."""
        return [
            BasketLine(*r)
            for r in self._db.execute(
                "SELECT plu, name, quantity, unit_price, tax_rate_bp FROM sale_lines WHERE transaction_id = ?"
                " ORDER BY line_no",
                (transaction_id,),
            )
        ]

    def best_sellers(self, first: str, last: str, limit: int = 10) -> dict[str, list[tuple[str, str, int, int]]]:
        """Items of approved sales in first..last: the top `limit` by quantity and by revenue, each as
        (plu, name, quantity, revenue). Whole months are read from the month totals, the days at either end
        from their sales."""
        found: dict[str, list[Any]] = {}

        def add(plu: str, name: str, quantity: int, revenue: int) -> None:
            entry = found.setdefault(plu, [name, 0, 0])
            entry[0], entry[1], entry[2] = max(entry[0], name), entry[1] + quantity, entry[2] + revenue

        months, days = _whole_months(first, last)
        if months:
            for plu, name, quantity, revenue in self._db.execute(
                "SELECT plu, MAX(name), SUM(quantity), SUM(revenue) FROM item_totals WHERE month >= ? AND month <= ?"
                " AND quantity > 0 GROUP BY plu",
                months,
            ):
                add(plu, name, int(quantity), int(revenue))
        for day_first, day_last in days:
            for plu, name, quantity, revenue in self._db.execute(
                "SELECT l.plu, MAX(l.name), SUM(l.quantity), SUM(l.quantity * l.unit_price) FROM sale_lines l"
                " JOIN transactions t ON t.id = l.transaction_id WHERE t.kind = 'sale' AND t.status = 'approved'"
                " AND t.created_at >= ? AND t.created_at < ? GROUP BY l.plu",
                (day_first, day_last + "\uffff"),
            ):
                add(plu, name, int(quantity), int(revenue))
        rows = [(plu, name, quantity, revenue) for plu, (name, quantity, revenue) in found.items()]
        return {
            "by_quantity": sorted(rows, key=lambda r: (-r[2], -r[3], r[0]))[:limit],
            "by_revenue": sorted(rows, key=lambda r: (-r[3], -r[2], r[0]))[:limit],
        }

    def by_operator(self, first: str, last: str) -> dict[str, tuple[int, int, int, int]]:
        """Per operator: (sales count, sales amount, refunds count, refunds amount) of first..last."""
        out: dict[str, list[int]] = {}
        for op, kind, count, amount in self._db.execute(
            "SELECT operator, kind, SUM(n), SUM(amount) FROM day_totals WHERE day >= ? AND day <= ?"
            " AND kind IN ('sale', 'refund') AND status = 'approved' GROUP BY operator, kind HAVING SUM(n) > 0",
            (first, last),
        ):
            entry = out.setdefault(op, [0, 0, 0, 0])
            base = 0 if kind == "sale" else 2
            entry[base], entry[base + 1] = int(count), int(amount or 0)
        return {op: (v[0], v[1], v[2], v[3]) for op, v in out.items()}

    def begin_follow_up(
        self,
        kind: str,
        original_id: int,
        amount: int,
        method: str,
        idem_key: str,
        transmitted_at: str,
        now: datetime,
        operator: str = "",
    ) -> FollowUp:
        """Write a pending void or refund against an approved sale; the database refuses one that would
        void a refunded sale, refund a voided one, or refund more in total than the sale."""
        if kind not in FOLLOW_UPS:
            raise JournalError(f"not a follow-up kind: {kind!r}")
        stamp = now.isoformat(timespec="seconds")
        try:
            with self._tx():
                stan = self._advance("stan", 1, STAN_STEP)
                cur = self._db.execute(
                    "INSERT INTO transactions (kind, method, entry_mode, amount, currency, status, stan,"
                    " masked_pan, terminal_id, merchant_id, created_at, updated_at, transmitted_at, batch,"
                    " original_id, idem_key, card_token, operator)"
                    " SELECT ?, ?, entry_mode, ?, currency, 'pending', ?, masked_pan, terminal_id, merchant_id,"
                    " ?, ?, ?, ?, id, ?, card_token, ? FROM transactions WHERE id = ?",
                    (
                        kind,
                        method,
                        amount,
                        stan,
                        stamp,
                        stamp,
                        transmitted_at,
                        self.current_batch(),
                        idem_key,
                        operator,
                        original_id,
                    ),
                )
                if cur.rowcount != 1:
                    raise JournalError(f"no transaction {original_id}")
                row_id = _rowid(cur)
        except sqlite3.IntegrityError as exc:
            screen = REFUSALS.get(str(exc), "NOT ALLOWED")  # the schema's own rule, said on the screen
            raise JournalError(f"{kind} refused: {exc}", screen=screen) from None
        return self._follow_ups("r.id = ?", (row_id,))[0]

    def _follow_ups(self, where: str, args: tuple[Any, ...]) -> list[FollowUp]:
        rows = self._db.execute(
            "SELECT r.id, r.kind, r.method, r.stan, r.amount, r.idem_key, r.transmitted_at, o.id, o.stan,"
            " o.transmitted_at, o.amount, o.rrn, o.auth_code, r.terminal_id, r.merchant_id, o.order_no"
            f" FROM transactions r JOIN transactions o ON o.id = r.original_id WHERE {where} ORDER BY r.id",
            args,
        ).fetchall()
        return [FollowUp(*r) for r in rows]

    def retries(self, method: str = "card") -> list[FollowUp]:
        """Voids and refunds (to the card, or to the wallet) whose answer was lost: resent with the same
        STAN and idempotency key."""
        return self._follow_ups("r.kind IN ('void', 'refund') AND r.method = ? AND r.status = 'unknown'", (method,))

    def unsettled_wallet_orders(self) -> list[dict[str, Any]]:
        """Wallet sales whose outcome is not known yet: to be asked of the provider (and closed)."""
        return [
            dict(r)
            for r in self._db.execute(
                "SELECT * FROM transactions WHERE method = 'wallet' AND kind = 'sale' AND status = 'unknown'"
                " ORDER BY id"
            )
        ]

    def find_sale(
        self,
        stan: int = 0,
        reference: str = "",
        date: str = "",
        amount: int = 0,
        last4: str = "",
        today: _date | None = None,
    ) -> dict[str, Any] | None:
        """The most recent sale with this trace number, or this receipt reference, or this date (MMDD, within
        the year before `today`, the terminal's clock) + amount + card last four; with its refunded total."""
        args: tuple[str | int, ...]
        if reference:
            where, args = "order_no = ?", (reference,)
        elif date:
            where, args = (
                (
                    "substr(created_at, 6, 2) || substr(created_at, 9, 2) = ? AND amount = ?"
                    " AND masked_pan LIKE ? AND created_at >= ?"
                ),
                (date, amount, f"%{last4}", ((today or _date.today()) - timedelta(days=366)).isoformat()),
            )
        else:
            where, args = "stan = ?", (stan,)
        row = self._db.execute(
            f"SELECT * FROM transaction_summary WHERE kind = 'sale' AND {where} ORDER BY id DESC LIMIT 1", args
        ).fetchone()
        return None if row is None else dict(row)

    def finish(
        self,
        row_id: int,
        status: str,
        now: datetime,
        *,
        response_code: str = "",
        auth_code: str = "",
        rrn: str = "",
        note: str = "",
        wallet_trade_no: str = "",
        payer: str = "",
    ) -> None:
        """Complete a pending sale, void or refund with its outcome, atomically with what follows from it:
        an unknown sale queues its reversal; an approved void marks its sale 'voided'. A void or refund
        left 'unknown' stays so, to be resent (same STAN and key) until the host answers.

        Only pending rows (and unknown voids/refunds) are completed; others are left as they are.
        """
        if status not in STATUSES or status in ("pending", "reversed", "voided"):
            raise JournalError(f"not a final status: {status!r}")
        stamp = now.isoformat(timespec="seconds")
        with self._tx():
            cur = self._db.execute(
                "UPDATE transactions SET status = ?, response_code = ?, auth_code = ?, rrn = ?, note = ?,"
                " updated_at = ?, attempts = attempts + 1, wallet_trade_no = ?, payer = ? WHERE id = ? AND"
                " (status = 'pending' OR (status = 'unknown' AND (kind IN ('void', 'refund') OR method = 'wallet')))",
                (status, response_code, auth_code, rrn, note, stamp, wallet_trade_no, payer, row_id),
            )
            if cur.rowcount != 1:
                log.warning("journal: row %d was not open; outcome %s not recorded", row_id, status)
                return
            kind, original = self._db.execute(
                "SELECT kind, original_id FROM transactions WHERE id = ?", (row_id,)
            ).fetchone()
            method = self._db.execute("SELECT method FROM transactions WHERE id = ?", (row_id,)).fetchone()[0]
            if kind == "sale" and status == "unknown" and method == "card":
                self._queue_reversal(row_id, stamp)
            elif kind == "void" and status == "approved":
                self._db.execute(
                    "UPDATE transactions SET status = 'voided', updated_at = ? WHERE id = ?", (stamp, original)
                )

    def chip_result(
        self, row_id: int, *, tvr: str, tsi: str, ac_type: str, ac: str, scripts: str = "", reversal_icc: str = ""
    ) -> None:
        """What a chip card's transaction ended with, for its receipt: TVR, TSI, the final cryptogram (type and
        value) and the issuer script results (hex; none of it is card data); and, when the card declined after
        the issuer approved, the field 55 its reversal carries. Written before the outcome."""
        with self._tx():
            self._db.execute(
                "UPDATE transactions SET tvr = ?, tsi = ?, final_ac_type = ?, final_ac = ?, script_results = ?,"
                " reversal_icc = CASE WHEN ? <> '' THEN ? ELSE reversal_icc END WHERE id = ?",
                (tvr, tsi, ac_type, ac, scripts, reversal_icc, reversal_icc, row_id),
            )

    def _queue_reversal(self, sale_id: int, stamp: str) -> int:
        # Caller holds a transaction. The reversal takes its own STAN now and keeps it for every retry.
        stan = self._advance("stan", 1, STAN_STEP)
        cur = self._db.execute(
            "INSERT INTO transactions (kind, method, entry_mode, amount, currency, status, stan, masked_pan,"
            " terminal_id, merchant_id, created_at, updated_at, original_id)"
            " SELECT 'reversal', method, entry_mode, amount, currency, 'queued', ?, masked_pan, terminal_id,"
            " merchant_id, ?, ?, id FROM transactions WHERE id = ?",
            (stan, stamp, stamp, sale_id),
        )
        log.warning("journal: sale %d has no known outcome; reversal %d queued", sale_id, cur.lastrowid)
        return _rowid(cur)

    def recover(self, now: datetime) -> list[dict[str, Any]]:
        """At boot: rows a power cut left pending become 'unknown' (a sale also gets its reversal; a card
        void or refund is resent); returns them. A cash refund left pending was never paid out (the till
        is told to pay only once it is journaled approved): it becomes 'failed'."""
        stamp = now.isoformat(timespec="seconds")
        with self._tx():
            rows = [dict(r) for r in self._db.execute("SELECT * FROM transactions WHERE status = 'pending'")]
            for r in rows:
                if r["method"] == "cash":
                    self._db.execute(
                        "UPDATE transactions SET status = 'failed', note = 'interrupted before the"
                        " cash was paid out', updated_at = ? WHERE id = ?",
                        (stamp, r["id"]),
                    )
                    continue
                self._db.execute(
                    "UPDATE transactions SET status = 'unknown', note = 'interrupted before the host"
                    " answer', updated_at = ? WHERE id = ?",
                    (stamp, r["id"]),
                )
                if r["kind"] == "sale" and r["method"] == "card":
                    self._queue_reversal(r["id"], stamp)
        return rows

    def queued_reversals(self) -> list[QueuedReversal]:
        """Reversals not yet acknowledged by the host, oldest first."""
        rows = self._db.execute(
            "SELECT r.id, r.stan, r.attempts, o.id, o.stan, o.transmitted_at, o.amount, o.currency,"
            " o.terminal_id, o.merchant_id, o.created_at, o.reversal_icc"
            " FROM transactions r JOIN transactions o ON o.id = r.original_id"
            " WHERE r.kind = 'reversal' AND r.status = 'queued' ORDER BY r.id"
        ).fetchall()
        return [QueuedReversal(*r) for r in rows]

    def mark_cancel(self, row_id: int, now: datetime) -> datetime:
        """Before a wallet sale's order is cancelled at the provider (the money may go back to the payer): keep
        when the first cancel was sent, in the sale's idempotency key ("cancel@<time>"), so that reconciliation
        knows a cancel may have happened and resends it as the same request. Returns the kept time."""
        stamp = now.isoformat(timespec="seconds")
        with self._tx():
            self._db.execute(
                "UPDATE transactions SET idem_key = ? WHERE id = ? AND kind = 'sale' AND method = 'wallet'"
                " AND idem_key = ''",
                (CANCEL_MARK + stamp, row_id),
            )
            got = self._db.execute("SELECT idem_key FROM transactions WHERE id = ?", (row_id,)).fetchone()
        at = cancel_marked(got[0] if got else "")
        if at is None:
            raise JournalError(f"wallet row {row_id}: the cancel could not be journaled")
        return at

    def clear_cancel(self, row_id: int) -> None:
        """The provider answered that a wallet sale's cancel did not happen (nothing moved): forget mark_cancel's
        mark, so that a payment the query reports is the sale's again."""
        with self._tx():
            self._db.execute(
                "UPDATE transactions SET idem_key = '' WHERE id = ? AND kind = 'sale' AND method = 'wallet'"
                " AND idem_key LIKE ?",
                (row_id, CANCEL_MARK + "%"),
            )

    def note_attempt(self, row_id: int, now: datetime, note: str) -> None:
        """Count a send attempt (reversal or resent void/refund) that got no usable answer."""
        with self._tx():
            self._db.execute(
                "UPDATE transactions SET attempts = attempts + 1, note = ?, updated_at = ? WHERE id = ?",
                (note[:200], now.isoformat(timespec="seconds"), row_id),
            )

    def reversal_acknowledged(self, rev_id: int, response_code: str, now: datetime) -> None:
        """The host acknowledged the reversal: it is done, and its sale is 'reversed'."""
        stamp = now.isoformat(timespec="seconds")
        with self._tx():
            self._db.execute(
                "UPDATE transactions SET status = 'acknowledged', response_code = ?,"
                " attempts = attempts + 1, note = '', updated_at = ? WHERE id = ?",
                (response_code, stamp, rev_id),
            )
            self._db.execute(
                "UPDATE transactions SET status = 'reversed', updated_at = ? WHERE id ="
                " (SELECT original_id FROM transactions WHERE id = ?)",
                (stamp, rev_id),
            )

    def figures(self, first: str, last: str) -> dict[str, Any]:
        """Aggregates for local dates first..last (YYYY-MM-DD, inclusive), read from the totals the journal's
        triggers keep per day (and per month for the items) in the same transaction as each change."""
        sums: dict[tuple[str, str], list[int]] = {}
        methods: dict[tuple[str, str, str], tuple[int, int]] = {}
        operators: dict[str, list[int]] = {}
        for kind, status, method, entry, provider, op, count, amount in self._db.execute(
            "SELECT kind, status, method, entry_mode, provider, operator, SUM(n), SUM(amount) FROM day_totals"
            " WHERE day >= ? AND day <= ? GROUP BY 1, 2, 3, 4, 5, 6 HAVING SUM(n) > 0",
            (first, last),
        ):
            count, amount = int(count), int(amount)
            total = sums.setdefault((kind, status), [0, 0])
            total[0], total[1] = total[0] + count, total[1] + amount
            if (kind, status) == ("sale", "approved"):
                c, a = methods.get((method, entry, provider), (0, 0))
                methods[(method, entry, provider)] = (c + count, a + amount)
            if kind in ("sale", "refund") and status == "approved":
                per = operators.setdefault(op, [0, 0, 0, 0])
                base = 0 if kind == "sale" else 2
                per[base], per[base + 1] = per[base] + count, per[base + 1] + amount

        def pair(kind: str, status: str) -> tuple[int, int]:
            count, amount = sums.get((kind, status), [0, 0])
            return count, amount

        by_hour = {
            int(h): (int(c), int(a))
            for h, c, a in self._db.execute(
                "SELECT hour, SUM(n), SUM(amount) FROM hour_totals WHERE day >= ? AND day <= ? GROUP BY hour"
                " HAVING SUM(n) > 0",
                (first, last),
            )
        }
        return {
            "sales": pair("sale", "approved"),
            "refunds": pair("refund", "approved"),
            "voids": pair("void", "approved"),
            "declined": pair("sale", "declined")[0],
            "methods": methods,
            "by_hour": by_hour,
            "best": self.best_sellers(first, last),
            "operators": {op: (v[0], v[1], v[2], v[3]) for op, v in operators.items()},
        }

    def anomaly_rows(self, first: str, last: str) -> list[dict[str, Any]]:
        """Sales and refunds of the period with what the anomaly rules look at (no card data)."""
        return [
            dict(r)
            for r in self._db.execute(
                "SELECT t.id, t.kind, t.method, t.entry_mode, t.status, t.amount, t.created_at, t.stan, t.card_token,"
                " t.masked_pan, t.original_id, t.chip_swiped, COALESCE(o.method, '') AS original_method"
                " FROM transactions t"
                " LEFT JOIN transactions o ON o.id = t.original_id"
                " WHERE t.kind IN ('sale', 'refund') AND t.created_at >= ? AND t.created_at < ? ORDER BY t.id",
                (first, last + "\uffff"),
            )
        ]

    def rows_between(self, first: str, last: str) -> list[dict[str, Any]]:
        """Rows created on local dates first..last, oldest first."""
        return [
            dict(r)
            for r in self._db.execute(
                "SELECT * FROM transaction_summary WHERE created_at >= ? AND created_at < ? ORDER BY id",
                (first, last + "\uffff"),
            )
        ]

    def audit(self, actor: str, action: str, detail: str, now: datetime) -> None:
        """Append an audit entry (operator sign-ins, voids, refunds, settlements, reports)."""
        at = now.isoformat(timespec="seconds")
        with self._tx():
            last = self._db.execute("SELECT hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            prev = last[0] if last else AUDIT_GENESIS
            self._db.execute(
                "INSERT INTO audit (at, actor, action, detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
                (at, actor, action, detail, prev, audit_hash(prev, at, actor, action, detail)),
            )
            self._advance("audit_entries", 1, lambda v: v + 1)

    def verify_audit(self) -> tuple[bool, str]:
        """(True, summary) when the chain is whole; else (False, where it breaks). An edited entry breaks its
        hash, a removed one the chain or the count (kept apart from the entries)."""
        prev, count, expected_id = AUDIT_GENESIS, 0, None
        for row in self._db.execute("SELECT id, at, actor, action, detail, prev_hash, hash FROM audit ORDER BY id"):
            entry_id, at, actor, action, detail, prev_hash, digest = row
            if expected_id is not None and entry_id != expected_id:
                return False, f"entry {expected_id} is missing"
            if prev_hash != prev:
                return False, f"entry {entry_id} does not follow the entry before it"
            if audit_hash(prev_hash, at, actor, action, detail) != digest:
                return False, f"entry {entry_id} was altered"
            prev, count, expected_id = digest, count + 1, entry_id + 1
        recorded = self.counter("audit_entries") or 0
        if recorded != count:
            return False, f"{recorded - count} entries at the end were removed"
        return True, f"{count} entries, chain intact"

    # --- receipts -------------------------------------------------------------------------------

    _RECEIPT_SELECT = (
        "SELECT t.*, o.stan AS original_stan, o.method AS original_method, o.provider AS original_provider,"
        " s.png AS signature FROM transactions t"
        " LEFT JOIN transactions o ON o.id = t.original_id LEFT JOIN signatures s ON s.transaction_id = t.id"
    )

    def cvm_of(self, row_id: int) -> str:
        """How the cardholder of sale `row_id` was verified, as journaled ("" when not known)."""
        found = self._db.execute("SELECT cvm FROM transactions WHERE id = ?", (row_id,)).fetchone()
        return "" if found is None else str(found[0])

    def keep_signature(self, stan: int, png: bytes | None, note: str, now: datetime) -> int | None:
        """Keep the signature of the newest sale with trace `stan` (png None: none drawn, `note` says why);
        the sale's row id, or None when there is no such sale."""
        found = self._db.execute(
            "SELECT id FROM transactions WHERE stan = ? AND kind = 'sale' ORDER BY id DESC LIMIT 1", (stan,)
        ).fetchone()
        if found is None:
            return None
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO signatures (transaction_id, png, note, created_at) VALUES (?, ?, ?, ?)",
                (found[0], png, note, now.isoformat(timespec="seconds")),
            )
        return int(found[0])

    def signature(self, row_id: int) -> tuple[bytes | None, str] | None:
        """(png or None, note) kept for sale `row_id`, or None when nothing was kept."""
        found = self._db.execute("SELECT png, note FROM signatures WHERE transaction_id = ?", (row_id,)).fetchone()
        return None if found is None else (None if found[0] is None else bytes(found[0]), str(found[1]))

    def receipt_row(self, stan: int) -> dict[str, Any] | None:
        """The newest sale, void or refund with this trace number, with its original's trace and method."""
        found = self._db.execute(
            f"{self._RECEIPT_SELECT} WHERE t.stan = ? AND t.kind IN ('sale', 'void', 'refund')"
            " ORDER BY t.id DESC LIMIT 1",
            (stan,),
        ).fetchone()
        return None if found is None else dict(found)

    def last_receipt_row(self) -> dict[str, Any] | None:
        """The transaction whose receipt was printed (or due) last."""
        found = self._db.execute(
            f"{self._RECEIPT_SELECT} WHERE t.receipt IS NOT NULL ORDER BY t.id DESC LIMIT 1"
        ).fetchone()
        return None if found is None else dict(found)

    def receipts_due(self) -> list[dict[str, Any]]:
        """Transactions whose receipt is due and not yet printed, oldest first."""
        return [dict(r) for r in self._db.execute(f"{self._RECEIPT_SELECT} WHERE t.receipt = 0 ORDER BY t.id")]

    def mark_receipt(self, row_id: int, printed: bool) -> None:
        """Record that a row's receipt is due (printed=False) or printed."""
        with self._tx():
            self._db.execute("UPDATE transactions SET receipt = ? WHERE id = ?", (int(printed), row_id))

    def row(self, row_id: int) -> dict[str, Any] | None:
        """One row by id, with `refunded`."""
        found = self._db.execute("SELECT * FROM transaction_summary WHERE id = ?", (row_id,)).fetchone()
        return None if found is None else dict(found)

    def rows(self) -> list[dict[str, Any]]:
        """Every transaction row, oldest first, with a sale's approved refunds summed as `refunded`."""
        return [dict(r) for r in self._db.execute("SELECT * FROM transaction_summary ORDER BY id")]


def cancel_marked(idem_key: str) -> datetime | None:
    """When a cancel was first sent for a wallet sale whose idempotency key is `idem_key` (see mark_cancel)."""
    if not idem_key.startswith(CANCEL_MARK):
        return None
    try:
        return datetime.fromisoformat(idem_key[len(CANCEL_MARK) :])
    except ValueError:
        return None


def _whole_months(first: str, last: str) -> tuple[tuple[str, str] | None, list[tuple[str, str]]]:
    """Split local dates first..last into the whole months inside it (first and last YYYY-MM, or None) and
    the one or two runs of days (first, last) outside them."""
    start, end = _date.fromisoformat(first), _date.fromisoformat(last)
    if start > end:
        return None, []
    month_from = start if start.day == 1 else (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    after_end = end + timedelta(days=1)
    month_until = after_end.replace(day=1)  # the first day not in a whole month at the end
    if month_from >= month_until:
        return None, [(first, last)]
    days = []
    if start < month_from:
        days.append((first, (month_from - timedelta(days=1)).isoformat()))
    if month_until <= end:
        days.append((month_until.isoformat(), last))
    last_month = month_until - timedelta(days=1)
    return (month_from.isoformat()[:7], last_month.isoformat()[:7]), days


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False  # said more precisely when the file is opened


def _journal_error(what: str, exc: sqlite3.Error) -> JournalError:
    """A JournalError naming what SQLite said, with a screen text for the storage problems a shop can fix."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    screen = {
        sqlite3.SQLITE_FULL: "DISK FULL",
        sqlite3.SQLITE_READONLY: "DISK READ-ONLY",
        sqlite3.SQLITE_CORRUPT: "JOURNAL DAMAGED",
        sqlite3.SQLITE_NOTADB: "JOURNAL DAMAGED",
        sqlite3.SQLITE_IOERR: "STORAGE ERROR",
        sqlite3.SQLITE_CANTOPEN: "STORAGE ERROR",
    }.get(code, "JOURNAL ERROR")
    return JournalError(f"{what}: {exc}", screen=screen)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error; SQLite's errors come out as JournalError (its
    constraint errors as sqlite3.IntegrityError still, for the callers that turn them into refusals)."""

    def __init__(self, db: sqlite3.Connection, before_commit: Callable[[bool], None]) -> None:
        self._db, self._before_commit = db, before_commit

    def __enter__(self) -> None:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _journal_error("cannot begin a journal transaction", exc) from None

    def __exit__(self, exc_type: Any, exc: Any, _tb: Any) -> None:
        try:
            if exc_type is None:
                self._before_commit(True)
                self._db.execute("COMMIT")
                return
        except sqlite3.Error as failed:
            self._rollback()
            raise _journal_error("journal commit failed", failed) from None
        except BaseException:
            self._rollback()
            raise
        self._before_commit(False)
        self._rollback()
        if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.IntegrityError):
            raise _journal_error("journal write failed", exc) from None

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.error("journal: rollback failed: %s", exc)
