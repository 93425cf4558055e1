"""Contactless end to end: the simulated card in the field, nfcpy's UDP driver, the kernel, the ARQC check."""

from __future__ import annotations

import pytest

from conftest import assert_ledger_agrees, sales
from firmware.core.emv import tlv_items
from firmware.host import dialect


def tap_sale(sim, card_id: str, amount: str):
    sim.keys(amount + "{ENTER}")
    sim.wait_for("TAP OR SWIPE CARD")
    return sim.tap(card_id)


def last_request(sim) -> dict:
    return [dialect.decode(raw) for d, raw in sim.host_log if d == "request"][-1]


@pytest.mark.parametrize(
    "card_id, kernel, apdus", [("visa-tap-approve", "visa", 4), ("mc-tap-approve", "mastercard", 5)]
)
def test_under_the_cvm_limit_no_pin(sim, card_id, kernel, apdus):
    card = tap_sale(sim, card_id, "5000")  # 50.00 <= CVM limit 100.00
    sim.wait_for("APPROVED")
    sim.remove_card()
    assert card.apdus == apdus  # the kernel sent nothing it did not need
    req = last_request(sim)
    assert req["22"] == "071" and "52" not in req and "53" not in req
    icc = dict(tlv_items(bytes.fromhex(req["55"])))
    for tag in ("5F2A", "82", "95", "9A", "9C", "9F02", "9F03", "9F10", "9F1A", "9F26", "9F27", "9F36", "9F37"):
        assert tag in icc, tag
    assert icc["9F02"] == bytes.fromhex("000000005000")
    [row] = sales(sim)
    assert (row["status"], row["entry_mode"], row["masked_pan"][:6]) == (
        "approved",
        "contactless",
        card.profile.pan[:6],
    )
    merchant, _ = sim.wait_for_receipts(2)
    assert "非接 CONTACTLESS" in merchant and card.profile.aid in merchant and card.profile.label in merchant
    assert "ARQC" in merchant and icc["9F26"].hex().upper() in merchant
    assert "PIN VERIFIED" not in merchant
    assert card.profile.pan not in merchant
    answer = [dialect.decode(raw) for d, raw in sim.host_log if d == "response"][-1]
    assert answer["55"].startswith("91")  # the issuer's ARPC for the card
    assert_ledger_agrees(sim)


@pytest.mark.parametrize("card_id", ["visa-tap-approve", "mc-tap-approve"])
def test_over_the_cvm_limit_online_pin(sim, card_id):
    tap_sale(sim, card_id, "25000")  # 250.00 > 100.00
    sim.wait_for("ENTER PIN")
    sim.remove_card()  # the card has done its part
    sim.pin("1234")
    sim.wait_for("APPROVED")
    req = last_request(sim)
    assert len(req["52"]) == 16 and req["53"].startswith("FFFF9876543210E")
    assert "PIN VERIFIED" in sim.wait_for_receipts(2)[0]


def test_wrong_pin_on_a_tap_asks_for_a_new_tap(sim):
    tap_sale(sim, "visa-tap-approve", "25000")
    sim.wait_for("ENTER PIN")
    sim.remove_card()
    sim.pin("9999")
    sim.wait_for("WRONG PIN, TAP AGAIN")
    sim.tap("visa-tap-approve")
    sim.pin("1234")
    sim.wait_for("APPROVED")
    assert [r["response_code"] for r in sales(sim)] == ["55", "00"]


def test_phone_wallet_cdcvm_needs_no_pin(sim):
    tap_sale(sim, "phone-wallet", "25000")
    sim.wait_for("APPROVED")
    assert "52" not in last_request(sim)
    assert "设备已验证持卡人 VERIFIED ON DEVICE" in sim.wait_for_receipts(2)[0]


@pytest.mark.parametrize(
    "card_id, code, text",
    [
        ("visa-tap-insufficient", "51", "INSUFFICIENT FUNDS"),
        ("mc-tap-stolen", "43", "STOLEN CARD"),
        ("visa-tap-bad-arqc", "82", "CARD AUTH FAILED"),
    ],
)
def test_declined_by_the_issuer(sim, card_id, code, text):
    tap_sale(sim, card_id, "5000")
    sim.wait_for(text)
    assert sales(sim)[0]["response_code"] == code


def test_replayed_cryptogram_is_declined(sim):
    tap_sale(sim, "visa-tap-approve", "5000")
    sim.wait_for("APPROVED")
    sim.remove_card()
    replay = [raw for d, raw in sim.host_log if d == "request"][-1]
    doc = dialect.decode(replay)
    doc["11"] = "000099"  # same cryptogram, new trace number
    import socket
    import struct

    with socket.create_connection(("127.0.0.1", sim.host.port), timeout=5) as s:
        raw = dialect.encode(doc)
        s.sendall(struct.pack(">H", len(raw)) + raw)
        length = struct.unpack(">H", s.recv(2))[0]
        answer = dialect.decode(s.recv(length))
    assert answer["39"] == "82"


def test_card_removed_too_early(sim):
    tap_sale(sim, "visa-tap-removed", "5000")
    sim.wait_for("PLEASE TAP AGAIN")
    assert "TAP OR SWIPE CARD" in sim.screen  # still waiting for a card
    sim.tap("visa-tap-approve")
    sim.wait_for("APPROVED")
    statuses = [(r["status"], r["note"][:9]) for r in sales(sim)]
    assert statuses == [("failed", "card read"), ("approved", "")]


def test_not_a_payment_card(sim):
    tap_sale(sim, "transit-card", "5000")
    sim.wait_for("CARD NOT SUPPORTED")
    sim.remove_card()
    sim.swipe("visa-approve")  # the customer swipes instead
    sim.pin("1234")
    sim.wait_for("APPROVED")


def test_over_the_transaction_limit_tap_is_not_offered(sim):
    sim.keys("600000{ENTER}")  # 6000.00 > 5000.00
    sim.wait_for("PLEASE SWIPE CARD")
    card = sim.tap("visa-tap-approve")
    sim.swipe("visa-approve")
    sim.pin("1234")
    sim.wait_for("APPROVED")
    assert card.apdus == 0  # the field stayed off


def test_bring_your_own_card_profile(sim, tmp_path):
    profile = tmp_path / "my-card.toml"
    profile.write_text(
        'kernel = "mastercard"\naid = "A0000000041010"\nlabel = "MY BANK"\n'
        'pan = "5413330089020029"\npsn = "00"\nexpiry = "3012"\n'
        'imk_ac = "00112233445566778899AABBCCDDEEFF"\natc = 7\npin = "1234"\nbalance = "20.00"\n'
    )
    # The catalog's mc-tap-stolen holds this PAN: use one the issuer does not know yet.
    profile.write_text(profile.read_text().replace("5413330089020029", "5413330089020037"))
    sim.keys("1500{ENTER}")
    sim.wait_for("TAP OR SWIPE CARD")
    sim.tap(profile=profile)
    sim.wait_for("APPROVED")
    assert "MY BANK" in sim.wait_for_receipts(2)[0]


def test_expired_card_goes_online_and_the_issuer_declines(sim):
    tap_sale(sim, "visa-tap-expired", "5000")
    sim.wait_for("EXPIRED CARD")
    assert sales(sim)[0]["response_code"] == "54"


def test_terminal_action_codes_decline_offline(tmp_path):
    import dataclasses

    from conftest import sim_config
    from hwsim import Simulator

    cfg = sim_config()
    cfg = dataclasses.replace(cfg, contactless=dataclasses.replace(cfg.contactless, tac_denial="0050000000"))
    with Simulator(tmp_path, cfg) as sim:  # denial: service not allowed, expired application
        tap_sale(sim, "visa-tap-expired", "5000")
        sim.wait_for("DECLINED BY TERMINAL")
        assert sim.host_log == []  # declined before anything went online
        assert sales(sim)[0]["status"] == "failed" and "action analysis" in sales(sim)[0]["note"]
        sim.keys("{CANCEL}{ENTER}5000{ENTER}")
        sim.wait_for("TAP OR SWIPE CARD")
        sim.tap("visa-tap-approve")  # a card in date still goes through
        sim.wait_for("APPROVED")
        icc = dict(tlv_items(bytes.fromhex(last_request(sim)["55"])))
        assert icc["9B"] == bytes.fromhex("0800")  # TSI: terminal risk management performed


def test_type_b_card(sim):
    card = tap_sale(sim, "visa-tap-type-b", "5000")  # REQB / ATTRIB instead of REQA / RATS
    sim.wait_for("APPROVED")
    assert card.apdus == 4
    [row] = sales(sim)
    assert (row["status"], row["entry_mode"]) == ("approved", "contactless")
    assert_ledger_agrees(sim)


def test_two_cards_in_the_field(sim):
    a = sim.tap("visa-tap-approve")  # a wallet with two cards laid on the reader
    b = sim.tap("visa-tap-type-b", together=True)
    sim.keys("5000{ENTER}")
    sim.wait_for("PRESENT ONE CARD")
    assert "TAP OR SWIPE CARD" in sim.screen  # still waiting for a card
    assert a.apdus == b.apdus == 0 and sales(sim) == []  # neither card was read
    sim.remove_card(b)
    sim.wait_for("APPROVED")
    assert a.apdus == 4 and b.apdus == 0
    [row] = sales(sim)
    assert row["masked_pan"][-4:] == a.profile.pan[-4:]
    assert_ledger_agrees(sim)


def test_two_type_a_cards_charge_one_once(sim):
    # The reader chip resolves a Type A collision itself and nfcpy hands over one card (see README): the
    # terminal cannot say PRESENT ONE CARD here, but it must still charge exactly one card exactly once.
    a = sim.tap("visa-tap-approve")
    b = sim.tap("mc-tap-approve", together=True)
    sim.keys("5000{ENTER}")
    sim.wait_for("APPROVED")
    assert sorted([a.apdus, b.apdus]) in ([0, 4], [0, 5])
    assert len(sales(sim)) == 1
    assert_ledger_agrees(sim)


def test_stopping_the_reader_ends_the_card_it_is_serving():
    """A card handed to the loop that the loop never ended (the loop stopped first, cleanly or by a power cut)
    must not keep the reader's thread, and its device, for ever: stop() ends the session being served."""
    import asyncio
    import threading

    from drivers.nfc import CardSession, NfcReader

    loop = asyncio.new_event_loop()
    try:
        reader = NfcReader("udp:127.0.0.1:9", loop, lambda event: None)  # not started: no device needed
        session = CardSession(loop)
        reader._session = session  # what the reader thread sets while it serves a card
        serving = threading.Thread(target=session.serve, args=(object(), (OSError,)), daemon=True)
        serving.start()
        serving.join(0.2)
        assert serving.is_alive()  # waiting for the kernel's next command, as it would
        reader.stop()
        serving.join(5)
        assert not serving.is_alive()
    finally:
        loop.close()
