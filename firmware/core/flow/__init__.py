"""The terminal's flow as a pure state machine: step(state, event, cfg) -> (state, effects). No I/O, no clock.

Each activity owns the transitions, screens and timers of its states: amount.py (amount and basket entry,
results), card.py (a card payment), wallet.py (a wallet payment), backoffice.py (operator, void, refund,
report, settlement, reprint). This module routes a state to its activity through one table and turns a
handler's Step into effects: entering a state adds its screen and its timer. Every line a screen shows passes
through the catalogue (firmware/core/screentext.py) in the screen's language: the shop's, or the one the customer
chose for the sale with LANGUAGE_KEY."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, get_args

from firmware.core.effects import (
    Authorize,
    Effect,
    PayByCode,
    PrintReport,
    ReleaseCard,
    Reprint,
    Settle,
    Show,
    StartChip,
    StartQrOrder,
    SubmitFollowUp,
)
from firmware.core.events import ChipInserted, DeviceTrouble, Event, Key, OperatorChecked, Tapped
from firmware.core.flow import amount, backoffice, card, chip, sign, wallet
from firmware.core.flow.common import QR_KEYS, FlowConfig, Route, Step
from firmware.core.flow.states import IDLE, Amount, AwaitCard, OperatorPin, Result, State, Till
from firmware.core.screentext import EN, ZH_CN, say

TABLE: dict[type, Route[Any]] = {
    **amount.ROUTES,
    **card.ROUTES,
    **chip.ROUTES,
    **sign.ROUTES,
    **wallet.ROUTES,
    **backoffice.ROUTES,
}

wants_tap = card.wants_tap

# The customer's key for the other language, for this sale only. F4 signs a cashier in at the idle screen, and
# no state of a payment uses it: there (and at the PIN pad, which lets it through) it switches the language.
LANGUAGE_KEY = "F4"
# The states in which the customer is at the terminal: the key works there, and the sale's language holds
# until the sale's outcome (a Result) is left.
CUSTOMER_STATES: tuple[type, ...] = (*card.ROUTES, *chip.ROUTES, *wallet.ROUTES, *sign.ROUTES)

__all__ = [
    "CUSTOMER_STATES",
    "IDLE",
    "LANGUAGE_KEY",
    "TABLE",
    "FlowConfig",
    "State",
    "Till",
    "advance",
    "enter",
    "put",
    "render",
    "step",
    "wants_tap",
]


def _route(state: State) -> Route[Any]:
    return TABLE[type(state)]


def render(state: State, cfg: FlowConfig) -> tuple[str, ...]:
    """The screen for a state in cfg's language: its activity's lines, under the state's notice when it has one.
    Texts made elsewhere (a notice, an outcome, a device's or the host's words) are said here."""
    lines = _route(state).screen(state, cfg)
    notice = getattr(state, "notice", "")
    return tuple(say(cfg.language, line) for line in ((notice, *lines) if notice else lines))


def enter(state: State, cfg: FlowConfig, *extra: Effect) -> tuple[State, list[Effect]]:
    """Move to `state`: `extra` effects first, then its screen (and code, when it shows one) and its timer."""
    route = _route(state)
    return state, [*extra, Show(render(state, cfg), route.qr(state), route.ink(state)), route.timer(state, cfg)]


def step(state: State, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    """Advance the flow by one event. Events that mean nothing in a state are ignored (no effects)."""
    if isinstance(event, (Tapped, ChipInserted)) and not isinstance(state, AwaitCard):
        return state, [ReleaseCard(event.session)]  # a card no sale asked for
    done: Step = _route(state).step(state, event, cfg)
    if done.entered:
        return enter(done.state, cfg, *done.effects)
    return done.state, list(done.effects)


def advance(till: Till, event: Event, cfg: FlowConfig) -> tuple[Till, list[Effect]]:
    """The shell's entry: step the flow, keep who an accepted operator PIN belongs to (and name the cashier or
    the manager on the effects that journal or audit what they did), and keep what is wrong with the devices
    on every screen."""
    state = till.state
    shown = spoken(till, cfg)
    if isinstance(event, DeviceTrouble):
        known = dict(till.problems)
        if known.get(event.device, "") == event.screen:
            return till, []
        known[event.device] = event.screen
        till = replace(till, problems=tuple((d, s) for d, s in known.items() if s))
        return till, [_bannered(_redrawn(state, shown), till, shown)]  # redrawn, no timer
    if isinstance(event, Key) and event.name == LANGUAGE_KEY and isinstance(state, CUSTOMER_STATES):
        if isinstance(state, AwaitCard) and QR_KEYS[LANGUAGE_KEY] < len(cfg.wallets):
            return _stepped(till, state, event, cfg)  # a fourth wallet's code is on F4 at the card screen
        till = replace(till, language=ZH_CN if shown.language == EN else EN)
        if till.language == cfg.language:
            till = replace(till, language="")
        shown = spoken(till, cfg)
        return till, [_bannered(_redrawn(state, shown), till, shown)]  # the same screen in the other language
    if isinstance(event, OperatorChecked) and event.ok and isinstance(state, OperatorPin):
        till = replace(till, cashier=event.who) if state.purpose == "signin" else replace(till, manager=event.who)
    return _stepped(till, state, event, cfg)


def _stepped(till: Till, state: State, event: Event, cfg: FlowConfig) -> tuple[Till, list[Effect]]:
    """The flow's step for the event in the screen's language; the shop's language back once the sale is over."""
    shown = spoken(till, cfg)
    new, todo = step(state, event, shown)
    till = replace(till, state=new)
    if till.language and not isinstance(new, (*CUSTOMER_STATES, Result)):  # the sale is over: the shop's language
        till, shown = replace(till, language=""), cfg
        todo = [_redrawn(new, cfg) if isinstance(eff, Show) else eff for eff in todo]
    return till, [_bannered(_named(eff, till, state), till, shown) for eff in todo]


def spoken(till: Till, cfg: FlowConfig) -> FlowConfig:
    """The flow's configuration in the language on screen: the sale's when the customer chose one."""
    return replace(cfg, language=till.language) if till.language and till.language != cfg.language else cfg


def put(till: Till, state: State, cfg: FlowConfig, *extra: Effect) -> tuple[Till, list[Effect]]:
    """The shell's own move of the flow (boot, after a failure): `enter` the state, device lines kept."""
    shown = spoken(till, cfg)
    new, todo = enter(state, shown, *extra)
    till = replace(till, state=new)
    return till, [_bannered(eff, till, shown) for eff in todo]


def _redrawn(state: State, cfg: FlowConfig) -> Show:
    route = _route(state)
    return Show(render(state, cfg), route.qr(state), route.ink(state))


def _bannered(eff: Effect, till: Till, cfg: FlowConfig) -> Effect:
    """A screen with a line for each device in trouble under what the flow shows."""
    if isinstance(eff, Show) and till.problems:
        return replace(eff, lines=eff.lines + tuple(say(cfg.language, screen) for _, screen in till.problems))
    return eff


def _named(eff: Effect, till: Till, state: State) -> Effect:
    """`eff` with the operator it acts for: sales are the cashier's, back-office work the manager's, and a
    reprint whoever asked for it (F2 at the amount screen: the cashier)."""
    if isinstance(eff, (Authorize, StartQrOrder, PayByCode, StartChip)):
        return replace(eff, operator=till.cashier)
    if isinstance(eff, (SubmitFollowUp, Settle, PrintReport)):
        return replace(eff, operator=till.manager)
    if isinstance(eff, Reprint):
        return replace(eff, operator=till.cashier if isinstance(state, Amount) else till.manager)
    return eff


def _check_table() -> None:
    """Every state type has exactly one route (checked at import: a new state without one cannot load)."""
    missing = set(get_args(State)) - set(TABLE)
    extra = set(TABLE) - set(get_args(State))
    if missing or extra:
        raise TypeError(
            f"flow table: no route for {sorted(t.__name__ for t in missing)}, "
            f"routes for non-states {sorted(t.__name__ for t in extra)}"
        )


_check_table()
