"""A card payment: waiting for a card (or a wallet code instead), reading a tap, the PIN, the authorization."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from firmware.core.effects import (
    AbortAuthorization,
    Authorize,
    CollectPin,
    EndPin,
    PayByCode,
    PrintReceipts,
    ReadCard,
    ReleaseCard,
    StartChip,
    StartQrOrder,
    StartTimer,
)
from firmware.core.emv import ChipCard
from firmware.core.events import (
    BadRead,
    CardFailed,
    CardRead,
    ChipInserted,
    Event,
    HostAnswered,
    HostFailed,
    Key,
    PinEntered,
    PinFailed,
    PinProgress,
    Scanned,
    Swiped,
    Tapped,
    TimerExpired,
)
from firmware.core.flow.common import (
    DECLINE_TEXT,
    QR_KEYS,
    TERMINAL_ERROR,
    WALLET_TITLE,
    FlowConfig,
    Route,
    Step,
    go,
    money,
    no_timer,
    pressed,
    stay,
)
from firmware.core.flow.states import (
    Amount,
    Authorizing,
    AwaitCard,
    AwaitPin,
    ChipReading,
    ReadingCard,
    Result,
    State,
    WalletBusy,
)
from firmware.core.paycode import route_code


def wants_tap(state: State, cfg: FlowConfig) -> bool:
    """True while the contactless reader should look for a card (RF field on)."""
    return isinstance(state, AwaitCard) and 0 < state.amount <= cfg.contactless_limit


def _await_card(state: AwaitCard, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, Swiped):
        chip_card = event.card.service_code[:1] in ("2", "6")  # ISO 7813: an IC is on the card
        if cfg.chip_reader and chip_card and not (state.chip_failed and cfg.fallback):
            return go(replace(state, notice="USE CHIP READER 请插卡"))
        return go(AwaitPin(state.amount, event.card, basket=state.basket), CollectPin(event.card.pan))
    if isinstance(event, BadRead):
        return go(replace(state, notice="READ ERROR, SWIPE AGAIN"))
    if isinstance(event, ChipInserted):
        return go(ChipReading(state.amount, state.basket), StartChip(event.session, state.amount, state.basket))
    if isinstance(event, Tapped):
        if not wants_tap(state, cfg):
            return stay(state, ReleaseCard(event.session))
        return go(ReadingCard(state.amount, state.basket), ReadCard(event.session, state.amount))
    if isinstance(event, CardFailed):
        return go(replace(state, notice=event.screen))
    if isinstance(event, Scanned):
        provider, kind = route_code(event.code, cfg.wallets)
        if provider:
            pay = PayByCode(state.amount, event.code, state.basket, provider=provider)
            return go(WalletBusy(state.amount, "PROCESSING...", provider=provider), pay)
        notice = f"{kind.upper()} NOT SET UP" if kind else "CODE NOT SUPPORTED"
        return go(replace(state, notice=notice))
    if isinstance(event, Key):
        shown = QR_KEYS.get(event.name, len(cfg.wallets))
        if shown < len(cfg.wallets):  # F1: the first wallet's code, F2: the second's
            provider = cfg.wallets[shown]
            order = StartQrOrder(state.amount, state.basket, provider=provider)
            return go(WalletBusy(state.amount, "PREPARING QR CODE", provider=provider), order)
        if event.name == "CANCEL":
            return go(Result(("CANCELLED",)))
        if event.name == "CLEAR":  # back to the amount, or to the basket with its lines
            return go(Amount(state.amount, basket=state.basket))
    elif isinstance(event, TimerExpired):
        return go(Result(("TIMEOUT", "NO CARD PRESENTED")))
    return stay(state)


def _reading_card(state: ReadingCard, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, CardRead):
        card = event.card
        if card.cvm == "online_pin":
            return go(AwaitPin(state.amount, card, basket=state.basket), CollectPin(card.pan))
        return go(
            Authorizing(state.amount, card, 1, basket=state.basket),
            Authorize(state.amount, card, None, state.basket),
        )
    if isinstance(event, CardFailed):
        return go(AwaitCard(state.amount, notice=event.screen, basket=state.basket))
    return stay(state)  # the kernel takes milliseconds; CANCEL waits for it


def _await_pin(state: AwaitPin, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, PinProgress):
        return go(replace(state, digits=event.digits, notice=""))
    if isinstance(event, PinEntered):
        return go(
            Authorizing(state.amount, state.card, state.attempt, basket=state.basket),
            EndPin(),
            Authorize(state.amount, state.card, event.pin, state.basket),
        )
    if isinstance(event, PinFailed):
        return go(Result(("PIN PAD ERROR", event.screen)), EndPin())
    if pressed(event, "CANCEL"):
        return go(Result(("CANCELLED",)), EndPin())
    if isinstance(event, TimerExpired):
        return go(Result(("TIMEOUT", "NO PIN ENTERED")), EndPin())
    return stay(state)


def _authorizing(state: Authorizing, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, HostAnswered):
        resp = event.response
        receipt = PrintReceipts(event.stan)
        if resp.approved:
            return go(Result(("APPROVED", money(state.amount, cfg), f"AUTH CODE {resp.auth_code}")), receipt)
        if resp.response_code == "55" and isinstance(state.card, ChipCard) and not state.cancelling:
            # A new PIN needs a new cryptogram: the card must be tapped again.
            return go(AwaitCard(state.amount, notice="WRONG PIN, TAP AGAIN", basket=state.basket))
        if resp.response_code == "55" and state.attempt < cfg.pin_attempts and not state.cancelling:
            retry = AwaitPin(
                state.amount, state.card, state.attempt + 1, notice="WRONG PIN, TRY AGAIN", basket=state.basket
            )
            return go(retry, CollectPin(state.card.pan))
        reason = DECLINE_TEXT.get(resp.response_code, f"CODE {resp.response_code}")
        return go(Result(("DECLINED", reason)), receipt)
    if isinstance(event, HostFailed):
        if event.reason == TERMINAL_ERROR:
            lines = ("TERMINAL ERROR", "NOT APPROVED")
        elif state.cancelling:
            lines = ("CANCELLED", "CHECK WITH HOST" if event.sent else "NOT CHARGED")
        elif event.sent:
            lines = (event.title or "NO HOST ANSWER", "NOT APPROVED")
        else:
            lines = (event.title or "HOST NOT AVAILABLE", "NOT CHARGED")
        return go(Result(lines))
    if pressed(event, "CANCEL") and not state.cancelling:
        return go(replace(state, cancelling=True), AbortAuthorization())
    return stay(state)


def _await_card_screen(state: AwaitCard, cfg: FlowConfig) -> tuple[str, ...]:
    lines = (money(state.amount, cfg), "TAP OR SWIPE CARD" if wants_tap(state, cfg) else "PLEASE SWIPE CARD")
    if len(cfg.wallets) < 2:
        return lines
    keys = "  ".join(f"{key} {WALLET_TITLE.get(w, w.upper())}" for key, w in zip(QR_KEYS, cfg.wallets, strict=False))
    return (*lines, keys)  # which key shows whose code


def _await_pin_screen(state: AwaitPin, cfg: FlowConfig) -> tuple[str, ...]:
    return (money(state.amount, cfg), "ENTER PIN", "*" * state.digits or "_")


def _authorizing_screen(state: Authorizing, cfg: FlowConfig) -> tuple[str, ...]:
    return (money(state.amount, cfg), "CANCELLING..." if state.cancelling else "PROCESSING...")


ROUTES: dict[type, Route[Any]] = {
    AwaitCard: Route(_await_card, _await_card_screen, lambda state, cfg: StartTimer(cfg.card_timeout)),
    ReadingCard: Route(_reading_card, lambda state, cfg: (money(state.amount, cfg), "READING CARD..."), no_timer),
    AwaitPin: Route(_await_pin, _await_pin_screen, lambda state, cfg: StartTimer(cfg.pin_timeout)),
    Authorizing: Route(_authorizing, _authorizing_screen, no_timer),
}
