"""The outbox: what the host must still hear before anything new is sent — queued reversals (0400/0401)
and card voids/refunds whose answer was lost (resent with the same STAN and idempotency key)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from firmware.config import Config
from firmware.core.events import AuthResponse
from firmware.core.reports import BatchTotals
from firmware.errors import CodecError, HostError, SignOnError, TerminalError
from firmware.host.dialect import DEFAULT
from firmware.host.link import HostLink
from firmware.host.messages import (
    ORIGINAL_NOT_FOUND,
    REVERSAL_DONE,
    FollowUpRequest,
    ReversalRequest,
    SettlementRequest,
    bind,
    follow_up_to_iso,
    iso_to_response,
    iso_to_reversal_ack,
    iso_to_settlement,
    reversal_to_iso,
    settlement_to_iso,
)
from firmware.records.journal import FollowUp, Journal, QueuedReversal, QueuedSettlement

log = logging.getLogger(__name__)


class Outbox:
    """Flushes the journal's outbox, one flush at a time. Triggered at boot, after an exchange whose
    answer was lost, and before every new sale, void or refund (which waits until the outbox is empty)."""

    def __init__(
        self,
        journal: Journal,
        host: HostLink,
        config: Config,
        clock: Callable[[], datetime],
        dialect: Any = DEFAULT,
        ready: Callable[[], Awaitable[None]] | None = None,
        settled: Callable[[QueuedSettlement, str, BatchTotals | None], None] | None = None,
    ) -> None:
        self._journal, self._host, self._config, self._clock = journal, host, config, clock
        self._dialect = dialect
        self._ready = ready  # sign-on, when the host profile uses session keys
        self._settled = settled  # a queued settlement was answered and recorded: print its slip
        self._lock = asyncio.Lock()
        self.blocked_by = ""  # why the last flush stopped, for the journal and the log
        self.blocked_screen = ""  # ... and what the screen says about it ("": the sale's own default)
        self._unwritten: dict[int, tuple[str, str]] = {}  # row -> (status, note) the journal refused
        self.due_in: float | None = None  # after a failed flush: seconds until a known reason to retry is gone

    def unwritten(self, row: int, status: str, note: str) -> None:
        """An outcome the journal could not take (disk full, read-only, I/O error). It is kept here and
        written at the next flush, before anything else: a sale that went out as 'unknown' (its reversal is
        queued with it), a void or refund as 'unknown' (resent), one never sent as 'failed'. Until then
        nothing new goes to the host. (A power cut before that leaves the row 'pending': boot recovery then
        does the same.)"""
        self._unwritten[row] = (status, note[:200])

    @property
    def holds_unwritten(self) -> bool:
        """True while an outcome waits to be written to the journal."""
        return bool(self._unwritten)

    def _write_unwritten(self) -> bool:
        for row, (status, note) in list(self._unwritten.items()):
            try:
                self._journal.finish(row, status, self._clock(), note=note)
            except TerminalError as exc:
                log.error("journal row %d: outcome %s still cannot be written: %s", row, status, exc)
                self.blocked_by = f"not sent: an earlier outcome is not yet in the journal ({exc.screen})"
                return False
            del self._unwritten[row]
            log.warning("journal row %d: outcome %s written late (%s)", row, status, note)
        return True

    async def flush(self) -> bool:
        """Write outcomes the journal refused earlier, sign on if needed, send every queued reversal, then
        every lost void/refund; True when nothing is left (and the host may be sent something new)."""
        async with self._lock:
            self.due_in = None
            self.blocked_screen = ""
            if not self._write_unwritten():
                return False
            self.blocked_by = "not sent: an earlier reversal is not yet acknowledged by the host"
            if self._ready is not None:
                try:
                    await self._ready()
                except TerminalError as exc:  # a refused sign-on, or a journal that refused its STAN
                    self.blocked_by = f"not sent: {exc}"
                    self.blocked_screen = exc.screen if isinstance(exc, SignOnError) else ""
                    return False
            try:
                for queued in self._journal.queued_reversals():
                    if not await self._reverse(queued):
                        return False
                for follow_up in self._journal.retries():
                    if not await self._resend(follow_up):
                        return False
                settlement = self._journal.queued_settlement()
                if settlement is not None and not await self._settle(settlement):
                    return False
            except TerminalError as exc:  # the journal refused to record an answer: ask again later
                log.error("outbox: %s", exc)
                self.blocked_by = f"not sent: the journal cannot record answers ({exc.screen})"
                return False
            self.blocked_by = ""
            return True

    async def _reverse(self, q: QueuedReversal) -> bool:
        now = self._clock()
        req = ReversalRequest(
            stan=q.stan,
            amount=q.amount,
            currency_numeric=self._config.terminal.currency.numeric,
            terminal_id=q.terminal_id,
            merchant_id=q.merchant_id,
            original_stan=q.original_stan,
            original_transmitted_at=q.original_transmitted_at,
            local_time=now,
            utc_time=now.astimezone(UTC),
            repeat=q.attempts > 0,
        )
        request = reversal_to_iso(req)
        try:
            _, rc = await self._host.exchange(
                self._dialect.encode(request),
                self._config.timeouts.host,
                lambda raw: iso_to_reversal_ack(bind(request, self._dialect.decode(raw))),
            )
            if rc not in REVERSAL_DONE:
                raise CodecError(f"the host answered the reversal with {rc}, which does not reverse the sale")
            old_enough = (
                datetime.fromisoformat(q.original_created_at) + timedelta(seconds=2 * self._config.timeouts.host)
                if q.original_created_at
                else now
            )
            if rc == ORIGINAL_NOT_FOUND and now < old_enough:
                # A reversal sent at once after a lost answer may overtake its 0200 at a busy host: "no such
                # sale" counts only once the sale is twice the host timeout old; asked again at that moment.
                self.due_in = (old_enough - now).total_seconds()
                raise CodecError("the host has no such sale yet (25); asking again later")
        except (HostError, CodecError) as exc:
            log.warning("reversal %d of sale stan %06d not acknowledged: %s", q.id, q.original_stan, exc)
            self._journal.note_attempt(q.id, self._clock(), str(exc))
            return False
        self._journal.reversal_acknowledged(q.id, rc, self._clock())
        log.info("reversal %d of sale stan %06d acknowledged (%s)", q.id, q.original_stan, rc)
        return True

    async def _settle(self, q: QueuedSettlement) -> bool:
        """Send a queued settlement (the same 0500 every time: batch, STAN, totals); record the answer."""
        t = self._config.terminal
        now = self._clock()
        mine = BatchTotals(q.debits, q.debit_amount, q.credits, q.credit_amount)
        request = settlement_to_iso(
            SettlementRequest(
                q.stan, q.batch, mine, t.currency.numeric, t.terminal_id, t.merchant_id, now, now.astimezone(UTC)
            )
        )
        try:
            _, rc, host = await self._host.exchange(
                self._dialect.encode(request),
                self._config.timeouts.host,
                lambda raw: iso_to_settlement(bind(request, self._dialect.decode(raw))),
            )
        except (HostError, CodecError) as exc:
            log.warning("settlement of batch %d not answered: %s", q.batch, exc)
            self._journal.note_settlement_attempt(q.batch, str(exc))
            self.blocked_by = f"not sent: the settlement of batch {q.batch} is not yet answered"
            return False
        in_balance = rc == "00"
        host_tuple = (host.debits, host.debit_amount, host.credits, host.credit_amount) if host else None
        self._journal.record_settlement(
            q.batch, (q.debits, q.debit_amount, q.credits, q.credit_amount), host_tuple, rc, in_balance, self._clock()
        )
        log.info("batch %d settled: %s", q.batch, "in balance" if in_balance else f"out of balance ({rc})")
        if self._settled is not None:
            self._settled(q, rc, host)
        return True

    async def exchange_follow_up(self, f: FollowUp) -> AuthResponse:
        """Send a void/refund and return the host's answer; HostError/CodecError when there is none."""
        now = self._clock()
        req = FollowUpRequest(
            kind=f.kind,
            stan=f.stan,
            amount=f.amount,
            currency_numeric=self._config.terminal.currency.numeric,
            terminal_id=f.terminal_id,
            merchant_id=f.merchant_id,
            original_stan=f.original_stan,
            original_transmitted_at=f.original_transmitted_at,
            original_rrn=f.original_rrn,
            original_auth_code=f.original_auth_code,
            idem_key=f.idem_key,
            local_time=now,
            utc_time=now.astimezone(UTC),
        )
        request = follow_up_to_iso(req)
        return await self._host.exchange(
            self._dialect.encode(request),
            self._config.timeouts.host,
            lambda raw: iso_to_response(bind(request, self._dialect.decode(raw))),
        )

    def record(self, f: FollowUp, response: AuthResponse) -> None:
        """Journal the host's answer to a void/refund."""
        self._journal.finish(
            f.id,
            "approved" if response.approved else "declined",
            self._clock(),
            response_code=response.response_code,
            auth_code=response.auth_code,
            rrn=response.rrn,
        )
        log.info("%s stan %06d of sale stan %06d: response %s", f.kind, f.stan, f.original_stan, response.response_code)

    async def _resend(self, f: FollowUp) -> bool:
        try:
            response = await self.exchange_follow_up(f)
        except (HostError, CodecError) as exc:
            log.warning("%s stan %06d still without an answer: %s", f.kind, f.stan, exc)
            self._journal.note_attempt(f.id, self._clock(), str(exc))
            return False
        self.record(f, response)
        return True
