"""The PIN pad: while the flow asks for a PIN, keys go here. A card PIN leaves it only enciphered (DUKPT TDES
or AES, or the day's session PIN key); an operator PIN is checked off the loop. Digits never reach the flow."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, Literal

from firmware.config import Config, PinConfig
from firmware.core import events
from firmware.errors import KeyMaterialError, SignOnError, TerminalError
from firmware.host.signon import Session
from firmware.records.journal import Journal
from firmware.security import dukpt_aes
from firmware.security.dukpt import DukptKey, ksn_counter, next_counter
from firmware.security.keystore import KeyStore
from firmware.security.operators import OperatorGate
from firmware.security.pin import PinEntry

log = logging.getLogger(__name__)


def initial_keys(pin: PinConfig, keystore: KeyStore) -> tuple[DukptKey, bytes]:
    """The TDES and AES DUKPT initial keys: from [pin], or when left out there from the key store
    (`countertop keys load ipek` or `dukpt-aes`); without them PIN entry says KEY ERROR."""
    dukpt, aes_initial = DukptKey(pin.ipek, pin.ksn), pin.initial_key
    try:
        if pin.scheme == "tdes" and not pin.ipek:
            ipek = keystore.get("ipek")
            dukpt = DukptKey(bytes(ipek) if ipek else b"", pin.ksn)
        elif pin.scheme == "aes" and not pin.initial_key:
            initial = keystore.get("dukpt-aes")
            aes_initial = bytes(initial) if initial else b""
    except TerminalError as exc:
        log.error("pin: %s", exc)
    if (pin.scheme == "tdes" and not dukpt.ipek) or (pin.scheme == "aes" and not aes_initial):
        log.error("pin: no DUKPT initial key in [pin] or in the key store; PIN entry will fail")
    return dukpt, aes_initial


class PinPad:
    """Armed by the flow (CollectPin for a card, CollectOperatorPin for an operator) until it ends the entry;
    answers with events through `post` (PinProgress, PinEntered, PinFailed, OperatorChecked)."""

    def __init__(
        self,
        config: Config,
        journal: Journal,
        keys: tuple[DukptKey, bytes],
        session: Session | None,
        gate: OperatorGate,
        clock: Callable[[], datetime],
        post: Callable[[events.Event], None],
        spawn: Callable[[Coroutine[Any, Any, None], Any], asyncio.Task[Any]],
    ) -> None:
        self._config, self._journal, self._session, self._gate = config, journal, session, gate
        self._dukpt, self._aes_initial = keys
        self._clock, self._post, self._spawn = clock, post, spawn
        self._pin: PinEntry | None = None
        self._for: Literal["card", "operator", "offline"] | None = None  # whose PIN the armed pad takes
        self._answer: Callable[[Any], None] | None = None  # a chip PIN goes to the kernel, not to the flow
        self._bypass = False  # chip: ENTER alone answers "no PIN"
        self._pan = ""  # the card's PAN the PIN block is bound to (a card PIN only)
        self._role = "manager"  # what an operator PIN is checked for
        self._generation = 0  # counts entries ended: a late PIN of an ended one is dropped
        # Operator PINs are checked (scrypt: a 16 MiB block) on this one thread, started at the first check.
        # glibc gives each thread its own malloc arena and keeps a freed block that large as the free top of
        # a thread's arena (its trim threshold has risen past it), so every thread that ever ran scrypt keeps
        # 16 MiB resident for good: on the loop's shared executor that was one 16 MiB step per worker.
        self._checker = ThreadPoolExecutor(1, thread_name_prefix="operator-pin")

    @property
    def armed(self) -> bool:
        """True while keys go to the pad instead of the flow."""
        return self._pin is not None

    def arm_card(self, pan: str) -> None:
        """Take a card PIN, bound to `pan` in its PIN block."""
        self.end()
        self._pin = PinEntry(self._config.pin.min_length, self._config.pin.max_length)
        self._for, self._pan = "card", pan

    def arm_operator(self, role: str) -> None:
        """Take an operator PIN, checked for `role` (or a higher one)."""
        self.end()
        self._pin, self._for, self._role = PinEntry(4, 12), "operator", role

    def arm_chip(self, offline: bool, bypass: bool, pan: str, answer: Callable[[Any], None]) -> None:
        """Take a PIN for the contact kernel, delivered through `answer` instead of the flow: `offline`, the
        digits themselves (the card checks them); else the PIN block for the issuer bound to `pan` (or a
        TerminalError). With `bypass`, ENTER alone answers "" (no PIN: the kernel and the card decide whether
        that is allowed)."""
        self.end()
        self._pin = PinEntry(self._config.pin.min_length, self._config.pin.max_length)
        self._for, self._pan, self._answer, self._bypass = ("offline" if offline else "card"), pan, answer, bypass

    def end(self) -> None:
        """End the entry: the digits are wiped, and a PIN still being enciphered belongs to no one now."""
        if self._pin is not None:
            self._pin.wipe()
        self._pin, self._for, self._pan, self._answer, self._bypass = None, None, "", None, False
        self._generation += 1

    def close(self) -> None:
        """Let the operator-PIN thread go (at the terminal's shutdown, or at an in-process power cut): a check
        in flight is dropped, its answer goes nowhere."""
        self.end()
        self._checker.shutdown(wait=False, cancel_futures=True)

    def key(self, name: str) -> events.Event | None:
        """A key while armed: digits and CLEAR stay here (the flow hears only how many digits there are);
        ENTER enciphers (card PIN) or checks (operator PIN, off the loop: scrypt takes tens of milliseconds).
        Returns the event for the flow now, or None when the answer comes later."""
        pin = self._pin
        if pin is None:
            raise TerminalError("the PIN pad is not armed")
        answer = self._answer
        if name == "ENTER" and answer is not None and self._bypass and not pin.count:
            self.end()
            answer("")  # no PIN
            return None
        if name != "ENTER" or not pin.complete:
            if name != "ENTER":
                pin.press(name)
            return events.PinProgress(pin.count)
        if answer is not None:
            self._chip_pin(pin, answer)
            return None
        if self._for == "operator":
            self._spawn(self._check_operator(pin.take()), events.OperatorChecked(False, "TERMINAL ERROR"))
            return None
        if self._config.pin.scheme == "session":
            # The sign-on that CollectPin started may still be in flight: wait for it, then encipher. Keys
            # pressed meanwhile go to the flow, which ignores them (CANCEL still cancels).
            self._pin = None
            self._spawn(
                self._encipher_after_sign_on(pin, self._pan, self._generation), events.PinFailed("TERMINAL ERROR")
            )
            return None
        try:
            encrypted = self._encipher_dukpt(pin)
        except TerminalError as exc:
            log.error("pin: %s", exc)
            pin.wipe()
            return events.PinFailed(exc.screen)
        return events.PinEntered(encrypted)

    def _chip_pin(self, pin: PinEntry, answer: Callable[[Any], None]) -> None:
        """Hand a complete chip PIN to the kernel: the digits (offline), or its PIN block (online)."""
        if self._for == "offline":
            digits = pin.take()
            self.end()
            answer(digits)
            return
        if self._config.pin.scheme == "session":
            self._pin = None
            self._spawn(self._encipher_after_sign_on(pin, self._pan, self._generation, answer), None)
            return
        try:
            encrypted: Any = self._encipher_dukpt(pin)
        except TerminalError as exc:
            log.error("pin: %s", exc)
            encrypted = exc
        self.end()
        answer(encrypted)

    def _encipher_dukpt(self, pin: PinEntry) -> events.EncryptedPin:
        """The PIN block under the next DUKPT key. The counter is persisted before the key is used: a crash
        can skip a KSN, never reuse one."""
        pin_cfg = self._config.pin
        if pin_cfg.scheme == "aes":
            counter = self._journal.take_counter(f"dukpt-aes:{pin_cfg.key_id.hex()}", 1, dukpt_aes.next_counter)
            if not self._aes_initial:
                raise KeyMaterialError("no AES DUKPT initial key")
            return pin.encrypt_aes(self._pan, self._aes_initial, pin_cfg.key_id, counter)
        ksn = pin_cfg.ksn
        counter = self._journal.take_counter(f"dukpt:{ksn.hex()}", next_counter(ksn_counter(ksn)), next_counter)
        if not self._dukpt.ipek:
            raise KeyMaterialError("no DUKPT initial key")
        return pin.encrypt(self._pan, self._dukpt, counter)

    async def _encipher_after_sign_on(
        self, pin: PinEntry, pan: str, generation: int, answer: Callable[[Any], None] | None = None
    ) -> None:
        """Encipher the PIN under today's session PIN key once the sign-on (the session's lock) is done; a
        PIN whose entry ended meanwhile (CANCEL, a timeout) is wiped, never handed to the next card."""
        try:
            if self._session is None:
                raise SignOnError("no PIN key: no session keys are configured")
            await self._session.ensure()
            pin_key = self._session.pin_key()
            if pin_key is None:
                raise SignOnError("no PIN key: the terminal has not signed on")
            if generation != self._generation:
                log.info("pin: the entry ended while the terminal signed on; the PIN is dropped")
                return
            block = pin.encrypt_session(pan, self._config.keys.scheme, pin_key)
            if answer is not None:
                answer(block)
            else:
                self._post(events.PinEntered(block))
        except TerminalError as exc:
            log.error("pin: %s", exc)
            if generation == self._generation:
                if answer is not None:
                    answer(exc)
                else:
                    self._post(events.PinFailed(exc.screen))
        finally:
            pin.wipe()

    async def _check_operator(self, pin: str) -> None:
        role = self._role
        # scrypt off the loop, on the PIN pad's own thread (see __init__); the journal is used on the loop's only
        identified = await asyncio.get_running_loop().run_in_executor(self._checker, self._gate.identify, pin)
        ok, notice, who = self._gate.decide(identified, role, time.time())
        self._journal.audit(
            who or role,
            "sign-in" if ok else "sign-in refused",
            notice or ("at the till" if role == "cashier" else "back office"),
            self._clock(),
        )
        if not ok:
            log.warning("operator: %s PIN refused (%s)", role, notice)
        self._post(events.OperatorChecked(ok, notice, who))
