"""A lying host in front of the acquirer: an answer counts only when it answers this request.

The acquirer simulator still does what each request asks (the issuer approves and debits, the ledger records
it); `sim.host.lie` then rewrites what goes back on the wire. Every case ends with the journal and the
acquirer's ledger telling the same story: a customer is charged only when the journal says approved.
"""

from __future__ import annotations

import pytest

from conftest import assert_ledger_agrees, sales, wait_until
from firmware.core.events import AuthResponse
from firmware.errors import AnswerMismatch, PartialApproval, StaleAnswer
from firmware.host import dialect
from firmware.host.messages import ANSWER_MTI, bind, iso_to_response
from test_e2e import sale
from test_refunds import approved_sale, refund, row

REQUEST = {
    "t": "0200",
    "3": "000000",
    "4": "000000001250",
    "11": "000007",
    "41": "SIM00001",
    "42": "102030405060708",
    "49": "156",
    "35": "…",
}
TRUE_ANSWER = {
    "t": "0210",
    "3": "000000",
    "4": "000000001250",
    "11": "000007",
    "37": "263360000002",
    "38": "123456",
    "39": "00",
    "41": "SIM00001",
    "42": "102030405060708",
    "49": "156",
}


def changed(**fields):
    """A rewrite that changes (None: removes) fields of the true answer."""

    def rewrite(_request, answer):
        out = {**answer, **fields}
        return [{k: v for k, v in out.items() if v is not None}]

    return rewrite


# --- the rule, pure --------------------------------------------------------------------------------


def test_the_true_answer_binds():
    assert iso_to_response(bind(REQUEST, TRUE_ANSWER)) == AuthResponse(7, "00", "123456", "263360000002", "SIM00001")


@pytest.mark.parametrize(
    "fields",
    [
        {"4": "000000000001"},
        {"4": None},
        {"49": "840"},
        {"3": "200000"},
        {"41": "SIM00002"},
        {"42": "999999999999999"},
        {"49": None},
        {"41": None},
    ],
)
def test_a_changed_answer_is_never_an_approval(fields):
    doc = {k: v for k, v in {**TRUE_ANSWER, **fields}.items() if v is not None}
    with pytest.raises(AnswerMismatch):
        bind(REQUEST, doc)


@pytest.mark.parametrize("fields", [{"t": "0110"}, {"t": "0410"}, {"11": "000006"}, {"11": None}, {"t": None}])
def test_another_requests_answer_is_stale(fields):
    doc = {k: v for k, v in {**TRUE_ANSWER, **fields}.items() if v is not None}
    with pytest.raises(StaleAnswer):
        bind(REQUEST, doc)


def test_partial_approval_is_named():
    with pytest.raises(PartialApproval, match="000000000600"):
        bind(REQUEST, {**TRUE_ANSWER, "39": "10", "4": "000000000600"})


def test_every_request_kind_has_its_answer_mti():
    assert ANSWER_MTI == {"0200": "0210", "0400": "0410", "0401": "0410", "0500": "0510", "0800": "0810"}


# --- end to end: a sale --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lie",
    [
        {"4": "000000000001"},  # approved for 1 fen
        {"4": None},  # approved, amount missing
        {"49": "840"},  # approved in US dollars
        {"3": "200000"},  # approved as a refund
        {"41": "OTHER001"},  # approved for another terminal
        {"42": "000000000000001"},  # ... or another merchant
    ],
    ids=["1-fen", "no-amount", "usd", "refund-code", "terminal", "merchant"],
)
def test_a_lying_approval_is_reversed_not_shown(sim, lie):
    sim.host.lie(changed(**lie))
    sale(sim, "visa-approve")
    screen = sim.wait_for("BAD HOST ANSWER", timeout=10)
    assert "NOT APPROVED" in screen and "12.50" not in screen
    wait_until(lambda: sales(sim)[0]["status"] == "reversed", what="sale reversed")
    assert sim.host.ledger[0]["response_code"] == "00" and sim.host.ledger[0]["reversed"]
    assert sim.receipts == []
    assert_ledger_agrees(sim)


def test_a_partial_approval_is_reversed_and_said(sim):
    sim.host.lie(changed(**{"39": "10", "4": "000000000600"}))
    sale(sim, "visa-approve")
    screen = sim.wait_for("PARTIAL APPROVAL", timeout=10)
    assert "NOT APPROVED" in screen
    wait_until(lambda: sales(sim)[0]["status"] == "reversed", what="sale reversed")
    assert_ledger_agrees(sim)


def test_a_late_answer_to_an_earlier_request_is_discarded(sim, caplog):
    kept: list[dict] = []
    sim.host.lie(lambda _req, answer: kept.append(answer) or [answer])  # a proxy that remembers
    approved_sale(sim)
    first = sales(sim)[0]
    sim.host.lie(lambda _req, answer: [kept[0], answer])  # old answer first, then the true one
    sale(sim, "mc-approve", amount="990")
    sim.wait_for("APPROVED")
    second = sales(sim)[1]
    assert second["status"] == "approved" and second["rrn"] != first["rrn"]
    assert any("not ours" in r.getMessage() for r in caplog.records)
    assert_ledger_agrees(sim)


def test_only_a_late_answer_is_no_answer(sim):
    kept: list[dict] = []
    sim.host.lie(lambda _req, answer: kept.append(answer) or [answer])
    approved_sale(sim)
    sim.host.lie(lambda _req, _answer: [kept[0]])  # the old answer, nothing else
    sale(sim, "mc-approve", amount="990")
    sim.wait_for("NO HOST ANSWER", timeout=10)
    wait_until(lambda: sales(sim)[1]["status"] == "reversed", what="sale reversed")
    assert sales(sim)[0]["status"] == "approved"  # the first sale is untouched
    assert_ledger_agrees(sim)


def test_an_answer_with_another_mti_is_not_ours(sim):
    sim.host.lie(changed(t="0110"))
    sale(sim, "visa-approve")
    sim.wait_for("NO HOST ANSWER", timeout=10)
    wait_until(lambda: sales(sim)[0]["status"] == "reversed", what="sale reversed")
    assert_ledger_agrees(sim)


# --- reversals: only an acknowledgement ends them --------------------------------------------------


def _mtis(sim):
    return [dialect.decode(raw)["t"] for d, raw in sim.host_log if d == "request"]


@pytest.mark.parametrize("code", ["96", "91", "30"])
def test_a_reversal_the_host_did_not_do_stays_queued_until_acknowledged(sim, code):
    def system_error(_req, answer):
        return [{**answer, "39": code}]

    sim.host.fault("timeout")
    sale(sim, "visa-approve")
    sim.host.lie(system_error, times=1)  # the first 0400's answer: "not done"
    sim.wait_for("NO HOST ANSWER", timeout=10)
    wait_until(lambda: row(sim, "reversal")["attempts"] >= 1, what="first reversal attempt")
    rev = row(sim, "reversal")
    assert rev["status"] == "queued" and code in rev["note"]
    assert sales(sim)[0]["status"] == "unknown"
    sim.keys("{ENTER}")
    sale(sim, "mc-approve", amount="990")  # the next sale sends the reversal again first
    sim.wait_for("APPROVED")
    assert _mtis(sim) == ["0200", "0400", "0401", "0200"]
    assert [r["status"] for r in sales(sim)] == ["reversed", "approved"]
    assert row(sim, "reversal")["response_code"] == "00"
    assert_ledger_agrees(sim)


def test_a_lying_reversal_acknowledgement_keeps_the_reversal(sim):
    sim.host.fault("timeout")
    sale(sim, "visa-approve")
    sim.host.lie(changed(**{"4": "000000000001"}))  # the 0410 names another amount
    sim.wait_for("NO HOST ANSWER", timeout=10)
    wait_until(lambda: row(sim, "reversal")["attempts"] >= 1, what="first reversal attempt")
    assert row(sim, "reversal")["status"] == "queued"
    sim.keys("{ENTER}")
    sale(sim, "mc-approve", amount="990")
    sim.wait_for("APPROVED")
    assert [r["status"] for r in sales(sim)] == ["reversed", "approved"]
    assert_ledger_agrees(sim)


# --- voids, refunds and settlement -----------------------------------------------------------------


def test_a_refund_answer_for_another_amount_is_not_taken(sim):
    original = approved_sale(sim)
    sim.host.lie(changed(**{"4": "000000000001"}))
    refund(sim, original["stan"], "600", "card")
    sim.wait_for("WILL RETRY BY ITSELF", timeout=10)  # not REFUND APPROVED
    wait_until(lambda: row(sim, "refund")["status"] == "approved", what="refund resent and answered truly")
    refunds = [e for e in sim.host.ledger if e["kind"] == "refund"]
    assert [e["response_code"] for e in refunds] == ["00"] and refunds[0]["amount"] == 600  # credited once
    assert_ledger_agrees(sim)


def test_a_settlement_answer_for_another_terminal_is_refused(sim):
    from test_settlement import settle

    approved_sale(sim)
    sim.host.lie(changed(**{"41": "OTHER001"}))
    settle(sim)
    sim.wait_for("SETTLEMENT FAILED", timeout=10)
    assert sales(sim)[0]["batch"] == 1
    sim.keys("{ENTER}")
    settle(sim)
    sim.wait_for("SETTLED, IN BALANCE", timeout=10)
