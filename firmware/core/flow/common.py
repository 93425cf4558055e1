"""What every activity of the flow shares: its configuration, the Step a handler returns, key editing, money."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from firmware.core.effects import Effect, StartTimer, StopTimer
from firmware.core.events import Event, Key
from firmware.core.flow.states import State
from firmware.core.money import Currency, format_amount
from firmware.core.screentext import EN
from firmware.core.screentext import say as _say

AMOUNT_DIGITS = 10  # at most 10 digits of minor units can be keyed
TERMINAL_ERROR = "terminal error"  # HostFailed.reason when the shell itself failed

# Response code -> second screen line for declines.
DECLINE_TEXT = {
    "05": "DO NOT HONOR",
    "14": "INVALID CARD NUMBER",
    "41": "LOST CARD",
    "43": "STOLEN CARD",
    "51": "INSUFFICIENT FUNDS",
    "54": "EXPIRED CARD",
    "55": "WRONG PIN",
    "57": "NOT PERMITTED",
    "61": "OVER LIMIT",
    "75": "PIN TRIES EXCEEDED",
    "82": "CARD AUTH FAILED",
    "91": "ISSUER UNAVAILABLE",
    "96": "SYSTEM ERROR",
}


# A payment code sent to the acquirer is declined in a code's words where a card's would mislead.
CODE_DECLINE_TEXT = {"14": "PAYMENT CODE INVALID", "54": "PAYMENT CODE EXPIRED", "51": "INSUFFICIENT BALANCE"}


# What the screen calls each wallet, and which key at the card screen shows whose code.
WALLET_TITLE = {"alipay": "ALIPAY", "wechat": "WECHAT PAY", "unionpay": "UNIONPAY", "aggregator": "ANY WALLET"}
QR_KEYS = {"F1": 0, "F2": 1, "F3": 2, "F4": 3}


@dataclass(frozen=True)
class FlowConfig:
    """What the flow needs to know: currency, limits, timeouts (seconds), PIN tries."""

    currency: Currency
    min_amount: int = 1
    max_amount: int = 99_999_999
    amount_timeout: float = 60.0
    card_timeout: float = 60.0
    pin_timeout: float = 30.0
    result_timeout: float = 15.0
    pin_attempts: int = 3
    contactless_limit: int = 0  # largest amount offered for tapping; 0: no contactless reader
    chip_reader: bool = False  # a contact reader: a chip card's stripe is refused (USE CHIP READER)
    fallback: bool = False  # ... unless its chip failed and the shop allows the stripe then
    wallets: tuple[str, ...] = ()  # the wallets the shop takes ("alipay", "wechat"); F1 shows the first's code
    qr_timeout: int = 120  # seconds a shown code stays valid
    language: str = EN  # the screen's language ("en" | "zh-CN"): the shop's, or the sale's after LANGUAGE_KEY
    confirm_card: bool = False  # after a card is read, a screen shows it and waits for ENTER (else: the PIN screen)
    width: int = 20  # the display's columns (a cardholder name longer than that is cut)
    touch: tuple[int, int] | None = None  # a touch screen (width, height in pixels): the cardholder signs on it
    sign_timeout: float = 90.0  # seconds to sign on the screen before the paper copy is signed instead
    acquirer_codes: tuple[str, ...] = ()  # wallets whose scanned codes go to the acquirer as cards ("unionpay")
    code_pin_above: int = 100_000  # such a code's payer enters a PIN on the keypad above this amount


@dataclass(frozen=True)
class Step:
    """A handler's answer: the next state and the effects to carry out. `entered` (see go()) adds the new
    state's screen and timer after the effects; a quiet step (see stay()) changes nothing on screen."""

    state: State
    effects: tuple[Effect, ...] = ()
    entered: bool = False


def go(state: State, *effects: Effect) -> Step:
    """Move to `state`: `effects` first, then its screen and its timer (even when it is the same state)."""
    return Step(state, effects, entered=True)


def stay(state: State, *effects: Effect) -> Step:
    """Keep `state` (possibly updated) without redrawing or touching the timer; carry out `effects`."""
    return Step(state, effects)


S = TypeVar("S")


@dataclass(frozen=True)
class Route(Generic[S]):
    """One state type's row in the dispatcher's table: how it handles an event, what it shows, its timer."""

    step: Callable[[S, Event, FlowConfig], Step]
    screen: Callable[[S, FlowConfig], tuple[str, ...]]
    timer: Callable[[S, FlowConfig], StartTimer | StopTimer]
    qr: Callable[[S], str] = lambda state: ""
    ink: Callable[[S], tuple[tuple[tuple[int, int], ...], ...]] = lambda state: ()  # strokes drawn on screen


def money(amount: int, cfg: FlowConfig) -> str:
    """An amount for the screen in its language: 'CNY 12.50' / '¥12.50'."""
    return format_amount(amount, cfg.currency, cfg.language)


def say(cfg: FlowConfig, msgid: str, **fields: object) -> str:
    """A text of the catalogue (firmware/core/screentext.py) in the screen's language, its fields filled in."""
    return _say(cfg.language, msgid, **fields)


def pressed(event: Event, *names: str) -> bool:
    """True when `event` is one of these keys."""
    return isinstance(event, Key) and event.name in names


def digit(key: str) -> int | None:
    """The digit a key name stands for ('0'..'9'), or None."""
    return int(key) if len(key) == 1 and key.isdigit() else None


def edit_digits(value: str, key: str, limit: int) -> str | None:
    """Typing into a digit string: a digit appends while fewer than `limit` are there, CLEAR removes the last
    one; None for any other key and for a digit too many (the caller decides what those mean)."""
    if digit(key) is not None:
        return value + key if len(value) < limit else None
    if key == "CLEAR":
        return value[:-1]
    return None


def timer(seconds: float) -> Callable[[object, FlowConfig], StartTimer | StopTimer]:
    """A fixed timer for a state (the countdown of a shown code)."""
    return lambda state, cfg: StartTimer(seconds)


def no_timer(state: object, cfg: FlowConfig) -> StartTimer | StopTimer:
    """The state's wait belongs to the shell (journal, host, kernel, wallet): no flow timer runs."""
    return StopTimer()


def amount_timer(state: object, cfg: FlowConfig) -> StartTimer | StopTimer:
    """Keying something: the amount timeout."""
    return StartTimer(cfg.amount_timeout)


def result_timer(state: object, cfg: FlowConfig) -> StartTimer | StopTimer:
    """An outcome on screen: the result timeout."""
    return StartTimer(cfg.result_timeout)
