"""A chip card payment: the contact kernel runs in the shell; the flow shows what it does and asks the
cardholder what it needs (the application, a PIN checked by the card or by the issuer), then the outcome."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from firmware.core.effects import AbortChip, AnswerChip, EndPin, PrintReceipts, StartTimer
from firmware.core.events import (
    CardFailed,
    ChipAsks,
    ChipRemoved,
    ChipWorking,
    Event,
    HostAnswered,
    HostFailed,
    Key,
    PinProgress,
    TimerExpired,
)
from firmware.core.flow import sign
from firmware.core.flow.card import face_lines
from firmware.core.flow.common import (
    DECLINE_TEXT,
    TERMINAL_ERROR,
    FlowConfig,
    Route,
    Step,
    digit,
    go,
    money,
    no_timer,
    pressed,
    say,
    stay,
)
from firmware.core.flow.states import AwaitCard, ChipChoosing, ChipPin, ChipReading, Result

BYPASS_HINT = "NO PIN? PRESS ENTER"


def _asked(amount: int, basket: Any, event: ChipAsks) -> Step:
    """The kernel's question as a screen (and, for a PIN, the PIN pad armed)."""
    if event.what == "choose":
        return go(ChipChoosing(amount, event.options, basket))
    # The shell's chip desk has armed the PIN pad for the kernel: digits never pass through the flow.
    pin = ChipPin(amount, event.offline, event.tries_left, event.retry, event.bypass, basket=basket, face=event.face)
    return go(pin)


def _ended(state: ChipReading, event: Event, cfg: FlowConfig) -> Step | None:
    """How a chip sale ends: the host's answer (after the card's final say), no answer, or the card's error."""
    if isinstance(event, HostAnswered):
        resp, receipt = event.response, PrintReceipts(event.stan)
        if resp.approved:  # then the signature, when the card's CVM is one (sign.py)
            return sign.approved(event.stan, state.amount, resp.auth_code, event.cvm, cfg)
        return go(Result(("DECLINED", DECLINE_TEXT.get(resp.response_code, f"CODE {resp.response_code}"))), receipt)
    if isinstance(event, HostFailed):
        if event.reason == TERMINAL_ERROR:
            return go(Result(("TERMINAL ERROR", "NOT APPROVED")))
        if state.cancelling:
            return go(Result(("CANCELLED", "CHECK WITH HOST" if event.sent else "NOT CHARGED")))
        if event.sent:
            return go(Result((event.title or "NO HOST ANSWER", "NOT APPROVED")))
        return go(Result((event.title or "HOST NOT AVAILABLE", "NOT CHARGED")))
    if isinstance(event, CardFailed):
        if state.cancelling:
            return go(Result(("CANCELLED", "NOT CHARGED")))
        if event.declined:
            return go(Result(("DECLINED", event.screen)))
        return go(AwaitCard(state.amount, notice=event.screen, basket=state.basket, chip_failed=True))
    return None


def _reading(state: ChipReading, event: Event, cfg: FlowConfig) -> Step:
    ended = _ended(state, event, cfg)
    if ended is not None:
        return ended
    if isinstance(event, ChipAsks) and not state.cancelling:
        return _asked(state.amount, state.basket, event)
    if isinstance(event, ChipWorking) and not state.cancelling:
        return go(ChipReading(state.amount, state.basket, event.text))
    if pressed(event, "CANCEL") and not state.cancelling:
        # The kernel stops at its next step; a request already sent is reversed by the shell.
        return go(ChipReading(state.amount, state.basket, "CANCELLING...", True), AbortChip("CANCELLED"))
    return stay(state)  # ChipRemoved: the kernel's next APDU finds out and ends it


def _cancelled(state: ChipChoosing | ChipPin, reason: str, *extra: Any) -> Step:
    return go(ChipReading(state.amount, state.basket, "CANCELLING...", True), *extra, AbortChip(reason))


def _choosing(state: ChipChoosing, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, Key):
        d = digit(event.name)
        if d is not None and 1 <= d <= len(state.options):
            return go(ChipReading(state.amount, state.basket, "PROCESSING..."), AnswerChip(d))
        if event.name == "CANCEL":
            return _cancelled(state, "CANCELLED")
    if isinstance(event, ChipRemoved):
        return _cancelled(state, "CARD REMOVED")
    if isinstance(event, TimerExpired):
        return _cancelled(state, "TIMEOUT")
    return stay(state)


def _pin(state: ChipPin, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, PinProgress):
        return go(replace(state, digits=event.digits))
    if isinstance(event, ChipWorking):  # the PIN is with the kernel (or the card)
        return go(ChipReading(state.amount, state.basket, event.text), EndPin())
    if isinstance(event, ChipAsks):  # a wrong offline PIN: the card asks again
        return _asked(state.amount, state.basket, event)
    if pressed(event, "CANCEL"):
        return _cancelled(state, "CANCELLED", EndPin())
    if isinstance(event, ChipRemoved):
        return _cancelled(state, "CARD REMOVED", EndPin())
    if isinstance(event, TimerExpired):
        return _cancelled(state, "TIMEOUT", EndPin())
    return stay(state)


def _choosing_screen(state: ChipChoosing, cfg: FlowConfig) -> tuple[str, ...]:
    return (say(cfg, "SELECT APPLICATION"), *(f"{n} {name}" for n, name in enumerate(state.options, 1)))


def _pin_screen(state: ChipPin, cfg: FlowConfig) -> tuple[str, ...]:
    lines: list[str] = []
    if state.retry:
        left = state.tries_left
        lines.append(say(cfg, "WRONG PIN, {tries} TRIES LEFT", tries=left) if left else say(cfg, "WRONG PIN"))
    elif state.tries_left == 1:
        lines.append(say(cfg, "LAST PIN TRY"))
    lines += [money(state.amount, cfg), *face_lines(state.face, cfg), say(cfg, "ENTER PIN"), "*" * state.digits or "_"]
    if state.bypass and not state.digits:
        lines.append(say(cfg, BYPASS_HINT))
    return tuple(lines)


ROUTES: dict[type, Route[Any]] = {
    ChipReading: Route(_reading, lambda state, cfg: (money(state.amount, cfg), state.text), no_timer),
    ChipChoosing: Route(_choosing, _choosing_screen, lambda state, cfg: StartTimer(cfg.card_timeout)),
    ChipPin: Route(_pin, _pin_screen, lambda state, cfg: StartTimer(cfg.pin_timeout)),
}
