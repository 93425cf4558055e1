"""A chip sale's reversal tells the issuer what the card said (ISO 8583 field 55 of the 0400): the TVR, the issuer
application data and the ATC as sent online, or as the card ended when it declined after the issuer approved; it
survives a power cut in the journal; a stripe's reversal carries none. Through the real terminal, the simulated
acquirer, and (for the contact card) the real pcscd with the virtual reader."""

from __future__ import annotations

from conftest import wait_until
from firmware.core.emv.data import tlv_items
from firmware.host import dialect
from firmware.host.messages import ReversalRequest, reversal_to_iso
from test_chip_attacks import decline_at_second_gac, insert, sales
from test_e2e import sale

ATC, IAD, TVR = "9F36", "9F10", "95"


def field55(doc):
    return {tag: value.hex().upper() for tag, value in tlv_items(bytes.fromhex(doc.get("55", "")))}


def messages(sim, *mtis):
    return [dialect.decode(raw) for d, raw in sim.host_log if d == "request" and raw[:4].decode() in mtis]


def test_the_reversal_message_carries_field_55_only_when_given():
    from datetime import UTC, datetime

    now = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    base = dict(
        stan=8,
        amount=2500,
        currency_numeric="156",
        terminal_id="SIM00001",
        merchant_id="102030405060708",
        original_stan=7,
        original_transmitted_at="1203090000",
        local_time=now,
        utc_time=now,
    )
    assert "55" not in reversal_to_iso(ReversalRequest(**base))
    doc = reversal_to_iso(ReversalRequest(**base, icc_data="9F360200419F1007010203040506"))
    assert doc["55"] == "9F360200419F1007010203040506"
    assert dialect.decode(dialect.encode(doc))["55"] == doc["55"]


def test_a_tap_whose_answer_was_lost_is_reversed_with_what_the_card_said(sim):
    sim.host.fault("timeout")
    sim.keys("1250{ENTER}")
    sim.wait_for("TAP OR SWIPE")
    sim.tap("visa-tap-approve")
    wait_until(lambda: sales(sim) and sales(sim)[0]["status"] == "reversed", timeout=20, what="the reversal")
    [sent] = messages(sim, "0200")
    [reversal, *_] = messages(sim, "0400", "0401")
    card, told = field55(sent), field55(reversal)
    assert told and {ATC, IAD, TVR} <= set(told)
    assert all(told[t] == card[t] for t in told)  # as sent online: nothing changed since
    assert "5A" not in told and "57" not in told  # no card number, no track
    assert sim.host.ledger[0]["reversal_icc"] == reversal["55"]


def test_a_swipes_reversal_carries_no_chip_data(sim):
    sim.host.fault("timeout")
    sale(sim, "visa-approve")
    wait_until(lambda: sales(sim) and sales(sim)[0]["status"] == "reversed", timeout=20, what="the reversal")
    assert all("55" not in r for r in messages(sim, "0400", "0401"))


def test_a_card_that_declines_after_the_approval_is_reversed_with_its_last_word(csim):
    csim.keys("2500{ENTER}")
    csim.wait_for("CARD")
    insert(csim, "unionpay-debit-chip", rewrite=decline_at_second_gac)
    csim.pin("1234")
    csim.wait_for("NOT APPROVED")
    wait_until(lambda: sales(csim)[0]["status"] == "reversed", what="reversed")
    [row] = sales(csim)
    [sent] = messages(csim, "0200")
    [reversal] = messages(csim, "0400", "0401")
    told = field55(reversal)
    assert told[TVR] == row["tvr"]  # the TVR as the transaction ended, as the receipt and the journal say
    assert told[ATC] == field55(sent)[ATC] and IAD in told
    assert "DF31" in told or "9F5B" not in told  # UnionPay names its script results DF31, when there are any


def test_the_reversal_data_survives_a_power_cut(sim):
    sim.host.fault("timeout")
    sim.keys("1250{ENTER}")
    sim.wait_for("TAP OR SWIPE")
    sim.tap("visa-tap-approve")
    wait_until(lambda: sim.host.ledger, what="the issuer's decision")
    sim.restart(crash=True)  # the reversal goes from the journal, at boot
    wait_until(lambda: sales(sim)[0]["status"] == "reversed", timeout=20, what="the reversal at boot")
    [sent] = messages(sim, "0200")
    reversal = messages(sim, "0400", "0401")[-1]
    assert field55(reversal)[ATC] == field55(sent)[ATC]


def test_long_chip_data_keeps_its_ber_length_and_never_makes_a_0400_that_cannot_go():
    from firmware.host.messages import fits_field_55, icc_hex

    assert icc_hex({"9F10": "AB" * 300}) == "9F10820" + "12C" + "AB" * 300  # 300 bytes: 82 and two length bytes
    assert icc_hex({"9F10": "AB" * 200}).startswith("9F1081C8")
    assert fits_field_55("00" * 255) and not fits_field_55("00" * 256)
