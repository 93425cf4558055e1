"""Review of issue 17's back office: what was tried and held. These pass on the code as reviewed and stay as
guards: the trigger-kept totals equal a count over the rows after any history of versions, batches and replays;
the same batch sent twice at once is counted once; a connection lost mid-batch stores nothing and the resend
counts once; a manager of one shop sees nothing of another through any endpoint; the static folder gives out
nothing else; text a terminal forwards is shown as text on the owner's page."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import threading
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.records.forwardq import ForwardQueue
from test_office_books import busy_journal, office_report, post, terminal_report
from test_office_page import browser, text, until  # noqa: F401 - browser is a fixture
from test_office_review_ingest import get, send, sign_in, txn_body
from test_office_review_race import line_body, recount_differences, wait_for, waiting_on_locks, wire
from test_office_web import books  # noqa: F401 - a fixture

# --- the totals after any history ---------------------------------------------------------------------------------

TERMINALS = ("SHOP0001", "SHOP0002")
ZONES = (timezone(timedelta(hours=8)), timezone(timedelta(hours=-5)))  # terminals in different time zones
DAYS = (date(2026, 10, 31), date(2026, 11, 1), date(2026, 3, 8))  # a month's end, a month's start, a DST day (US)
METHODS = (("card", "swipe", ""), ("card", "contactless", ""), ("wallet", "qr", "alipay"), ("wallet", "code", "wechat"))
KINDS = ("sale", "sale", "sale", "refund", "void", "reversal")
STATUSES = ("pending", "approved", "approved", "declined", "failed", "unknown", "voided", "reversed")

snapshot = st.fixed_dictionaries(
    {
        "terminal": st.integers(0, 1),
        "id": st.integers(1, 5),
        "kind": st.sampled_from(KINDS),
        "status": st.sampled_from(STATUSES),
        "method": st.sampled_from(METHODS),
        "operator": st.sampled_from(("", "01", "02")),
        "amount": st.integers(1, 99_999),
        "currency": st.sampled_from(("CNY", "CNY", "CNY", "USD")),
        "day": st.sampled_from(DAYS),
        "hour": st.integers(0, 23),
        "lines": st.integers(0, 2),
    }
)


def _history(steps: list[dict], cuts: list[int], replays: list[int]) -> list[tuple[str, list[dict]]]:
    """Each step a new version of a transaction (and maybe new basket lines), per terminal in seq order, cut into
    requests; some earlier requests sent again after later ones (old versions arriving late)."""
    seqs, line_nos = dict.fromkeys(TERMINALS, 0), {}
    rows: dict[str, list[dict]] = {t: [] for t in TERMINALS}
    for s in steps:
        tid = TERMINALS[s["terminal"]]
        method, entry, provider = s["method"]
        at = datetime.combine(s["day"], datetime.min.time()).replace(hour=s["hour"], tzinfo=ZONES[s["terminal"]])
        seqs[tid] += 1
        body = txn_body(
            tid,
            s["id"],
            s["amount"],
            kind=s["kind"],
            status=s["status"],
            method=method,
            entry_mode=entry,
            provider=provider,
            operator=s["operator"],
            currency=s["currency"],
            created_at=at.isoformat(),
        )
        rows[tid].append(wire(seqs[tid], "transaction", body))
        for _ in range(s["lines"]):
            n = line_nos[tid, s["id"]] = line_nos.get((tid, s["id"]), 0) + 1
            seqs[tid] += 1
            rows[tid].append(wire(seqs[tid], "line", line_body(s["id"], n, 1 + n % 3, 100 * n + s["amount"] % 7)))
    requests: list[tuple[str, list[dict]]] = []
    for tid, mine in rows.items():
        at = 0
        for cut in cuts:
            if at >= len(mine):
                break
            requests.append((tid, mine[at : at + cut]))
            at += cut
        if at < len(mine):
            requests.append((tid, mine[at:]))
    for r in replays:
        if requests:
            requests.append(requests[r % len(requests)])
    return requests


async def _store_all(dsn: str, requests: list[tuple[str, list[dict]]]) -> None:
    import psycopg

    from office import ingest

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute("TRUNCATE txns, sale_lines, settlements, sale_totals, hour_totals, item_totals")
        for tid, rows in requests:
            await ingest.store(conn, ingest.check(tid, {"terminal_id": tid, "queue_depth": 0, "rows": rows}))


@pytest.fixture
def two_registered(office_db):
    import psycopg

    from office.users import add_terminal

    with psycopg.connect(office_db, autocommit=True) as conn:
        for tid in TERMINALS:
            add_terminal(conn, tid)
    return office_db


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(snapshot, min_size=1, max_size=30),
    cuts=st.lists(st.integers(1, 6), max_size=12),
    replays=st.lists(st.integers(0, 50), max_size=4),
)
def test_review_sound_totals_equal_a_count_over_the_rows_after_any_history(two_registered, steps, cuts, replays):
    """Voids, refunds, reversals, late wallet completions (any status after any other), moves across days and
    months, terminals in two time zones, a DST day, a second currency, lines arriving before and after their
    sale's approval, batches cut anywhere, old requests replayed: the trigger-kept day/month totals (sales, hours,
    items) always equal the same totals counted again from txns and sale_lines (REBUILD_TOTALS)."""
    asyncio.run(_store_all(two_registered, _history(steps, cuts, replays)))
    assert recount_differences(two_registered) == {}


# --- the same batch twice at once; a connection lost mid-batch -------------------------------------------------


def test_review_sound_the_same_batch_sent_twice_at_once_counts_once(office, tmp_path):
    office.register("SHOP0001")
    journal = busy_journal(tmp_path / "journal.sqlite3", "SHOP0001", seed=3)
    queue = ForwardQueue(journal.path)
    rows = [r.wire() for r in queue.oldest(10_000)]
    queue.close()
    token = (office.folder / "SHOP0001.token").read_text().strip()
    payload = {"terminal_id": "SHOP0001", "queue_depth": len(rows), "rows": rows}
    start, answers = threading.Barrier(3), []

    def send_it() -> None:
        start.wait()
        answers.append(post(office, token, payload)[0])

    senders = [threading.Thread(target=send_it) for _ in range(3)]
    for s in senders:
        s.start()
    for s in senders:
        s.join(120)
    assert answers == [200, 200, 200]
    first, last = date(2026, 11, 1), date(2026, 11, 3)
    assert office_report(office.dsn, ["SHOP0001"], first, last)[0] == terminal_report(journal, first, last)[0]
    assert recount_differences(office.dsn) == {}
    journal.close()


def test_review_sound_a_connection_lost_mid_batch_stores_nothing_and_the_resend_counts_once(office):
    import psycopg

    office.register("SHOP0001")
    token = (office.folder / "SHOP0001.token").read_text().strip()
    rows = [wire(1, "transaction", txn_body("SHOP0001", 1, 1200, status="pending")), wire(2, "line", line_body(1, 1))]
    rows.append(wire(3, "transaction", txn_body("SHOP0001", 1, 1200)))
    payload = {"terminal_id": "SHOP0001", "queue_depth": 3, "rows": rows}
    answers: list[int] = []
    with psycopg.connect(office.dsn) as holder:
        holder.execute("SELECT 1 FROM terminals WHERE terminal_id = 'SHOP0001' FOR UPDATE")
        sender = threading.Thread(target=lambda: answers.append(post(office, token, payload)[0]))
        sender.start()
        wait_for(lambda: waiting_on_locks(office) >= 1, "the batch stored, not committed")
        office.sql(  # the database loses that connection mid-batch
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock'"
        )
        sender.join(60)
        holder.rollback()
    assert answers == [503] and office.sql("SELECT COUNT(*) FROM txns") == [(0,)]
    assert post(office, token, payload)[0] == 200
    assert office.sql("SELECT quantity FROM item_totals WHERE span = 'day'") == [(2,)]
    assert recount_differences(office.dsn) == {}


# --- what a manager of one shop sees; the static folder; text on the page --------------------------------------


def test_review_sound_a_manager_of_north_reads_nothing_of_south_anywhere(office, books):  # noqa: F811
    manager = sign_in(office, "north-mgr", "manager password")
    dates = "from=2026-11-01&to=2026-11-03"
    for path in ("/api/me", "/api/terminals", "/api/report", "/api/report.csv", "/api/export.csv"):
        for ask in (
            "",
            "&terminal=SHOP0002",
            "&shop=south",
            "&shop=",
            "&terminal=",
            "&shop=south&terminal=SHOP0002",
            "&terminal=%27%20OR%20%27%27%3D%27",
            "&shop=north%27%20OR%20%271%27%3D%271",
        ):
            code, body = get(manager, office, f"{path}?{dates}{ask}")
            assert code == 200, (path, ask)
            assert b"SHOP0002" not in body, (path, ask)
            if path == "/api/report" and ("south" in ask or "SHOP0002" in ask):
                assert json.loads(body)["sales"]["count"] == 0, (path, ask)


def test_review_sound_the_static_folder_gives_out_nothing_else(office):
    ctx = ssl.create_default_context(cafile=office.ca_file)
    for path in (
        "/static/../web.py",
        "/static/%2e%2e/web.py",
        "/static/..%2fweb.py",
        "/static/%2e%2e%2fusers.py",
        "/static/..%5cweb.py",
        "/static/",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
    ):
        conn = http.client.HTTPSConnection("127.0.0.1", office.port, context=ctx, timeout=10)
        conn.request("GET", path)
        answer = conn.getresponse()
        body = answer.read()
        conn.close()
        assert answer.status in (400, 403, 404), (path, answer.status)
        assert b"def " not in body and b"root:" not in body, path


HOSTILE = "<img src=x onerror=\"document.title='pwned'\">"


def test_review_sound_what_terminals_forward_is_shown_as_text(office, browser):  # noqa: F811
    """An operator, an item name and a wallet's payer carrying markup are shown as the text they are."""
    office.register("SHOP0001", shop=f"<b>{HOSTILE}</b>")
    office.add_user("owner", "correct horse battery", "owner")
    today = date.today()
    body = txn_body("SHOP0001", 1, 4200, operator=HOSTILE, payer=HOSTILE, note=HOSTILE)
    body["created_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    line = line_body(1, 1) | {"name": HOSTILE + "<script>document.title='pwned'</script>"}
    assert send(office, "SHOP0001", [(1, body)])[0] == 200
    token = (office.folder / "SHOP0001.token").read_text().strip()
    assert post(office, token, {"terminal_id": "SHOP0001", "queue_depth": 0, "rows": [wire(2, "line", line)]})[0] == 200
    browser.get(office.url + "/")
    until(browser, lambda b: b.find_element("id", "signin").is_displayed(), "the sign-in form")
    browser.find_element("id", "name").send_keys("owner")
    browser.find_element("id", "password").send_keys("correct horse battery")
    browser.find_element("id", "signin-button").click()
    until(browser, lambda b: text(b, "total-sales") == "CNY 42.00", f"{today}'s total")
    assert HOSTILE in text(browser, "operators")
    assert "<img" in browser.find_element("css selector", "#chart-items svg").get_attribute("textContent")
    assert HOSTILE in text(browser, "terminals")
    assert not browser.find_elements("css selector", "main img, main script, main b")
    assert browser.title != "pwned"


def test_review_sound_exported_text_cannot_run_in_a_spreadsheet(office):
    import csv
    import io

    office.register("SHOP0001")
    office.add_user("owner", "correct horse battery", "owner")
    formulas = {"operator": '=HYPERLINK("http://x")', "note": "+1+cmd|' /C calc'!A0", "payer": "@SUM(1)"}
    assert send(office, "SHOP0001", [(1, txn_body("SHOP0001", 1, 1250, **formulas))])[0] == 200
    owner = sign_in(office, "owner", "correct horse battery")
    code, body = get(owner, office, "/api/export.csv?from=2026-11-02")
    [row] = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert code == 200 and all(row[k] == "'" + v for k, v in formulas.items() if k in row), row


def test_review_sound_the_longest_range_is_the_same_books(office, books):  # noqa: F811
    """A range of 3660 days (the most web.py takes) reads whole months and days either side: the same figures as
    the three days that hold the rows; one day more is refused."""
    owner = sign_in(office, "owner", "correct horse battery")
    last = date(2026, 11, 3)
    short = json.loads(get(owner, office, f"/api/report?from=2026-11-01&to={last}")[1])
    code, body = get(owner, office, f"/api/report?from={last - timedelta(days=3660)}&to={last}")
    long = json.loads(body)
    assert code == 200
    for figure in ("sales", "refunds", "net", "voids", "declined", "methods", "by_hour", "best_by_revenue"):
        assert long[figure] == short[figure], figure
    code, _ = get(owner, office, f"/api/export.csv?from={last - timedelta(days=3660)}&to={last}")
    assert code == 200
    assert get(owner, office, f"/api/report?from={last - timedelta(days=3661)}&to={last}")[0] == 400
