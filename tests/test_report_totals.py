"""The report totals the journal's triggers keep (day, hour, month items) always equal a full scan of the rows."""

from __future__ import annotations

import sqlite3
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.core.items import BasketLine
from firmware.records.journal import Journal, NewSale
from firmware.records.schema import MIGRATIONS

CN = timezone(timedelta(hours=8))
START = datetime(2026, 1, 27, 9, tzinfo=CN)  # the days drawn cross a month's end
METHODS = [("card", "swipe", ""), ("card", "contactless", ""), ("wallet", "qr", "alipay"), ("wallet", "code", "wechat")]


def scanned(j: Journal, first: str, last: str) -> dict[str, Any]:
    """The report's figures counted from every row, as the journal did before it kept totals."""
    db, span = j._db, (first, last + "\uffff")
    where = "created_at >= ? AND created_at < ?"

    def one(kind: str, status: str) -> tuple[int, int]:
        c, a = db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM transactions WHERE kind = ? AND status = ? AND {where}",
            (kind, status, *span),
        ).fetchone()
        return c, a

    lines = [
        (p, n, q, r)
        for p, n, q, r in db.execute(
            "SELECT l.plu, MAX(l.name), SUM(l.quantity), SUM(l.quantity * l.unit_price) FROM sale_lines l"
            " JOIN transactions t ON t.id = l.transaction_id WHERE t.kind = 'sale' AND t.status = 'approved'"
            f" AND t.{where} GROUP BY l.plu",
            span,
        )
    ]
    operators: dict[str, list[int]] = {}
    for op, kind, c, a in db.execute(
        "SELECT operator, kind, COUNT(*), SUM(amount) FROM transactions WHERE kind IN ('sale', 'refund')"
        f" AND status = 'approved' AND {where} GROUP BY 1, 2",
        span,
    ):
        entry = operators.setdefault(op, [0, 0, 0, 0])
        base = 0 if kind == "sale" else 2
        entry[base], entry[base + 1] = c, a
    return {
        "sales": one("sale", "approved"),
        "refunds": one("refund", "approved"),
        "voids": one("void", "approved"),
        "declined": one("sale", "declined")[0],
        "methods": {
            (m, e, p): (c, a)
            for m, e, p, c, a in db.execute(
                "SELECT method, entry_mode, provider, COUNT(*), SUM(amount) FROM transactions WHERE kind = 'sale'"
                f" AND status = 'approved' AND {where} GROUP BY 1, 2, 3",
                span,
            )
        },
        "by_hour": {
            int(h): (c, a)
            for h, c, a in db.execute(
                "SELECT substr(created_at, 12, 2), COUNT(*), SUM(amount) FROM transactions WHERE kind = 'sale'"
                f" AND status = 'approved' AND {where} GROUP BY 1",
                span,
            )
        },
        "best": {
            "by_quantity": sorted(lines, key=lambda r: (-r[2], -r[3], r[0]))[:10],
            "by_revenue": sorted(lines, key=lambda r: (-r[3], -r[2], r[0]))[:10],
        },
        "operators": {op: tuple(v) for op, v in operators.items()},
    }


sale_op = st.tuples(
    st.just("sale"),
    st.sampled_from([0, 4, 5]),  # day after START (the month ends between 4 and 5)
    st.sampled_from([0, 3]),  # hour
    st.sampled_from(METHODS),
    st.lists(st.tuples(st.integers(1, 5), st.integers(1, 3)), max_size=3),  # basket: (item, quantity)
    st.sampled_from(["", "cashier 01", "cashier 02"]),
    st.sampled_from(["approved", "approved", "declined", "unknown", "pending"]),
)
follow_op = st.tuples(
    st.sampled_from(["void", "refund"]),
    st.integers(0, 50),
    st.integers(1, 3),
    st.sampled_from(["approved", "approved", "declined"]),
)
other_op = st.tuples(st.sampled_from(["complete_wallet", "power_cut", "reversal_ack", "settle"]), st.integers(0, 50))


def run(j: Journal, ops: list[tuple[Any, ...]]) -> None:
    for op in ops:
        if op[0] == "sale":
            _, day, hour, (method, entry, provider), basket, operator, outcome = op
            now = START + timedelta(days=day, hours=hour)
            lines = tuple(BasketLine(str(100 + i), f"ITEM {i}", q, 100 * i) for i, q in basket)
            amount = sum(line.quantity * line.unit_price for line in lines) or 1250
            sale = NewSale(
                method, entry, amount, "CNY", "", "T", "M", provider=provider, lines=lines, operator=operator
            )
            row, _ = j.begin_sale(sale, now)
            if outcome != "pending":
                j.finish(row, outcome, now)
            continue
        rows = j.rows()
        if op[0] in ("void", "refund"):
            sales = [r for r in rows if r["kind"] == "sale" and r["status"] == "approved"]
            if not sales:
                continue
            sale = sales[op[1] % len(sales)]
            amount = sale["amount"] if op[0] == "void" else max(1, sale["amount"] // op[2])
            try:
                follow = j.begin_follow_up(op[0], sale["id"], amount, sale["method"], f"k{len(rows)}", "", START)
            except Exception:  # noqa: BLE001 - the database refused it (already voided, refunded in full)
                continue
            j.finish(follow.id, op[3], START)
        elif op[0] == "complete_wallet":
            unknown = [r for r in rows if r["method"] == "wallet" and r["status"] == "unknown"]
            if unknown:
                j.finish(unknown[op[1] % len(unknown)]["id"], "approved", START)
        elif op[0] == "power_cut":
            j.recover(START)
        elif op[0] == "reversal_ack":
            queued = j.queued_reversals()
            if queued:
                j.reversal_acknowledged(queued[op[1] % len(queued)].id, "00", START)
        else:
            queued = j.begin_settlement(START)
            totals = (queued.debits, queued.debit_amount, queued.credits, queued.credit_amount)
            j.record_settlement(queued.batch, totals, totals, "00", True, START)


RANGES = [
    ("2026-01-01", "2026-12-31"),
    ("2026-01-27", "2026-01-27"),
    ("2026-01-29", "2026-02-03"),
    ("2026-02-01", "2026-02-28"),
]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(sale_op, sale_op, follow_op, other_op), min_size=4, max_size=30))
def test_kept_totals_equal_a_full_scan(ops):
    with tempfile.TemporaryDirectory() as tmp:
        j = Journal(Path(tmp) / "j.sqlite3")
        run(j, ops)
        for first, last in RANGES:
            assert j.figures(first, last) == scanned(j, first, last), (first, last)
        j.close()


TOTALS_MIGRATION = 1 + next(i for i, m in enumerate(MIGRATIONS) if "CREATE TABLE day_totals" in m)


def test_a_journal_from_before_the_totals_is_back_filled(tmp_path):
    """A journal written by firmware without the totals gets them counted from its rows when it is opened."""
    path = tmp_path / "j.sqlite3"
    j = Journal(path)
    run(
        j,
        [
            ("sale", 0, 1, METHODS[0], [(1, 2), (2, 1)], "cashier 01", "approved"),
            ("sale", 5, 3, METHODS[2], [(3, 1)], "", "approved"),
            ("sale", 6, 4, METHODS[1], [], "cashier 02", "declined"),
            ("refund", 0, 2, "approved"),
        ],
    )
    before = {r: j.figures(*r) for r in RANGES}
    j.close()
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TRIGGER totals_new_transaction; DROP TRIGGER totals_changed_transaction;"
        " DROP TRIGGER totals_gone_transaction; DROP TRIGGER totals_new_line;"
        " DROP TABLE day_totals; DROP TABLE hour_totals; DROP TABLE item_totals;"
        " ALTER TABLE transactions DROP COLUMN reversal_icc;"  # a later migration's column: that journal had none
        f" PRAGMA user_version = {TOTALS_MIGRATION - 1};"
    )
    db.close()
    j = Journal(path)
    assert j._db.execute("SELECT COUNT(*) FROM day_totals").fetchone()[0] > 0
    for r in RANGES:
        assert j.figures(*r) == before[r] == scanned(j, *r)
    year = before[RANGES[0]]
    assert (year["sales"], year["refunds"], year["declined"]) == ((2, 700), (1, 200), 1)
    j.close()
