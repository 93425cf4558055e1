"""The chip desk: runs the contact EMV kernel (core/emv/contact.py) against an inserted card — APDUs to the
card, the cardholder's choices and PINs through the flow and the PIN pad, the online authorization through
the terminal's own sale path — and journals how it ended. An authorization the card then declines, or one
whose card was taken out before the end, is reversed."""

from __future__ import annotations

import asyncio
import logging
import secrets
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from firmware.config import Config
from firmware.core import effects, events
from firmware.core.cardface import CardFace
from firmware.core.emv import CardError
from firmware.core.emv.contact import (
    ChipOutcome,
    ChooseApplication,
    ContactParams,
    GoOnline,
    OfflinePin,
    OnlineAnswer,
    OnlinePin,
    contact_kernel,
)
from firmware.core.emv.oda import CaKey, ca_keys_from_doc
from firmware.errors import ChipReaderError, TerminalError
from firmware.host.messages import fits_field_55, icc_hex
from firmware.shell.pinpad import PinPad

log = logging.getLogger(__name__)

SendSale = Callable[[effects.Authorize], Awaitable[tuple[int, int, events.AuthResponse] | None]]


@dataclass
class _Online:
    """The sale as it went online: its journal row, STAN and the host's answer."""

    row: int
    stan: int
    response: events.AuthResponse


class ChipDesk:
    """One contact transaction at a time; answers the flow with events through `post`."""

    def __init__(
        self,
        config: Config,
        pinpad: PinPad,
        clock: Callable[[], datetime],
        post: Callable[[events.Event], None],
        send_sale: SendSale,
        answered: Callable[[int, int, events.AuthResponse, str], None],
        record: Callable[..., bool],
        reverse_soon: Callable[[], object],
        failed_read: Callable[[int, str], None],
        chip_result: Callable[..., None] | None = None,
    ) -> None:
        self._config, self._pinpad, self._clock, self._post = config, pinpad, clock, post
        self._send_sale, self._answered, self._record = send_sale, answered, record
        self._reverse_soon, self._failed_read = reverse_soon, failed_read
        self._chip_result = chip_result  # Journal.chip_result: TVR, TSI, final cryptogram, script results
        self._waiting: asyncio.Future[Any] | None = None  # the cardholder's answer the kernel waits for

    def answer(self, choice: int | None) -> None:
        """The flow's AnswerChip: the cardholder chose an application (or cancelled)."""
        self._give(choice)

    def _give(self, value: Any) -> None:
        waiting = self._waiting
        if waiting is not None and not waiting.done():
            waiting.set_result(value)

    async def _wait(self) -> Any:
        self._waiting = asyncio.get_running_loop().create_future()
        try:
            return await self._waiting
        finally:
            self._waiting = None

    def _ca_keys(self) -> tuple[CaKey, ...]:
        """The CA public keys, read for every transaction (a new file counts at once); none: no ODA."""
        path = self._config.emv.ca_keys
        if not path:
            return ()
        try:
            return ca_keys_from_doc(tomllib.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.error("chip: CA keys from %s cannot be used (no offline data authentication): %s", path, exc)
            return ()

    def _params(self, amount: int) -> ContactParams:
        t, e = self._config.terminal, self._config.emv
        now = self._clock()
        return ContactParams(
            amount=amount,
            currency_numeric=t.currency.numeric,
            country_numeric=self._config.contactless.country,
            today=now.date(),
            time_of_day=now.time().replace(microsecond=0),
            unpredictable=secrets.token_bytes(4),
            supported_aids=e.aids,
            ca_keys=self._ca_keys(),
            random_number=secrets.randbelow(99) + 1,
            pin_padding=secrets.token_bytes(248),
            floor_limit=e.floor_limit,
            random_threshold=e.random_threshold,
            random_target=e.random_target,
            random_max_target=e.random_max_target,
            tac_denial=e.tac_denial,
            tac_online=e.tac_online,
            tac_default=e.tac_default,
            offline_pin=e.offline_pin,
            signature=e.signature,
            oda_methods=e.oda,
            ifd_serial=t.terminal_id[-8:],
        )

    async def run(self, eff: effects.StartChip) -> None:
        """One contact transaction with the card in `eff.session`, to its end."""
        session = eff.session
        steps = contact_kernel(self._params(eff.amount))
        online: _Online | None = None
        pin: events.EncryptedPin | None = None
        try:
            request: Any = next(steps)
            while True:
                if isinstance(request, bytes):
                    answer: Any = await session.transceive(request)
                elif isinstance(request, ChooseApplication):
                    self._post(events.ChipAsks("choose", request.options))
                    answer = await self._wait()
                elif isinstance(request, OfflinePin):
                    answer = await self._pin(True, request.tries_left, request.retry, face=request.face)
                elif isinstance(request, OnlinePin):
                    got = await self._pin(False, None, False, request.pan, request.face)
                    if isinstance(got, events.EncryptedPin):
                        pin, answer = got, True
                    else:
                        answer = None if got is None else False  # "" is no PIN
                elif isinstance(request, GoOnline):
                    self._post(events.ChipWorking("AUTHORIZING..."))
                    sale = effects.Authorize(eff.amount, request.card, pin, eff.lines, eff.operator)
                    sent = await self._send_sale(sale)
                    if sent is None:  # journaled, reversed when need be, and the flow told: the card is done
                        return
                    online = _Online(*sent)
                    answer = OnlineAnswer(online.response.response_code, bytes.fromhex(online.response.icc or ""))
                else:
                    raise TypeError(f"the contact kernel asked for {request!r}")
                request = steps.send(answer)
        except StopIteration as done:
            self._ended(eff, done.value, online)
        except (CardError, ChipReaderError) as exc:
            self._failed(eff, exc, online)
        except asyncio.CancelledError:
            self._failed(eff, CardError("the transaction was cancelled", screen="CANCELLED"), online)
        except Exception as exc:  # a bug, or an answer nothing above expected: never a silent approval
            log.exception("chip: the transaction failed unexpectedly")
            self._failed(eff, CardError(f"terminal error: {exc}", screen="TERMINAL ERROR"), online)
        finally:
            steps.close()
            self._pinpad.end()
            session.close()

    async def _pin(
        self, offline: bool, tries_left: int | None, retry: bool, pan: str = "", face: CardFace | None = None
    ) -> Any:
        """Ask the flow for a PIN screen and the PIN pad for the PIN: digits (offline), a PIN block (online),
        "" (no PIN), or None (cancelled)."""
        bypass = self._config.emv.pin_bypass
        asks = events.ChipAsks("pin", offline=offline, tries_left=tries_left, retry=retry, bypass=bypass, face=face)
        self._post(asks)
        self._pinpad.arm_chip(offline, bypass, pan, self._give)
        got = await self._wait()
        if isinstance(got, TerminalError):
            raise CardError(f"the PIN could not be enciphered: {got}", screen=got.screen)
        self._post(events.ChipWorking("PROCESSING..."))
        return got

    def _ended(self, eff: effects.StartChip, outcome: ChipOutcome, online: _Online | None) -> None:
        """The kernel's last word: journal it and tell the flow."""
        log.info(
            "chip: %s %s, %s, %d APDUs, CVM %s, TVR %s TSI %s",
            outcome.card.masked_pan,
            "approved" if outcome.approved else "declined",
            outcome.cryptogram_type,
            outcome.apdus,
            outcome.cvm,
            outcome.tvr,
            outcome.tsi,
        )
        facts = f"{outcome.cryptogram_type} {outcome.cryptogram} TVR {outcome.tvr} TSI {outcome.tsi} CVM {outcome.cvm}"
        if online is None:  # nothing was sent: an online-only terminal takes no offline approval either
            why = "approved offline, refused: online only" if outcome.approved else "declined offline"
            self._journal_failure(eff.amount, f"{why} ({outcome.arc}): {facts}")
            screen = "NOT APPROVED" if outcome.approved else "DECLINED BY CARD"
            self._post(events.CardFailed(screen, outcome.reason or why, declined=True))
            return
        response = online.response
        self._journal_chip_result(online.row, outcome)
        if response.approved and not outcome.approved:
            # The issuer approved, the card's second GENERATE AC declined: the authorization is reversed.
            log.warning("chip: stan %06d approved by the host, declined by the card: reversing", online.stan)
            self._record(online.row, "unknown", note=f"declined by the card after approval: {facts}")
            self._reverse_soon()
            self._post(events.HostFailed("declined by the card", sent=True, stan=online.stan, title="CARD DECLINED"))
            return
        self._answered(online.row, online.stan, replace(response, icc=""), facts)

    def _journal_chip_result(self, row: int, outcome: ChipOutcome) -> None:
        """The card's last word on the sale's row, before its outcome (the receipt prints it)."""
        if self._chip_result is None:
            return
        try:
            self._chip_result(
                row,
                tvr=outcome.tvr,
                tsi=outcome.tsi,
                ac_type=outcome.cryptogram_type,
                ac=outcome.cryptogram,
                scripts="".join(outcome.scripts),
                reversal_icc=self._last_word(outcome),
            )
        except TerminalError as exc:  # the outcome's own write will meet the same trouble and be handled there
            log.error("chip: the card's results could not be journaled: %s", exc)

    @staticmethod
    def _last_word(outcome: ChipOutcome) -> str:
        """Field 55 for the reversal of a sale the card declined after the issuer approved: the card's last word,
        when it fits the field (a card's long IAD may not: then the 0400 says what the 0200 said); "" otherwise."""
        if not outcome.reversal:
            return ""
        data = icc_hex(outcome.icc)
        if fits_field_55(data):
            return data
        log.warning(
            "chip: the card's last word is %d bytes, over field 55: the reversal repeats the 0200's", len(data) // 2
        )
        return ""

    def _journal_failure(self, amount: int, reason: str) -> None:
        try:
            self._failed_read(amount, reason)
        except TerminalError as exc:  # a full disk: the card is not charged either way
            log.error("chip: the failed transaction could not be journaled: %s", exc)

    def _failed(self, eff: effects.StartChip, exc: Exception, online: _Online | None) -> None:
        """The card or the cardholder ended it early; an authorization already made is reversed."""
        screen = getattr(exc, "screen", "CARD ERROR")
        log.warning("chip: %s", exc)
        if online is None:
            self._journal_failure(eff.amount, str(exc))
            self._post(events.CardFailed(screen, str(exc)))
            return
        if not online.response.approved:  # the host declined: nothing to reverse, the decline stands
            self._answered(online.row, online.stan, replace(online.response, icc=""), f"card ended early: {exc}")
            return
        self._record(online.row, "unknown", note=f"the chip transaction did not end: {exc}"[:200])
        self._reverse_soon()
        self._post(events.HostFailed(str(exc), sent=True, stan=online.stan, title=screen))
