"""A card payment: waiting for a card (or a wallet code instead), reading a tap, the PIN, the authorization."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from firmware.core.cardface import CardFace, face_of, holder_name
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
    Card,
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
from firmware.core.flow import sign
from firmware.core.flow.common import (
    CODE_DECLINE_TEXT,
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
    say,
    stay,
)
from firmware.core.flow.states import (
    Amount,
    Authorizing,
    AwaitCard,
    AwaitPin,
    ChipReading,
    ConfirmCard,
    ReadingCard,
    Result,
    State,
    WalletBusy,
)
from firmware.core.paycode import CodeCard, classify_code, route_code
from firmware.core.screentext import clip


def wants_tap(state: State, cfg: FlowConfig) -> bool:
    """True while the contactless reader should look for a card (RF field on)."""
    return isinstance(state, AwaitCard) and 0 < state.amount <= cfg.contactless_limit


def _await_card(state: AwaitCard, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, Swiped):
        chip_card = event.card.service_code[:1] in ("2", "6")  # ISO 7813: an IC is on the card
        if cfg.chip_reader and chip_card and not (state.chip_failed and cfg.fallback):
            return go(replace(state, notice="USE CHIP READER"))
        return _card_read(state.amount, event.card, state.basket, cfg)
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
        kind = classify_code(event.code)
        if kind and kind in cfg.acquirer_codes:  # the acquirer takes this wallet's codes in place of a card
            return _card_read(state.amount, CodeCard(event.code, kind), state.basket, cfg)
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


def _card_read(amount: int, card: Card, basket: Any, cfg: FlowConfig) -> Step:
    """A card was read: shown for the customer to confirm when the shop wants that, else on to the PIN."""
    if cfg.confirm_card:
        return go(ConfirmCard(amount, card, basket))
    return _go_on(amount, card, basket, cfg)


def _go_on(amount: int, card: Card, basket: Any, cfg: FlowConfig) -> Step:
    """The PIN screen for a stripe and for a card that asks for an online PIN; else straight to the host. A
    payment code asks for its payer's PIN above the acquirer's limit; below it, only when the host asks (55):
    it goes as attempt 0, no PIN tried yet."""
    if isinstance(card, CodeCard) and amount <= cfg.code_pin_above:
        return go(Authorizing(amount, card, 0, basket=basket), Authorize(amount, card, None, basket))
    if not isinstance(card, ChipCard) or card.cvm == "online_pin":
        return go(AwaitPin(amount, card, basket=basket), CollectPin(card.pan))
    return go(Authorizing(amount, card, 1, basket=basket), Authorize(amount, card, None, basket))


def _confirm_card(state: ConfirmCard, event: Event, cfg: FlowConfig) -> Step:
    """The card and the amount on screen: ENTER goes on, CANCEL (or the timer) stops without charging."""
    if pressed(event, "ENTER"):
        return _go_on(state.amount, state.card, state.basket, cfg)
    if pressed(event, "CANCEL"):
        return go(Result(("CANCELLED", "NOT CHARGED")))
    if isinstance(event, TimerExpired):
        return go(Result(("TIMEOUT", "NOT CHARGED")))
    return stay(state)


def _reading_card(state: ReadingCard, event: Event, cfg: FlowConfig) -> Step:
    if isinstance(event, CardRead):
        return _card_read(state.amount, event.card, state.basket, cfg)
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
        if resp.approved:  # then the signature, when the card's CVM is one (sign.py)
            return sign.approved(event.stan, state.amount, resp.auth_code, event.cvm, cfg)
        if resp.response_code == "55" and isinstance(state.card, ChipCard) and not state.cancelling:
            # A new PIN needs a new cryptogram: the card must be tapped again.
            return go(AwaitCard(state.amount, notice="WRONG PIN, TAP AGAIN", basket=state.basket))
        if resp.response_code == "55" and state.attempt < cfg.pin_attempts and not state.cancelling:
            notice = "WRONG PIN, TRY AGAIN" if state.attempt else "PAYMENT PIN NEEDED"  # 0: none was tried
            retry = AwaitPin(state.amount, state.card, state.attempt + 1, notice=notice, basket=state.basket)
            return go(retry, CollectPin(state.card.pan))
        texts = {**DECLINE_TEXT, **CODE_DECLINE_TEXT} if isinstance(state.card, CodeCard) else DECLINE_TEXT
        reason = texts.get(resp.response_code, f"CODE {resp.response_code}")
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
    prompt = "TAP OR SWIPE CARD" if wants_tap(state, cfg) else "PLEASE SWIPE CARD"
    lines = (money(state.amount, cfg), say(cfg, prompt))
    if len(cfg.wallets) < 2:
        return lines
    titles = (say(cfg, WALLET_TITLE.get(w, w.upper())) for w in cfg.wallets)
    keys = "  ".join(f"{key} {title}" for key, title in zip(QR_KEYS, titles, strict=False))
    return (*lines, keys)  # which key shows whose code


def card_lines(card: Card, cfg: FlowConfig) -> tuple[str, ...]:
    """What the customer sees of the card read: see face_lines."""
    return face_lines(face_of(card), cfg)


def face_lines(face: CardFace | None, cfg: FlowConfig) -> tuple[str, ...]:
    """The application's label (chip and tap), the masked number (first 6 / last 4), and the holder's name
    when the card carries one, cut to the display's width; nothing when the card is not known yet."""
    if face is None:
        return ()
    name = holder_name(face.name, cfg.language)
    return tuple(line for line in (face.label, face.masked_pan, clip(name, cfg.width)) if line)


def _confirm_card_screen(state: ConfirmCard, cfg: FlowConfig) -> tuple[str, ...]:
    return (
        money(state.amount, cfg),
        *card_lines(state.card, cfg),
        say(cfg, "ENTER TO GO ON"),
        say(cfg, "CANCEL TO STOP"),
    )


def _await_pin_screen(state: AwaitPin, cfg: FlowConfig) -> tuple[str, ...]:
    shown = () if cfg.confirm_card else card_lines(state.card, cfg)  # confirmed already: the PIN screen stays short
    return (money(state.amount, cfg), *shown, say(cfg, "ENTER PIN"), "*" * state.digits or "_")


def _reading_card_screen(state: ReadingCard, cfg: FlowConfig) -> tuple[str, ...]:
    return (money(state.amount, cfg), say(cfg, "READING CARD..."))


def _authorizing_screen(state: Authorizing, cfg: FlowConfig) -> tuple[str, ...]:
    return (money(state.amount, cfg), say(cfg, "CANCELLING..." if state.cancelling else "PROCESSING..."))


ROUTES: dict[type, Route[Any]] = {
    AwaitCard: Route(_await_card, _await_card_screen, lambda state, cfg: StartTimer(cfg.card_timeout)),
    ReadingCard: Route(_reading_card, _reading_card_screen, no_timer),
    ConfirmCard: Route(_confirm_card, _confirm_card_screen, lambda state, cfg: StartTimer(cfg.card_timeout)),
    AwaitPin: Route(_await_pin, _await_pin_screen, lambda state, cfg: StartTimer(cfg.pin_timeout)),
    Authorizing: Route(_authorizing, _authorizing_screen, no_timer),
}
