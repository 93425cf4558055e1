"""Reversals (冲正): a sale with no known outcome is reversed, persistently, before anything else is sent."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import assert_ledger_agrees, sales, wait_until
from firmware.host import dialect
from firmware.host.messages import ReversalRequest, iso_to_reversal_ack, original_data_elements, reversal_to_iso
from test_e2e import sale


def test_reversal_message_bytes():
    req = ReversalRequest(
        stan=8,
        amount=1250,
        currency_numeric="156",
        terminal_id="SIM00001",
        merchant_id="102030405060708",
        original_stan=7,
        original_transmitted_at="1126130509",
        local_time=datetime(2026, 11, 26, 21, 6, 0),
        utc_time=datetime(2026, 11, 26, 13, 6, 0, tzinfo=UTC),
    )
    doc = reversal_to_iso(req)
    assert doc["90"] == "0200" + "000007" + "1126130509" + "0" * 22 and len(doc["90"]) == 42
    raw = dialect.encode(doc)
    assert raw.startswith(b"0400")
    assert dialect.decode(raw) == doc
    repeat = reversal_to_iso(ReversalRequest(**{**req.__dict__, "repeat": True}))
    assert repeat["t"] == "0401"
    assert original_data_elements("0200", 7, "") == "0200000007" + "0" * 32


def test_ack_mapping():
    assert iso_to_reversal_ack({"t": "0410", "11": "000008", "39": "25"}) == (8, "25")


def _mtis(sim):
    return [dialect.decode(raw)["t"] for d, raw in sim.host_log if d == "request"]


def test_unacknowledged_reversal_is_retried_before_the_next_sale(sim):
    sim.host.fault("timeout", times=2)  # the sale and the first reversal attempt get nothing
    sale(sim, "visa-approve")
    sim.wait_for("NO HOST ANSWER", timeout=10)
    wait_until(lambda: any(r["kind"] == "reversal" and r["attempts"] == 1 for r in sim.journal()), what="1 attempt")
    rev = [r for r in sim.journal() if r["kind"] == "reversal"][0]
    assert rev["status"] == "queued" and "no answer" in rev["note"]
    assert sales(sim)[0]["status"] == "unknown"
    sim.keys("{ENTER}")
    sale(sim, "mc-approve")
    sim.wait_for("APPROVED")
    assert _mtis(sim) == ["0200", "0400", "0401", "0200"]  # the repeat goes out before the new sale
    assert [r["status"] for r in sales(sim)] == ["reversed", "approved"]
    assert sim.host.ledger[0]["reversed"] and not sim.host.ledger[1]["reversed"]
    assert_ledger_agrees(sim)


def test_no_new_sale_while_a_reversal_is_stuck(sim):
    sim.host.fault("timeout", times=3)  # sale, its reversal, and the retry before the next sale
    sale(sim, "visa-approve")
    sim.wait_for("NO HOST ANSWER", timeout=10)
    wait_until(lambda: any(r["kind"] == "reversal" and r["attempts"] == 1 for r in sim.journal()), what="1 attempt")
    sim.keys("{ENTER}")
    sale(sim, "visa-approve")
    sim.wait_for("HOST NOT AVAILABLE", timeout=10)
    second = sales(sim)[1]
    assert second["status"] == "failed" and "reversal" in second["note"]
    assert _mtis(sim) == ["0200", "0400", "0401"]  # the second sale never left
    sim.keys("{ENTER}")
    sale(sim, "visa-approve")  # the host is back: reversal first, then the sale
    sim.wait_for("APPROVED")
    assert [r["status"] for r in sales(sim)] == ["reversed", "failed", "approved"]
    assert_ledger_agrees(sim)


def test_reversal_after_power_cut_restores_the_balance(sim):
    issuer = sim.host.issuer
    pan = "4000000000009995"  # visa-insufficient: balance 0
    issuer.accounts[pan].balance = 2000
    sim.host.fault("timeout")
    sale(sim, "visa-insufficient", amount="1500")
    sim.wait_for("PROCESSING")
    wait_until(lambda: sim.host.ledger, what="issuer decision")
    assert issuer.accounts[pan].balance == 500  # the issuer approved and debited
    sim.restart(crash=True)
    wait_until(lambda: sales(sim)[0]["status"] == "reversed", what="reversal at boot")
    assert issuer.accounts[pan].balance == 2000  # money back
    assert_ledger_agrees(sim)
