"""Benchmark: the back office's reports on 10,000,000 journal rows of 50 terminals over a year, in PostgreSQL.

    .venv/bin/python bench/office_reports_10m.py [--rows 10000000] [--terminals 50] [--dsn DSN] [--keep DIR]

Without --dsn it starts a private PostgreSQL from the machine's own packages in a temporary folder (as
`nobody` when run as root) and removes it afterwards; with --keep DIR the cluster is made (or reused) there.
The rows are made by PostgreSQL itself (generate_series) with the totals' triggers off, then the totals are
counted once (as `countertop office rebuild-totals` does) and the tables vacuumed, as autovacuum would: sales
approved, declined, voided or reversed, refunds, voids, baskets of one or two items on a fifth of the sales,
four cashiers, card tokens that repeat, a few sales after hours. Then each report is timed (median of 7 after
one warm-up): the day and the year, all terminals and one terminal, with the anomaly rules on their own.
Targets: day < 50 ms, year < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import date
from pathlib import Path

import psycopg

from firmware.core.reports import AnomalyRules
from office import reports
from office.localdb import LocalPostgres
from office.schema import migrate, rebuild_totals
from office.web import WORK_MEM

FILL = """
SET session_replication_role = replica;  -- the totals' triggers off: counted once afterwards
INSERT INTO terminals (terminal_id, shop, token_hash)
    SELECT 'T' || lpad(t::text, 7, '0'), 'shop ' || (t %% 5), md5(t::text) FROM generate_series(1, %(terms)s) t;
INSERT INTO txns (terminal_id, id, version, kind, method, entry_mode, amount, currency, status, stan, masked_pan,
                  card_token, operator, chip_swiped, created_at, created_local, local_day, local_hour, batch)
SELECT 'T' || lpad((1 + g %% %(terms)s)::text, 7, '0'), g / %(terms)s + 1, g, x.kind, x.method, x.entry,
       x.amount, 'CNY', x.status, (g / %(terms)s) %% 999999 + 1, '424242******' || lpad((g %% 9973)::text, 4, '0'),
       'tok' || (hashint4(g) & 131071), (ARRAY['', '01', '02', '03'])[1 + (g %% 4)], g %% 97 = 0,
       x.at, to_char(x.at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD"T"HH24:MI:SS') || '+08:00',
       (x.at AT TIME ZONE 'Asia/Shanghai')::date,
       extract(hour FROM x.at AT TIME ZONE 'Asia/Shanghai')::smallint, 1 + g / 500000
FROM generate_series(0, %(rows)s - 1) g,
LATERAL (SELECT
    CASE WHEN g %% 50 < 46 THEN 'sale' WHEN g %% 50 < 48 THEN 'refund' WHEN g %% 50 < 49 THEN 'void'
         ELSE 'reversal' END AS kind,
    (ARRAY['card', 'card', 'wallet', 'wallet'])[1 + (g / 7) %% 4] AS method,
    (ARRAY['swipe', 'contactless', 'qr', 'code'])[1 + (g / 7) %% 4] AS entry,
    100 + (hashint4(g * 7) & 65535) * 3 AS amount,
    CASE WHEN g %% 50 >= 46 THEN (CASE WHEN g %% 50 = 49 THEN 'acknowledged' ELSE 'approved' END)
         WHEN g %% 23 = 0 THEN 'declined' WHEN g %% 101 = 0 THEN 'voided' WHEN g %% 211 = 0 THEN 'reversed'
         ELSE 'approved' END AS status,
    timestamptz '%(start)s 00:00:00+08' + make_interval(days => (g::bigint * 365 / %(rows)s)::int)
        + make_interval(hours => CASE WHEN g %% 211 = 5 THEN 22 ELSE 8 + (hashint4(g + 1) & 1023) %% 14 END,
                        mins => (g %% 60)) AS at) x;
INSERT INTO sale_lines (terminal_id, transaction_id, line_no, version, plu, name, quantity, unit_price)
SELECT t.terminal_id, t.id, n, t.version, lpad((1 + (hashint4((t.version * n)::int) & 1023))::text, 4, '0'),
       'ITEM ' || (1 + (hashint4((t.version * n)::int) & 1023)), 1 + n, t.amount / (2 * n + 1)
FROM txns t, generate_series(1, 2) n WHERE t.kind = 'sale' AND t.version %% 5 = 0 AND (n = 1 OR t.version %% 10 = 0);
SET session_replication_role = origin;
"""


def timed(label: str, work, runs: int = 7) -> float:
    work()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        work()
        times.append((time.perf_counter() - t0) * 1000)
    ms = statistics.median(times)
    print(f"{label:<44} {ms:9.1f} ms  (min {min(times):.1f}, max {max(times):.1f})")
    return ms


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--terminals", type=int, default=50)
    ap.add_argument("--dsn")
    ap.add_argument("--keep", help="make or reuse the private cluster in this folder, and leave it there")
    args = ap.parse_args()
    server = None
    if args.dsn:
        dsn = args.dsn
    else:
        server = LocalPostgres(Path(args.keep) if args.keep else None, durable=False).start()
        dsn = server.dsn()
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate(conn)
            have = conn.execute("SELECT COUNT(*) FROM txns").fetchone()[0]
            if have != args.rows:
                print(f"filling {args.rows:,} rows of {args.terminals} terminals (PostgreSQL makes them) ...")
                conn.execute("TRUNCATE txns, sale_lines, terminals CASCADE")
                t0 = time.perf_counter()
                conn.execute(FILL % {"rows": args.rows, "terms": args.terminals, "start": "2025-01-01"})
                print(f"  rows in {time.perf_counter() - t0:.0f} s")
                t0 = time.perf_counter()
                rebuild_totals(conn)
                conn.execute("VACUUM ANALYZE")  # as autovacuum leaves a table that has been filled
                print(f"  totals counted (and vacuumed) in {time.perf_counter() - t0:.0f} s")
            sizes = conn.execute(
                "SELECT (SELECT COUNT(*) FROM txns), (SELECT COUNT(*) FROM sale_lines), (SELECT COUNT(*) FROM"
                " sale_totals), (SELECT COUNT(*) FROM hour_totals), (SELECT COUNT(*) FROM item_totals),"
                " pg_size_pretty(pg_database_size(current_database()))"
            ).fetchone()
            print(
                f"{sizes[0]:,} rows, {sizes[1]:,} basket lines; totals (days and months): {sizes[2]:,} of sales,"
                f" {sizes[3]:,} by hour, {sizes[4]:,} of items; database {sizes[5]}"
            )
            terminals = tuple(t for (t,) in conn.execute("SELECT terminal_id FROM terminals ORDER BY 1"))
        results = asyncio.run(measure(dsn, terminals))
    finally:
        if server is not None and not args.keep:
            server.stop()
    day, year = results["day report, all terminals"], results["year report, all terminals"]
    print(f"targets: day < 50 ms: {'met' if day < 50 else 'MISSED'}; year < 1 s: {'met' if year < 1000 else 'MISSED'}")
    return 0


async def measure(dsn: str, terminals: tuple[str, ...]) -> dict[str, float]:
    rules = AnomalyRules(limits=(10000, 5000000))
    out: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, options=WORK_MEM) as conn:  # as served
        loop = asyncio.get_running_loop()

        def run(coro_fn):
            return lambda: asyncio.run_coroutine_threadsafe(coro_fn(), loop).result()

        cases = {
            "day report, all terminals": reports.Scope(terminals, date(2025, 6, 16), date(2025, 6, 16), "CNY", True),
            "day report, one terminal": reports.Scope(terminals[:1], date(2025, 6, 16), date(2025, 6, 16), "CNY"),
            "month report, all terminals": reports.Scope(terminals, date(2025, 6, 1), date(2025, 6, 30), "CNY", True),
            "year report, all terminals": reports.Scope(terminals, date(2025, 1, 1), date(2025, 12, 31), "CNY", True),
            "year report, one terminal": reports.Scope(terminals[:1], date(2025, 1, 1), date(2025, 12, 31), "CNY"),
        }
        for label, scope in cases.items():
            r = await reports.report(conn, scope)
            print(f"  {label}: {r.sales_count:,} sales, net {r.net_amount / 100:,.2f}")
        for label, scope in cases.items():
            out[label] = await asyncio.to_thread(timed, label, run(lambda s=scope: reports.report(conn, s)))
        for label in ("day report, all terminals", "year report, all terminals"):
            scope = cases[label]
            name = label.replace("report", "anomaly rules")
            out[name] = await asyncio.to_thread(timed, name, run(lambda s=scope: reports.anomalies(conn, s, rules)), 3)
    return out


if __name__ == "__main__":
    sys.exit(main())
