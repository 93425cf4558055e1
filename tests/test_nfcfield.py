"""The simulated RF field answers like a reader chip: a probe no card answers is reported at once ("no data"),
while cards are in the field; an empty field stays silent; a card arriving answers the probe already waiting."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from conftest import wait_until
from hwsim import nfcfield
from hwsim.emvcard import CardApplet, contactless_catalog
from hwsim.nfcfield import CHIP_TIMEOUT, RfField

REQA, REQB = "106A 26", "106B 050010"


@pytest.fixture
def field() -> Iterator[RfField]:
    f = RfField()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def reader(field: RfField) -> Iterator[socket.socket]:
    """A bare UDP socket speaking nfcpy's datagrams to the field (a broken field fails, never hangs)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5)
    s.connect(("127.0.0.1", field.port))
    try:
        yield s
    finally:
        s.close()


def applet(card_id: str) -> CardApplet:
    return CardApplet(contactless_catalog()[card_id])


def ask(reader: socket.socket, datagram: str) -> bytes:
    reader.send(datagram.encode())
    return reader.recv(1024)


def test_a_probe_of_the_other_technology_is_reported_unanswered(field, reader):
    field.present(applet("visa-tap-type-b"), "B")
    assert ask(reader, REQA) == b"106A"  # bit rate, no frame: nfcpy's "no data"
    assert ask(reader, REQB).startswith(b"106B 50")  # the card's ATQB
    field.present(applet("visa-tap-approve"), "A")  # replaces the Type B card
    assert ask(reader, REQB) == b"106B"
    assert ask(reader, REQA) == b"106A 0400"  # ATQA


def test_a_reselect_of_a_card_that_left_is_reported_unanswered(field, reader):
    field.present(applet("visa-tap-approve"), "A")
    assert ask(reader, REQA) == b"106A 0400"
    assert ask(reader, "106A 937001020304" + "04") == b"106A"  # SEL_REQ naming another UID


def test_two_type_b_cards_garble_reqb_and_leave_reqa_unanswered(field, reader):
    field.present(applet("visa-tap-type-b"), "B", uid=bytes.fromhex("11111111"))
    field.present(applet("visa-tap-type-b"), "B", uid=bytes.fromhex("22222222"), together=True)
    assert ask(reader, REQB) == b"106B"
    assert ask(reader, REQA) == b"106A"


def probe_waiting(field: RfField) -> bool:
    with field._lock:
        return field._pending is not None


def test_an_empty_field_stays_silent_and_an_arriving_card_answers_the_waiting_probe(field, reader):
    reader.send(REQA.encode())
    wait_until(lambda: probe_waiting(field), what="the probe reached the field")
    time.sleep(20 * CHIP_TIMEOUT)  # had the empty field answered, "106A" would be waiting before the ATQA
    field.present(applet("visa-tap-approve"), "A")
    assert reader.recv(1024) == b"106A 0400"


def test_a_card_that_cannot_answer_the_waiting_probe_starts_the_chip_timeout(field, reader):
    reader.send(REQA.encode())
    wait_until(lambda: probe_waiting(field), what="the probe reached the field")
    field.present(applet("visa-tap-type-b"), "B")
    assert reader.recv(1024) == b"106A"
    assert ask(reader, REQB).startswith(b"106B 50")


def test_a_card_taken_away_before_the_timeout_leaves_the_probe_to_the_next_card(field, reader, monkeypatch):
    monkeypatch.setattr(nfcfield, "CHIP_TIMEOUT", 60.0)  # the card surely leaves before the chip gives up
    card = applet("visa-tap-type-b")
    field.present(card, "B")
    reader.send(REQA.encode())
    wait_until(lambda: probe_waiting(field), what="the probe reached the field")
    field.remove(card)
    with field._lock:
        assert field._deadline is None and field._pending is not None  # silent again, the probe still waits
    field.present(applet("visa-tap-approve"), "A")
    assert reader.recv(1024) == b"106A 0400"


def test_nfcpy_takes_the_unanswered_probe_as_no_card_without_waiting_out_its_timeout(field, monkeypatch):
    """nfcpy 1.0.4's UDP driver: `_recv_data` raises TransmissionError("no data") for the datagram; sense_tta
    lets it out and sense() logs it, sense_ttb returns None. Its own timeout would raise TimeoutError instead."""
    import nfc
    import nfc.clf
    import nfc.clf.udp
    from nfc.clf import RemoteTarget

    outcomes: list[str] = []
    recv = nfc.clf.udp.Device._recv_data

    def recording(self, timeout, *brty):
        try:
            answer = recv(self, timeout, *brty)
        except nfc.clf.CommunicationError as exc:
            outcomes.append(type(exc).__name__)
            raise
        outcomes.append("answer")
        return answer

    monkeypatch.setattr(nfc.clf.udp.Device, "_recv_data", recording)
    clf = nfc.ContactlessFrontend(f"udp:127.0.0.1:{field.port}")
    try:
        field.present(applet("visa-tap-type-b"), "B")
        found = clf.sense(RemoteTarget("106A"), RemoteTarget("106B"), iterations=1)
        assert found is not None and found.brty == "106B"
        assert outcomes == ["TransmissionError", "answer"]
        outcomes.clear()
        field.present(applet("visa-tap-approve"), "A")
        assert clf.sense(RemoteTarget("106B"), iterations=1) is None
        found = clf.sense(RemoteTarget("106A"), iterations=1)
        assert found is not None and found.brty == "106A"
        assert outcomes == ["TransmissionError", "answer", "answer", "answer"]  # REQB; ATQA, SDD, SEL
    finally:
        clf.close()
