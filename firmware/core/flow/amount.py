"""Amount and basket entry at the idle screen (amounts, items by PLU and quantity), and the result screen."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from firmware.core.effects import CheckCatalogue, CollectOperatorPin, LookupItem, Reprint, StartTimer, StopTimer
from firmware.core.events import BadRead, CatalogueChecked, Event, ItemFound, Key, Swiped, TimerExpired
from firmware.core.flow.common import (
    AMOUNT_DIGITS,
    FlowConfig,
    Route,
    Step,
    amount_timer,
    digit,
    go,
    money,
    result_timer,
    say,
    stay,
)
from firmware.core.flow.states import IDLE, Amount, AwaitCard, ItemCode, ItemQty, Looking, OperatorPin, Result
from firmware.core.items import MAX_PLU, MAX_QTY, BasketLine, line_for, total


def _amount(state: Amount, event: Event, cfg: FlowConfig) -> Step:
    """The idle screen and a keyed amount: digits, CLEAR, ENTER to pay; MENU, F2, F3, F4 from idle."""
    if state.basket:
        return _basket(state, event, cfg)
    if isinstance(event, Key):
        k = event.name
        d = digit(k)
        if d is not None:
            if len(str(state.value)) >= AMOUNT_DIGITS:
                return go(replace(state, notice="MAX DIGITS"))
            return go(Amount(state.value * 10 + d))
        if k == "CLEAR":
            return go(Amount(state.value // 10))
        if k == "CANCEL":
            return go(IDLE)
        if k == "MENU" and not state.value:
            return go(OperatorPin(), CollectOperatorPin())
        if k == "F4" and not state.value:
            return go(OperatorPin(purpose="signin"), CollectOperatorPin("cashier"))
        if k == "F2" and not state.value:
            return go(Looking("reprint"), Reprint())  # 重打印: the last receipt again
        if k == "F3":
            return stay(state, CheckCatalogue())  # is there a catalogue now? The answer decides
        if k == "ENTER" and state.value:
            if state.value < cfg.min_amount:
                return go(Amount(state.value, "AMOUNT TOO LOW"))
            if state.value > cfg.max_amount:
                return go(Amount(state.value, "AMOUNT TOO HIGH"))
            return go(AwaitCard(state.value))
    elif isinstance(event, CatalogueChecked) and event.exists:
        return go(replace(state, notice="CLEAR AMOUNT FIRST") if state.value else ItemCode())
    elif isinstance(event, TimerExpired) and state.value:
        return go(IDLE)
    elif isinstance(event, (Swiped, BadRead)):
        return go(replace(state, notice="ENTER AMOUNT FIRST"))
    return stay(state)


def _basket(state: Amount, event: Event, cfg: FlowConfig) -> Step:
    """The amount screen once items are in the basket: F3 adds, CLEAR drops the last line, ENTER pays."""
    if isinstance(event, Key):
        k = event.name
        if k == "F3":
            return go(ItemCode(state.basket))
        if k == "CLEAR":
            rest = state.basket[:-1]
            return go(Amount(total(rest), basket=rest))
        if k == "CANCEL":
            return go(IDLE)
        if k == "ENTER":
            if state.value < cfg.min_amount:
                return go(replace(state, notice="AMOUNT TOO LOW"))
            return go(AwaitCard(state.value, basket=state.basket))
        if k.isdigit():
            return go(replace(state, notice="F3 ADDS AN ITEM"))
    elif isinstance(event, TimerExpired):
        return go(IDLE)
    elif isinstance(event, (Swiped, BadRead)):
        return go(replace(state, notice="PRESS ENTER FIRST"))
    return stay(state)


def _back_to_basket(basket: tuple[BasketLine, ...]) -> Step:
    return go(Amount(total(basket), basket=basket) if basket else IDLE)


def _item_code(state: ItemCode, event: Event, cfg: FlowConfig) -> Step:
    """Keying a PLU: digits, CLEAR steps back, ENTER looks the item up, CANCEL returns to the basket."""
    if isinstance(event, TimerExpired):
        return go(IDLE)
    if state.looking:
        if isinstance(event, ItemFound) and event.code == state.code:
            if event.item is None:
                return go(ItemCode(state.basket, "", notice=f"NO ITEM {state.code}"))
            return go(ItemQty(state.basket, event.item))
        return stay(state)  # an index lookup takes microseconds: keys wait for it
    if not isinstance(event, Key):
        return stay(state)
    k = event.name
    if k == "CANCEL":
        return _back_to_basket(state.basket)
    if digit(k) is not None:
        if len(state.code) >= MAX_PLU:
            return go(replace(state, notice="MAX DIGITS"))
        return go(ItemCode(state.basket, state.code + k))
    if k == "CLEAR":
        return go(ItemCode(state.basket, state.code[:-1])) if state.code else _back_to_basket(state.basket)
    if k == "ENTER" and state.code:
        return stay(replace(state, looking=True), LookupItem(state.code))
    return stay(state)


def _item_qty(state: ItemQty, event: Event, cfg: FlowConfig) -> Step:
    """How many of the item: digits, CLEAR steps back to the PLU, ENTER (alone: one) adds the line."""
    if isinstance(event, TimerExpired):
        return go(IDLE)
    if not isinstance(event, Key):
        return stay(state)
    k = event.name
    if k == "CANCEL":
        return _back_to_basket(state.basket)
    d = digit(k)
    if d is not None:
        quantity = state.quantity * 10 + d
        if quantity > MAX_QTY:
            return go(replace(state, notice="MAX QUANTITY"))
        return go(ItemQty(state.basket, state.item, quantity))
    if k == "CLEAR":
        return (
            go(ItemQty(state.basket, state.item, state.quantity // 10))
            if state.quantity
            else go(ItemCode(state.basket, state.item.plu))
        )
    if k == "ENTER":
        basket = state.basket + (line_for(state.item, state.quantity or 1),)
        if total(basket) > cfg.max_amount:
            return go(replace(state, notice="AMOUNT TOO HIGH"))
        return go(Amount(total(basket), basket=basket))
    return stay(state)


def _result(state: Result, event: Event, cfg: FlowConfig) -> Step:
    """An outcome on screen: a key or the timer returns to idle; a digit starts the next amount at once."""
    if isinstance(event, TimerExpired):
        return go(IDLE)
    if isinstance(event, Key):
        if digit(event.name) is not None:
            return _amount(IDLE, event, cfg)
        if event.name in ("ENTER", "CANCEL", "CLEAR"):
            return go(IDLE)
    return stay(state)


def _amount_screen(state: Amount, cfg: FlowConfig) -> tuple[str, ...]:
    if state.basket:
        last = state.basket[-1]
        return (
            f"{last.name} x{last.quantity}",
            say(cfg, "TOTAL {amount}", amount=money(state.value, cfg)),
            say(cfg, "F3 ADD  ENTER PAY ({lines})", lines=len(state.basket)),
        )
    return (say(cfg, "ENTER AMOUNT"), money(state.value, cfg))


def _amount_timer(state: Amount, cfg: FlowConfig) -> StartTimer | StopTimer:
    return StartTimer(cfg.amount_timeout) if state.value else StopTimer()


def _item_code_screen(state: ItemCode, cfg: FlowConfig) -> tuple[str, ...]:
    return (say(cfg, "ITEM CODE (PLU)"), state.code or "_") + (
        (say(cfg, "{lines} LINES {amount}", lines=len(state.basket), amount=money(total(state.basket), cfg)),)
        if state.basket
        else ()
    )


def _item_qty_screen(state: ItemQty, cfg: FlowConfig) -> tuple[str, ...]:
    return (state.item.name, money(state.item.price, cfg), say(cfg, "QTY {quantity}", quantity=state.quantity or 1))


ROUTES: dict[type, Route[Any]] = {
    Amount: Route(_amount, _amount_screen, _amount_timer),
    ItemCode: Route(_item_code, _item_code_screen, amount_timer),
    ItemQty: Route(_item_qty, _item_qty_screen, amount_timer),
    Result: Route(_result, lambda state, cfg: state.lines, result_timer),
}
