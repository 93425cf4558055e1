"""The terminal's reports over the gathered books, computed by PostgreSQL: GROUP BY over the totals the triggers
keep (firmware/core/reports.py's figures, to the cent), window functions for the method shares and the best
sellers' ranks, and the anomaly rules as queries over the rows. Any set of terminals (one, a shop, all), any range
of local dates (each terminal's own local date, as its own report counts it)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from firmware.core.money import Currency, format_minor
from firmware.core.reports import (
    EXPORT_COLUMNS,
    AnomalyRules,
    ItemLine,
    MethodLine,
    OperatorLine,
    Report,
    method_name,
    spreadsheet_safe,
)

TOP = 10  # best sellers listed, as the terminal's journal lists them
ROWS_SHOWN = 100  # rows named per anomaly (the count is always whole)


@dataclass(frozen=True)
class Scope:
    """Which books: terminals (every one the user may see when empty is not allowed: resolved first), dates,
    currency."""

    terminals: tuple[str, ...]
    first: date
    last: date
    currency: str
    every: bool = False  # every terminal there is: no filter by terminal at all (the owner's usual question)

    def args(self, **more: Any) -> dict[str, Any]:
        """The query's parameters: the terminals, the dates, and the range as whole months [m0, m1) with the days
        before and after them (d1..d2, d3..d4), for the totals kept per day and per month."""
        first, last, one = self.first, self.last, timedelta(days=1)
        m0 = first if first.day == 1 else (first.replace(day=28) + 4 * one).replace(day=1)
        m1 = (last + one).replace(day=1)
        if m0 < m1:
            d1, d2, d3, d4 = first, m0 - one, m1, last
        else:  # no whole month: every day from the day totals
            d1, d2, d3, d4, m0, m1 = first, last, last + one, last, first, first
        dates = {"d1": d1, "d2": d2, "d3": d3, "d4": d4, "m0": m0, "m1": m1}
        return {
            "t": list(self.terminals),
            "every": self.every,
            "first": first,
            "last": last,
            "cur": self.currency,
            **dates,
            **more,
        }


@dataclass(frozen=True)
class Finding:
    """One anomaly rule that fired: the terminal's wording, how many rows, and the first of them as TERMINAL:ID."""

    rule: str
    detail: str
    count: int
    rows: tuple[str, ...]


# A query's parameters are planned as the values they are (never prepared: see _all), so "every" folds away.
_TERMINALS = "(%(every)s OR terminal_id = ANY(%(t)s))"
_IN = f"local_day BETWEEN %(first)s AND %(last)s AND {_TERMINALS} AND currency = %(cur)s"
_TOTALS = (  # days outside whole months from the day totals, whole months from the month totals
    "((span = 'day' AND (period BETWEEN %(d1)s AND %(d2)s OR period BETWEEN %(d3)s AND %(d4)s))"
    " OR (span = 'month' AND period >= %(m0)s AND period < %(m1)s))"
    f" AND {_TERMINALS} AND currency = %(cur)s"
)


async def _all(conn: Any, sql: str, args: dict[str, Any]) -> list[tuple[Any, ...]]:
    # Never a prepared statement: its generic plan, made for a day's range, would walk an index over a year.
    cur = await conn.execute(sql, args, prepare=False)
    return list(await cur.fetchall())


async def report(conn: Any, s: Scope) -> Report:
    """The terminal's period report (firmware.core.reports.Report) over the scope's books."""
    totals = {
        (k, st): (int(n), int(a))
        for k, st, n, a in await _all(
            conn,
            f"SELECT kind, status, SUM(n), SUM(amount) FROM sale_totals WHERE {_TOTALS}"
            " AND status IN ('approved', 'declined') GROUP BY kind, status",
            s.args(),
        )
    }
    # Shares in tenths of a percent, rounded half up in integers, as the terminal rounds them.
    methods = [
        MethodLine(method_name(m, e, p), int(n), int(a), int(share))
        for m, e, p, n, a, share in await _all(
            conn,
            "SELECT method, entry_mode, provider, SUM(n)::bigint, SUM(amount)::bigint,"
            " div(SUM(amount) * 1000 + div(SUM(SUM(amount)) OVER (), 2), NULLIF(SUM(SUM(amount)) OVER (), 0))"
            f" FROM sale_totals WHERE {_TOTALS} AND kind = 'sale' AND status = 'approved'"
            " GROUP BY method, entry_mode, provider HAVING SUM(n) <> 0"
            ' ORDER BY method COLLATE "C", entry_mode COLLATE "C", provider COLLATE "C"',
            s.args(),
        )
    ]
    by_hour = {
        int(h): (int(n), int(a))
        for h, n, a in await _all(
            conn,
            f"SELECT local_hour, SUM(n), SUM(amount) FROM hour_totals WHERE {_TOTALS} GROUP BY local_hour"
            " HAVING SUM(n) <> 0",
            s.args(),
        )
    }
    ranked = await _all(
        conn,
        "WITH items AS ("
        ' SELECT plu, MAX(name COLLATE "C") AS name, SUM(quantity)::bigint AS q, SUM(revenue)::bigint AS r'
        f" FROM item_totals WHERE {_TOTALS} GROUP BY plu HAVING SUM(quantity) <> 0),"
        " ranked AS (SELECT *,"
        ' row_number() OVER (ORDER BY q DESC, r DESC, plu COLLATE "C") AS by_q,'
        ' row_number() OVER (ORDER BY r DESC, q DESC, plu COLLATE "C") AS by_r FROM items)'
        " SELECT plu, name, q, r, by_q, by_r FROM ranked WHERE by_q <= %(top)s OR by_r <= %(top)s",
        s.args(top=TOP),
    )
    by_q = [ItemLine(p, n, int(q), int(r)) for p, n, q, r, rq, _ in sorted(ranked, key=lambda x: x[4]) if rq <= TOP]
    by_r = [ItemLine(p, n, int(q), int(r)) for p, n, q, r, _, rr in sorted(ranked, key=lambda x: x[5]) if rr <= TOP]
    ops: dict[str, list[int]] = {}
    for op, kind, n, a in await _all(
        conn,
        f"SELECT operator, kind, SUM(n), SUM(amount) FROM sale_totals WHERE {_TOTALS} AND kind IN ('sale', 'refund')"
        " AND status = 'approved' GROUP BY operator, kind HAVING SUM(n) <> 0",
        s.args(),
    ):
        entry = ops.setdefault(op, [0, 0, 0, 0])
        base = 0 if kind == "sale" else 2
        entry[base], entry[base + 1] = int(n), int(a)
    sales, refunds, voids = (totals.get((k, "approved"), (0, 0)) for k in ("sale", "refund", "void"))
    return Report(
        s.first.isoformat(),
        s.last.isoformat(),
        s.currency,
        *sales,
        *refunds,
        *voids,
        totals.get(("sale", "declined"), (0, 0))[0],
        methods,
        by_hour,
        by_q,
        by_r,
        [OperatorLine(op, *v) for op, v in sorted(ops.items())],
    )


_ROW = "terminal_id || ':' || id"
_FIRST = ' ORDER BY local_day, terminal_id COLLATE "C", id LIMIT %(shown)s'  # the earliest rows are named


async def anomalies(conn: Any, s: Scope, rules: AnomalyRules, r: Report | None = None) -> list[Finding]:
    """The terminal's anomaly rules over the scope, in its order and wording; each names its count and its earliest
    ROWS_SHOWN rows. Counts come from the totals where they can; the rows from partial indexes. Card tokens are
    keyed by each terminal's own key, so a card is recognised within one terminal's rows."""
    cur = Currency.of(s.currency)
    r = r or await report(conn, s)
    found: list[Finding] = []

    async def earliest(where: str, **more: Any) -> tuple[str, ...]:
        got = await _all(
            conn, f"SELECT {_ROW} FROM txns WHERE {_IN} AND {where}{_FIRST}", s.args(shown=ROWS_SHOWN, **more)
        )
        return tuple(g[0] for g in got)

    async def count(where: str, **more: Any) -> int:
        return int((await _all(conn, f"SELECT COUNT(*) FROM txns WHERE {_IN} AND {where}", s.args(**more)))[0][0])

    async def per_card(where: str, least: int) -> list[tuple[int, str, tuple[str, ...]]]:
        """Cards (terminal, token) with at least `least` such rows, found first, then each one's rows through the
        partial index on (terminal, token): how many, the first row's mask, the rows."""
        got = await _all(
            conn,
            "SELECT h.n, x.masked, x.ids FROM (SELECT terminal_id, card_token, COUNT(*) AS n, MIN(id) AS first_id"
            f" FROM txns t WHERE {_IN} AND {where} AND card_token <> '' GROUP BY terminal_id, card_token"
            " HAVING COUNT(*) >= %(n)s) h, LATERAL (SELECT (array_agg(t.masked_pan ORDER BY t.id))[1] AS masked,"
            " (array_agg(t.terminal_id || ':' || t.id ORDER BY t.id))[1:%(shown)s] AS ids FROM txns t"
            " WHERE t.terminal_id = h.terminal_id AND t.card_token = h.card_token"
            f" AND t.local_day BETWEEN %(first)s AND %(last)s AND t.currency = %(cur)s AND {where}) x"
            ' ORDER BY h.terminal_id COLLATE "C", h.first_id',
            s.args(n=least, shown=ROWS_SHOWN),
        )
        return [(int(n), masked, tuple(ids)) for n, masked, ids in got]

    if r.refund_count and r.refund_amount * 100 > rules.refund_share_percent * r.sales_amount:
        share = r.refund_amount * 100 // r.sales_amount if r.sales_amount else 100
        ids = await earliest("kind = 'refund' AND status = 'approved'")
        found.append(
            Finding(
                "refund share",
                f"refunds {format_minor(r.refund_amount, cur)} are {share}% of sales",
                r.refund_count,
                ids,
            )
        )
    for n, masked, ids in await per_card("t.kind = 'sale' AND t.status = 'declined'", rules.declines_per_card):
        found.append(Finding("declines on one card", f"{n} declines of {masked}", n, ids))
    start, end = rules.opening
    late = sum(c for h, (c, _) in r.by_hour.items() if not start <= h < end)  # from the hour totals
    if late:
        ids = await earliest(
            "kind = 'sale' AND status = 'approved' AND (local_hour < %(open)s OR local_hour >= %(close)s)",
            open=start,
            close=end,
        )
        found.append(Finding("outside opening hours", f"{late} sales outside {start:02d}:00-{end:02d}:00", late, ids))
    for n, masked, ids in await per_card("t.kind = 'sale' AND t.chip_swiped", rules.fallback_per_card):
        found.append(
            Finding("fallback swipes of a chip card", f"{n} swipes of chip card {masked} (a copied stripe?)", n, ids)
        )
    fell_back = "kind = 'sale' AND entry_mode = 'fallback'"
    n = await count(fell_back)
    if n and n >= rules.fallbacks:
        cards = await count("kind = 'sale' AND method = 'card' AND status <> 'failed'")
        approved = await count(f"{fell_back} AND status = 'approved'")
        detail = f"{n} of {cards} card sales sent by stripe after a chip failed (801), {approved} approved"
        found.append(Finding("fallbacks from chip", detail, n, await earliest(fell_back)))
    cash_back = (
        "kind = 'refund' AND status = 'approved' AND method = 'cash' AND EXISTS (SELECT 1 FROM txns o WHERE"
        " o.terminal_id = txns.terminal_id AND o.id = txns.original_id AND o.method IN ('card', 'wallet'))"
    )
    n = await count(cash_back)
    if n:
        found.append(
            Finding(
                "refund not to the paying card",
                f"{n} cash refunds of card or wallet sales",
                n,
                await earliest(cash_back),
            )
        )
    for limit in rules.limits:
        near = "kind = 'sale' AND status = 'approved' AND amount >= %(lo)s AND amount < %(hi)s"
        n = await count(near, lo=limit * 95 // 100, hi=limit)
        if n >= rules.just_under_count:
            ids = await earliest(near, lo=limit * 95 // 100, hi=limit)
            found.append(Finding("just under a limit", f"{n} sales just under {format_minor(limit, cur)}", n, ids))
    return found


async def settlements(conn: Any, s: Scope) -> list[dict[str, Any]]:
    """The settlements of the scope's terminals whose day falls in the range (each batch once, as settled)."""
    cur = await conn.execute(
        "SELECT terminal_id, batch, created_at, debits, debit_amount, credits, credit_amount, host_debits,"
        " host_debit_amount, host_credits, host_credit_amount, response_code, in_balance FROM settlements"
        " WHERE terminal_id = ANY(%(t)s) AND left(created_at, 10) BETWEEN %(a)s AND %(b)s"
        ' ORDER BY created_at, terminal_id COLLATE "C"',
        {"t": list(s.terminals), "a": s.first.isoformat(), "b": s.last.isoformat()},
    )
    names = [d.name for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]


async def export_csv(conn: Any, s: Scope) -> AsyncIterator[str]:
    """Every row of the scope as CSV (the terminal's export columns after the terminal id), streamed from a
    server-side cursor; amounts as decimals, text cells made safe for spreadsheets."""
    cur_info = Currency.of(s.currency)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["terminal_id", *EXPORT_COLUMNS])
    columns = ", ".join(
        {"reference": "order_no", "created_at": "created_local"}.get(c, c) for c in ("terminal_id", *EXPORT_COLUMNS)
    )
    async with conn.cursor(name="office_export") as cur:
        await cur.execute(f'SELECT {columns} FROM txns WHERE {_IN} ORDER BY terminal_id COLLATE "C", id', s.args())
        yield out.getvalue()
        while batch := await cur.fetchmany(2000):
            out.seek(0)
            out.truncate()
            for row in batch:
                values = list(row)
                values[7] = format_minor(int(values[7]), cur_info)  # amount (after terminal_id ... status)
                writer.writerow([spreadsheet_safe("" if v is None else v) for v in values])
            yield out.getvalue()


def report_json(r: Report, found: list[Finding], cur: Currency) -> dict[str, Any]:
    """The report as the page reads it: amounts in minor units, with the currency's exponent."""
    return {
        "first": r.first_day,
        "last": r.last_day,
        "currency": r.currency,
        "exponent": cur.exponent,
        "sales": {"count": r.sales_count, "amount": r.sales_amount},
        "refunds": {"count": r.refund_count, "amount": r.refund_amount},
        "net": r.net_amount,
        "voids": {"count": r.void_count, "amount": r.void_amount},
        "declined": r.declined_count,
        "methods": [
            {"name": m.method, "count": m.count, "amount": m.amount, "permille": m.share_permille} for m in r.methods
        ],
        "by_hour": [{"hour": h, "count": c, "amount": a} for h, (c, a) in sorted(r.by_hour.items())],
        "best_by_quantity": [vars(i) for i in r.items_by_quantity],
        "best_by_revenue": [vars(i) for i in r.items_by_revenue],
        "operators": [vars(o) for o in r.operators],
        "anomalies": [{"rule": f.rule, "detail": f.detail, "count": f.count, "rows": list(f.rows)} for f in found],
    }


__all__ = ["Finding", "Scope", "anomalies", "export_csv", "report", "report_json", "settlements"]
