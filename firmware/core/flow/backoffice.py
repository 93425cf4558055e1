"""The back office: operator PINs, menu, finding a sale, void (撤销), refund (退货), report, settlement, reprint."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from firmware.core.effects import (
    EndPin,
    FindOriginal,
    PrintReceipts,
    PrintReport,
    Reprint,
    Settle,
    Show,
    SubmitFollowUp,
)
from firmware.core.events import (
    CashRefunded,
    Event,
    HostAnswered,
    HostFailed,
    Key,
    OperatorChecked,
    OriginalFound,
    OriginalMissing,
    OriginalSale,
    Payout,
    PinProgress,
    Refused,
    Reprinted,
    Scanned,
    Settled,
    TimerExpired,
)
from firmware.core.flow.common import (
    AMOUNT_DIGITS,
    DECLINE_TEXT,
    TERMINAL_ERROR,
    FlowConfig,
    Route,
    Step,
    amount_timer,
    digit,
    edit_digits,
    go,
    money,
    no_timer,
    pressed,
    say,
    stay,
)
from firmware.core.flow.states import (
    ConfirmVoid,
    Looking,
    Menu,
    OperatorPin,
    RefundAmount,
    RefundRoute,
    Result,
    SearchEntry,
    Submitting,
    TraceEntry,
)

KIND_TITLE = {"void": "VOID", "refund": "REFUND", "settle": "SETTLEMENT", "reprint": "REPRINT"}
TRACE_DIGITS = 6
# Why a sale cannot be voided or refunded, by its journal status.
NOT_APPROVED = {
    "declined": "SALE IS DECLINED",
    "voided": "SALE IS VOIDED",
    "reversed": "SALE IS REVERSED",
    "pending": "SALE IS PENDING",
    "failed": "SALE IS FAILED",
    "unknown": "SALE IS UNKNOWN",
    "cancelled": "SALE IS CANCELLED",
}
SETTLED_TITLE = {"in_balance": "SETTLED, IN BALANCE", "out_of_balance": "OUT OF BALANCE", "failed": "SETTLEMENT FAILED"}


def _left(state: object, event: Event) -> Step | None:
    """CANCEL or the timer leaves any back-office screen that waits for the operator (None otherwise)."""
    cancel = pressed(event, "CANCEL")
    if not (cancel or isinstance(event, TimerExpired)):
        return None
    lines = ("CANCELLED",) if cancel else ("TIMEOUT",)
    return go(Result(lines), EndPin()) if isinstance(state, OperatorPin) else go(Result(lines))


def _operator_pin(state: OperatorPin, event: Event, cfg: FlowConfig) -> Step:
    left = _left(state, event)
    if left is not None:
        return left
    if isinstance(event, PinProgress):
        return go(OperatorPin(event.digits, state.purpose))
    if isinstance(event, OperatorChecked):
        if event.ok and state.purpose == "signin":
            return go(Result(("SIGNED IN", event.who.upper())), EndPin())
        if event.ok:
            return go(Menu(), EndPin())
        return go(Result(("ACCESS DENIED", event.notice)), EndPin())
    return stay(state)


def _menu(state: Menu, event: Event, cfg: FlowConfig) -> Step:
    left = _left(state, event)
    if left is not None:
        return left
    if isinstance(event, Key):
        if event.name in ("1", "2"):
            return go(TraceEntry("void" if event.name == "1" else "refund"))
        if event.name == "3":
            return go(Result(("REPORT PRINTED",)), PrintReport())
        if event.name == "4":
            return go(Looking("settle"), Settle())
        if event.name == "5":
            return go(TraceEntry("reprint"))
    return stay(state)


def _trace_entry(state: TraceEntry, event: Event, cfg: FlowConfig) -> Step:
    """The original's trace number (or, for a void or refund, its receipt scanned; F2 searches instead)."""
    left = _left(state, event)
    if left is not None:
        return left
    if isinstance(event, Scanned) and state.kind != "reprint":
        return go(Looking(state.kind), FindOriginal(reference=event.code))
    if not isinstance(event, Key):
        return stay(state)
    k = event.name
    typed = edit_digits(state.value, k, TRACE_DIGITS)
    if typed is not None:
        return go(replace(state, value=typed))
    if state.kind == "reprint":
        if k == "ENTER":  # ENTER alone: the last receipt
            return go(Looking("reprint"), Reprint(int(state.value or 0)))
        return stay(state)
    if k == "ENTER" and state.value:
        return go(Looking(state.kind), FindOriginal(stan=int(state.value)))
    if k == "F2":
        return go(SearchEntry(state.kind))
    return stay(state)


def _search(state: SearchEntry, event: Event, cfg: FlowConfig) -> Step:
    """Date (MMDD), then amount, then the card's last four: one field at a time, ENTER moves on."""
    left = _left(state, event)
    if left is not None:
        return left
    if not isinstance(event, Key):
        return stay(state)
    k = event.name
    limit = {"date": 4, "amount": AMOUNT_DIGITS, "last4": 4}[state.field]
    typed = edit_digits(state.value, k, limit)
    if typed is not None:
        return go(replace(state, value=typed))
    if k != "ENTER" or len(state.value) < (1 if state.field == "amount" else 4):
        return stay(state)
    if state.field == "date":
        month, day = int(state.value[:2]), int(state.value[2:])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return go(replace(state, value=""))
        return go(SearchEntry(state.kind, "amount", date=state.value))
    if state.field == "amount":
        return go(SearchEntry(state.kind, "last4", date=state.date, amount=int(state.value)))
    return go(Looking(state.kind), FindOriginal(date=state.date, amount=state.amount, last4=state.value))


def _looking(state: Looking, event: Event, cfg: FlowConfig) -> Step:
    """Waiting for the shell: the original sale, the reprint, or the settlement's outcome."""
    left = _left(state, event)
    if left is not None:
        return left
    if isinstance(event, Reprinted):
        return go(Result(("REPRINT", event.notice)))
    if isinstance(event, Settled):
        return go(Result((SETTLED_TITLE[event.outcome], event.detail)))
    if isinstance(event, OriginalMissing):
        return go(Result(("NOT FOUND", event.notice)))
    if isinstance(event, OriginalFound):
        return _found(state.kind, event)
    return stay(state)


def _found(kind: str, event: OriginalFound) -> Step:
    sale = event.sale
    if sale.status != "approved":
        return go(Result(("NOT ALLOWED", NOT_APPROVED.get(sale.status, "SALE IS NOT APPROVED"))))
    if kind == "refund":
        if sale.refunded >= sale.amount:
            return go(Result(("NOT ALLOWED", "ALREADY FULLY REFUNDED")))
        return go(RefundAmount(sale))
    if sale.batch != event.current_batch or sale.created_at[:10] != event.today:
        return go(Result(("VOID NOT POSSIBLE", "SETTLED: USE REFUND")))
    if sale.refunded:
        return go(Result(("VOID NOT POSSIBLE", "ALREADY REFUNDED")))
    return go(ConfirmVoid(sale))


def _confirm_void(state: ConfirmVoid, event: Event, cfg: FlowConfig) -> Step:
    left = _left(state, event)
    if left is not None:
        return left
    if pressed(event, "ENTER"):
        sale, back = state.sale, _way_back(state.sale)
        return go(Submitting("void", sale, sale.amount, back), SubmitFollowUp("void", sale.id, sale.amount, back))
    return stay(state)


def _refund_amount(state: RefundAmount, event: Event, cfg: FlowConfig) -> Step:
    left = _left(state, event)
    if left is not None:
        return left
    if not isinstance(event, Key):
        return stay(state)
    k, rest = event.name, state.sale.amount - state.sale.refunded
    d = digit(k)
    if d is not None and len(str(state.value)) < AMOUNT_DIGITS:
        return go(replace(state, value=state.value * 10 + d, notice=""))
    if k == "CLEAR":
        return go(replace(state, value=state.value // 10, notice=""))
    if k == "ENTER" and state.value:
        if state.value > rest:
            return go(replace(state, notice="MORE THAN IS LEFT"))
        return go(RefundRoute(state.sale, state.value))
    return stay(state)


def _refund_route(state: RefundRoute, event: Event, cfg: FlowConfig) -> Step:
    left = _left(state, event)
    if left is not None:
        return left
    if pressed(event, "1", "2"):
        route: Payout = _way_back(state.sale) if pressed(event, "1") else "cash"
        return go(
            Submitting("refund", state.sale, state.amount, route),
            SubmitFollowUp("refund", state.sale.id, state.amount, route),
        )
    return stay(state)


def _way_back(sale: OriginalSale) -> Payout:
    """The route back to the payer: the wallet a wallet sale came from, else the card."""
    return "wallet" if sale.method == "wallet" else "card"


def _submitting(state: Submitting, event: Event, cfg: FlowConfig) -> Step:
    """The void or refund is with the journal and the host: their answer ends it; CANCEL cannot."""
    title = KIND_TITLE[state.kind]
    if isinstance(event, HostAnswered):
        resp = event.response
        if not resp.approved:
            reason = DECLINE_TEXT.get(resp.response_code, f"CODE {resp.response_code}")
            return go(Result((f"{title} DECLINED", reason)))
        return go(
            Result((f"{title} APPROVED", money(state.amount, cfg), f"AUTH CODE {resp.auth_code}")),
            PrintReceipts(event.stan),
        )
    if isinstance(event, CashRefunded):
        return go(Result(("CASH REFUND", money(state.amount, cfg), "PAY OUT FROM THE TILL")), PrintReceipts(event.stan))
    if isinstance(event, Refused):
        return go(Result(("NOT ALLOWED", event.notice)))
    if isinstance(event, HostFailed):
        if event.reason == TERMINAL_ERROR:
            return go(Result(("TERMINAL ERROR", "SEE THE JOURNAL")))
        if event.sent:
            return go(Result(("NO HOST ANSWER", "WILL RETRY BY ITSELF")))
        return go(Result((event.title or "HOST NOT AVAILABLE", "NOTHING SENT")))
    if pressed(event, "CANCEL"):
        return stay(state, Show((say(cfg, "PLEASE WAIT"),) + _submitting_screen(state, cfg)))
    return stay(state)


def _operator_pin_screen(state: OperatorPin, cfg: FlowConfig) -> tuple[str, ...]:
    return (say(cfg, "CASHIER SIGN-IN PIN" if state.purpose == "signin" else "MANAGER PIN"), "*" * state.digits or "_")


def _trace_entry_screen(state: TraceEntry, cfg: FlowConfig) -> tuple[str, ...]:
    if state.kind == "reprint":
        return (say(cfg, "REPRINT"), say(cfg, "TRACE NO."), state.value or "_", say(cfg, "ENTER ALONE: LAST"))
    return (say(cfg, KIND_TITLE[state.kind]), say(cfg, "TRACE NO. OR SCAN"), state.value or "_", say(cfg, "F2 SEARCH"))


def _search_screen(state: SearchEntry, cfg: FlowConfig) -> tuple[str, ...]:
    prompt = {"date": "DATE MMDD", "amount": "AMOUNT", "last4": "CARD LAST 4"}[state.field]
    shown = money(int(state.value or 0), cfg) if state.field == "amount" else (state.value or "_")
    return (say(cfg, "{kind} SEARCH", kind=say(cfg, KIND_TITLE[state.kind])), say(cfg, prompt), shown)


def _confirm_void_screen(state: ConfirmVoid, cfg: FlowConfig) -> tuple[str, ...]:
    sale = state.sale
    return (
        say(cfg, "{kind} {amount}", kind=say(cfg, "VOID"), amount=money(sale.amount, cfg)),
        sale.masked_pan,
        sale.created_at[:16].replace("T", " "),
        say(cfg, "ENTER TO CONFIRM"),
    )


def _refund_amount_screen(state: RefundAmount, cfg: FlowConfig) -> tuple[str, ...]:
    sale = state.sale
    return (
        say(cfg, "REFUND TRACE {trace}", trace=f"{sale.stan:06d}"),
        say(cfg, "PAID {amount}", amount=money(sale.amount, cfg)),
        say(cfg, "LEFT {amount}", amount=money(sale.amount - sale.refunded, cfg)),
        say(cfg, "AMOUNT {amount}", amount=money(state.value, cfg)),
    )


def _refund_route_screen(state: RefundRoute, cfg: FlowConfig) -> tuple[str, ...]:
    to_wallet = _way_back(state.sale) == "wallet" or state.sale.entry_mode == "code"  # a code: via the acquirer
    choice = "1 TO WALLET  2 CASH" if to_wallet else "1 TO CARD  2 CASH"
    return (say(cfg, "{kind} {amount}", kind=say(cfg, "REFUND"), amount=money(state.amount, cfg)), say(cfg, choice))


def _submitting_screen(state: Submitting, cfg: FlowConfig) -> tuple[str, ...]:
    return (say(cfg, KIND_TITLE[state.kind]), money(state.amount, cfg), say(cfg, "PROCESSING..."))


MENU_SCREEN = ("1 VOID  2 REFUND", "3 TODAY'S REPORT", "4 SETTLEMENT", "5 REPRINT", "CANCEL TO EXIT")

ROUTES: dict[type, Route[Any]] = {
    OperatorPin: Route(_operator_pin, _operator_pin_screen, amount_timer),
    Menu: Route(_menu, lambda state, cfg: tuple(say(cfg, line) for line in MENU_SCREEN), amount_timer),
    TraceEntry: Route(_trace_entry, _trace_entry_screen, amount_timer),
    SearchEntry: Route(_search, _search_screen, amount_timer),
    Looking: Route(_looking, lambda state, cfg: (say(cfg, KIND_TITLE[state.kind]), say(cfg, "SEARCHING...")), no_timer),
    ConfirmVoid: Route(_confirm_void, _confirm_void_screen, amount_timer),
    RefundAmount: Route(_refund_amount, _refund_amount_screen, amount_timer),
    RefundRoute: Route(_refund_route, _refund_route_screen, amount_timer),
    Submitting: Route(_submitting, _submitting_screen, no_timer),
}
