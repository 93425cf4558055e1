"""Contactless reader on nfcpy: nfcpy blocks, so it lives in its own thread; the loop gets Tapped events
and talks to the card through a CardSession whose APDUs the reader thread carries out."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from firmware.core.emv import CardNotSupported, CardRemoved
from firmware.core.events import CardFailed, Tapped

log = logging.getLogger(__name__)

APDU_TIMEOUT = 2.0  # seconds the loop waits for one APDU's answer
READER_DOWN = "TAP NOT AVAILABLE, SWIPE"
TWO_CARDS = "PRESENT ONE CARD"
RECONNECT_DELAY = 2.0
COLLISION_PAUSE = 0.3  # seconds between polls while two cards are in the field


class CardSession:
    """One card in the field. `transceive` is awaited on the loop; the reader thread does the radio work."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._requests: queue.Queue[tuple[bytes, asyncio.Future[bytes]] | None] = queue.Queue()

    async def transceive(self, apdu: bytes) -> bytes:
        """Send a command APDU, return the response APDU; CardRemoved when the card is gone."""
        future: asyncio.Future[bytes] = self._loop.create_future()
        self._requests.put((apdu, future))
        try:
            return await asyncio.wait_for(future, APDU_TIMEOUT)
        except TimeoutError:
            raise CardRemoved("no answer from the card") from None

    def close(self) -> None:
        """The kernel is done with the card (the reader releases it)."""
        self._requests.put(None)

    def serve(self, tag: Any, errors: tuple[type[BaseException], ...]) -> None:
        """Reader thread: carry out APDUs until close()."""
        while True:
            item = self._requests.get()
            if item is None:
                return
            apdu, future = item
            try:
                answer = bytes(tag.transceive(apdu))
            except errors as exc:
                _call(self._loop, _fail, future, CardRemoved(f"card left the field: {exc!r}"))
                return
            _call(self._loop, _answer, future, answer)


def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    """Run `fn(*args)` on the loop from the reader thread; nothing to do once the loop is closed."""
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        log.debug("nfc: the loop is closed")


def _answer(future: asyncio.Future[bytes], data: bytes) -> None:
    if not future.done():
        future.set_result(data)


def _fail(future: asyncio.Future[bytes], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


class NfcReader:
    """nfcpy ContactlessFrontend on `path` (usb:..., tty:..., udp:host:port), polled only when asked."""

    def __init__(self, path: str, loop: asyncio.AbstractEventLoop, emit: Callable[[Any], None]) -> None:
        self._path, self._loop, self._emit = path, loop, emit
        self._polling = threading.Event()
        self._stopped = threading.Event()
        self._collided = False  # "two cards" already said for this pair
        self._session: CardSession | None = None  # the card being served, while one is
        self._thread = threading.Thread(target=self._run, name="nfc-reader", daemon=True)

    def start(self) -> None:
        """Start the reader thread (it opens the device; the RF field stays off until polling)."""
        self._thread.start()

    def set_polling(self, on: bool) -> None:
        """Look for cards (True) or switch the field off (False)."""
        (self._polling.set if on else self._polling.clear)()

    def stop(self) -> None:
        """Ask the thread to end. It does within one poll (a reader chip answers a probe within milliseconds;
        nfcpy's UDP driver waits up to a second when nothing at all is in the simulated field); it is a daemon,
        so nobody needs to wait for it."""
        self._stopped.set()
        self._polling.set()
        session = self._session
        if session is not None:  # a card being served when the loop went away: nobody else will end it
            session.close()

    def _post(self, event: Any) -> None:
        _call(self._loop, self._emit, event)

    def _run(self) -> None:
        import nfc  # deferred: nfcpy is heavy and only this thread needs it
        import nfc.clf
        import nfc.tag.tt4

        errors = (nfc.clf.CommunicationError, nfc.tag.TagCommandError, OSError)
        clf = None
        reported = False
        while not self._stopped.is_set():
            if clf is None:
                try:
                    clf = nfc.ContactlessFrontend(self._path)
                    if reported:
                        log.info("nfc: reader %s is back", self._path)
                    reported = False
                except OSError as exc:
                    if not reported:
                        log.error(
                            "nfc: cannot open reader %s: %s; retrying every %g s", self._path, exc, RECONNECT_DELAY
                        )
                        self._post(CardFailed(READER_DOWN, f"reader {self._path}: {exc}"))
                        reported = True
                    self._stopped.wait(RECONNECT_DELAY)
                    continue
            self._polling.wait()
            if self._stopped.is_set():
                break

            try:
                self._poll_once(clf, nfc, errors)
            except Exception as exc:  # nfcpy raises many types; the reader thread must survive them all
                log.warning("nfc: reader error %r; reopening", exc)
                try:
                    clf.close()
                except Exception:
                    log.debug("nfc: close after error failed", exc_info=True)
                clf = None
                self._stopped.wait(0.2)
        if clf is not None:
            clf.close()

    def _poll_once(self, clf: Any, nfc: Any, errors: tuple[type[BaseException], ...]) -> None:
        """One round of the polling loop: find a card, make sure it is alone, activate it, hand it over."""
        from nfc.clf import RemoteTarget

        first = clf.sense(RemoteTarget("106A"), RemoteTarget("106B"), iterations=1)
        if first is None or not self._polling.is_set():
            return
        alone = _alone(clf, first)
        if alone is None:
            if not self._collided:
                log.info("nfc: more than one card in the field")
                self._post(CardFailed(TWO_CARDS, "more than one card in the field"))
            self._collided = True
            self._stopped.wait(COLLISION_PAUSE)
            return
        self._collided = False
        tag = nfc.tag.activate(clf, alone)
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            kind = getattr(tag, "type", "an unknown tag")
            log.info("nfc: %s is not an ISO-DEP card", kind)
            self._post(CardFailed(CardNotSupported.screen, f"{kind} is not an ISO-DEP card"))
            self._stopped.wait(COLLISION_PAUSE)
            return
        session = CardSession(self._loop)
        self._session = session
        self._post(Tapped(session))
        if self._stopped.is_set():  # stopped while the card was being handed over: nobody will close it
            session.close()
        session.serve(tag, errors)  # until the kernel is done; the loop decides whether to poll again
        self._session = None


def _alone(clf: Any, first: Any) -> Any:
    """The card `first` again, ready for activation, when no card of the other technology answers; else None.

    Two cards of one technology are resolved by the reader chip's anticollision (nfcpy's sense hands over one
    card and has no way to ask for more), so only a Type A card beside a Type B card shows up here. Every
    nfcpy sense switches the field off first, so the first card is woken and selected again by its UID.
    A probe nobody answers costs the reader chip's timeout (milliseconds); the simulated field reports it the
    same way to nfcpy's UDP driver, which would otherwise wait 1 s for it.
    """
    from nfc.clf import RemoteTarget

    if first.brty.endswith("A"):
        if clf.sense(RemoteTarget("106B"), iterations=1) is not None:
            return None
        return clf.sense(RemoteTarget("106A", sel_req=bytearray(first.sdd_res)), iterations=1)
    if clf.sense(RemoteTarget("106A"), iterations=1) is not None:
        return None
    again = clf.sense(RemoteTarget("106B"), iterations=1)
    return again if again is not None and again.sensb_res[1:5] == first.sensb_res[1:5] else None
