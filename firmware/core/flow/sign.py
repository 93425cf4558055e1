"""The cardholder's signature after an approval whose CVM is signature: drawn on the touch screen (ENTER keeps
it, CLEAR starts again, CANCEL or the timer leave it to the paper copy), or, with no touch screen, collected by
the cashier on the merchant copy. The sale is approved either way: a missing signature never undoes it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from firmware.core.effects import AwaitSignature, KeepSignature, NoSignature, PrintReceipts, Show, StartTimer
from firmware.core.events import Event, Key, TimerExpired, Touched
from firmware.core.flow.common import FlowConfig, Route, Step, go, money, say, stay
from firmware.core.flow.states import Result, Signing

# The screen texts of signing, in one place (for the language catalogue).
TEXT = {
    "sign": "SIGN ON THE SCREEN",
    "keys": "ENTER OK  CLEAR REDO",
    "sign_first": "PLEASE SIGN FIRST",
    "paper": "SIGN MERCHANT COPY",
}
MAX_POINTS = 4000  # what one signature keeps at most (a long one is a few hundred points)

Ink = tuple[tuple[tuple[int, int], ...], ...]


def needs_signature(cvm: str) -> bool:
    """True for a CVM the cardholder completes by signing (signature alone, or after an offline PIN)."""
    return "signature" in cvm


def approval(amount: int, auth_code: str, cfg: FlowConfig) -> tuple[str, ...]:
    """An approved card sale's result lines."""
    return ("APPROVED", money(amount, cfg), f"AUTH CODE {auth_code}")


def approved(stan: int, amount: int, auth_code: str, cvm: str, cfg: FlowConfig) -> Step:
    """Where an approved card sale goes: its result and receipts, or first the signature its CVM asks for
    (on the touch screen when there is one, else the cashier is told to collect it on the merchant copy)."""
    lines = approval(amount, auth_code, cfg)
    if not needs_signature(cvm):
        return go(Result(lines), PrintReceipts(stan))
    if cfg.touch is None:
        return go(Result((*lines, TEXT["paper"])), PrintReceipts(stan))
    return go(Signing(stan, amount, auth_code), AwaitSignature(stan))


def ink(state: Signing) -> Ink:
    """The strokes on screen, points only."""
    return tuple(points for _, points in state.strokes)


def _inked(state: Signing, event: Touched) -> Signing:
    """`state` with the touched points added, each to its stroke (a new stroke number starts one)."""
    strokes = [(n, list(points)) for n, points in state.strokes]
    total = sum(len(points) for _, points in strokes)
    for number, x, y in event.points:
        if total >= MAX_POINTS:
            break
        stroke = next((points for n, points in reversed(strokes) if n == number), None)
        if stroke is None:
            strokes.append((number, [(x, y)]))
        elif stroke[-1] != (x, y):
            stroke.append((x, y))
        else:
            continue
        total += 1
    return replace(state, strokes=tuple((n, tuple(points)) for n, points in strokes), notice="")


def _to_paper(state: Signing, reason: str, cfg: FlowConfig) -> Step:
    """No signature on the screen: the sale stays approved, the cashier has the merchant copy signed."""
    lines = (*approval(state.amount, state.auth_code, cfg), TEXT["paper"])
    return go(Result(lines), NoSignature(state.stan, reason), PrintReceipts(state.stan))


def _signing(state: Signing, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, Touched):
        new = _inked(state, event)
        if new == state:
            return stay(state)
        return stay(
            new, Show(tuple(say(cfg, line) for line in _screen(new, cfg)), "", ink(new))
        )  # drawn live (no notice now); the timer runs on
    if isinstance(event, Key):
        if event.name == "ENTER":
            if not state.strokes:
                return go(replace(state, notice=TEXT["sign_first"]))
            width, height = cfg.touch or (0, 0)
            keep = KeepSignature(state.stan, ink(state), width, height)
            return go(Result(approval(state.amount, state.auth_code, cfg)), keep, PrintReceipts(state.stan))
        if event.name == "CLEAR":
            return go(replace(state, strokes=(), notice=""))
        if event.name == "CANCEL":
            return _to_paper(state, "cancelled", cfg)
    if isinstance(event, TimerExpired):
        return _to_paper(state, "timeout", cfg)
    return stay(state)


def _screen(state: Signing, cfg: FlowConfig) -> tuple[str, ...]:
    """The approval's first lines, then what to do (the dispatcher puts a notice above them)."""
    return (*approval(state.amount, state.auth_code, cfg)[:2], TEXT["sign"], TEXT["keys"])


ROUTES: dict[type, Route[Any]] = {
    Signing: Route(
        _signing,
        _screen,
        lambda state, cfg: StartTimer(cfg.sign_timeout),
        ink=ink,
    ),
}
