"""Benchmark: reports on a journal of 1,000,000 synthetic transactions (about ten years of a busy shop).

    .venv/bin/python bench/reports_1m.py [rows]

Times the day report, the month report, a one-year report (all via Journal.figures, i.e. SQL
aggregation over the indexed date column: totals, method split, by hour, best-selling items, per
operator), the anomaly rules over a month and the CSV export of one month. Every sale has one to three
basket lines from a 200-item catalogue and one of four cashiers. The journal is built with the real
schema (Journal's migrations) in a temporary folder.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from firmware.core import reports
from firmware.records.journal import Journal

CN = timezone(timedelta(hours=8))


def fill(journal: Journal, rows: int) -> tuple[str, str]:
    rng = random.Random(7)
    start = datetime(2017, 1, 1, 8, tzinfo=CN)
    step = timedelta(days=3650) / rows
    methods = [("card", "swipe"), ("card", "contactless"), ("wallet", "qr"), ("wallet", "code")]
    batch, lines = [], []
    for i in range(rows):
        at = (start + step * i).replace(hour=8 + i % 13).isoformat(timespec="seconds")
        method, entry = methods[i % 4]
        status = "declined" if i % 29 == 0 else "approved"
        basket = [(rng.randint(1, 200), rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]
        amount = sum(plu * 50 * qty for plu, qty in basket)
        for n, (plu, qty) in enumerate(basket, start=1):
            lines.append((i + 1, n, str(1000 + plu), f"ITEM {plu}", qty, plu * 50))
        batch.append(
            (
                "sale",
                method,
                entry,
                amount,
                "CNY",
                status,
                i % 999999 + 1,
                "424242******4242" if method == "card" else "",
                "SIM00001",
                "102030405060708",
                at,
                at,
                f"SIM00001{i:012d}",
                f"cashier 0{i % 4 + 1}",
            )
        )
    db = journal._db  # noqa: SLF001 - bulk load for the benchmark only
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO transactions (kind, method, entry_mode, amount, currency, status, stan, masked_pan,"
        " terminal_id, merchant_id, created_at, updated_at, order_no, operator)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        batch,
    )
    db.executemany(
        "INSERT INTO sale_lines (transaction_id, line_no, plu, name, quantity, unit_price) VALUES (?,?,?,?,?,?)", lines
    )
    db.execute("COMMIT")
    return batch[0][10][:10], batch[-1][10][:10]


def timed(label: str, fn) -> None:  # noqa: ANN001
    t0 = time.perf_counter()
    result = fn()
    ms = (time.perf_counter() - t0) * 1000
    size = f" ({len(result):,} characters)" if isinstance(result, str) else ""
    print(f"{label}: {ms:.1f} ms{size}")


def main(rows: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "journal.sqlite3")
        t0 = time.perf_counter()
        first, last = fill(journal, rows)
        print(f"{rows:,} rows from {first} to {last} loaded in {time.perf_counter() - t0:.1f} s")
        day, month, year = "2026-06-15", ("2026-06-01", "2026-06-30"), ("2025-01-01", "2025-12-31")
        timed("day report", lambda: journal.figures(day, day))
        timed("month report", lambda: journal.figures(*month))
        timed("one-year report", lambda: journal.figures(*year))
        timed("whole-period report", lambda: journal.figures(first, last))
        timed("month best sellers alone", lambda: journal.best_sellers(*month))
        timed("month per operator alone", lambda: journal.by_operator(*month))
        rules = reports.AnomalyRules(limits=(10000, 5000000))
        timed(
            "month anomaly rules",
            lambda: reports.anomalies(journal.anomaly_rows(*month), rules, reports.Currency.of("CNY")),
        )
        timed("month CSV export", lambda: reports.as_csv(journal.rows_between(*month)))
        journal.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
