"""End-of-day settlement (结算): in balance, out of balance, once per batch, and what it means for voids."""

from __future__ import annotations

from datetime import UTC

from conftest import sales
from firmware.host import dialect
from test_refunds import approved_sale, manager, refund, start


def settle(sim):
    manager(sim)
    sim.wait_for("4 SETTLEMENT")
    sim.keys("4")


def test_settlement_in_balance_then_void_is_refused(sim):
    first = approved_sale(sim, amount="1250")
    approved_sale(sim, amount="990", card="mc-approve")
    refund(sim, first["stan"], "250", "card")
    sim.wait_for("REFUND APPROVED")
    sim.keys("{ENTER}")
    printed = len(sim.wait_for_receipts(6))
    settle(sim)
    sim.wait_for("SETTLED, IN BALANCE")
    slip = sim.wait_for_receipts(printed + 1)[-1]
    assert "结算" in slip and "平账" in slip and "BATCH 000001" in slip
    assert "SALES #" in slip and "22.40" in slip and "2.50" in slip and "19.90" in slip
    request = [dialect.decode(raw) for d, raw in sim.host_log if d == "request"][-1]
    assert (request["t"], request["76"], request["88"], request["74"], request["86"], request["97"]) == (
        "0500",
        "0000000002",
        "0000000000002240",
        "0000000001",
        "0000000000000250",
        "D0000000000001990",
    )
    sim.keys("{ENTER}")
    start(sim, "void", first["stan"])
    sim.wait_for("SETTLED: USE REFUND")  # the batch is closed
    sim.keys("{ENTER}")
    approved_sale(sim, amount="500")
    assert sales(sim)[-1]["batch"] == 2  # the next batch opened by itself


def test_out_of_balance_prints_both_sides(sim):
    approved_sale(sim, amount="1250")
    # The host knows of a sale the terminal does not (say, a restored terminal): the totals differ.
    sim.host.ledger.append(
        {
            "kind": "sale",
            "stan": 999,
            "amount": 700,
            "rrn": "x",
            "response_code": "00",
            "reversed": False,
            "voided": False,
            "terminal_id": "SIM00001",
            "transmitted_at": "",
            "settled": False,
        }
    )
    printed = len(sim.receipts)
    settle(sim)
    sim.wait_for("OUT OF BALANCE")
    slip = sim.wait_for_receipts(printed + 1)[-1]
    assert "不平" in slip and "12.50" in slip and "19.50" in slip  # terminal 12.50, host 19.50


def test_settlement_without_the_host_keeps_the_batch_open(sim):
    approved_sale(sim)
    sim.host.fault("timeout")
    settle(sim)
    sim.wait_for("SETTLEMENT FAILED", timeout=10)
    sim.keys("{ENTER}")
    settle(sim)
    sim.wait_for("SETTLED, IN BALANCE")  # the same batch, settled on the second try


def test_a_batch_settles_once(tmp_path):
    from datetime import datetime

    import pytest

    from firmware.errors import JournalError
    from firmware.records.journal import Journal

    j = Journal(tmp_path / "j.sqlite3")
    now = datetime.now(UTC)
    assert j.record_settlement(1, (0, 0, 0, 0), (0, 0, 0, 0), "00", True, now) == 2
    with pytest.raises(JournalError, match="settled already"):
        j.record_settlement(1, (0, 0, 0, 0), None, "00", True, now)


def test_a_settlement_the_host_did_but_never_answered_is_sent_again_as_it_was(sim):
    """Found by the kill harness: the 0500 reached the host (which closed its batch), the answer did not reach
    the journal; the next settlement carried later sales too, and the host's stored totals said out of balance.
    Now the same 0500 (batch, STAN, totals) is kept and sent again before anything new."""
    from conftest import assert_ledger_agrees

    approved_sale(sim, amount="1250")
    sim.host.fault("timeout")  # the host settles, its answer is lost
    settle(sim)
    sim.wait_for("SETTLEMENT FAILED", timeout=10)
    sim.restart(crash=True)  # and the terminal loses power
    sim.keys("{ENTER}")
    approved_sale(sim, amount="990")  # the resent 0500 goes out first
    sent = [dialect.decode(raw) for d, raw in sim.host_log if d == "request"]
    settlements = {(doc["11"], doc["60"], doc["88"]) for doc in sent if doc["t"] == "0500"}
    assert len([doc for doc in sent if doc["t"] == "0500"]) >= 2
    assert settlements == {(sent[1]["11"], "000001", "0000000000001250")}  # every try the very same 0500
    assert [doc["t"] for doc in sent][-1] == "0200" and sales(sim)[-1]["batch"] == 2
    printed = len(sim.receipts)
    settle(sim)
    sim.wait_for("SETTLED, IN BALANCE")  # batch 2 holds exactly the 9.90
    assert "9.90" in sim.wait_for_receipts(printed + 1)[-1]
    assert_ledger_agrees(sim)


def test_settlement_totals_are_taken_after_a_lost_refund_is_resent(sim):
    """Found in review: the totals were taken before the outbox resent a refund whose answer was lost, so the
    host (which had the refund) said OUT OF BALANCE."""
    from conftest import wait_until
    from test_refunds import row

    original = approved_sale(sim)
    sim.host.fault("timeout", times=2)  # the refund's answer and the at-once resend's are lost
    refund(sim, original["stan"], "300", "card")
    sim.wait_for("WILL RETRY BY ITSELF", timeout=10)
    wait_until(lambda: row(sim, "refund")["attempts"] >= 2, timeout=15, what="the at-once resend failed")
    sim.keys("{ENTER}")
    settle(sim)  # while the refund waits for its next retry
    sim.wait_for("SETTLED, IN BALANCE", timeout=15)
    assert row(sim, "refund")["status"] == "approved"


def test_a_void_after_a_settlement_went_out_in_the_meantime_is_refused(sim):
    """Found in review: with a settlement queued, the sale still looked voidable; the void's flush sent the
    settlement, closing the batch, and the void of a settled sale went out anyway."""
    first = approved_sale(sim)
    sim.host.fault("timeout")
    settle(sim)
    sim.wait_for("SETTLEMENT FAILED", timeout=10)  # queued; the batch is still open on the terminal
    sim.keys("{ENTER}")
    start(sim, "void", first["stan"])
    sim.wait_for("ENTER TO CONFIRM")
    sim.keys("{ENTER}")
    sim.wait_for("SETTLED: USE REFUND", timeout=15)
    assert [dialect.decode(raw)["3"] for d, raw in sim.host_log if d == "request"].count("020000") == 0
