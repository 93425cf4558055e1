"""The outbox: what the host must still hear before anything new is sent — queued reversals (0400/0401),
card voids/refunds whose answer was lost (resent with the same STAN and idempotency key) and a queued
settlement. The order and what each answer means are core/drain.py's pure machine; this runs it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from firmware.config import Config
from firmware.core import drain
from firmware.core.events import AuthResponse
from firmware.core.reports import BatchTotals
from firmware.errors import CodecError, HostError, SignOnError, TerminalError
from firmware.host.dialect import DEFAULT
from firmware.host.link import HostLink
from firmware.host.messages import (
    FollowUpRequest,
    ReversalRequest,
    SettlementRequest,
    bind,
    fits_field_55,
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

    def _write_unwritten(self) -> str:
        """Write the outcomes the journal refused earlier; "" when all are in, else the screen text of why not."""
        for row, (status, note) in list(self._unwritten.items()):
            try:
                self._journal.finish(row, status, self._clock(), note=note)
            except TerminalError as exc:
                log.error("journal row %d: outcome %s still cannot be written: %s", row, status, exc)
                return exc.screen
            del self._unwritten[row]
            log.warning("journal row %d: outcome %s written late (%s)", row, status, note)
        return ""

    async def flush(self) -> bool:
        """Run one flush of core/drain.py's machine (late outcomes, sign-on, reversals, lost voids/refunds,
        settlement); True when nothing is left (and the host may be sent something new)."""
        async with self._lock:
            machine = drain.flush(self._config.timeouts.host, self._ready is not None)
            try:
                verdict = await self._run(machine)
            except TerminalError as exc:  # the journal refused to record an answer: ask again later
                log.error("outbox: %s", exc)
                verdict = drain.Blocked(f"not sent: the journal cannot record answers ({exc.screen})")
            if isinstance(verdict, drain.Blocked):
                self.blocked_by, self.blocked_screen, self.due_in = verdict.by, verdict.screen, verdict.due_in
                return False
            self.blocked_by, self.blocked_screen, self.due_in = "", "", None
            return True

    async def _run(self, machine: drain.Machine) -> drain.Flushed | drain.Blocked:
        answer: Any = None
        while True:
            try:
                request = machine.send(answer)
            except StopIteration as stop:
                return stop.value
            answer = await self._perform(request)

    async def _perform(self, request: drain.Request) -> Any:
        """Carry out one of the machine's requests; its answer."""
        if isinstance(request, drain.WriteLate):
            return self._write_unwritten()
        if isinstance(request, drain.SignOn):
            try:
                if self._ready is not None:  # the machine asks only when there is one
                    await self._ready()
            except TerminalError as exc:  # a refused sign-on, or a journal that refused its STAN
                return drain.NoReply(str(exc), exc.screen if isinstance(exc, SignOnError) else "")
            return None
        if isinstance(request, drain.Read):
            if request.queue == "reversals":
                return self._journal.queued_reversals()
            if request.queue == "retries":
                return self._journal.retries()
            settlement = self._journal.queued_settlement()
            return [settlement] if settlement is not None else []
        if isinstance(request, drain.Send):
            return await self._send(request.item)
        if isinstance(request, drain.Record):
            self._record(request.item, request.reply)
            return None
        if isinstance(request, drain.Note):
            self._note(request.item, request.reason)
            return None
        return self._clock()

    async def _send(self, item: QueuedReversal | FollowUp | QueuedSettlement) -> drain.Reply | drain.NoReply:
        """Send one queued item; the host's answer bound to its request, or why there is none."""
        try:
            if isinstance(item, QueuedReversal):
                request = self._reversal(item)
                _, rc = await self._host.exchange(
                    self._dialect.encode(request),
                    self._config.timeouts.host,
                    lambda raw: iso_to_reversal_ack(bind(request, self._dialect.decode(raw))),
                )
                return drain.Reply(rc)
            if isinstance(item, FollowUp):
                response = await self.exchange_follow_up(item)
                return drain.Reply(response.response_code, response)
            request = self._settlement(item)
            _, rc, host = await self._host.exchange(
                self._dialect.encode(request),
                self._config.timeouts.host,
                lambda raw: iso_to_settlement(bind(request, self._dialect.decode(raw))),
            )
            return drain.Reply(rc, host)
        except (HostError, CodecError) as exc:
            return drain.NoReply(str(exc))

    def _reversal(self, q: QueuedReversal) -> dict[str, str]:
        now = self._clock()
        return reversal_to_iso(
            ReversalRequest(
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
                icc_data=q.original_icc if fits_field_55(q.original_icc) else "",  # never a 0400 that cannot go
            )
        )

    def _settlement(self, q: QueuedSettlement) -> dict[str, str]:
        """The same 0500 every time for a queued settlement: batch, STAN, totals."""
        t = self._config.terminal
        now = self._clock()
        mine = BatchTotals(q.debits, q.debit_amount, q.credits, q.credit_amount)
        return settlement_to_iso(
            SettlementRequest(
                q.stan, q.batch, mine, t.currency.numeric, t.terminal_id, t.merchant_id, now, now.astimezone(UTC)
            )
        )

    def _note(self, item: QueuedReversal | FollowUp | QueuedSettlement, reason: str) -> None:
        if isinstance(item, QueuedReversal):
            log.warning("reversal %d of sale stan %06d not acknowledged: %s", item.id, item.original_stan, reason)
            self._journal.note_attempt(item.id, self._clock(), reason)
        elif isinstance(item, FollowUp):
            log.warning("%s stan %06d still without an answer: %s", item.kind, item.stan, reason)
            self._journal.note_attempt(item.id, self._clock(), reason)
        else:
            log.warning("settlement of batch %d not answered: %s", item.batch, reason)
            self._journal.note_settlement_attempt(item.batch, reason)

    def _record(self, item: QueuedReversal | FollowUp | QueuedSettlement, reply: drain.Reply) -> None:
        if isinstance(item, QueuedReversal):
            self._journal.reversal_acknowledged(item.id, reply.rc, self._clock())
            log.info("reversal %d of sale stan %06d acknowledged (%s)", item.id, item.original_stan, reply.rc)
        elif isinstance(item, FollowUp):
            self.record(item, reply.payload)
        else:
            self._settlement_answered(item, reply.rc, reply.payload)

    def _settlement_answered(self, q: QueuedSettlement, rc: str, host: BatchTotals | None) -> None:
        in_balance = rc == "00"
        host_tuple = (host.debits, host.debit_amount, host.credits, host.credit_amount) if host else None
        self._journal.record_settlement(
            q.batch, (q.debits, q.debit_amount, q.credits, q.credit_amount), host_tuple, rc, in_balance, self._clock()
        )
        log.info("batch %d settled: %s", q.batch, "in balance" if in_balance else f"out of balance ({rc})")
        if self._settled is not None:
            self._settled(q, rc, host)

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
