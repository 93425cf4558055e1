"""Rows the back office set aside, seen and asked for again: the owner (a manager: their shop's only) reads each row
set aside (terminal, row, version, when, why; never a card number: the office keeps no body), and the owner's
"retry" makes the terminal queue the row anew from its journal at its next contact. The office and the terminal's
own forwarder exchange over HTTPS with the real PostgreSQL; the page's part runs in Debian's headless chromium.

A row is set aside for what its body holds, so a retry finds it stored only when the office's rule changed since
(here: the office's bound on amounts was lower when the sale came, as an older office's might have been); when the
cause is still there the row is set aside again, and a row the journal no longer holds is said to be missing."""

from __future__ import annotations

import json
import urllib.request
from datetime import date, datetime

import pytest

from firmware.config import OfficeConfig
from firmware.core.items import BasketLine
from firmware.records.forwardq import ForwardQueue
from firmware.records.journal import Journal, NewSale
from firmware.shell.forwarder import Forwarder, OfficeLink
from office import ingest
from test_office_books import forward_all, office_report
from test_office_page import browser, text, until  # noqa: F401 - the browser fixture
from test_office_review_ingest import CN, get, send, sign_in, txn_body

PAN = "4242424242424242"


def sale(journal: Journal, terminal_id: str, amount: int, hour: int = 10, lines=()) -> int:
    at = datetime(2026, 11, 2, hour, tzinfo=CN)
    row, _ = journal.begin_sale(
        NewSale("card", "swipe", amount, "CNY", "424242******4242", terminal_id, "1", lines=tuple(lines)), at
    )
    journal.finish(row, "approved", at, response_code="00", auth_code="123456")
    return row


def heartbeat(office, terminal_id: str, journal: Journal, forwarder: Forwarder | None = None) -> Forwarder:
    """One exchange with nothing to send (the forwarder's hello), as the terminal's forwarder makes it."""
    cfg = OfficeConfig(url=office.url, token_file=str(office.folder / f"{terminal_id}.token"), ca_file=office.ca_file)
    forwarder = forwarder or Forwarder(cfg, terminal_id, journal.path)
    link, queue = OfficeLink(cfg, terminal_id), ForwardQueue(journal.path)
    try:
        forwarder._exchange(link, queue, [])
    finally:
        link.close()
        queue.close()
    return forwarder


def post_json(opener, office, path: str, body) -> tuple[int, dict]:
    req = urllib.request.Request(office.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with opener.open(req, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {"error": exc.read().decode()}


def set_aside(opener, office, query: str = "from=2026-11-02") -> dict:
    status, body = get(opener, office, "/api/set-aside?" + query)
    assert status == 200, body
    return json.loads(body)


def outbox(journal: Journal) -> list[tuple]:
    return [tuple(r) for r in journal._db.execute("SELECT entity, row_id, line_no FROM forward_queue ORDER BY seq")]


@pytest.fixture
def lower_bound(monkeypatch):
    """The office's rule on amounts as an older office had it (at most 2,000 minor units); `lift()` upgrades it."""
    monkeypatch.setitem(ingest.BOUNDS, "amount", (1, 2000))
    return monkeypatch


def test_the_owner_sees_a_row_set_aside_and_a_retry_brings_the_sale_and_its_basket(office, tmp_path, lower_bound):
    office.register("SHOP0001", "north")
    office.register("SHOP0002", "south")
    office.add_user("owner", "correct horse battery", "owner")
    office.add_user("north-mgr", "manager password", "manager", shop="north")
    office.add_user("south-mgr", "manager password", "manager", shop="south")
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.set_forwarding(True)
    sale(journal, "SHOP0001", 1250)
    basket = [BasketLine("1001", "矿泉水 WATER", 2, 1200), BasketLine("2001", "面包 BREAD", 1, 900)]
    big = sale(journal, "SHOP0001", 3300, 11, basket)
    forward_all(office, "SHOP0001", journal)
    assert outbox(journal) == []  # acknowledged: the queue moved on
    assert office_report(office.dsn, ["SHOP0001"], date(2026, 11, 2))[0].sales_amount == 1250

    owner = sign_in(office, "owner", "correct horse battery")
    seen = set_aside(owner, office)
    assert seen["not_taken"] == 3  # the sale as begun, its lines, the sale as approved (the one not taken now)
    began, approved = sorted((r for r in seen["rows"] if r["entity"] == "transaction"), key=lambda r: r["version"])
    assert (began["state"], began["superseded_by"], began["can_retry"]) == (
        "set_aside_again",
        approved["version"],
        False,
    )
    rows = {(r["entity"], r["row_id"], r["line_no"]): r for r in seen["rows"] if r["state"] == "open"}
    assert set(rows) == {("transaction", big, 0), ("line", big, 1), ("line", big, 2)}
    head = rows["transaction", big, 0]
    assert head["terminal_id"] == "SHOP0001" and head["can_retry"]
    assert "amount 3300 is outside 1..2000" in head["reason"] and head["at"]
    assert "set aside" in rows["line", big, 1]["reason"]
    [status] = json.loads(get(owner, office, "/api/terminals?terminal=SHOP0001")[1])
    assert status["set_aside"] == 3 and "amount 3300" in status["last_refusal"]

    north, south = sign_in(office, "north-mgr", "manager password"), sign_in(office, "south-mgr", "manager password")
    assert [r["row_id"] for r in set_aside(north, office)["rows"]] == [big] * 4
    assert not any(r["can_retry"] for r in set_aside(north, office)["rows"])
    assert set_aside(south, office) == {"rows": [], "not_taken": 0, "limit": 200}  # another shop's: nothing
    assert set_aside(south, office, "terminal=SHOP0001")["rows"] == []
    asked = {"terminal_id": "SHOP0001", "version": head["version"]}
    assert post_json(north, office, "/api/set-aside/retry", asked)[0] == 403  # the owner's to ask
    assert post_json(owner, office, "/api/set-aside/retry", {**asked, "version": 999})[0] == 404
    assert post_json(owner, office, "/api/set-aside/retry", {**asked, "version": "1"})[0] == 400

    heartbeat(office, "SHOP0001", journal)  # not asked yet: the terminal is told nothing
    assert outbox(journal) == []
    code, answer = post_json(owner, office, "/api/set-aside/retry", asked)
    assert code == 200 and len(answer["asked"]) == 3  # the sale with the two lines set aside with it
    assert sorted(r["state"] for r in set_aside(owner, office)["rows"]) == ["asked"] * 3 + ["set_aside_again"]

    lower_bound.undo()  # the office upgraded: amounts up to 12 digits
    heartbeat(office, "SHOP0001", journal)  # the next contact: the office asks, the terminal queues anew
    assert outbox(journal) == [("transaction", big, 0), ("line", big, 1), ("line", big, 2)]
    heartbeat(office, "SHOP0001", journal)  # asked again before they went: a version already waits, none more
    assert len(outbox(journal)) == 3
    forward_all(office, "SHOP0001", journal)
    journal.close()

    report = office_report(office.dsn, ["SHOP0001"], date(2026, 11, 2))[0]
    assert report.sales_amount == 4550 and report.sales_count == 2
    assert {i.name: i.quantity for i in report.items_by_quantity} == {"矿泉水 WATER": 2, "面包 BREAD": 1}
    seen = set_aside(owner, office)
    assert seen["not_taken"] == 0 and sorted(r["state"] for r in seen["rows"]) == ["set_aside_again"] + ["stored"] * 3
    assert not any(r["can_retry"] for r in seen["rows"])
    assert post_json(owner, office, "/api/set-aside/retry", asked)[0] == 409  # taken: nothing to ask for
    [status] = json.loads(get(owner, office, "/api/terminals?terminal=SHOP0001")[1])
    assert status["set_aside"] == 0


def test_a_row_whose_cause_remains_is_set_aside_again_and_counted_once(office, tmp_path, lower_bound):
    office.register("SHOP0001")
    office.add_user("owner", "correct horse battery", "owner")
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.set_forwarding(True)
    big = sale(journal, "SHOP0001", 3300)
    forward_all(office, "SHOP0001", journal)
    owner = sign_in(office, "owner", "correct horse battery")
    [first, _] = set_aside(owner, office)["rows"]  # the sale as approved (version 2), as begun (1)
    assert first["version"] == 2 and first["state"] == "open"
    assert post_json(owner, office, "/api/set-aside/retry", {"terminal_id": "SHOP0001", "version": 1})[0] == 409
    assert post_json(owner, office, "/api/set-aside/retry", {"terminal_id": "SHOP0001", "version": 2})[0] == 200
    heartbeat(office, "SHOP0001", journal)
    forward_all(office, "SHOP0001", journal)
    journal.close()
    seen = set_aside(owner, office)
    assert seen["not_taken"] == 1
    again, old, _ = seen["rows"]
    assert (old["version"], old["state"], old["superseded_by"]) == (2, "set_aside_again", 3)
    assert (again["version"], again["row_id"], again["state"], again["can_retry"]) == (3, big, "open", True)


def test_a_row_the_journal_no_longer_holds_is_said_missing_and_no_longer_asked_for(office, tmp_path, lower_bound):
    """`countertop journal new` on the same storage: the same journal to the office, but its old rows are gone."""
    office.register("SHOP0001")
    office.add_user("owner", "correct horse battery", "owner")
    path = tmp_path / "data" / "journal.sqlite3"
    journal = Journal(path)
    journal.set_forwarding(True)
    sale(journal, "SHOP0001", 3300)
    forward_all(office, "SHOP0001", journal)
    journal.close()
    for leftover in path.parent.glob("journal.sqlite3*"):
        leftover.unlink()
    journal = Journal.start_new(path)
    journal.set_forwarding(True)
    owner = sign_in(office, "owner", "correct horse battery")
    assert post_json(owner, office, "/api/set-aside/retry", {"terminal_id": "SHOP0001", "version": 2})[0] == 200
    forwarder = heartbeat(office, "SHOP0001", journal)  # asked; the journal has no transaction 1
    assert outbox(journal) == [] and forwarder._missing == [2]
    heartbeat(office, "SHOP0001", journal, forwarder)  # says so
    assert forwarder._missing == []
    row, _ = set_aside(owner, office)["rows"]
    assert row["state"] == "missing" and row["can_retry"]
    heartbeat(office, "SHOP0001", journal, forwarder)  # not asked again
    assert outbox(journal) == [] and forwarder._missing == []
    journal.close()


def test_rows_of_a_replaced_journal_cannot_be_asked_for(office, tmp_path, lower_bound):
    import psycopg

    from office.users import take_new_journal

    office.register("SHOP0001")
    office.add_user("owner", "correct horse battery", "owner")
    journal = Journal(tmp_path / "old" / "journal.sqlite3")
    journal.set_forwarding(True)
    sale(journal, "SHOP0001", 3300)
    forward_all(office, "SHOP0001", journal)
    journal.close()
    with psycopg.connect(office.dsn, autocommit=True) as conn:
        take_new_journal(conn, "SHOP0001")
    owner = sign_in(office, "owner", "correct horse battery")
    row, _ = set_aside(owner, office)["rows"]
    assert row["state"] == "earlier_journal" and not row["can_retry"]
    assert post_json(owner, office, "/api/set-aside/retry", {"terminal_id": "SHOP0001", "version": 2})[0] == 409


def test_the_page_shows_no_card_number_of_a_row_set_aside(office):
    """A row with an unmasked card number is set aside: nothing of its number is kept or shown."""
    office.register("SHOP0001")
    office.add_user("owner", "correct horse battery", "owner")
    status, answer = send(office, "SHOP0001", [(1, txn_body("SHOP0001", 1, masked_pan=PAN))])
    assert status == 200 and answer["set_aside"]
    owner = sign_in(office, "owner", "correct horse battery")
    [row] = set_aside(owner, office)["rows"]
    assert "masked_pan is not masked" in row["reason"]
    kept = office.sql("SELECT * FROM set_aside_rows")
    for shown in (json.dumps(set_aside(owner, office)), repr(kept)):
        assert PAN not in shown and "42424242" not in shown


def test_the_missing_list_is_checked(office):
    office.register("SHOP0001")
    token = (office.folder / "SHOP0001.token").read_text().strip()
    from test_office_books import post

    for bad in ("1", [0], [2**63], ["1"], list(range(1, 200))):
        status, answer = post(office, token, {"terminal_id": "SHOP0001", "rows": [], "missing": bad})
        assert status == 400 and "missing" in answer["error"], (bad, answer)


def test_the_owner_retries_from_the_page(office, tmp_path, browser, lower_bound):  # noqa: F811 - the fixture
    office.register("SHOP0001")
    office.add_user("owner", "correct horse battery", "owner")
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.set_forwarding(True)
    big = sale(journal, "SHOP0001", 3300)
    forward_all(office, "SHOP0001", journal)

    browser.get(office.url + "/")
    until(browser, lambda b: b.find_element("id", "signin").is_displayed(), "the sign-in form")
    browser.find_element("id", "lang").click()  # English
    browser.find_element("id", "name").send_keys("owner")
    browser.find_element("id", "password").send_keys("correct horse battery")
    browser.find_element("id", "signin-button").click()
    until(browser, lambda b: b.find_element("id", "set-aside-box").is_displayed(), "the rows not taken")
    cells, began = table(browser)
    assert cells[:3] == ["SHOP0001", f"transaction {big}", "2"] and "amount 3300" in cells[4]
    assert cells[5:] == ["not taken", "Retry"]
    assert began[2:] == ["1", cells[3], "row 1: amount 3300 is outside 1..2000", "a later version set aside", ""]
    terminals = browser.execute_script("return document.querySelector('#terminals tbody tr').textContent")
    assert "1 · " in terminals and "amount 3300" in terminals  # counted, with the last reason
    browser.execute_script("document.querySelector('#set-aside button.retry').click()")  # (the table is redrawn)
    until(browser, lambda b: table(b)[0][5] == "asked again", "asked again")
    lower_bound.undo()
    heartbeat(office, "SHOP0001", journal)
    forward_all(office, "SHOP0001", journal)
    journal.close()
    browser.execute_script("load()")
    until(browser, lambda b: table(b)[0][5:] == ["taken on retry", ""], "taken on retry")
    until(browser, lambda b: "SHOP0001" in text(b, "terminals") and table(b, "terminals")[0][-1] == "0", "0 not taken")
    browser.find_element("id", "lang").click()  # and in Chinese
    until(browser, lambda b: table(b)[0][5] == "重传后已收", "the state in Chinese")


def table(b, name: str = "set-aside") -> list[list[str]]:
    """The cells of a table's body, read at once (the page redraws it every 5 s)."""
    return b.execute_script(
        "return [...document.querySelectorAll(`#${arguments[0]} tbody tr`)].map((tr) =>"
        " [...tr.cells].map((c) => c.textContent))",
        name,
    )


def test_a_running_terminal_sends_the_row_again_at_its_next_hello(office, tmp_path, lower_bound):
    """The simulated terminal's own forwarder in its loop: a sale set aside, asked for again by the owner, taken
    at the terminal's next contact (its hello every `heartbeat`, here half a second) once the office takes it."""
    import dataclasses

    from conftest import wait_until
    from hwsim import Simulator
    from test_office_e2e import office_config
    from test_office_e2e import outbox as waiting
    from test_refunds import approved_sale

    office.add_user("owner", "correct horse battery", "owner")
    direct = dataclasses.make_dataclass("Direct", [("port", int)])(office.port)
    with Simulator(tmp_path / "t", office_config(office, direct, "SHOPB001")) as sim:
        approved_sale(sim, "3300")
        wait_until(lambda: waiting(sim) == 0, 20, "the sale forwarded")
        owner = sign_in(office, "owner", "correct horse battery")
        [row] = [r for r in set_aside(owner, office)["rows"] if r["state"] == "open"]
        assert row["terminal_id"] == "SHOPB001" and "amount 3300" in row["reason"]
        lower_bound.undo()
        assert (
            post_json(owner, office, "/api/set-aside/retry", {"terminal_id": "SHOPB001", "version": row["version"]})[0]
            == 200
        )
        wait_until(
            lambda: office.sql("SELECT amount FROM txns WHERE terminal_id = 'SHOPB001'") == [(3300,)], 30, "taken"
        )
    seen = set_aside(owner, office)
    assert seen["not_taken"] == 0 and "stored" in {r["state"] for r in seen["rows"]}
