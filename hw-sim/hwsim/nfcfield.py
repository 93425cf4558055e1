"""The simulated RF field: ISO/IEC 14443 Type A and Type B cards on the far side of nfcpy's own UDP driver.

nfcpy opened with `udp:127.0.0.1:PORT` sends datagrams `b"106A <hex frame>"` / `b"106B <hex frame>"` (no CRC)
and a bare `b"RFOFF"` when it closes. Each card in the field keeps its ISO/IEC 14443-3 state (IDLE, READY,
ACTIVE, HALT) and answers activation as the standard says: Type A REQA/WUPA, anticollision, SELECT, HLTA, RATS;
Type B REQB/WUPB, ATTRIB, HLTB. The one card in protocol state answers ISO-DEP blocks (I-blocks with chaining
both ways, R(ACK)/R(NAK), S(DESELECT)); the APDUs inside go to its CardApplet.

More than one card may be in the field. Real reader chips resolve a Type A bit collision themselves and hand
the host one card; here the card with the larger UID wins, as the chip's "pick the 1 bit" rule does for some
pair. Two Type B cards answering the same REQB slot garble it: the datagram carries no frame, which nfcpy
reads as a transmission error, as a reader chip reports a CRC error.

A probe (REQA/WUPA, REQB/WUPB) that no card in the field answers gets, after CHIP_TIMEOUT, the same datagram
without data: a real reader chip reports its own timeout to the host within a few milliseconds, while nfcpy's
UDP driver would wait a hard-coded second for a silent answer. nfcpy reads that datagram as "no data" and
`sense()` moves on at once (Type A: `sense_tta` lets the TransmissionError out and `sense()` logs it; Type B:
`sense_ttb` returns None). So does a Type A anticollision or SELECT that no card answers (a reselect by a UID
that has left; nfcpy waits 0.5 s for those). A card put in the field answers the probe already waiting, if it
may; if not, the timeout starts then. An empty field stays silent, so a reader polling an empty field waits
its second per probe and stays cheap. ISO-DEP blocks are never answered for a card: a card that left the
field costs the reader its frame waiting time, as on a real reader.
"""

from __future__ import annotations

import hashlib
import logging
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from .emvcard import CardApplet

log = logging.getLogger(__name__)

ATQA = bytes.fromhex("0400")
SAK_ISO_DEP = 0x20
# ATS: TL, T0 (TA, TB, TC present; FSCI 8 = 256 bytes), TA, TB (FWI 10: ~0.3 s frame waiting time), TC.
ATS = bytes.fromhex("057880A002")
# ATQB protocol info: bit rates 106 only; FSCI 8 (256 bytes) + ISO 14443-4 compliant; FWI 10, no NAD/CID.
PROT_INFO_B = bytes.fromhex("0081A0")
FSD = 256
COLLISION = b""  # an answer garbled by two cards talking at once: sent as a datagram without data
NO_ANSWER = b""  # what a reader chip reports when its probe timed out: also a datagram without data
CHIP_TIMEOUT = 0.005  # seconds before an unanswered probe is reported while cards are in the field


@dataclass(eq=False)
class FieldCard:
    """One card in the field: its applet, technology, identifier (NFCID1 or PUPI) and 14443-3 state."""

    applet: CardApplet
    tech: str  # "A" or "B"
    uid: bytes
    state: str = "idle"  # idle | ready | active | protocol | halt


def _probe(frame: bytes) -> bool:
    """REQA/WUPA or REQB/WUPB: what a polling reader sends to find cards."""
    return frame in (b"\x26", b"\x52") or (frame[:1] == b"\x05" and len(frame) == 3)


def _anticollision(brty: str, frame: bytes) -> bool:
    """Type A SDD_REQ or SEL_REQ (nfcpy's UDP driver waits 0.5 s for each, inside `sense`)."""
    return brty == "106A" and frame[:1] in (b"\x93", b"\x95", b"\x97") and frame[1:2] in (b"\x20", b"\x70")


def default_uid(card_id: str, tech: str) -> bytes:
    """A stable identifier for a card: a random-UID-style NFCID1 (08 ...) for Type A, a PUPI for Type B."""
    digest = hashlib.sha256(card_id.encode()).digest()
    return b"\x08" + digest[:3] if tech == "A" else digest[:4]


class RfField:
    """A UDP endpoint playing the cards in the field; one thread, blocking select (no polling)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._cards: list[FieldCard] = []
        self._pending: tuple[str, bytes, Any] | None = None  # the last probe nobody answered
        self._deadline: float | None = None  # monotonic time at which the pending probe is reported unanswered
        self._reset_link()
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()  # stop, or a new deadline to wait for
        self._thread = threading.Thread(target=self._run, name="hwsim-rf-field", daemon=True)
        self._thread.start()

    def _reset_link(self) -> None:
        self._pcb = 0  # last block number the reader used
        self._rx = b""  # chained command being received
        self._tx = b""  # chained response still to send
        self._last = b""  # last block sent, for R(NAK) retransmission

    # --- test control ----------------------------------------------------------------------

    def present(
        self, applet: CardApplet, tech: str = "A", uid: bytes | None = None, *, together: bool = False
    ) -> FieldCard:
        """Put a card in the field (beside the ones there when `together`); a polling reader sees it at once."""
        if tech not in ("A", "B"):
            raise ValueError("tech must be 'A' or 'B'")
        card = FieldCard(applet, tech, uid or default_uid(applet.profile.id, tech))
        with self._lock:
            if not together:
                self._cards.clear()
                self._reset_link()
            self._cards.append(card)
            if self._pending is not None:
                brty, frame, addr = self._pending
                answer = self._frame(brty, frame) if _probe(frame) else None
                if answer is not None:  # the probe already waiting: the new card answers it
                    self._pending = self._deadline = None
                    self._send(brty, answer, addr)
                elif self._deadline is None:  # cards in the field now: the chip's timeout runs
                    self._deadline = time.monotonic() + CHIP_TIMEOUT
                    self._wake_w.send(b"w")
        return card

    def remove(self, applet: CardApplet | None = None) -> None:
        """Take a card (or every card) out of the field."""
        with self._lock:
            if applet is None:
                self._cards.clear()
            else:
                self._cards = [c for c in self._cards if c.applet is not applet]
            if self._protocol() is None:
                self._reset_link()
            if not self._cards:  # an empty field stays silent; the probe waits for the next card
                self._deadline = None

    @property
    def cards(self) -> list[CardApplet]:
        """The cards in the field."""
        with self._lock:
            return [c.applet for c in self._cards]

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stopping = True
        self._wake_w.send(b"x")
        self._thread.join(2)
        for s in (self._sock, self._wake_r, self._wake_w):
            s.close()

    # --- radio ----------------------------------------------------------------------------------

    def _send(self, brty: str, frame: bytes, addr: Any) -> None:
        self._sock.sendto(f"{brty} {frame.hex()}".strip().encode(), addr)

    def _run(self) -> None:
        while True:
            with self._lock:
                deadline = self._deadline
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._sock, self._wake_r], [], [], wait)
            if self._wake_r in ready:
                self._wake_r.recv(64)
                if self._stopping:
                    return
            if self._sock in ready:
                try:
                    datagram, addr = self._sock.recvfrom(4096)
                except OSError:
                    return
                self._receive(datagram, addr)
            self._time_out()

    def _receive(self, datagram: bytes, addr: Any) -> None:
        with self._lock:
            self._pending = self._deadline = None  # the reader has moved on from any earlier probe
            if datagram.startswith(b"RFOFF"):  # field off: every card loses power
                for card in self._cards:
                    card.state = "idle"
                self._reset_link()
                return
            try:
                brty_b, hexdata = datagram.split()
                brty, frame = brty_b.decode(), bytes.fromhex(hexdata.decode())
            except ValueError:
                return
            answer = self._frame(brty, frame)
            if answer is not None:
                self._last = answer
                self._send(brty, answer, addr)
            elif _probe(frame) or _anticollision(brty, frame):
                self._pending = (brty, frame, addr)
                if self._cards:
                    self._deadline = time.monotonic() + CHIP_TIMEOUT

    def _time_out(self) -> None:
        """Report the pending probe as unanswered once the chip's timeout has run out (cards still there)."""
        with self._lock:
            if self._deadline is None or time.monotonic() < self._deadline:
                return
            pending, self._pending, self._deadline = self._pending, None, None
            if pending is not None and self._cards:
                self._send(pending[0], NO_ANSWER, pending[2])

    def _protocol(self) -> FieldCard | None:
        return next((c for c in self._cards if c.state == "protocol"), None)

    def _frame(self, brty: str, frame: bytes) -> bytes | None:
        if not frame:
            return None
        for card in list(self._cards):
            vanish = card.applet.profile.vanish_after
            if vanish and card.applet.apdus >= vanish:
                self._cards.remove(card)  # the customer pulled the card away
        if brty == "106A":
            return self._type_a(frame)
        if brty == "106B":
            return self._type_b(frame)
        return None

    def _type_a(self, frame: bytes) -> bytes | None:
        cards = [c for c in self._cards if c.tech == "A"]
        if frame in (b"\x26", b"\x52"):  # REQA / WUPA (WUPA also wakes halted cards)
            woken = [c for c in cards if c.state != "halt" or frame == b"\x52"]
            for card in woken:
                if card.state == "protocol":
                    self._reset_link()
                card.state = "ready"
            return ATQA if woken else None
        ready = [c for c in cards if c.state == "ready"]
        if frame == b"\x93\x20":  # SDD_REQ, cascade level 1
            if not ready:
                return None
            uid = max(ready, key=lambda c: c.uid).uid
            return uid + bytes([uid[0] ^ uid[1] ^ uid[2] ^ uid[3]])
        if frame[:2] == b"\x93\x70":  # SEL_REQ: the named card is selected, the rest idle
            chosen = None
            for card in ready:
                if card.uid == frame[2:6]:
                    card.state, chosen = "active", card
                else:
                    card.state = "idle"
            return bytes([SAK_ISO_DEP]) if chosen else None
        active = next((c for c in cards if c.state == "active"), None)
        if frame[:2] == b"\x50\x00":  # HLTA: no answer
            if active:
                active.state = "halt"
            return None
        if frame[0] == 0xE0 and len(frame) == 2:  # RATS
            if active is None:
                return None
            active.state = "protocol"
            self._reset_link()
            return ATS
        card = self._protocol()
        return self._iso_dep(card, frame) if card and card.tech == "A" else None

    def _type_b(self, frame: bytes) -> bytes | None:
        cards = [c for c in self._cards if c.tech == "B"]
        if frame[0] == 0x05 and len(frame) == 3:  # REQB / WUPB (PARAM bit 4)
            wake = bool(frame[2] & 0x08)
            woken = [c for c in cards if c.state in ("idle", "ready") or (wake and c.state == "halt")]
            if not woken:
                return None
            for card in woken:
                card.state = "ready"
            if len(woken) > 1:
                return COLLISION  # all answer in the one slot: the reader hears noise
            return b"\x50" + woken[0].uid + b"\x00\x00\x00\x00" + PROT_INFO_B
        if frame[0] == 0x1D and len(frame) >= 9:  # ATTRIB
            card = next((c for c in cards if c.state == "ready" and c.uid == frame[1:5]), None)
            if card is None:
                return None
            card.state = "protocol"
            self._reset_link()
            return b"\x00"  # MBLI 0, CID 0
        if frame[0] == 0x50 and len(frame) == 5:  # HLTB
            card = next((c for c in cards if c.uid == frame[1:5] and c.state != "idle"), None)
            if card is None:
                return None
            card.state = "halt"
            return b"\x00"
        card = self._protocol()
        return self._iso_dep(card, frame) if card and card.tech == "B" else None

    def _iso_dep(self, card: FieldCard, block: bytes) -> bytes | None:
        pcb = block[0]
        if pcb & 0xE2 == 0x02:  # I-block (02/03, chaining 12/13)
            self._pcb = pcb & 0x01
            self._rx += block[1:]
            if pcb & 0x10:  # more to come: acknowledge
                return bytes([0xA2 | self._pcb])
            apdu, self._rx = self._rx, b""
            self._tx = card.applet.process(apdu)
            return self._next_chunk()
        if pcb & 0xF6 == 0xA2:  # R(ACK): the reader wants our next chunk
            self._pcb = pcb & 0x01
            return self._next_chunk() if self._tx else None
        if pcb & 0xF6 == 0xB2:  # R(NAK): presence check or lost block
            return bytes([0xA2 | (pcb & 0x01)]) if (pcb & 0x01) != self._pcb else self._last
        if pcb & 0xF7 == 0xC2:  # S(DESELECT): the card halts
            card.state = "halt"
            return bytes([pcb])
        return None

    def _next_chunk(self) -> bytes:
        room = FSD - 3  # PCB + 2 CRC bytes in the frame size
        chunk, self._tx = self._tx[:room], self._tx[room:]
        chaining = 0x10 if self._tx else 0x00
        return bytes([0x02 | chaining | self._pcb]) + chunk
