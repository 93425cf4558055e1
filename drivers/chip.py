"""Contact chip reader on PC/SC (pyscard's scard layer over pcscd): insert and removal events for the loop, and a
ChipSession per inserted card whose APDUs its own thread carries out.

pcsc-lite serialises every call made on one context, and SCardGetStatusChange holds its context for as long as it
waits, so the watcher and each card session have a context of their own. The watcher waits in
SCardGetStatusChange (WAIT_MS at most; SCardCancel ends the wait at stop) and posts ChipInserted / ChipRemoved /
ChipReaderReady / ChipReaderFailed on the loop with call_soon_threadsafe. APDUs go through as they are: no GET
RESPONSE, no 61xx or 6Cxx handling (that is the EMV kernel's job, as the card's protocol T=0 or T=1 asks).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from smartcard import scard

from firmware.core.events import CardFailed, ChipInserted, ChipReaderFailed, ChipReaderReady, ChipRemoved
from firmware.errors import ChipCardRemoved, ChipReaderError

log = logging.getLogger(__name__)

WAIT_MS = 1000  # one SCardGetStatusChange wait; a wait that times out is simply made again
APDU_TIMEOUT = 10.0  # seconds the loop waits for one APDU's answer (a slow card's RSA signature takes ~1 s)
RECONNECT_DELAY = 2.0  # seconds between attempts to reach a pcscd that is not running
SETTLE_TIMEOUT = 1.5  # seconds to learn whether a failed exchange was a removal (pcscd polls every 400 ms)
READER_DOWN = "CHIP READER ERROR"
CARD_MUTE = "CARD ERROR, REINSERT"
PNP = "\\\\?PnP?\\Notification"  # pcsc-lite's pseudo reader: its state changes when a reader comes or goes
PROTOCOLS = {scard.SCARD_PROTOCOL_T0: "T=0", scard.SCARD_PROTOCOL_T1: "T=1"}

# What ends the watcher's context: pcscd stopped or gone (reconnect), or the reader unplugged (look for it again).
_SERVICE_GONE = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_F_COMM_ERROR,  # the socket to pcscd broke mid-call
    scard.SCARD_E_INVALID_HANDLE,
}
_READER_GONE = {scard.SCARD_E_UNKNOWN_READER, scard.SCARD_E_READER_UNAVAILABLE, scard.SCARD_E_NO_READERS_AVAILABLE}
_CARD_GONE = {scard.SCARD_W_REMOVED_CARD, scard.SCARD_E_NO_SMARTCARD, scard.SCARD_W_RESET_CARD}


def _why(hr: int) -> str:
    return f"{scard.SCardGetErrorMessage(hr).rstrip('. ')} ({hr & 0xFFFFFFFF:#010x})"


def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run `fn(*args)` on the loop from a reader thread; nothing to do once the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        log.debug("chip: the loop is closed")


def _again(error: ChipReaderError) -> ChipReaderError:
    """A fresh exception like `error` (the same one raised twice would carry both tracebacks)."""
    return type(error)(str(error), error.screen)


def _settle(future: asyncio.Future[bytes], answer: bytes | BaseException) -> None:
    if future.done():
        return
    if isinstance(answer, BaseException):
        future.set_exception(answer)
    else:
        future.set_result(answer)


class ChipSession:
    """One inserted card, connected in exclusive mode. `transceive` is awaited on the loop; the session's thread
    does SCardTransmit. `atr` and `protocol` ("T=0" or "T=1", as pcscd negotiated from the ATR) are known once
    ChipInserted carries the session."""

    def __init__(self, reader: str, loop: asyncio.AbstractEventLoop, post: Callable[[Any], None]) -> None:
        self.reader = reader
        self.atr = b""
        self.protocol = ""
        self._pci = 0  # the negotiated protocol, as SCardTransmit wants it
        self._loop, self._post = loop, post
        self._requests: queue.Queue[tuple[bytes, asyncio.Future[bytes]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._ended: ChipReaderError | None = None  # why no more APDUs go through
        self._removed = threading.Event()  # the watcher saw the card leave
        self._thread = threading.Thread(target=self._run, name="chip-card", daemon=True)

    async def transceive(self, apdu: bytes) -> bytes:
        """Send a command APDU, return the card's response APDU as it came (data + SW1 SW2).
        ChipCardRemoved when the card was taken out, ChipReaderError when the reader or pcscd failed."""
        future: asyncio.Future[bytes] = self._loop.create_future()
        with self._lock:  # queued before the end marker, or not at all
            if self._ended is not None:
                raise _again(self._ended)
            self._requests.put((bytes(apdu), future))
        try:
            return await asyncio.wait_for(future, APDU_TIMEOUT)
        except TimeoutError:
            self._end(ChipReaderError(f"no answer from the card in {APDU_TIMEOUT:g} s"))
            raise _again(self._ended or ChipReaderError("no answer from the card")) from None

    def close(self) -> None:
        """The kernel is done with the card: it is powered down and released (it stays in the slot)."""
        self._end(ChipReaderError("the session is closed"))

    @property
    def active(self) -> bool:
        """APDUs can still go to the card."""
        return self._ended is None

    # --- reader side ------------------------------------------------------------------------

    def _start(self) -> None:
        self._thread.start()

    def _end(self, why: ChipReaderError, removed: bool = False) -> None:
        """No more APDUs (first reason wins); the thread powers the card down and leaves."""
        if removed:
            self._removed.set()
        with self._lock:
            if self._ended is None:
                self._ended = why
            self._requests.put(None)

    def _join(self, timeout: float) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if hr != scard.SCARD_S_SUCCESS:
            self._end(ChipReaderError(f"pcscd: {_why(hr)}"))
            self._fail_pending()
            return
        try:
            handle = self._connect(context)
            if handle is None:
                return
            disposition = scard.SCARD_UNPOWER_CARD
            try:
                disposition = self._serve(handle)
            finally:
                scard.SCardDisconnect(handle, disposition)
        finally:
            scard.SCardReleaseContext(context)
            self._fail_pending()

    def _connect(self, context: Any) -> Any:
        wanted = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        hr, handle, protocol = scard.SCardConnect(context, self.reader, scard.SCARD_SHARE_EXCLUSIVE, wanted)
        if hr != scard.SCARD_S_SUCCESS:
            gone = hr in _CARD_GONE or self._removed.is_set()
            if gone:
                log.info("chip: the card in %s left before it was powered (%s)", self.reader, _why(hr))
                self._end(ChipCardRemoved(f"card left before it was powered: {_why(hr)}"), removed=True)
            else:  # a card that does not answer its reset, or a reader another program holds
                self._end(ChipReaderError(f"cannot power the card: {_why(hr)}"))
                log.warning("chip: cannot power the card in %s: %s", self.reader, _why(hr))
                self._post(CardFailed(CARD_MUTE, f"chip card in {self.reader} not usable: {_why(hr)}"))
            return None
        hr, _name, _state, _protocol, atr = scard.SCardStatus(handle)
        self.atr = bytes(atr) if hr == scard.SCARD_S_SUCCESS else b""
        self.protocol = PROTOCOLS.get(protocol, f"protocol {protocol}")
        self._pci = protocol
        with self._lock:  # the watcher's ChipRemoved, should it end us now, is posted after this
            if self._ended is not None:
                scard.SCardDisconnect(handle, scard.SCARD_LEAVE_CARD)
                return None
            log.info("chip: card in %s, %s, ATR %s", self.reader, self.protocol, self.atr.hex().upper())
            self._post(ChipInserted(self))
        return handle

    def _serve(self, handle: Any) -> int:
        """Carry out APDUs until the session ends; returns how to leave the card."""
        while True:
            item = self._requests.get()
            if item is None:
                # Left powered, not powered down: pcscd powers an idle card down itself, and Debian's vpcd
                # stops watching a card powered down from here, so a card taken out after a failed read went
                # unnoticed and the next card was never seen (test_chip_sale's fallback case, reproduced).
                return scard.SCARD_LEAVE_CARD
            apdu, future = item
            if self._ended is not None:
                _call(self._loop, _settle, future, _again(self._ended))
                continue
            hr, response = scard.SCardTransmit(handle, self._pci, list(apdu))
            if hr == scard.SCARD_S_SUCCESS and len(response) >= 2:
                _call(self._loop, _settle, future, bytes(response))
                continue
            if hr == scard.SCARD_S_SUCCESS:  # vpcd's answer when the card's connection closed mid-command
                hr = scard.SCARD_E_NOT_TRANSACTED
            error = self._failure(hr)
            self._end(error, isinstance(error, ChipCardRemoved))
            _call(self._loop, _settle, future, _again(self._ended or error))
            return scard.SCARD_LEAVE_CARD

    def _failure(self, hr: int) -> ChipReaderError:
        """What a failed SCardTransmit means. vpcd (and a reader that loses the card mid-frame) reports a
        removal as a failed transaction first: wait for the watcher to tell whether the card is still there."""
        if hr in _SERVICE_GONE:
            return ChipReaderError(f"pcscd went away: {_why(hr)}")
        if hr in _READER_GONE:
            return ChipReaderError(f"the reader went away: {_why(hr)}")
        if hr in _CARD_GONE or self._removed.wait(SETTLE_TIMEOUT):
            return ChipCardRemoved(f"card removed during the exchange: {_why(hr)}")
        return ChipReaderError(f"the card did not answer: {_why(hr)}")

    def _fail_pending(self) -> None:
        why = self._ended or ChipReaderError("the session is closed")
        while True:
            try:
                item = self._requests.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                _call(self._loop, _settle, item[1], _again(why))


class ChipReader:
    """Watches one PC/SC reader: `reader` is its name or the start of it ("" = the first reader pcscd lists)."""

    def __init__(self, reader: str, loop: asyncio.AbstractEventLoop, emit: Callable[[Any], None]) -> None:
        self._wanted, self._loop, self._emit = reader, loop, emit
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._context: Any = None  # the watcher's, while it has one (stop() cancels its wait)
        self._session: ChipSession | None = None
        self._sessions: list[ChipSession] = []  # every session whose thread may still run (stop() waits for them)
        self._failed = ""  # the kind of failure already reported, so it is said once
        self._thread = threading.Thread(target=self._run, name="chip-reader", daemon=True)

    def start(self) -> None:
        """Start watching (the thread connects to pcscd and finds the reader; events tell how that went)."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching, end the card session, and wait for both threads to leave (about a second at most)."""
        self._stopped.set()
        with self._lock:
            if self._context is not None:
                scard.SCardCancel(self._context)
        session = self._session
        if session is not None:
            session._end(ChipReaderError("the chip reader was stopped"))
        if self._thread.is_alive():
            self._thread.join(WAIT_MS / 1000 + 2)
        for session in self._sessions:
            session._join(2)

    @property
    def session(self) -> ChipSession | None:
        """The card in the slot, while one is connected."""
        session = self._session
        return session if session is not None and session.active else None

    def _post(self, event: Any) -> None:
        _call(self._loop, self._emit, event)

    def _fail(self, what: str, reason: str) -> None:
        """Report a failure once per kind ("pcscd", "reader") until the reader is ready again."""
        if what != self._failed:
            log.error("chip: %s", reason)
            self._post(ChipReaderFailed(READER_DOWN, reason))
            self._failed = what

    # --- the watcher thread -------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopped.is_set():
            log.debug("chip: connecting to pcscd")  # a stall seen once under load ended before "watching"
            hr, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
            if hr != scard.SCARD_S_SUCCESS:
                self._fail("pcscd", f"pcscd not reachable: {_why(hr)}; retrying every {RECONNECT_DELAY:g} s")
                self._stopped.wait(RECONNECT_DELAY)
                continue
            with self._lock:
                self._context = context
            try:
                self._watch(context)
            except Exception:  # the reader thread must survive whatever pyscard raises
                log.exception("chip: reader thread error")
                self._stopped.wait(RECONNECT_DELAY)
            finally:
                with self._lock:
                    self._context = None
                scard.SCardReleaseContext(context)
        self._card_left(ChipReaderError("the chip reader was stopped"), post=False)

    def _watch(self, context: Any) -> None:
        """Find the reader and follow its card until pcscd goes away or the reader is stopped."""
        while not self._stopped.is_set():
            reader = self._find(context)
            if reader is None:
                return
            self._failed = ""
            log.info("chip: watching %s", reader)
            self._post(ChipReaderReady(reader))
            hr = self._follow(context, reader)
            if hr in _SERVICE_GONE:
                self._fail("pcscd", f"pcscd stopped: {_why(hr)}")
                return
            if hr != scard.SCARD_E_CANCELLED:
                self._fail("reader", f"reader {reader} went away: {_why(hr)}")

    def _find(self, context: Any) -> str | None:
        """The reader's full name, once pcscd lists it (waiting on reader arrivals); None: pcscd gone or stopped."""
        pnp = scard.SCARD_STATE_UNAWARE
        while not self._stopped.is_set():
            hr, readers = scard.SCardListReaders(context, [])
            if hr in _SERVICE_GONE:
                self._fail("pcscd", f"pcscd stopped: {_why(hr)}")
                return None
            readers = readers if hr == scard.SCARD_S_SUCCESS else []
            found = _pick(readers, self._wanted)
            if found is not None:
                return found
            self._fail(
                "reader",
                f"no reader {self._wanted!r} (pcscd lists {', '.join(readers) or 'none'})"
                if self._wanted
                else "no chip reader connected",
            )
            hr, states = scard.SCardGetStatusChange(context, WAIT_MS, [(PNP, pnp)])
            if hr == scard.SCARD_S_SUCCESS:
                pnp = states[0][1] & ~scard.SCARD_STATE_CHANGED
            elif hr in _SERVICE_GONE:
                self._fail("pcscd", f"pcscd stopped: {_why(hr)}")
                return None
        return None

    def _follow(self, context: Any, reader: str) -> int:
        """Wait for the reader's state to change, again and again; returns the error that ended the watch."""
        state = scard.SCARD_STATE_UNAWARE
        present, count = False, -1
        while not self._stopped.is_set():
            hr, states = scard.SCardGetStatusChange(context, WAIT_MS, [(reader, state)])
            if hr == scard.SCARD_E_TIMEOUT:
                continue
            if hr != scard.SCARD_S_SUCCESS:
                self._card_left(ChipReaderError(f"the chip reader failed: {_why(hr)}"), post=False)
                return int(hr)
            event = states[0][1]
            state = event & ~scard.SCARD_STATE_CHANGED
            if event & (scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE):
                self._card_left(ChipReaderError("the chip reader went away"), post=False)
                return int(scard.SCARD_E_READER_UNAVAILABLE)
            now, events = bool(event & scard.SCARD_STATE_PRESENT), event >> 16  # pcsc-lite counts insertions
            log.debug("chip: %s state %#x (present %s, insertions %d)", reader, event & 0xFFFF, now, events)
            if present and (not now or events != count):  # out, or out and in again between two waits
                self._card_left(ChipCardRemoved("the card was taken out"), post=True)
                present = False
            if now and not present:
                self._card_in(reader)
            present, count = now, events
        return int(scard.SCARD_E_CANCELLED)

    def _card_in(self, reader: str) -> None:
        previous = self._session
        if previous is not None:  # one card session at a time
            previous._end(ChipCardRemoved("another card was inserted"), removed=True)
        session = ChipSession(reader, self._loop, self._post)
        self._session = session
        self._sessions = [s for s in self._sessions if s._thread.is_alive()] + [session]
        session._start()  # it connects, then posts ChipInserted (or CardFailed for a card that does not answer)

    def _card_left(self, why: ChipReaderError, post: bool) -> None:
        session, self._session = self._session, None
        if session is not None:
            session._end(why, removed=isinstance(why, ChipCardRemoved))
        if post:
            log.info("chip: card out")
            self._post(ChipRemoved())


def _pick(readers: list[str], wanted: str) -> str | None:
    """The reader named `wanted`, else the first whose name starts with it ("" = the first one)."""
    if wanted in readers:
        return wanted
    return next((r for r in readers if r.startswith(wanted)), None)
