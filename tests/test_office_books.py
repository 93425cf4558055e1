"""The back office's books against the terminals' own: journals written through the Journal's real methods, their
outbox forwarded by the forwarder's real exchange to the real back office (PostgreSQL, TLS), then every report
compared figure by figure with what each terminal's own report says, and the rules of the gathering: a snapshot
sent twice is stored once, an older version never replaces a newer, a terminal writes only its own rows."""

from __future__ import annotations

import json
import random
import ssl
import urllib.request
from datetime import date, datetime, timedelta, timezone

import pytest

from firmware.config import OfficeConfig
from firmware.core import reports
from firmware.core.items import BasketLine
from firmware.core.money import Currency
from firmware.records.forwardq import ForwardQueue
from firmware.records.journal import Journal, NewSale
from firmware.shell.forwarder import Forwarder, OfficeLink, _NoAnswer

CN = timezone(timedelta(hours=8))
DAY = date(2026, 11, 2)
RULES = reports.AnomalyRules(limits=(10000, 5000000))
ITEMS = [("1001", "矿泉水 WATER"), ("1002", "苹果 APPLE"), ("2001", "面包 BREAD"), ("3001", "牛奶 MILK")]


def busy_journal(path, terminal_id: str, seed: int) -> Journal:
    """A journal with every kind of row over three days: card and wallet sales (approved, declined, failed,
    reversed, voided, refunded in part, to the card and in cash), baskets, cashiers, a settlement, and what the
    anomaly rules look for (declines of one card, fallback swipes, fallbacks from chip, late sales, amounts just
    under a limit)."""
    rng = random.Random(seed)
    journal = Journal(path)
    journal.set_forwarding(True)
    methods = [("card", "swipe"), ("card", "contactless"), ("card", "chip"), ("card", "fallback"), ("wallet", "qr")]
    methods += [("wallet", "code"), ("card", "code")]  # ("card", "code"): a UnionPay code the acquirer took
    approved = []
    for i in range(60):
        at = datetime(2026, 11, 1 + i % 3, rng.choice([7, 9, 12, 15, 21, 23]), rng.randrange(60), tzinfo=CN)
        method, entry = rng.choice(methods)
        lines = tuple(BasketLine(*rng.choice(ITEMS), rng.randint(1, 3), rng.choice([200, 550, 1200])) for _ in range(2))
        amount = sum(ln.quantity * ln.unit_price for ln in lines) if i % 2 else rng.choice([9600, 9900, 1250, 333])
        token = "tok-decline" if i % 7 == 0 else f"tok-{rng.randrange(1000)}"
        row, stan = journal.begin_sale(
            NewSale(
                method,
                entry,
                amount,
                "CNY",
                "424242******4242",
                terminal_id,
                "102030405060708",
                provider="alipay" if method == "wallet" else "unionpay" if entry == "code" else "",
                order_no=f"{terminal_id}-{i}" if method == "wallet" else "",
                card_token=token,
                lines=lines if i % 2 else (),
                operator=rng.choice(["", "01", "02"]),
                chip_swiped=i % 11 == 0,
            ),
            at,
        )
        status = "declined" if i % 7 == 0 else "failed" if i % 13 == 0 else "approved"
        if i % 17 == 0 and method == "card":
            journal.finish(row, "unknown", at)  # no answer: a reversal is queued, then acknowledged
            [rev] = journal.queued_reversals()
            journal.reversal_acknowledged(rev.id, "00", at + timedelta(seconds=30))
            continue
        journal.finish(row, status, at, response_code="00" if status == "approved" else "05", rrn=f"{stan:012d}")
        if status == "approved":
            approved.append((row, amount, at))
    for n, (row, amount, at) in enumerate(approved[:12]):
        later = at + timedelta(minutes=5)
        if n % 3 == 0:
            void = journal.begin_follow_up("void", row, amount, "card", f"v{row}", "", later, operator="mgr")
            journal.finish(void.id, "approved", later)
        else:
            route = "cash" if n % 3 == 1 else "card"
            part = journal.begin_follow_up("refund", row, max(1, amount // 2), route, f"r{row}", "", later, "mgr")
            journal.finish(part.id, "approved", later)
    queued = journal.begin_settlement(datetime(2026, 11, 2, 23, 30, tzinfo=CN))
    totals = journal.batch_totals(queued.batch)
    journal.record_settlement(queued.batch, totals, totals, "00", True, datetime(2026, 11, 2, 23, 31, tzinfo=CN))
    return journal


def forward_all(office, terminal_id: str, journal: Journal, batch: int = 25) -> int:
    """Send the whole outbox the way the terminal's forwarder does; how many requests it took."""
    cfg = OfficeConfig(url=office.url, token_file=office.folder / f"{terminal_id}.token", ca_file=office.ca_file)
    cfg = OfficeConfig(url=office.url, token_file=str(cfg.token_file), ca_file=office.ca_file, batch=batch)
    forwarder, link, queue = (
        Forwarder(cfg, terminal_id, journal.path),
        OfficeLink(cfg, terminal_id),
        ForwardQueue(journal.path),
    )
    requests = 0
    try:
        while rows := queue.oldest(batch):
            forwarder._exchange(link, queue, rows)
            requests += 1
    finally:
        link.close()
        queue.close()
    return requests


async def _office_report(dsn: str, terminals: tuple[str, ...], first: date, last: date, every: bool = False):
    import psycopg

    from office import reports as office_reports

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        scope = office_reports.Scope(terminals, first, last, "CNY", every)
        r = await office_reports.report(conn, scope)
        return r, await office_reports.anomalies(conn, scope, RULES, r)


def office_report(dsn, terminals, first, last=None, every=False):
    import asyncio

    return asyncio.run(_office_report(dsn, tuple(terminals), first, last or first, every))


def terminal_report(journal: Journal, first: date, last: date | None = None):
    last = last or first
    r = reports.build(journal.figures(first.isoformat(), last.isoformat()), first, last, "CNY")
    found = reports.anomalies(journal.anomaly_rows(first.isoformat(), last.isoformat()), RULES, Currency.of("CNY"))
    return r, found


@pytest.fixture
def two_terminals(office, tmp_path):
    journals = {}
    for n, tid in enumerate(("SHOP0001", "SHOP0002")):
        office.register(tid, shop="north")
        journals[tid] = busy_journal(tmp_path / tid / "journal.sqlite3", tid, seed=n)
    yield journals
    for j in journals.values():
        j.close()


def test_every_report_equals_the_terminals_own_to_the_cent(office, two_terminals):
    for tid, journal in two_terminals.items():
        assert forward_all(office, tid, journal) > 1
        assert journal._db.execute("SELECT COUNT(*) FROM forward_queue").fetchone()[0] == 0
    ranges = (  # a day; days; whole months (from the month totals); days and a whole month, either side
        (DAY, DAY),
        (date(2026, 11, 1), date(2026, 11, 3)),
        (date(2026, 10, 1), date(2026, 12, 31)),
        (date(2026, 10, 15), date(2026, 11, 30)),
        (date(2026, 11, 2), date(2026, 12, 31)),
    )
    for first, last in ranges:
        for tid, journal in two_terminals.items():
            theirs, their_findings = terminal_report(journal, first, last)
            ours, our_findings = office_report(office.dsn, [tid], first, last)
            assert ours == theirs, f"{tid} {first}..{last}"
            if last > first:  # the books hold every kind of figure, not just zeros
                assert theirs.void_count and theirs.refund_count and theirs.declined_count and len(theirs.methods) == 7
                assert theirs.items_by_revenue and len(theirs.operators) > 2 and len(their_findings) >= 3
                assert "fallbacks from chip" in {a.rule for a in their_findings}
            assert [(f.rule, f.detail) for f in our_findings] == [(a.rule, a.detail) for a in their_findings]
            for f, a in zip(our_findings, their_findings, strict=True):
                assert f.count == len(a.ids) and set(f.rows) == {f"{tid}:{i}" for i in a.ids}
        both, found = office_report(office.dsn, two_terminals, first, last)
        assert office_report(office.dsn, (), first, last, every=True) == (both, found)  # every terminal, unfiltered
        each = [terminal_report(j, first, last)[0] for j in two_terminals.values()]
        assert both.sales_amount == sum(r.sales_amount for r in each) and both.sales_count == sum(
            r.sales_count for r in each
        )
        assert both.refund_amount == sum(r.refund_amount for r in each)
        assert both.net_amount == sum(r.net_amount for r in each) and both.void_amount == sum(
            r.void_amount for r in each
        )
        assert both.declined_count == sum(r.declined_count for r in each)
        for hour in set().union(*(r.by_hour for r in each)):
            assert both.by_hour[hour] == tuple(map(sum, zip(*(r.by_hour.get(hour, (0, 0)) for r in each), strict=True)))
        assert sum(m.amount for m in both.methods) == both.sales_amount
    # what the triggers kept equals what counting the rows again gives
    before = office.sql("SELECT * FROM sale_totals WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9")
    items_before = office.sql("SELECT * FROM item_totals WHERE quantity <> 0 ORDER BY 1, 2, 3, 4, 5, 6")
    office.sql("SELECT 1; " + __import__("office.schema", fromlist=["x"]).REBUILD_TOTALS)
    assert office.sql("SELECT * FROM sale_totals ORDER BY 1, 2, 3, 4, 5, 6, 7, 8, 9") == before
    assert office.sql("SELECT * FROM item_totals ORDER BY 1, 2, 3, 4, 5, 6") == items_before


def test_sent_twice_stored_once_and_older_versions_lose(office, two_terminals):
    tid, journal = "SHOP0001", two_terminals["SHOP0001"]
    queue = ForwardQueue(journal.path)
    rows = queue.oldest(10_000)
    queue.close()
    token = open(office.folder / f"{tid}.token").read().strip()
    payload = {"terminal_id": tid, "queue_depth": len(rows), "rows": [r.wire() for r in rows]}
    for _ in range(2):  # the whole outbox, twice: an answer lost, the request resent
        assert post(office, token, payload) == (
            200,
            {"terminal_id": tid, "acknowledged": rows[-1].seq, "stored": len(rows), "set_aside": []},
        )
    theirs, _ = terminal_report(journal, date(2026, 11, 1), date(2026, 11, 3))
    assert office_report(office.dsn, [tid], date(2026, 11, 1), date(2026, 11, 3))[0] == theirs
    assert office.sql("SELECT received FROM terminals WHERE terminal_id = %s", (tid,)) == [(2 * len(rows),)]
    # the first snapshot of a sale that was voided later, sent again alone, does not bring the sale back
    voided = next(r for r in journal.rows() if r["status"] == "voided")
    first = next(r for r in rows if r.entity == "transaction" and r.row_id == voided["id"])
    assert first.body["status"] == "pending"
    assert post(office, token, {"terminal_id": tid, "queue_depth": 0, "rows": [first.wire()]})[0] == 200
    assert office.sql("SELECT status FROM txns WHERE terminal_id = %s AND id = %s", (tid, voided["id"])) == [
        ("voided",)
    ]
    assert office_report(office.dsn, [tid], date(2026, 11, 1), date(2026, 11, 3))[0] == theirs


def test_a_terminal_writes_only_its_own_rows(office, two_terminals):
    journal = two_terminals["SHOP0002"]
    queue = ForwardQueue(journal.path)
    theirs = [r.wire() for r in queue.oldest(20)]
    queue.close()
    mine = open(office.folder / "SHOP0001.token").read().strip()
    # SHOP0001's token with SHOP0002's rows, whether the request names SHOP0002 or SHOP0001
    assert post(office, mine, {"terminal_id": "SHOP0002", "queue_depth": 0, "rows": theirs})[0] == 403
    # in its own name, another terminal's sales (and their lines) are set aside (acknowledged, so its queue moves
    # on), never stored
    status, answer = post(office, mine, {"terminal_id": "SHOP0001", "queue_depth": 0, "rows": theirs})
    sales = [r["seq"] for r in theirs if r["entity"] in ("transaction", "line")]
    assert status == 200 and [r["seq"] for r in answer["set_aside"]] == sales, answer
    assert post(office, "not-a-token", {"terminal_id": "SHOP0002", "queue_depth": 0, "rows": theirs})[0] == 401
    assert post(office, "", {"terminal_id": "SHOP0002", "queue_depth": 0, "rows": theirs})[0] == 401
    assert office.sql("SELECT COUNT(*) FROM txns") == [(0,)] == office.sql("SELECT COUNT(*) FROM sale_lines")
    # and nothing that is not as it should be: a full card number or a wrong type is set aside with its reason,
    # rows out of order refuse the whole request
    own = open(office.folder / "SHOP0002.token").read().strip()
    bad_pan = json.loads(json.dumps(theirs[:1]))
    bad_pan[0]["body"]["masked_pan"] = "4242424242424242"
    wrong_type = json.loads(json.dumps(theirs[:1]))
    wrong_type[0]["body"]["amount"] = "12.50"
    for rows, why in ((bad_pan, "masked_pan"), (wrong_type, "amount")):
        status, answer = post(office, own, {"terminal_id": "SHOP0002", "queue_depth": 0, "rows": rows})
        assert status == 200 and answer["stored"] == 0 and why in answer["set_aside"][0]["reason"], answer
    status, answer = post(office, own, {"terminal_id": "SHOP0002", "queue_depth": 0, "rows": [theirs[1], theirs[0]]})
    assert status == 400 and answer["error"], answer
    assert office.sql("SELECT COUNT(*) FROM txns") == [(0,)]
    assert post(office, own, {"terminal_id": "SHOP0002", "queue_depth": 0, "rows": theirs})[0] == 200


def test_the_forwarder_believes_only_its_own_answer(office, two_terminals, tmp_path):
    """An answer acknowledging other rows (a proxy's replay, a confused server) deletes nothing."""
    journal = two_terminals["SHOP0001"]
    cfg = OfficeConfig(url=office.url, token_file=str(office.folder / "SHOP0001.token"), ca_file=office.ca_file)
    forwarder, queue = Forwarder(cfg, "SHOP0001", journal.path), ForwardQueue(journal.path)

    class Liar(OfficeLink):
        def post(self, payload):
            answer = super().post(payload)
            return {**answer, "acknowledged": answer["acknowledged"] + 1000}

    depth = queue.depth()
    with pytest.raises(_NoAnswer, match="not this request's"):
        forwarder._exchange(Liar(cfg, "SHOP0001"), queue, queue.oldest(10))
    assert queue.depth() == depth
    other = OfficeConfig(url=office.url, token_file=str(office.folder / "SHOP0001.token"))  # no ca_file
    with pytest.raises(_NoAnswer, match="CERTIFICATE_VERIFY_FAILED"):
        forwarder._exchange(OfficeLink(other, "SHOP0001"), queue, queue.oldest(10))
    assert queue.depth() == depth
    queue.close()


def test_the_outbox_is_written_with_the_journal(tmp_path):
    journal = Journal(tmp_path / "journal.sqlite3")
    at = datetime(2026, 11, 2, 10, tzinfo=CN)
    sale = NewSale("card", "swipe", 1250, "CNY", "424242******4242", "SHOP0001", "1")
    first, _ = journal.begin_sale(sale, at)
    journal.finish(first, "approved", at)
    assert journal._db.execute("SELECT COUNT(*) FROM forward_queue").fetchone()[0] == 0  # forwarding off: nothing
    journal.set_forwarding(True)  # on: every row as it is now
    assert [tuple(r) for r in journal._db.execute("SELECT entity, row_id FROM forward_queue")] == [("transaction", 1)]
    row, _ = journal.begin_sale(sale, at)
    journal.mark_receipt(row, False)  # the receipt's state is the terminal's business: not sent
    journal.note_attempt(row, at, "x")
    journal.finish(row, "approved", at, auth_code="123456")
    bodies = [json.loads(b) for (b,) in journal._db.execute("SELECT body FROM forward_queue WHERE row_id = ?", (row,))]
    assert [b["status"] for b in bodies] == ["pending", "approved"] and bodies[1]["auth_code"] == "123456"
    assert all("cryptogram" not in b and "4242424242424242" not in json.dumps(b) for b in bodies)
    journal.set_forwarding(False)  # off again: the outbox is emptied and stays so
    journal.finish(journal.begin_sale(sale, at)[0], "declined", at)
    assert journal._db.execute("SELECT COUNT(*) FROM forward_queue").fetchone()[0] == 0
    journal.set_forwarding(True)
    last_seq = journal._db.execute("SELECT MAX(seq) FROM forward_queue").fetchone()[0]
    journal.close()
    # a journal started new (or restored from an older copy) never hands out an id or a version twice
    for f in tmp_path.glob("journal.sqlite3*"):
        f.rename(f.with_name("old-" + f.name))
    journal = Journal.start_new(tmp_path / "journal.sqlite3")
    journal.set_forwarding(True)
    row, _ = journal.begin_sale(sale, at)
    assert row > 3
    assert journal._db.execute("SELECT MIN(seq) FROM forward_queue").fetchone()[0] > last_seq
    journal.close()


def post(office, token: str, payload) -> tuple[int, dict]:
    ctx = ssl.create_default_context(cafile=office.ca_file)
    req = urllib.request.Request(
        office.url + "/api/v1/journal",
        json.dumps(payload).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
