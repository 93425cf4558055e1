"""Review of issue 17's back office: two requests of one terminal in the office at once (a retry sent after the
forwarder's timeout while the first is still being stored). Failed on the code as reviewed; passes since the fix."""

from __future__ import annotations

import threading
import time

from test_office_books import post
from test_office_review_ingest import txn_body


def line_body(sale: int, line_no: int, quantity: int = 2, unit_price: int = 300) -> dict:
    return {
        "transaction_id": sale,
        "line_no": line_no,
        "plu": f"100{line_no}",
        "name": f"ITEM {line_no}",
        "quantity": quantity,
        "unit_price": unit_price,
        "tax_rate_bp": 0,
    }


def wire(seq: int, entity: str, body: dict) -> dict:
    row_id = body["id"] if entity == "transaction" else body["transaction_id"]
    return {"seq": seq, "entity": entity, "row_id": row_id, "line_no": body.get("line_no", 0), "body": body}


def recount_differences(dsn: str) -> dict[str, tuple[list, list]]:
    """The totals as the triggers kept them against the same totals counted again from the rows (office.schema's
    REBUILD_TOTALS, run in a transaction that is rolled back): {table: (kept, counted)} where they differ."""
    import psycopg

    from office.schema import REBUILD_TOTALS

    tables = {
        "sale_totals": "n <> 0 OR amount <> 0",
        "hour_totals": "n <> 0 OR amount <> 0",
        "item_totals": "quantity <> 0 OR revenue <> 0",
    }
    with psycopg.connect(dsn) as conn:
        kept = {
            t: conn.execute(f"SELECT * FROM {t} WHERE {w} ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
            for t, w in tables.items()
        }
        conn.execute(REBUILD_TOTALS)
        counted = {
            t: conn.execute(f"SELECT * FROM {t} WHERE {w} ORDER BY 1, 2, 3, 4, 5, 6").fetchall()
            for t, w in tables.items()
        }
        conn.rollback()
    return {t: (kept[t], counted[t]) for t in tables if sorted(kept[t]) != sorted(counted[t])}


def waiting_on_locks(office) -> int:
    return office.sql(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )[0][0]


def wait_for(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def test_a_retry_racing_its_original_keeps_the_baskets_items(office):
    """Request A carries a sale's basket lines; its retry B carries the same lines and then the sale's approval.
    ingest.store writes every transaction of a request before its lines, so B approves the sale while A's lines
    are not yet committed: B's trigger (office_count) counts no lines, A's line trigger (office_line_totals) sees
    the sale still pending, and B's own lines then do nothing (ON CONFLICT DO NOTHING). The best sellers lose the
    sale's items for good (item_totals no longer equal a count over the rows). Here A is held just before its
    commit (its last statement, UPDATE terminals, waits on a row lock the test holds) so the interleaving is
    certain. Should hold: one terminal's requests are stored one at a time (a per-terminal lock first in
    ingest.store, e.g. SELECT ... FROM terminals WHERE terminal_id = %s FOR UPDATE), or the totals do not depend
    on what another uncommitted request has written."""
    import psycopg

    office.register("SHOP0001")
    token = (office.folder / "SHOP0001.token").read_text().strip()
    pending = txn_body("SHOP0001", 1, 1200, status="pending", response_code="")
    assert (
        post(office, token, {"terminal_id": "SHOP0001", "queue_depth": 0, "rows": [wire(1, "transaction", pending)]})[0]
        == 200
    )
    lines = [wire(2, "line", line_body(1, 1)), wire(3, "line", line_body(1, 2))]
    a = {"terminal_id": "SHOP0001", "queue_depth": 3, "rows": lines}
    b = {
        "terminal_id": "SHOP0001",
        "queue_depth": 3,
        "rows": [*lines, wire(4, "transaction", txn_body("SHOP0001", 1, 1200))],
    }
    answers: dict[str, int] = {}

    def send(name: str, payload: dict) -> None:
        answers[name] = post(office, token, payload)[0]

    with psycopg.connect(office.dsn) as holder:
        holder.execute("SELECT 1 FROM terminals WHERE terminal_id = 'SHOP0001' FOR UPDATE")
        first = threading.Thread(target=send, args=("A", a))
        first.start()
        wait_for(lambda: waiting_on_locks(office) >= 1, "request A waiting to commit")
        retry = threading.Thread(target=send, args=("B", b))
        retry.start()
        wait_for(lambda: waiting_on_locks(office) >= 2, "request B waiting behind A")
        holder.rollback()
    first.join(60)
    retry.join(60)
    assert answers == {"A": 200, "B": 200}
    assert office.sql("SELECT status FROM txns") == [("approved",)]
    assert recount_differences(office.dsn) == {}
