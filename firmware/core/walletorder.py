"""A wallet order's life as pure machines: which provider call comes next, how long to wait, and what the
order ended as. Generators in the style of the EMV kernel: each yields a request (call the provider, wait,
tell the flow, read the clock) and is sent its answer; it returns the order's outcome. The wallet desk only
runs them (sockets, sleeps, the journal); every rule about when to ask, retry, close or give up is here.

An order ends `Final` only on an answer that says what became of it: paid, closed, or failed. Anything else
is `Open`: the journal keeps it 'unknown' and reconciliation asks again later.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from firmware.core.events import WalletEnd

# How far the provider's clock may lag the terminal's: a shown code that was never scanned is taken as
# dead only this long after the expiry the order was created with.
EXPIRY_MARGIN = timedelta(seconds=30)
END_ATTEMPTS = 4  # close/cancel tries while the cashier waits (Alipay's retry_flag), then reconcile
END_FIRST_DELAY = 0.5  # seconds before the second try; doubles
POLL_GROWTH, POLL_MAX = 1.5, 5.0  # a shown code is asked about ever less often, at most every 5 s
# A scanned code's order the provider says it never had is taken as never paid only this long after it was
# made: a "not found" names no order, so a fresh one could be another request's answer passed off as this
# one's; an order that really reached the provider shows up well within this.
CODE_NOT_FOUND_WAIT = timedelta(minutes=2)


@dataclass(frozen=True)
class WalletResult:
    """A provider's answer, mapped to what the terminal does next."""

    # paid | waiting | not_found | closed | failed | retry (close/cancel: ask again) | refused (close/cancel:
    # the order is not in a state to be ended; ask what it is) | refunded
    state: str
    reason: str = ""  # short screen text for failed/closed
    trade_no: str = ""  # the provider's transaction number
    payer: str = ""  # the payer's account as the provider masks it
    qr: str = ""  # create_order: the code to show


# --- what a machine asks of its runner ----------------------------------------------------------------

Op = Literal["create", "pay", "query", "close", "cancel"]


@dataclass(frozen=True)
class Call:
    """Ask the provider about this order; answered with a WalletResult or a Failure."""

    op: Op


@dataclass(frozen=True)
class Wait:
    """Sleep; answered with the seconds since the machine started (the runner's monotonic clock)."""

    seconds: float


@dataclass(frozen=True)
class Tell:
    """Tell the flow: the code to show is ready ("shown", with the result's qr), or the payer must confirm in
    the app ("confirming"); answered with None."""

    what: Literal["shown", "confirming"]
    qr: str = ""
    text: str = ""  # confirming: what the provider said is going on ("" the usual: confirm in the app)


@dataclass(frozen=True)
class Now:
    """Read the wall clock (to compare with an order's expiry); answered with an aware datetime."""


@dataclass(frozen=True)
class Failure:
    """A provider call that brought no usable answer. `mismatch`: a signed answer to another request."""

    reason: str
    screen: str = "WALLET NOT AVAILABLE"
    mismatch: bool = False


Request = Call | Wait | Tell | Now
Answer = WalletResult | Failure | float | datetime | None


# --- how an order ends ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Final:
    """What became of the order, said by the provider: journal it and tell the flow."""

    status: Literal["approved", "cancelled", "declined"]
    result: WalletResult


@dataclass(frozen=True)
class Open:
    """The order's fate is not known: journal 'unknown', tell the flow `screen`, reconcile later."""

    note: str
    screen: str = "CHECKING WITH WALLET"
    state: WalletEnd = "unknown"


Outcome = Final | Open
Machine = Generator[Request, Answer, Outcome]
Reconciling = Generator[Request, Answer, Final | None]

_FINAL: dict[str, Literal["approved", "cancelled", "declined"]] = {
    "paid": "approved",
    "closed": "cancelled",
    "failed": "declined",
}


def final(result: WalletResult) -> Final | None:
    """The outcome a provider's answer decides, or None while the order is still open."""
    status = _FINAL.get(result.state)
    return Final(status, result) if status else None


def expiry(created: datetime, qr_timeout: int) -> datetime:
    """When a shown code created at `created` stops being payable (sent to the provider with the order)."""
    return created.replace(microsecond=0) + timedelta(seconds=qr_timeout)


def not_found_final(kind: str, created: datetime, qr_timeout: int) -> datetime:
    """From when an order the provider says it does not have counts as never paid: a shown code once it has
    expired, a scanned one CODE_NOT_FOUND_WAIT after it was made (either plus the clocks' margin)."""
    until = expiry(created, qr_timeout) if kind == "qr" else created + CODE_NOT_FOUND_WAIT
    return until + EXPIRY_MARGIN


def _ask(op: Op) -> Generator[Request, Answer, WalletResult | Failure]:
    answer = yield Call(op)
    if not isinstance(answer, (WalletResult, Failure)):
        raise TypeError(f"a provider call answered with {answer!r}")
    return answer


def _now() -> Generator[Request, Answer, datetime]:
    answer = yield Now()
    if not isinstance(answer, datetime):
        raise TypeError(f"the clock answered with {answer!r}")
    return answer


def _wait(seconds: float) -> Generator[Request, Answer, float]:
    answer = yield Wait(seconds)
    if not isinstance(answer, (int, float)):
        raise TypeError(f"a wait answered with {answer!r}")
    return float(answer)


def qr_order(poll_interval: float) -> Machine:
    """A code on the screen for the payer to scan: create the order, show its code, then ask with a growing
    pause until it is paid or closed. It ends there, or when the flow ends it (see end_order)."""
    shown = yield from _ask("create")
    if isinstance(shown, Failure):
        return Open(shown.reason, shown.screen)  # closed at reconcile
    if shown.state != "waiting":
        return final(shown) or Open(f"the new order was {shown.state}")
    yield Tell("shown", shown.qr)
    delay = poll_interval
    while True:
        yield from _wait(delay)
        delay = min(delay * POLL_GROWTH, POLL_MAX)
        result = yield from _ask("query")
        if isinstance(result, WalletResult) and result.state in ("paid", "closed"):
            return final(result) or Open(result.state)  # never None: both states are final


def code_payment(confirm_interval: float, confirm_timeout: float, qr_timeout: int, created: datetime) -> Machine:
    """The payer's code, scanned: charge it; when the payer must confirm in the app, ask every
    `confirm_interval` seconds until `confirm_timeout` seconds have passed in all, then cancel (reverse)."""
    result = yield from _ask("pay")
    if isinstance(result, Failure):
        return Open(result.reason)
    if result.state == "waiting":
        yield Tell("confirming", text=result.reason)
        elapsed = 0.0
        while elapsed < confirm_timeout:
            elapsed = yield from _wait(confirm_interval)
            asked = yield from _ask("query")
            if isinstance(asked, Failure):
                continue
            result = asked
            if result.state in ("paid", "closed"):
                break
        if result.state not in ("paid", "closed"):
            return (yield from end_order("code", "CUSTOMER DID NOT CONFIRM", qr_timeout, created))
    return final(result) or (yield from end_order("code", "PAYMENT FAILED", qr_timeout, created))


def end_trade(kind: str, attempts: int) -> Generator[Request, Answer, WalletResult | None]:
    """Close (shown code) or cancel (scanned code) until the provider says the order is closed or paid; tried
    again while the provider asks for it or cannot be reached. Returns the closed or paid result,
    `not_found` for a shown code nobody scanned, or None when the order's fate is still open."""
    delay = END_FIRST_DELAY
    for attempt in range(attempts):
        if attempt:
            yield from _wait(delay)
            delay *= 2
        ended = yield from _ask("close" if kind == "qr" else "cancel")
        if isinstance(ended, Failure):
            continue
        if ended.state == "closed":
            return ended
        now = yield from _ask("query")  # paid in the meantime?
        if isinstance(now, Failure):
            continue
        if now.state in ("paid", "closed"):
            return now
        if ended.state == now.state == "not_found":
            return now
    return None


def end_order(kind: str, reason: str, qr_timeout: int, created: datetime, attempts: int = END_ATTEMPTS) -> Machine:
    """End the open order because of `reason`; a payment that got there first wins. The order is cancelled
    only once it can no longer be paid: a shown code nobody scanned stays open until its expiry passes."""
    ended = yield from end_trade(kind, attempts)
    if ended is None:
        return Open("could not close the order: reconciling")
    if ended.state == "not_found":  # a shown code nobody scanned, or a scanned one the provider never had
        until = not_found_final(kind, created, qr_timeout)
        if (yield from _now()) < until:
            # Payable until its expiry (a printed copy may still be scanned): unknown until then.
            return Open(f"not found at the provider; final at {until.isoformat()}", reason, state="closed")
        ended = WalletResult("closed", reason)
    elif ended.state == "closed" and ended.reason != "REFUNDED TO PAYER":  # a cancel of a paid trade keeps it
        ended = WalletResult("closed", reason)
    return final(ended) or Open(f"ended as {ended.state}")


def reconcile_order(kind: str, qr_timeout: int, created: datetime, cancelling: bool = False) -> Reconciling:
    """An order whose fate the journal does not know: ask, end it when it is still open, and say what became
    of it — or None, to be asked again later. `cancelling`: a cancel was sent (the desk journals that before
    sending one) and its answer lost; the money may be on its way back to the payer, so a query that still
    says paid approves the order only once the provider refuses to cancel it: it is cancelled again (the
    provider's cancel is idempotent). A provider answers `retry` or `refused` only when nothing moved, and the
    desk then forgets the cancel; a cancel sent whose effect is not known yet is a Failure."""
    result = yield from _ask("query")
    if isinstance(result, Failure):
        return None
    if cancelling and result.state == "paid":
        again = yield from _ask("cancel")
        if isinstance(again, WalletResult) and again.state == "closed":
            return Final("cancelled", again)
        if isinstance(again, WalletResult) and again.state == "refused":  # it will not be cancelled: paid
            return final(result)
        return None  # not confirmed yet: cancelled again later
    if result.state in ("waiting", "not_found"):
        ended = yield from end_trade(kind, 1)
        if ended is None or (cancelling and ended.state == "paid"):
            return None
        result = ended
        if result.state == "not_found":  # a shown code nobody scanned, or a scanned one the provider never had
            if (yield from _now()) < not_found_final(kind, created, qr_timeout):
                return None  # still payable: ask again later
            result = WalletResult("closed", "NEVER PAID; CODE EXPIRED" if kind == "qr" else "NEVER REACHED THE WALLET")
    if cancelling and result.state == "failed":  # a reversed payment reads as failed: the cashier's cancel
        return Final("cancelled", WalletResult("closed", result.reason or "PAYMENT CANCELLED"))
    return final(result)  # a failed order (UnionPay's origRespCode 51, Lakala's FAIL) is final: declined
