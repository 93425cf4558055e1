"""Review of session 7's changes (chip reversal field 55, our own evdev reader, UnionPay's Beijing-time order
numbers): each test here failed when it was written and passes once the problem it names is fixed."""

from __future__ import annotations

from conftest import wait_until
from firmware.core.emv.data import encode_tlv, tlv_items
from firmware.host import dialect
from test_chip_attacks import insert, sales


def _requests(sim, *mtis):
    return [dialect.decode(raw) for d, raw in sim.host_log if d == "request" and raw[:4].decode() in mtis]


def _declines_with_a_long_iad(n: int, answer: bytes) -> bytes:
    """GENERATE AC 2 answered AAC (format 1) with a 230-byte issuer application data: a GENERATE AC answer
    still fits a short APDU, but the reversal's field 55 (TVR, IFD serial, IAD, ATC) is then over 255 bytes."""
    if n != 2:
        return answer
    body, sw = answer[:-2], answer[-2:]
    tag, value = tlv_items(body)[0]
    if tag == "80":
        atc, ac = value[1:3], value[3:11]
    else:
        inner = dict(tlv_items(value))
        atc, ac = inner["9F36"], inner["9F26"]
    return encode_tlv("80", b"\x00" + atc + ac + bytes(range(230))) + sw


def test_a_card_declining_after_approval_with_a_long_iad_is_still_reversed(csim):
    """Field 55 of a reversal is the card's last word when it declined after the issuer approved: data the
    terminal never sent before, so nothing proves it fits field 55 (255 bytes). A card whose second GENERATE AC
    has a long IAD made a 0400 that cannot be encoded: every attempt ended in a CodecError (a NoReply), the
    approved authorization was never reversed, and the outbox stayed blocked behind it (voids, refunds,
    settlement) for good. The reversal must go, with a field 55 that fits (e.g. the one sent online)."""
    csim.keys("2500{ENTER}")
    csim.wait_for("CARD")
    insert(csim, "unionpay-debit-chip", rewrite=_declines_with_a_long_iad)
    csim.pin("1234")
    csim.wait_for("NOT APPROVED")
    wait_until(lambda: sales(csim)[0]["status"] in ("unknown", "reversed"), what="the card's decline journaled")
    wait_until(lambda: _requests(csim, "0400", "0401"), timeout=20, what="a 0400 that could be sent")
    wait_until(lambda: sales(csim)[0]["status"] == "reversed", timeout=20, what="the reversal acknowledged")
    [reversal, *_] = _requests(csim, "0400", "0401")
    assert len(bytes.fromhex(reversal.get("55", ""))) <= 255
