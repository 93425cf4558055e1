"""The simulated chip slot: a card on the card side of vsmartcard-vpcd, so that pcscd, pyscard and the terminal's
chip reader driver all run for real.

vpcd listens on a TCP port per slot; the card connects to it (insertion) and closes the connection (removal).
Every message either way is a 2-byte big-endian length and a payload. vpcd sends one-byte controls: 00 power off,
01 power on, 02 reset (none answered), 04 "ATR?" (answered with the ATR; vpcd asks every 400 ms, between APDUs
too, to see that the card is still there); anything longer is a command APDU, answered with the response APDU.
Debian's vpcd writes length and payload in two writes without TCP_NODELAY: the card sets TCP_QUICKACK before
every read, or each APDU waits ~40 ms for a delayed ACK.

The ATR offers T=1 or T=0 alone, as the card profile's `protocol` says. Neither pcscd nor vpcd turns a T=0
exchange into APDUs, so for a T=0 card the slot does what a T=0 card's transport does (ISO/IEC 7816-3 and EMV
Book 1): data for a command that carries data comes with GET RESPONSE after 61xx, and a wrong Le gets 6Cxx.
"""

from __future__ import annotations

import logging
import socket
import struct
import threading
from typing import Protocol

log = logging.getLogger(__name__)

# T=1 only: TS, T0 (TD1, no historical bytes), TD1 (T=1), TCK. T=0 only: TS, T0 (TB1, TC1, 8 historical
# bytes), TB1, TC1, historical bytes; no TD1 means T=0, and no TCK with T=0 alone.
ATR = {"T=1": bytes.fromhex("3B800181"), "T=0": bytes.fromhex("3B6800000073C84012009000")}
POWER_OFF, POWER_ON, RESET, GET_ATR = 0x00, 0x01, 0x02, 0x04
SW_OK = b"\x90\x00"
RELEASE_TIMEOUT = 2.0  # seconds a removed card waits for vpcd to let go (it asks for the ATR every 400 ms)


class Applet(Protocol):
    """What sits behind the contacts: an APDU in, the response APDU (data + SW1 SW2) out."""

    def process(self, apdu: bytes) -> bytes: ...


def _sw(first: int, second: int) -> bytes:
    return bytes([first, second & 0xFF])


def apdu_case(apdu: bytes) -> tuple[int, int]:
    """ISO/IEC 7816-3 short APDU case (1-4, 0 when malformed) and Le (0 meaning 256, as on the line)."""
    if len(apdu) < 4:
        return 0, 0
    if len(apdu) == 4:
        return 1, 0
    if len(apdu) == 5:
        return 2, apdu[4]
    lc = apdu[4]
    if lc and len(apdu) == 5 + lc:
        return 3, 0
    if lc and len(apdu) == 6 + lc:
        return 4, apdu[-1]
    return 0, 0


class T0Transport:
    """A T=0 card's transport over an applet that answers whole APDUs: what a T=0 card says on the line."""

    def __init__(self, applet: Applet) -> None:
        self.applet = applet
        self._pending = b""  # response data waiting for GET RESPONSE

    def reset(self) -> None:
        """Power off, power on or reset: nothing is waiting any more."""
        self._pending = b""

    def respond(self, apdu: bytes) -> bytes:
        """One command APDU in, what the card answers out."""
        case, le = apdu_case(apdu)
        if case == 0:
            self._pending = b""
            return b"\x67\x00"
        if apdu[1] == 0xC0 and apdu[0] & 0x80 == 0 and case == 2:  # GET RESPONSE
            return self._get_response(le or 256)
        self._pending = b""  # any other command drops what was waiting
        answer = self.applet.process(apdu)
        if len(answer) < 2:
            return b"\x6f\x00"
        data, sw = answer[:-2], answer[-2:]
        if not data:
            return sw
        if case == 2:  # P3 is Le: the card sends exactly that many bytes, or says how many it has
            return answer if (le or 256) == len(data) else _sw(0x6C, len(data))
        # Case 3 or 4 on T=0: no Le goes to the card; data waits for GET RESPONSE (a warning comes first as is)
        self._pending = data
        return _sw(0x61, len(data)) if sw == SW_OK else sw

    def _get_response(self, le: int) -> bytes:
        if not self._pending:
            return b"\x69\x85"
        have = len(self._pending)
        if le > have:
            return _sw(0x6C, have)
        chunk, self._pending = self._pending[:le], self._pending[le:]
        return chunk + (_sw(0x61, len(self._pending)) if self._pending else SW_OK)


class T1Transport:
    """T=1 carries whole APDUs: the applet's answer goes back as it is."""

    def __init__(self, applet: Applet) -> None:
        self.applet = applet

    def reset(self) -> None:
        """Nothing to forget."""

    def respond(self, apdu: bytes) -> bytes:
        """One command APDU in, the applet's response APDU out."""
        return self.applet.process(apdu)


def protocol_of(applet: Applet) -> str:
    """The card profile's `protocol` ("T=0" or "T=1"; T=1 when the profile does not say)."""
    profile = getattr(applet, "profile", None)
    return str(getattr(profile, "protocol", "") or "T=1")


class ChipSlot:
    """One vpcd slot: `insert(applet)` connects a card to vpcd's port, `remove()` takes it out."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port, self.host = port, host
        self.exchanges: list[tuple[bytes, bytes]] = []  # (command, answer) as on the line, this card's
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._applet: Applet | None = None

    @property
    def card(self) -> Applet | None:
        """The card in the slot, if any."""
        return self._applet

    def insert(self, applet: Applet, protocol: str | None = None) -> None:
        """Put a card in the slot (taking out the one there); pcscd sees it at its next poll (within 400 ms).
        `protocol` overrides the profile's "T=0" / "T=1"."""
        protocol = protocol or protocol_of(applet)
        if protocol not in ATR:
            raise ValueError(f'protocol must be "T=0" or "T=1", not {protocol!r}')
        self.remove()
        transport = T0Transport(applet) if protocol == "T=0" else T1Transport(applet)
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
        except OSError as exc:
            raise ConnectionError(
                f"no vpcd on {self.host}:{self.port} ({exc}): pcscd with vsmartcard-vpcd must run "
                "(the tests start a private one, hwsim.pcscd.PrivatePcscd, and set HWSIM_VPCD_PORT)"
            ) from exc
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        thread = threading.Thread(
            target=self._serve, args=(sock, transport, ATR[protocol], applet), name="hwsim-chip-slot", daemon=True
        )
        with self._lock:
            self._sock, self._thread, self._applet = sock, thread, applet
            self.exchanges = []
        thread.start()
        log.info("chip slot: card inserted (%s)", protocol)

    def remove(self) -> None:
        """Take the card out; returns once vpcd has let go of it (at its next message: within 400 ms).

        The card half-closes its connection and says nothing more; vpcd finds the connection closed when it next
        asks for the ATR, and so reports the card gone at that poll. A card connected before then would make a
        quick removal and insertion invisible to pcscd when vpcd drops the old connection while powering it."""
        with self._lock:
            sock, thread, self._sock, self._thread, self._applet = self._sock, self._thread, None, None, None
        if sock is None or thread is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        if thread is threading.current_thread():
            return
        thread.join(RELEASE_TIMEOUT)
        if thread.is_alive():  # vpcd did not look again (pcscd stopped?): end the connection ourselves
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            thread.join(5)

    def close(self) -> None:
        """Take the card out; the slot is done."""
        self.remove()

    def _serve(self, sock: socket.socket, transport: T0Transport | T1Transport, atr: bytes, applet: Applet) -> None:
        try:
            while True:
                message = _receive(sock)
                if message is None:
                    return
                if self._sock is not sock:  # taken out: silence until vpcd closes the connection
                    continue
                if len(message) == 1:
                    if message[0] == GET_ATR:
                        _send(sock, atr)
                    elif message[0] in (POWER_OFF, POWER_ON, RESET):
                        transport.reset()
                    continue
                vanish = getattr(getattr(applet, "profile", None), "vanish_after", 0)
                if vanish and getattr(applet, "apdus", 0) >= vanish:
                    log.info("chip slot: the customer pulls the card out mid-transaction")
                    self._pulled(sock)
                    return
                answer = transport.respond(message)
                self.exchanges.append((message, answer))
                _send(sock, answer)
        except OSError as exc:
            log.debug("chip slot: connection ended: %r", exc)
        finally:
            sock.close()

    def _pulled(self, sock: socket.socket) -> None:
        with self._lock:
            if self._sock is sock:
                self._sock, self._thread, self._applet = None, None, None


def _receive(sock: socket.socket) -> bytes | None:
    """One vpcd message; None when the connection is closed."""
    head = _exactly(sock, 2)
    if head is None:
        return None
    (length,) = struct.unpack(">H", head)
    return _exactly(sock, length)


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)  # Linux turns it off again by itself
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)
