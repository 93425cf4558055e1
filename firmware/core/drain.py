"""The outbox's rules as a pure machine: in which order what the host must still hear goes out, what each
answer means, and why a flush stops. A generator of requests (like the EMV kernel); host/outbox.py runs it
against the journal, the sign-on and the host link.

The order: outcomes the journal refused earlier are written first (nothing goes out while one is missing),
then the sign-on, then every queued reversal, every void or refund whose answer was lost, and a queued
settlement last. The first item that gets no answer that counts stops the flush: nothing new may be sent
while anything before it is unresolved.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

# 0410 response codes that end a reversal's retries: 00 the sale is reversed; 25 the host has no such sale
# (the request never reached it, so nobody was charged). Anything else (96 system error, 91, A0, ...) means
# the host did not reverse it: the reversal stays queued and is sent again (0401).
REVERSAL_DONE = ("00", "25")
ORIGINAL_NOT_FOUND = "25"  # final only once the sale is old enough: a first 0400 may overtake its 0200

Queue = Literal["reversals", "retries", "settlement"]


@dataclass(frozen=True)
class WriteLate:
    """Write the outcomes the journal refused earlier; answered with "" or the screen text of why not."""


@dataclass(frozen=True)
class SignOn:
    """Make sure the terminal is signed on; answered with None, or a NoReply saying why not."""


@dataclass(frozen=True)
class Read:
    """Read a queue from the journal; answered with its items (a list; the settlement: zero or one)."""

    queue: Queue


@dataclass(frozen=True)
class Send:
    """Send one queued item to the host; answered with a Reply or a NoReply."""

    item: Any


@dataclass(frozen=True)
class Record:
    """The host's answer counts: journal it (a reversal acknowledged, a void/refund answered, a settlement
    recorded); answered with None."""

    item: Any
    reply: Reply


@dataclass(frozen=True)
class Note:
    """The item is still unresolved: journal the attempt and why; answered with None."""

    item: Any
    reason: str


@dataclass(frozen=True)
class Now:
    """Read the wall clock; answered with an aware datetime."""


@dataclass(frozen=True)
class Reply:
    """The host answered this item's request (already bound to it): its response code, and what else the
    runner needs to record it (the void/refund's response, the host's settlement totals)."""

    rc: str
    payload: Any = None


@dataclass(frozen=True)
class NoReply:
    """No answer that belongs to the request: a timeout, a broken link, a bad or foreign answer."""

    reason: str
    screen: str = ""


@dataclass(frozen=True)
class Flushed:
    """Nothing is left: the host may be sent something new."""


@dataclass(frozen=True)
class Blocked:
    """The flush stopped: why (for the journal and the log), what the screen says ("" for the sale's own
    default), and when a known reason to wait is gone (seconds), if one is known."""

    by: str
    screen: str = ""
    due_in: float | None = None


Request = WriteLate | SignOn | Read | Send | Record | Note | Now
Machine = Generator[Request, Any, Flushed | Blocked]


def flush(host_timeout: float, signs_on: bool) -> Machine:
    """One flush of the outbox, in order; the first unresolved item stops it."""
    trouble = yield WriteLate()
    if trouble:
        return Blocked(f"not sent: an earlier outcome is not yet in the journal ({trouble})")
    if signs_on:
        refused = yield SignOn()
        if isinstance(refused, NoReply):
            return Blocked(f"not sent: {refused.reason}", refused.screen)
    for queued in (yield Read("reversals")):
        blocked = yield from reverse(queued, host_timeout)
        if blocked is not None:
            return blocked
    for follow_up in (yield Read("retries")):
        reply = yield Send(follow_up)
        if isinstance(reply, NoReply):
            yield Note(follow_up, reply.reason)
            return Blocked("not sent: an earlier reversal is not yet acknowledged by the host")
        yield Record(follow_up, reply)  # approved or declined: either way the host has decided
    for settlement in (yield Read("settlement")):
        reply = yield Send(settlement)
        if isinstance(reply, NoReply):
            yield Note(settlement, reply.reason)
            return Blocked(f"not sent: the settlement of batch {settlement.batch} is not yet answered")
        yield Record(settlement, reply)
    return Flushed()


def reverse(queued: Any, host_timeout: float) -> Generator[Request, Any, Blocked | None]:
    """Send one reversal; None once the host has acknowledged it (00, or 25 for a sale old enough that the
    host would know it), else why the flush stops."""
    blocked = Blocked("not sent: an earlier reversal is not yet acknowledged by the host")
    reply = yield Send(queued)
    if isinstance(reply, NoReply):
        yield Note(queued, reply.reason)
        return blocked
    if reply.rc not in REVERSAL_DONE:
        yield Note(queued, f"the host answered the reversal with {reply.rc}, which does not reverse the sale")
        return blocked
    if reply.rc == ORIGINAL_NOT_FOUND:
        now = yield Now()
        counts_from = _counts_from(queued.original_created_at, host_timeout, now)
        if now < counts_from:
            # A reversal sent at once after a lost answer may overtake its 0200 at a busy host: "no such sale"
            # counts only once the sale is twice the host timeout old; asked again at that moment.
            yield Note(queued, "the host has no such sale yet (25); asking again later")
            return Blocked(blocked.by, due_in=(counts_from - now).total_seconds())
    yield Record(queued, reply)
    return None


def _counts_from(created_at: str, host_timeout: float, now: datetime) -> datetime:
    """When a 25 ("no such sale") for a sale journaled at `created_at` counts (at once when unknown)."""
    if not created_at:
        return now
    return datetime.fromisoformat(created_at) + timedelta(seconds=2 * host_timeout)
