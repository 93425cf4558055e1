"""Benchmark: forwarding throughput, snapshots per second from one terminal to the back office.

    .venv/bin/python bench/office_forward.py [sales]

A journal with `sales` card sales (each forwarded twice: written pending, then approved; every other one with a
two-line basket) is made with forwarding on, so the journal's own triggers fill its outbox. Then the terminal's
real forwarder task drains it over TLS into a back office on a private PostgreSQL (durable: fsync on, as a
shop's server), at several batch sizes. Prints snapshots per second and what the back office then holds.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg

from firmware.config import OfficeConfig
from firmware.records.forwardq import ForwardQueue
from firmware.records.journal import Journal
from firmware.shell.forwarder import Forwarder
from office.config import OfficeSettings, ServerConfig
from office.localdb import LocalPostgres
from office.schema import migrate
from office.tlscert import self_signed
from office.users import add_terminal
from office.web import BackgroundOffice

CN = timezone(timedelta(hours=8))


def fill(path: Path, terminal: str, sales: int) -> int:
    """The journal's rows written in one transaction each way (the triggers queue a snapshot per change)."""
    journal = Journal(path)
    journal.set_forwarding(True)
    db = journal._db  # noqa: SLF001 - a benchmark's shortcut past one fsync'd commit per row
    start = datetime(2026, 11, 2, 8, tzinfo=CN)
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO transactions (kind, method, entry_mode, amount, currency, status, stan, masked_pan, terminal_id,"
        " merchant_id, created_at, updated_at, card_token, operator) VALUES ('sale', 'card', 'swipe', ?, 'CNY',"
        " 'pending', ?, '424242******4242', ?, '102030405060708', ?, ?, ?, '01')",
        [
            (100 + i % 5000, i % 999999 + 1, terminal, at, at, f"t{i}")
            for i in range(sales)
            for at in [(start + timedelta(seconds=20 * i)).isoformat()]
        ],
    )
    db.executemany(
        "INSERT INTO sale_lines (transaction_id, line_no, plu, name, quantity, unit_price) VALUES (?, ?, ?, ?, 1, 100)",
        [(i, n, f"{1000 + i % 300}", f"ITEM {i % 300}") for i in range(2, sales + 1, 2) for n in (1, 2)],
    )
    db.execute("UPDATE transactions SET status = 'approved', response_code = '00'")
    db.execute("COMMIT")
    depth = ForwardQueue(path)
    n = depth.depth()
    depth.close()
    journal.close()
    return n


async def drain(cfg: OfficeConfig, terminal: str, path: Path) -> float:
    forwarder = Forwarder(cfg, terminal, path)
    queue = ForwardQueue(path)
    t0 = time.perf_counter()
    task = asyncio.create_task(forwarder.run())
    while queue.depth():
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - t0
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    queue.close()
    return elapsed


def main(sales: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="office-forward-"))
    pg = LocalPostgres(durable=True).start()
    try:
        cert, key, _ = self_signed(["127.0.0.1"])
        (tmp / "cert.pem").write_bytes(cert)
        (tmp / "key.pem").write_bytes(key)
        for batch in (50, 200, 1000):
            dsn = pg.create_database(f"forward_{batch}")
            with psycopg.connect(dsn, autocommit=True) as conn:
                migrate(conn)
                (tmp / "token").write_text(add_terminal(conn, "BENCH001"))
            server = ServerConfig("127.0.0.1", 0, str(tmp / "cert.pem"), str(tmp / "key.pem"))
            office = BackgroundOffice(OfficeSettings("bench", dsn, server)).start()
            try:
                path = tmp / f"b{batch}" / "journal.sqlite3"
                snapshots = fill(path, "BENCH001", sales)
                cfg = OfficeConfig(
                    f"https://127.0.0.1:{office.port}", str(tmp / "token"), str(tmp / "cert.pem"), batch=batch
                )
                elapsed = asyncio.run(drain(cfg, "BENCH001", path))
            finally:
                office.stop()
            with psycopg.connect(dsn, autocommit=True) as conn:
                rows, lines, approved = conn.execute(
                    "SELECT (SELECT COUNT(*) FROM txns), (SELECT COUNT(*) FROM sale_lines),"
                    " (SELECT SUM(n) FROM sale_totals WHERE span = 'day' AND status = 'approved')"
                ).fetchone()
            print(
                f"batch {batch:>4}: {snapshots:,} snapshots in {elapsed:.1f} s = {snapshots / elapsed:,.0f} per second"
                f" ({sales / elapsed:,.0f} sales/s); stored {rows:,} rows, {lines:,} lines, {approved:,} approved"
            )
    finally:
        pg.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)
