"""Chip (contact) sales end to end: the simulated card behind a real pcscd and vpcd, the project's PC/SC
driver, the contact kernel in the terminal, the PIN pad, the acquirer (which checks the ARQC and answers an
ARPC in field 55), the journal and the receipts."""

from __future__ import annotations

import dataclasses

from conftest import ROOT, sim_config, wait_until
from firmware.config import ChipConfig
from firmware.host import dialect
from hwsim import Simulator


def start(sim, amount="2500"):
    sim.keys(amount + "{ENTER}")
    sim.wait_for("CARD")


def sales(sim):
    return [r for r in sim.journal() if r["kind"] == "sale"]


def requests(sim):
    return [dialect.decode(raw) for d, raw in sim.host_log if d == "request" and raw[:4] == b"0200"]


def test_a_unionpay_debit_chip_card_with_an_online_pin_is_approved(csim):
    start(csim)
    card = csim.insert("unionpay-debit-chip")
    csim.pin("1234")
    csim.wait_for("APPROVED")
    [row] = sales(csim)
    assert (row["entry_mode"], row["status"], row["masked_pan"]) == ("chip", "approved", "625094******9100")
    [req] = requests(csim)
    assert req["22"] == "051" and req["52"] and "9F26" in req["55"].upper()  # chip entry, PIN block, ARQC
    assert row["note"].startswith("TC ")  # the card's second GENERATE AC accepted the issuer's answer
    assert card.apdus >= 10
    receipts = csim.wait_for_receipts(2)
    assert "CHIP" in receipts[-1] and "625094******9100" in receipts[-1]


def test_a_signature_card_asks_for_no_pin(csim):
    start(csim)
    csim.insert("visa-chip-sda-signature")
    csim.wait_for("APPROVED")
    [req] = requests(csim)
    assert "52" not in req and sales(csim)[0]["status"] == "approved"
    merchant, customer = csim.wait_for_receipts(2)[-2:]
    assert "CARDHOLDER SIGNATURE" in merchant and "持卡人签名" in merchant  # the cashier collects it there
    assert "SIGNATURE" not in customer and "PIN VERIFIED" not in merchant


def test_the_cardholder_chooses_between_two_applications(csim):
    start(csim)
    csim.insert("unionpay-dual-app")
    csim.wait_for("SELECT APPLICATION")
    assert "2 UnionPay Credit".upper() in csim.screen.upper()
    csim.keys("2")
    csim.pin("1234")
    csim.wait_for("APPROVED")
    [req] = requests(csim)
    assert "A000000333010102" in req["55"].upper()  # the credit application was the one used


def test_a_card_taken_out_at_the_pin_prompt_charges_nothing(csim):
    start(csim)
    csim.insert("unionpay-debit-chip")
    csim.wait_for("ENTER PIN")
    csim.remove_card()
    csim.wait_for("NOT CHARGED")
    assert requests(csim) == [] and all(r["status"] != "approved" for r in sales(csim))


def test_cancel_at_the_pin_prompt_charges_nothing(csim):
    start(csim)
    csim.insert("unionpay-debit-chip")
    csim.wait_for("ENTER PIN")
    csim.keys("12{CANCEL}")
    csim.wait_for("CANCELLED")
    assert requests(csim) == []


def test_a_wrong_online_pin_is_declined_by_the_issuer(csim):
    start(csim)
    csim.insert("unionpay-debit-chip")
    csim.pin("9999")
    csim.wait_for("DECLINED")
    assert "WRONG PIN" in csim.screen and sales(csim)[0]["status"] == "declined"


def test_a_card_taken_out_while_the_host_answers_is_reversed(csim):
    start(csim)
    csim.insert("unionpay-debit-chip")
    csim.host.hold()  # the approval waits until the card is gone
    csim.pin("1234")
    csim.wait_for("AUTHORIZING")
    csim.remove_card()
    csim.host.release()
    csim.wait_for("NOT APPROVED")
    wait_until(lambda: sales(csim)[0]["status"] == "reversed", what="the approval reversed")
    assert any(e["reversed"] for e in csim.host.ledger)


CHIP_STRIPE = ";6250941006529100=30122010000000000000?"  # the UnionPay chip card's stripe: service code 201


def test_a_chip_cards_stripe_is_sent_to_the_chip_reader(csim):
    start(csim)
    csim.swipe(track2=CHIP_STRIPE)
    csim.wait_for("USE CHIP READER")
    assert requests(csim) == []


def test_fallback_to_the_stripe_after_the_chip_failed_goes_out_as_801(tmp_path, pcscd):
    cfg = sim_config(host=2.0)
    cfg = dataclasses.replace(
        cfg, chip=ChipConfig(reader="hwsim chip slot"), emv=dataclasses.replace(cfg.emv, fallback=True)
    )
    unreadable = tmp_path / "odd-chip.toml"  # its only application is one this terminal does not take
    unreadable.write_text(
        (ROOT / "hw-sim/hwsim/cards/chip/unionpay-debit-chip.toml")
        .read_text()
        .replace("A000000333010101", "A000000999010101")
    )
    with Simulator(tmp_path / "data", cfg) as sim:
        start(sim)
        sim.insert(profile=unreadable)
        sim.wait_for("NOT SUPPORTED")
        sim.remove_card()
        sim.swipe(track2=CHIP_STRIPE)
        sim.pin("1234")
        sim.wait_for("DECLINED")  # the simulated issuer declines a chip card's stripe (05), as many do
        [req] = requests(sim)
        assert req["22"] == "801"  # fallback, said to the host


def test_an_offline_pin_the_card_checks_wrong_then_right(csim):
    start(csim)
    csim.insert("visa-chip-dda")  # plaintext PIN checked by the card first
    csim.pin("9999")
    csim.wait_for("WRONG PIN, 2 TRIES LEFT")
    csim.pin("1234")
    csim.wait_for("APPROVED")
    [req] = requests(csim)
    assert "52" not in req  # the card checked it: no PIN block went to the host
    assert sales(csim)[0]["cvm"] == "offline_pin"


def test_an_enciphered_offline_pin(csim):
    start(csim)
    csim.insert("mc-chip-cda")
    csim.pin("1234")
    csim.wait_for("APPROVED")
    assert sales(csim)[0]["cvm"] == "offline_enciphered_pin" and "52" not in requests(csim)[0]


def test_no_pin_where_the_card_allows_it_goes_on_with_a_signature(csim):
    start(csim)
    csim.insert("unionpay-debit-chip")  # online PIN, else signature
    csim.wait_for("NO PIN? PRESS ENTER")
    csim.keys("{ENTER}")  # ENTER on the empty prompt: no PIN
    csim.wait_for("APPROVED")
    [req] = requests(csim)
    assert "52" not in req and sales(csim)[0]["cvm"] == "signature"
    assert "CARDHOLDER SIGNATURE" in csim.wait_for_receipts(2)[-2]


def test_an_answer_whose_arpc_the_card_rejects_is_reversed(csim):
    def bad_arpc(request, answer):
        icc = answer.get("55", "")
        assert icc.startswith("910A"), icc  # the ARPC (8 bytes) and the response code
        return [{**answer, "55": "910A" + "00" * 8 + icc[20:24] + icc[24:]}]

    start(csim)
    csim.insert("unionpay-debit-chip")
    csim.host.lie(bad_arpc)
    csim.pin("1234")
    csim.wait_for("NOT APPROVED")
    wait_until(lambda: sales(csim)[0]["status"] == "reversed", what="the approval reversed")
    assert csim.host.ledger[0]["reversed"]


def test_a_card_taken_out_after_a_failed_read_leaves_the_reader_seeing_the_next(tmp_path, pcscd):
    """A card the terminal gave up on, then taken out: the next card must be seen. (Powering the first card
    down from the terminal made Debian's vpcd miss its removal, and with it every card after.)"""
    unreadable = tmp_path / "odd-chip.toml"
    chip_dir = ROOT / "hw-sim/hwsim/cards/chip"
    unreadable.write_text(
        (chip_dir / "unionpay-debit-chip.toml").read_text().replace("A000000333010101", "A0000009990101")
    )
    cfg = dataclasses.replace(sim_config(host=2.0), chip=ChipConfig(reader="hwsim chip slot"))
    with Simulator(tmp_path / "data", cfg) as sim:
        start(sim)
        sim.insert(profile=unreadable)
        sim.wait_for("NOT SUPPORTED")
        sim.remove_card()
        sim.insert("unionpay-debit-chip")
        sim.pin("1234")
        sim.wait_for("APPROVED")
