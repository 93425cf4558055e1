"""Review of session 7's changes (chip reversal field 55, our own evdev reader, UnionPay's Beijing-time order
numbers): each test here failed when it was written and passes once the problem it names is fixed."""

from __future__ import annotations

import pytest

from conftest import wait_until
from firmware.core.emv.data import encode_tlv, tlv_items
from firmware.core.emv.phases import afl_entries, reversal_fields
from firmware.host import dialect
from hwsim.emvpki import TestPki
from test_chip_attacks import Wrapped, insert, sales
from test_emv_contact import Host, applet, params, run


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


class _RecordsLie(Wrapped):
    """A simulated chip card whose unsigned records also carry terminal-sourced tags: a TVR of its own (95, a
    marker) and, as the IFD serial (9F1E), eight digits of a card number."""

    signed: frozenset[tuple[int, int]] = frozenset()
    lied = False

    def process(self, apdu):
        answer = super().process(apdu)
        if apdu[:2] == b"\x80\xa8" and answer[-2:] == b"\x90\x00":  # GPO: the records ODA signs stay as they are
            self.signed = frozenset(
                (e.sfi, r) for e in afl_entries(_afl(answer[:-2])) for r in range(e.first, e.first + e.oda_records)
            )
        if apdu[:2] != b"\x00\xb2" or answer[-2:] != b"\x90\x00" or (apdu[3] >> 3, apdu[2]) in self.signed:
            return answer
        [(_, body)] = tlv_items(answer[:-2])
        self.lied = True
        lies = encode_tlv("95", bytes.fromhex("A5A5A5A5A5")) + encode_tlv("9F1E", b"62123456")
        return encode_tlv("70", body + lies) + answer[-2:]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return TestPki(tmp_path_factory.mktemp("pki"))


def _afl(gpo: bytes) -> bytes:
    [(tag, value)] = tlv_items(gpo)
    return value[2:] if tag == "80" else dict(tlv_items(value))["94"]


def test_a_cards_records_cannot_speak_for_the_terminal_in_the_reversal(pki):
    """The contact kernel merges the terminal's data and the card's with the card's last ({**terminal, **card}),
    so a tag the terminal owns (95 TVR, 9F1E IFD serial) that a card's record also carries goes out as the card
    says. The reversal now carries those tags and the journal keeps them (reversal_icc): a card could tell the
    issuer a clean TVR in the reversal, and put digits of its own card number (as 9F1E) into a journal column
    said to hold no card data. The reversal's field 55 must carry the terminal's own TVR and IFD serial."""
    for card_id in ("visa-chip-dda", "unionpay-debit-chip"):
        chip = _RecordsLie(applet(pki, card_id))
        out, _ = run(chip, params(pki), host=Host(chip.profile, bad_arpc=True))
        assert out.reversal and chip.lied, card_id
        ifd = b"CT000001".hex().upper()
        assert (out.icc["95"], out.icc["9F1E"]) == (out.tvr, ifd), card_id  # the card's last word
        online = reversal_fields(out.card.icc)  # what the 0200 said, kept at begin_sale for a reversal
        assert online["9F1E"] == ifd and online["95"] != "A5A5A5A5A5", card_id


def test_a_device_at_end_of_file_does_not_spin_the_reader():
    """drivers.hid.input_events waits for readability, reads a batch and, when the batch is empty, waits again.
    A simulated device whose typing side is gone (the kill harness's child terminal when the parent closes its
    pipe: the child's adopted device never learns `gone`, it sees end of file) stays readable and every read
    gives no events: the reader went round add_reader / read / remove_reader forever, at full CPU, and never
    let the terminal's reconnect loop take over. (evdev's async_read_loop, before it, stopped on such a read.)
    A readable device that gives nothing is gone: the iterator must end with OSError, as an unplug does."""
    import asyncio
    import os

    from drivers.hid import input_events
    from hwsim.inputs import SimInputDevice

    rfd, wfd = os.pipe()
    device = SimInputDevice.adopt("scanner", rfd)
    os.close(wfd)  # the other side is gone: end of file
    reads = 0
    real_read = device.read

    def counted_read():
        nonlocal reads
        reads += 1
        if reads > 100:
            raise AssertionError("the reader keeps reading a device that gives nothing: a busy loop")
        return real_read()

    device.read = counted_read  # type: ignore[method-assign]

    async def first_event():
        return await input_events(device).__anext__()

    try:
        with pytest.raises(OSError):
            asyncio.run(asyncio.wait_for(first_event(), 30))
    finally:
        device.destroy()
