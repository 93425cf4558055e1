"""A wallet payment: the provider's order made or charged, the code on screen counting down, closing it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from firmware.core.effects import EndWalletOrder, PrintCode, PrintReceipts
from firmware.core.events import (
    Event,
    Key,
    OrderShown,
    TimerExpired,
    WalletConfirming,
    WalletEnded,
    WalletPaid,
)
from firmware.core.flow.common import (
    WALLET_TITLE,
    FlowConfig,
    Route,
    Step,
    go,
    money,
    no_timer,
    pressed,
    say,
    stay,
    timer,
)
from firmware.core.flow.states import Result, ShowingQR, WalletBusy

ENDED_TITLE = {"failed": "PAYMENT FAILED", "closed": "NOT PAID", "unknown": "PAYMENT UNKNOWN"}


def _answers(state: WalletBusy | ShowingQR, event: Event, cfg: FlowConfig) -> Step | None:
    """What the provider's answers mean in either wallet state (None: the event is not one of them)."""
    if isinstance(event, WalletConfirming):
        return go(WalletBusy(state.amount, event.text or "CONFIRM IN YOUR APP", True, state.provider))
    if isinstance(event, WalletPaid):
        receipt = PrintReceipts(event.stan)
        return go(Result(("PAID", money(state.amount, cfg), WALLET_TITLE.get(state.provider, ""))), receipt)
    if isinstance(event, WalletEnded):
        return go(Result((ENDED_TITLE[event.state], event.reason)))
    return None


def _busy(state: WalletBusy, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, OrderShown):
        return go(ShowingQR(state.amount, event.payload, cfg.qr_timeout, state.provider))
    answered = _answers(state, event, cfg)
    if answered is not None:
        return answered
    if pressed(event, "CANCEL") and state.cancellable:
        return go(WalletBusy(state.amount, "CANCELLING...", provider=state.provider), EndWalletOrder("CANCELLED"))
    return stay(state)


def _showing(state: ShowingQR, event: Event, cfg: FlowConfig) -> Step:
    answered = _answers(state, event, cfg)
    if answered is not None:
        return answered
    if isinstance(event, TimerExpired):
        if state.remaining > 1:
            return go(replace(state, remaining=state.remaining - 1))
        closing = WalletBusy(state.amount, "CODE EXPIRED, CLOSING", provider=state.provider)
        return go(closing, EndWalletOrder("CODE EXPIRED"))
    if pressed(event, "CANCEL"):
        return go(WalletBusy(state.amount, "CLOSING ORDER...", provider=state.provider), EndWalletOrder("CANCELLED"))
    if isinstance(event, Key) and event.name == "F2":
        return stay(state, PrintCode(state.payload, state.amount))
    return stay(state)


def _showing_screen(state: ShowingQR, cfg: FlowConfig) -> tuple[str, ...]:
    return (
        money(state.amount, cfg),
        say(cfg, "SCAN TO PAY  {time}", time=f"{state.remaining // 60}:{state.remaining % 60:02d}"),
        say(cfg, "F2 PRINT CODE"),
    )


ROUTES: dict[type, Route[Any]] = {
    WalletBusy: Route(_busy, lambda state, cfg: (money(state.amount, cfg), state.text), no_timer),
    ShowingQR: Route(_showing, _showing_screen, timer(1.0), qr=lambda state: state.payload),  # the countdown
}
