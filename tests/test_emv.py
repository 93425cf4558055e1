"""The contactless kernel without a radio: TLV and DOL handling, decisions, and garbage from the card."""

from __future__ import annotations

import dataclasses
import warnings
from datetime import date

import pytest
from hypothesis import given, settings, strategies as st

from firmware.emv import (CardError, CardNotSupported, ChipCard, KernelParams, bcd, build_dol, kernel, parse_dol,
                          tlv_items, track2_from_57)
from hwsim.emvcard import CardApplet, contactless_catalog

warnings.filterwarnings("ignore", message=".*TripleDES.*")
CATALOG = contactless_catalog()
PARAMS = KernelParams(amount=1250, currency_numeric="156", country_numeric="156", today=date(2026, 11, 26),
                      unpredictable=bytes.fromhex("52BF4585"), supported_aids=("A0000000031010", "A0000000041010"),
                      cvm_limit=10000)


def drive(answer, params=PARAMS) -> tuple[ChipCard, list[bytes]]:
    """Run the kernel against `answer(apdu) -> rapdu`; return the result and the commands sent."""
    sent = []
    steps = kernel(params)
    try:
        apdu = next(steps)
        while True:
            sent.append(apdu)
            apdu = steps.send(answer(apdu))
    except StopIteration as done:
        return done.value, sent


def test_tlv_items_keeps_repeated_tags_and_long_lengths():
    data = bytes.fromhex("6103" "4F0101" "6103" "4F0102" "5F2D" "8180") + bytes(128)
    items = tlv_items(data)
    assert [t for t, _ in items] == ["61", "61", "5F2D"] and len(items[2][1]) == 128
    # The PSE FCI example from EMV Book 1: 6F(84 '1PAY.SYS.DDF01', A5(88 02, 5F2D 'en'))
    fci = bytes.fromhex("6F1A840E315041592E5359532E4444463031A5088801025F2D02656E")
    [(tag, body)] = tlv_items(fci)
    assert tag == "6F" and dict(tlv_items(body))["84"] == b"1PAY.SYS.DDF01"
    assert dict(tlv_items(dict(tlv_items(body))["A5"]))["5F2D"] == b"en"


@pytest.mark.parametrize("bad", ["6F05840E", "9F", "9F1A", "5F2D81", "5F2D8300000001"])
def test_tlv_items_rejects_truncation(bad):
    with pytest.raises(CardError):
        tlv_items(bytes.fromhex(bad))


def test_dol_parse_and_build():
    pdol = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704DF811701")
    dol = parse_dol(pdol)
    assert dol[:3] == [("9F66", 4), ("9F02", 6), ("9F03", 6)] and dol[-1] == ("DF8117", 1)
    values = {"9F02": bcd(1250, 6), "9F1A": bcd(156, 2), "9F66": bytes.fromhex("36004000")}
    out = build_dol(dol, values)
    assert len(out) == 4 + 6 + 6 + 2 + 5 + 2 + 3 + 1 + 4 + 1
    assert out[:4].hex() == "36004000" and out[4:10].hex() == "000000001250" and out[16:18].hex() == "0156"
    assert build_dol([("9F02", 3)], {"9F02": bcd(1250, 6)}).hex() == "001250"    # numeric: keep the right end
    assert build_dol([("50", 3)], {"50": b"VISA"}) == b"VIS"                        # other: cut on the right
    assert build_dol([("9F4E", 2)], {}) == b"\x00\x00"                               # unknown: zeros
    with pytest.raises(CardError):
        parse_dol(bytes.fromhex("9F02"))


def test_track2_equivalent():
    assert track2_from_57(bytes.fromhex("4761739001010010D30122011000000F")) == "4761739001010010=30122011000000"
    with pytest.raises(CardError):
        track2_from_57(bytes.fromhex("4761739001010010"))


@pytest.mark.parametrize("card_id, commands", [
    ("visa-tap-approve", ["00A4", "00A4", "80A8", "00B2"]),
    ("mc-tap-approve", ["00A4", "00A4", "80A8", "00B2", "80AE"]),
])
def test_both_kernels_send_only_what_they_need(card_id, commands):
    card, sent = drive(CardApplet(CATALOG[card_id]).process)
    assert [a[:2].hex().upper() for a in sent] == commands
    assert card.cvm == "none" and card.cid & 0xC0 == 0x80
    assert card.track2.startswith(CATALOG[card_id].pan + "=")
    assert card.icc["9F02"] == "000000001250" and card.icc["9F37"] == "52BF4585"
    assert CATALOG[card_id].pan not in repr(card)


def test_cvm_selection():
    big = dataclasses.replace(PARAMS, amount=20000)
    assert drive(CardApplet(CATALOG["visa-tap-approve"]).process, big)[0].cvm == "online_pin"
    assert drive(CardApplet(CATALOG["mc-tap-approve"]).process, big)[0].cvm == "online_pin"
    assert drive(CardApplet(CATALOG["phone-wallet"]).process, big)[0].cvm == "cdcvm"
    assert drive(CardApplet(CATALOG["phone-wallet"]).process)[0].cvm == "none"


def test_application_choice_by_priority_and_support():
    applet = CardApplet(CATALOG["visa-tap-approve"])
    with pytest.raises(CardNotSupported):
        drive(applet.process, dataclasses.replace(PARAMS, supported_aids=("A000000333",)))
    with pytest.raises(CardNotSupported):
        drive(CardApplet(CATALOG["transit-card"]).process)


def _patched(card_id, patch):
    applet = CardApplet(CATALOG[card_id])

    def answer(apdu):
        return patch(apdu, applet.process(apdu))
    return answer


@pytest.mark.parametrize("name, patch, screen", [
    ("GPO refused", lambda a, r: b"\x69\x85" if a[:2] == b"\x80\xa8" else r, "CARD ERROR"),
    ("record missing", lambda a, r: b"\x6a\x83" if a[1] == 0xB2 else r, "CARD ERROR"),
    ("no cryptogram", lambda a, r: r.replace(bytes.fromhex("9F2608"), bytes.fromhex("9F2508")), "CARD ERROR"),
    ("card says AAC", lambda a, r: r.replace(bytes.fromhex("9F270180"), bytes.fromhex("9F270100")), "DECLINED BY CARD"),
    ("SW only", lambda a, r: r[-2:] if a[:2] == b"\x80\xa8" else r, "CARD ERROR"),
    ("one byte", lambda a, r: b"\x90", "CARD ERROR"),
    ("bad AFL", lambda a, r: r.replace(bytes.fromhex("940408010100"), bytes.fromhex("940400010100")), "CARD ERROR"),
])
def test_bad_card_answers_end_in_a_screen(name, patch, screen):
    with pytest.raises(CardError) as err:
        drive(_patched("visa-tap-approve", patch))
    assert err.value.screen.startswith(screen), name


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_tlv_parser_only_raises_card_error(data):
    try:
        tlv_items(data)
    except CardError:
        pass


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_kernel_survives_any_card_answer(data):
    """Real answers, each possibly replaced by random bytes, truncated or given a random status word."""
    applet = CardApplet(CATALOG[data.draw(st.sampled_from(["visa-tap-approve", "mc-tap-approve"]))])

    def answer(apdu):
        real = applet.process(apdu)
        how = data.draw(st.sampled_from(["real", "real", "random", "cut", "sw"]))
        if how == "random":
            return data.draw(st.binary(max_size=64))
        if how == "cut":
            return real[:data.draw(st.integers(0, len(real)))]
        if how == "sw":
            return real[:-2] + data.draw(st.binary(min_size=2, max_size=2))
        return real

    try:
        card, _ = drive(answer)
    except CardError:
        return
    assert card.track2 and card.cryptogram
