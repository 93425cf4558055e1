"""The simulated RF field: an ISO/IEC 14443-4 Type A card on the far side of nfcpy's own UDP driver.

nfcpy opened with `udp:127.0.0.1:PORT` sends datagrams `b"106A <hex frame>"` (no CRC) and a bare
`b"RFOFF"` when it closes. The card here answers activation (SENS_REQ, SDD, SEL, RATS) and ISO-DEP
blocks (I-blocks with chaining both ways, R(ACK)/R(NAK), S(DESELECT)); the APDUs inside go to a
CardApplet. With no card in the field nothing answers, as in real life.
"""

from __future__ import annotations

import logging
import select
import socket
import threading
from typing import Any

from .emvcard import CardApplet

log = logging.getLogger(__name__)

ATQA = bytes.fromhex("0400")
SAK_ISO_DEP = 0x20
# ATS: TL, T0 (TA, TB, TC present; FSCI 8 = 256 bytes), TA, TB (FWI 10: ~0.3 s frame waiting time), TC.
ATS = bytes.fromhex("057880A002")
FSD = 256


class RfField:
    """A UDP endpoint playing whatever card is in the field; one thread, blocking select (no polling)."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._applet: CardApplet | None = None
        self._uid = b""
        self._pending_req: tuple[str, Any] | None = None    # a SENS_REQ nobody answered (empty field)
        self._reset_link()
        self._stop_r, self._stop_w = socket.socketpair()
        self._thread = threading.Thread(target=self._run, name="hwsim-rf-field", daemon=True)
        self._thread.start()

    def _reset_link(self) -> None:
        self._active = False           # ISO-DEP active (after RATS)
        self._pcb = 0                  # last block number the reader used
        self._rx = b""                 # chained command being received
        self._tx = b""                 # chained response still to send
        self._last = b""               # last block sent, for R(NAK) retransmission

    # --- test control ----------------------------------------------------------------------

    def present(self, applet: CardApplet, uid: bytes = bytes.fromhex("08A1B2C3")) -> None:
        """Put a card in the field; a reader that is polling sees it at once."""
        with self._lock:
            self._applet, self._uid = applet, uid
            self._reset_link()
            pending, self._pending_req = self._pending_req, None
        if pending is not None:
            brty, addr = pending
            self._send(brty, ATQA, addr)

    def remove(self) -> None:
        """Take the card out of the field."""
        with self._lock:
            self._applet = None
            self._reset_link()

    @property
    def card(self) -> CardApplet | None:
        """The card in the field, if any."""
        return self._applet

    def close(self) -> None:
        """Stop the thread and close the socket."""
        self._stop_w.send(b"x")
        self._thread.join(2)
        for s in (self._sock, self._stop_r, self._stop_w):
            s.close()

    # --- radio ----------------------------------------------------------------------------------

    def _send(self, brty: str, frame: bytes, addr: Any) -> None:
        self._sock.sendto(f"{brty} {frame.hex()}".encode(), addr)

    def _run(self) -> None:
        while True:
            ready, _, _ = select.select([self._sock, self._stop_r], [], [])
            if self._stop_r in ready:
                return
            try:
                datagram, addr = self._sock.recvfrom(4096)
            except OSError:
                return
            if datagram.startswith(b"RFOFF"):
                with self._lock:
                    self._reset_link()
                continue
            try:
                brty_b, hexdata = datagram.split()
                brty, frame = brty_b.decode(), bytes.fromhex(hexdata.decode())
            except ValueError:
                continue
            with self._lock:
                answer = self._frame(brty, frame, addr)
            if answer is not None:
                self._last = answer
                self._send(brty, answer, addr)

    def _frame(self, brty: str, frame: bytes, addr: Any) -> bytes | None:
        applet = self._applet
        if applet is None or brty != "106A" or not frame:
            if frame in (b"\x26", b"\x52"):
                self._pending_req = (brty, addr)
            return None
        if applet.profile.vanish_after and applet.apdus >= applet.profile.vanish_after:
            self._applet = None                              # the customer pulled the card away
            return None
        if frame in (b"\x26", b"\x52"):                      # SENS_REQ / ALL_REQ
            self._reset_link()
            return ATQA
        if frame == b"\x93\x20":                             # SDD_REQ, cascade level 1
            uid = self._uid
            return uid + bytes([uid[0] ^ uid[1] ^ uid[2] ^ uid[3]])
        if frame[:2] == b"\x93\x70":                         # SEL_REQ
            return bytes([SAK_ISO_DEP]) if frame[2:6] == self._uid else None
        if frame[0] == 0xE0 and len(frame) == 2:             # RATS
            self._active = True
            return ATS
        if not self._active:
            return None
        return self._iso_dep(frame)

    def _iso_dep(self, block: bytes) -> bytes | None:
        pcb = block[0]
        if pcb & 0xE2 == 0x02:                               # I-block (02/03, chaining 12/13)
            self._pcb = pcb & 0x01
            self._rx += block[1:]
            if pcb & 0x10:                                   # more to come: acknowledge
                return bytes([0xA2 | self._pcb])
            apdu, self._rx = self._rx, b""
            assert self._applet is not None
            self._tx = self._applet.process(apdu)
            return self._next_chunk()
        if pcb & 0xF6 == 0xA2:                               # R(ACK): the reader wants our next chunk
            self._pcb = pcb & 0x01
            return self._next_chunk() if self._tx else None
        if pcb & 0xF6 == 0xB2:                               # R(NAK): presence check or lost block
            return bytes([0xA2 | (pcb & 0x01)]) if (pcb & 0x01) != self._pcb else self._last
        if pcb & 0xF7 == 0xC2:                               # S(DESELECT)
            self._active = False
            return bytes([pcb])
        return None

    def _next_chunk(self) -> bytes:
        room = FSD - 3                                       # PCB + 2 CRC bytes in the frame size
        chunk, self._tx = self._tx[:room], self._tx[room:]
        chaining = 0x10 if self._tx else 0x00
        return bytes([0x02 | chaining | self._pcb]) + chunk
