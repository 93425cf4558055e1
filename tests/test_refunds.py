"""Voids (撤销) and refunds (退货) end to end: manager PIN, finding the original, limits, routes, retries."""

from __future__ import annotations

from datetime import UTC

import pytest

from conftest import assert_ledger_agrees, wait_until
from firmware.errors import JournalError
from firmware.host import dialect
from firmware.records.journal import Journal
from test_e2e import sale

PAN = "4242424242424242"


def approved_sale(sim, amount="1250", card="visa-approve") -> dict:
    printed = len(sim.receipts)
    sale(sim, card, amount=amount)
    sim.wait_for("APPROVED")
    sim.wait_for_receipts(printed + 2)  # both copies are out before the next step
    sim.keys("{ENTER}")
    return [r for r in sim.journal() if r["kind"] == "sale"][-1]


def manager(sim, pin="8888"):
    sim.keys("{MENU}")
    sim.wait_for("MANAGER PIN")
    sim.keys(pin + "{ENTER}")


def start(sim, what: str, stan: int):
    manager(sim)
    sim.wait_for("1 VOID  2 REFUND")
    sim.keys("1" if what == "void" else "2")
    sim.keys(f"{stan}{{ENTER}}")


def refund(sim, stan: int, amount: str, route: str):
    start(sim, "refund", stan)
    sim.wait_for("REFUND TRACE")
    sim.keys(amount + "{ENTER}")
    sim.wait_for("1 TO CARD  2 CASH")
    sim.keys("1" if route == "card" else "2")


def row(sim, kind: str, n: int = -1) -> dict:
    return [r for r in sim.journal() if r["kind"] == kind][n]


def test_void_same_day_before_settlement(sim):
    original = approved_sale(sim)
    balance = sim.host.issuer.accounts[PAN].balance
    start(sim, "void", original["stan"])
    screen = sim.wait_for("ENTER TO CONFIRM")
    assert "VOID CNY 12.50" in screen and "424242******4242" in screen
    sim.keys("{ENTER}")
    sim.wait_for("VOID APPROVED")
    receipts = sim.wait_for_receipts(4)
    assert "撤销 VOID" in receipts[2] and f"{original['stan']:06d}" in receipts[2] and "CNY -12.50" in receipts[2]
    assert "收银员签名 CASHIER SIGNATURE" in receipts[2] and "SIGNATURE" not in receipts[3]
    assert row(sim, "sale")["status"] == "voided" and row(sim, "void")["status"] == "approved"
    assert row(sim, "void")["original_id"] == original["id"]
    assert sim.host.issuer.accounts[PAN].balance == balance + 1250
    assert_ledger_agrees(sim)


def test_void_refused_after_settlement(sim):
    original = approved_sale(sim)
    manager(sim)  # end of day: settle with the host
    sim.wait_for("4 SETTLEMENT")
    sim.keys("4")
    sim.wait_for("SETTLED, IN BALANCE")
    sim.keys("{ENTER}")
    start(sim, "void", original["stan"])
    sim.wait_for("SETTLED: USE REFUND")
    assert [r["kind"] for r in sim.journal()] == ["sale"]
    sim.keys("{ENTER}")
    refund(sim, original["stan"], "1250", "card")  # the refund route still works
    sim.wait_for("REFUND APPROVED")
    assert_ledger_agrees(sim)


def test_partial_refunds_up_to_the_total(sim):
    original = approved_sale(sim, amount="1250")
    refund(sim, original["stan"], "500", "card")
    sim.wait_for("REFUND APPROVED")
    sim.keys("{ENTER}")
    refund(sim, original["stan"], "500", "cash")
    sim.wait_for("CASH REFUND")
    sim.keys("{ENTER}")
    start(sim, "refund", original["stan"])
    screen = sim.wait_for("REFUND TRACE")
    assert "LEFT CNY 2.50" in screen
    sim.keys("251{ENTER}")
    sim.wait_for("MORE THAN IS LEFT")  # one past the total is refused
    sim.keys("{CLEAR}{CLEAR}{CLEAR}250{ENTER}")
    sim.keys("1")
    sim.wait_for("REFUND APPROVED")
    sim.keys("{ENTER}")
    start(sim, "refund", original["stan"])
    sim.wait_for("ALREADY FULLY REFUNDED")
    refunds = [r for r in sim.journal() if r["kind"] == "refund"]
    assert [(r["method"], r["amount"], r["status"]) for r in refunds] == [
        ("card", 500, "approved"),
        ("cash", 500, "approved"),
        ("card", 250, "approved"),
    ]
    assert row(sim, "sale")["refunded"] == 1250
    assert sum(e["amount"] for e in sim.host.ledger if e["kind"] == "refund") == 750  # cash never went to the host
    assert_ledger_agrees(sim)
    sim.keys("{ENTER}")
    start(sim, "void", original["stan"])
    sim.wait_for("ALREADY REFUNDED")


def test_the_journal_itself_refuses_too_much(sim, tmp_path):
    original = approved_sale(sim)
    j = Journal(sim.data_dir / "journal.sqlite3")
    from datetime import datetime

    now = datetime.now(UTC)
    j.begin_follow_up("refund", original["id"], 1000, "cash", "k1", "", now)
    with pytest.raises(JournalError, match="exceed") as too_much:
        j.begin_follow_up("refund", original["id"], 251, "cash", "k2", "", now)
    with pytest.raises(JournalError, match="refund or a void") as twice:
        j.begin_follow_up("void", original["id"], 1250, "card", "k3", "", now)
    # what the screen says is the journal's own word for each rule (never a piece of the SQLite message)
    assert (too_much.value.screen, twice.value.screen) == ("REFUNDS WOULD EXCEED", "ALREADY REFUNDED OR VOIDED")


def test_refund_receipts_say_what_they_are(sim):
    original = approved_sale(sim)
    refund(sim, original["stan"], "300", "cash")
    sim.wait_for("PAY OUT FROM THE TILL")
    merchant, customer = sim.wait_for_receipts(4)[2:]
    for r in (merchant, customer):
        assert "退货 REFUND" in r and "现金 CASH" in r and "CNY -3.00" in r and "原流水号 ORIGINAL TRACE" in r
    assert "MERCHANT COPY" in merchant and "CUSTOMER COPY" in customer


@pytest.mark.parametrize("fault", ["timeout", "drop"])
def test_refund_retried_after_a_lost_answer_lands_once(sim, fault):
    original = approved_sale(sim)
    balance = sim.host.issuer.accounts[PAN].balance
    sim.host.fault(fault)
    refund(sim, original["stan"], "1250", "card")
    sim.wait_for("WILL RETRY BY ITSELF", timeout=10)
    wait_until(lambda: row(sim, "refund")["status"] == "approved", what="refund resent and answered")
    refunds = [e for e in sim.host.ledger if e["kind"] == "refund"]
    assert len(refunds) == 1 and refunds[0]["response_code"] == "00"
    assert sim.host.issuer.accounts[PAN].balance == balance + 1250  # credited exactly once
    requests = [dialect.decode(raw) for d, raw in sim.host_log if d == "request"]
    assert len(requests) == 3  # sale, refund, refund again
    first, again = requests[1], requests[2]
    assert first["3"] == again["3"] == "200000"
    assert (first["11"], first["48"]) == (again["11"], again["48"])  # same STAN, same idempotency key
    assert_ledger_agrees(sim)


def test_refund_retry_survives_a_power_cut(sim):
    original = approved_sale(sim)
    sim.host.fault("timeout")
    refund(sim, original["stan"], "600", "card")
    sim.wait_for("PROCESSING")
    sim.restart(crash=True)
    wait_until(lambda: row(sim, "refund")["status"] == "approved", what="refund resent at boot")
    assert len([e for e in sim.host.ledger if e["kind"] == "refund"]) == 1
    assert_ledger_agrees(sim)


def test_original_not_found_and_not_refundable(sim):
    start(sim, "refund", 4242)
    sim.wait_for("TRACE 004242 UNKNOWN")
    sim.keys("{ENTER}")
    sale(sim, "visa-insufficient")
    sim.wait_for("DECLINED")
    sim.keys("{ENTER}")
    start(sim, "refund", row(sim, "sale")["stan"])
    sim.wait_for("SALE IS DECLINED")


def test_manager_pin_wrong_cashier_and_lockout(sim):
    manager(sim, "1111")  # the cashier's PIN counts as a failure
    sim.wait_for("MANAGER ONLY")
    sim.keys("{ENTER}")
    manager(sim, "0000")
    sim.wait_for("WRONG OPERATOR PIN")
    sim.keys("{ENTER}")
    manager(sim, "0000")
    sim.wait_for("LOCKED")
    sim.keys("{ENTER}")
    manager(sim, "8888")  # even the right PIN, for a while
    sim.wait_for("LOCKED")
    sim.restart(crash=True)  # and a reboot does not unlock it
    manager(sim, "8888")
    sim.wait_for("LOCKED")


def test_cancel_anywhere_in_the_back_office(sim):
    sim.keys("{MENU}12{CANCEL}")
    sim.wait_for("CANCELLED")
    sim.keys("{ENTER}")
    manager(sim)
    sim.wait_for("1 VOID")
    sim.keys("{CANCEL}")
    sim.wait_for("CANCELLED")
    sim.keys("{ENTER}")
    start(sim, "void", 1)
    sim.wait_for("NOT FOUND")
    assert sim.journal() == []


def test_find_the_sale_by_scanning_its_receipt(sim):
    original = approved_sale(sim)
    receipt = sim.receipts[0]
    assert original["order_no"] in receipt.replace("\n", "")  # the reference is printed ...
    assert original["order_no"].encode() in sim.printer_bytes  # ... and encoded as a QR code
    manager(sim)
    sim.wait_for("1 VOID")
    sim.keys("2")
    sim.wait_for("TRACE NO. OR SCAN")
    sim.scan(original["order_no"])
    screen = sim.wait_for("REFUND TRACE")
    assert f"{original['stan']:06d}" in screen and "LEFT CNY 12.50" in screen


def test_find_the_sale_by_date_amount_and_last_four(sim):
    approved_sale(sim, amount="1250")
    second = approved_sale(sim, amount="990", card="mc-approve")
    month_day = second["created_at"][5:7] + second["created_at"][8:10]
    manager(sim)
    sim.wait_for("1 VOID")
    sim.keys("2{F2}")
    sim.wait_for("DATE MMDD")
    sim.keys(month_day + "{ENTER}")
    sim.wait_for("AMOUNT")
    sim.keys("990{ENTER}")
    sim.wait_for("CARD LAST 4")
    sim.keys("4444{ENTER}")
    screen = sim.wait_for("REFUND TRACE")
    assert f"{second['stan']:06d}" in screen and "PAID CNY 9.90" in screen
    sim.keys("{CANCEL}{ENTER}")
    manager(sim)
    sim.wait_for("1 VOID")
    sim.keys("2{F2}" + month_day + "{ENTER}990{ENTER}4242{ENTER}")  # amount of one sale, card of the other
    sim.wait_for("NO SUCH SALE")
