"""The wallet desk: a terminal's wallet payments — journal first, then the provider. It runs the pure order
machines of `firmware.core.walletorder` (when to ask, wait, close or cancel, give up) against the provider,
the clock and the flow, journals how each order ended, reconciles orders whose fate is unknown, and refunds
back to the wallet. Part of the shell (it does I/O).

An order is journaled approved only on an answer that belongs to it (the provider client compares
every answer with its request), and cancelled only once it can no longer be paid: the provider said
it is closed, or a shown code that was never scanned has passed its expiry. Anything else leaves it
'unknown', and the desk keeps asking (with backoff) until the provider says what became of it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from firmware.config import Config
from firmware.core import events, walletorder
from firmware.core.events import AuthResponse
from firmware.core.items import BasketLine
from firmware.core.walletorder import WalletResult
from firmware.errors import JournalError, TerminalError
from firmware.records.journal import FollowUp, Journal, NewSale, cancel_marked
from firmware.wallets.alipay import WalletError, WalletMismatch, WalletProvider
from firmware.wallets.notices import OfficeNotices

log = logging.getLogger(__name__)

CHASE_FIRST, CHASE_MAX = 1.0, 60.0  # seconds between reconcile passes while anything is unsettled


@dataclass(frozen=True)
class _Order:
    """The facts a provider call about one order needs."""

    provider: str
    order_no: str
    amount: int
    created: datetime
    code: str = field(default="", repr=False)  # the payer's scanned code (a code payment's pay call)
    shown: bool = False  # a code on the screen: its waits may be cut short by a back-office payment notice
    row: int = 0  # the sale's journal row (its cancel is journaled there before it is sent)


class WalletDesk:
    """One open wallet order at a time; answers the flow with events through `post`."""

    def __init__(
        self,
        providers: dict[str, WalletProvider],
        journal: Journal,
        config: Config,
        clock: Callable[[], datetime],
        post: Callable[[events.Event], None],
        spawn: Callable[[Any], Any],
    ) -> None:
        self.providers, self.journal, self._config = providers, journal, config
        self._clock, self._post, self._spawn = clock, post, spawn
        # (row, order number, "qr" | "code", stan, amount, created, provider)
        self.order: tuple[int, str, str, int, int, datetime, str] | None = None
        self._reconciling = asyncio.Lock()
        self._chase_task: asyncio.Task[Any] | None = None
        self._unrecorded: dict[int, str] = {}  # rows whose outcome the journal refused (disk full): 'unknown'
        self._notices = OfficeNotices.from_config(config)  # WeChat callbacks at the back office: a hint only

    def _begin(
        self, amount: int, kind: str, lines: tuple[BasketLine, ...], operator: str, provider: str
    ) -> tuple[int, str, int, datetime]:
        """Journal a pending wallet sale before the provider hears of it; (row, order number, stan, created).
        JournalError (a full or read-only disk) when it cannot be: then nothing is sent."""
        t = self._config.terminal
        self.journal.check_room()
        now = self._clock().replace(microsecond=0)  # the journal keeps seconds; so does the expiry
        # The order number's time: the terminal's, or the provider's zone where the provider reads it back
        # (UnionPay's txnTime is Beijing time; a board whose clock runs in UTC would be eight hours off).
        zone = getattr(self.providers.get(provider), "order_zone", None)
        stamp = now.astimezone(zone) if zone is not None else now
        order_no = f"{t.terminal_id}{stamp:%y%m%d%H%M%S}{secrets.token_hex(3).upper()}"
        row, stan = self.journal.begin_sale(
            NewSale(
                "wallet",
                kind,
                amount,
                t.currency.alpha,
                "",
                t.terminal_id,
                t.merchant_id,
                provider=provider,
                order_no=order_no,
                lines=lines,
                operator=operator,
            ),
            now,
        )
        self.order = (row, order_no, kind, stan, amount, now, provider)
        return row, order_no, stan, now

    def _record(self, row: int, status: str, **fields: str) -> str:
        """Journal a row's outcome; "" when done, else the screen text of why not. An outcome the journal
        refuses is written as 'unknown' once it can be, and reconciled with the provider like any other."""
        try:
            self.journal.finish(row, status, self._clock(), **fields)
            return ""
        except TerminalError as exc:
            log.error("wallet row %d: cannot record %s: %s", row, status, exc)
            self._unrecorded[row] = f"{status} not journaled ({exc.screen})"
            self._chase()
            return exc.screen

    def _conclude(self, row: int, order_no: str, stan: int, kind: str, outcome: walletorder.Outcome) -> None:
        """Journal how an order ended and tell the flow; an open fate goes to reconciliation."""
        self.order = None
        if isinstance(outcome, walletorder.Open):
            log.warning("wallet order %s: %s; reconciling until the provider says", order_no, outcome.note)
            self._record(row, "unknown", note=outcome.note[:200])
            self._post(events.WalletEnded(outcome.state, outcome.screen))
            self._chase()
            return
        result = outcome.result
        fields = (
            {"wallet_trade_no": result.trade_no, "payer": result.payer}
            if outcome.status == "approved"
            else {"note": result.reason}
        )
        trouble = self._record(row, outcome.status, **fields)
        if trouble:
            self._post(events.WalletEnded("unknown", trouble))  # said truly later, by reconciliation
        elif outcome.status == "approved":
            self._post(
                events.WalletPaid(order_no, result.trade_no, result.payer, stan, "QR" if kind == "qr" else "CODE")
            )
        elif outcome.status == "cancelled":
            self._post(events.WalletEnded("closed", result.reason or "ORDER CLOSED"))
        else:
            self._post(events.WalletEnded("failed", result.reason or "PAYMENT FAILED"))

    def _start(
        self, amount: int, kind: str, lines: tuple[BasketLine, ...], operator: str, provider: str
    ) -> tuple[int, str, int, datetime] | None:
        """_begin, or None (and the flow told why) when the journal cannot take the order."""
        if provider not in self.providers:
            log.error("wallet %s order refused: no %r provider is configured", kind, provider)
            self._post(events.WalletEnded("failed", f"{provider.upper()} NOT SET UP"))
            return None
        try:
            return self._begin(amount, kind, lines, operator, provider)
        except TerminalError as exc:
            log.error("wallet %s order refused before anything was sent: %s", kind, exc)
            self._post(events.WalletEnded("failed", exc.screen))
            return None

    async def _run(self, machine: Any, order: _Order) -> Any:
        """Run a pure order machine (walletorder) against the provider, the clock and the flow."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer: walletorder.Answer = None
        while True:
            try:
                request = machine.send(answer)
            except StopIteration as stop:
                return stop.value
            if isinstance(request, walletorder.Call):
                answer = await self._call(request.op, order)
            elif isinstance(request, walletorder.Wait):
                if order.shown and order.provider == "wechat" and self._notices is not None:
                    await self._notices.wait(order.order_no, order.amount, request.seconds)  # the query decides
                else:
                    await asyncio.sleep(request.seconds)
                answer = loop.time() - started
            elif isinstance(request, walletorder.Tell):
                shown = events.OrderShown(request.qr, order.order_no)
                self._post(shown if request.what == "shown" else events.WalletConfirming(request.text))
                answer = None
            else:
                answer = self._clock()

    async def _call(self, op: str, order: _Order) -> WalletResult | walletorder.Failure:
        """One provider call for `order`; a WalletError becomes a Failure (logged) for the machine."""
        p = self.providers.get(order.provider)
        if p is None:  # an order journaled by a provider no longer configured: nobody to ask
            return walletorder.Failure(
                f"no {order.provider!r} provider is configured", f"{order.provider.upper()} NOT SET UP"
            )
        try:
            if op == "query":
                return await p.query(order.order_no, order.amount)
            if op == "close":
                return await p.close(order.order_no)
            if op == "cancel":
                # Journaled before it is sent (the money may go back): a lost answer is never reconciled as
                # paid, and the resend is the same request (UnionPay names it by this time).
                at = self.journal.mark_cancel(order.row, self._clock())
                ended = await p.cancel(order.order_no, at)
                if ended.state in ("retry", "refused"):  # the provider says nothing moved (a lost answer raises)
                    self._forget_cancel(order)
                return ended
            if op == "pay":
                return await p.pay_by_code(order.order_no, order.amount, order.code, self._config.wallet.subject)
            expires = walletorder.expiry(order.created, self._config.wallet.qr_timeout)
            return await p.create_order(order.order_no, order.amount, self._config.wallet.subject, expires)
        except JournalError as exc:  # the cancel could not be journaled (a full disk): not sent
            log.error("wallet order %s: %s not sent: %s", order.order_no, op, exc)
            return walletorder.Failure(str(exc), exc.screen)
        except WalletError as exc:
            mismatch = isinstance(exc, WalletMismatch)
            what = "an answer that is not this order's, ignored" if mismatch else f"{op} failed"
            log.warning("wallet order %s: %s: %s", order.order_no, what, exc)
            return walletorder.Failure(str(exc), exc.screen, mismatch)

    def _forget_cancel(self, order: _Order) -> None:
        """The provider answered that the cancel did not happen: a later 'paid' is the payment's again."""
        try:
            self.journal.clear_cancel(order.row)
        except JournalError as exc:  # kept: reconciliation cancels it again rather than approve it
            log.warning("wallet order %s: the cancel's mark stays: %s", order.order_no, exc)

    async def qr_order(
        self, amount: int, lines: tuple[BasketLine, ...] = (), operator: str = "", provider: str = "alipay"
    ) -> None:
        """Create the order, show its code, then ask the provider with backoff until it is paid or ends."""
        started = self._start(amount, "qr", lines, operator, provider)
        if started is None:
            return
        row, order_no, stan, created = started
        machine = walletorder.qr_order(self._config.wallet.poll_interval)
        outcome = await self._run(machine, _Order(provider, order_no, amount, created, shown=True, row=row))
        self._conclude(row, order_no, stan, "qr", outcome)

    async def code_payment(
        self,
        amount: int,
        code: str,
        lines: tuple[BasketLine, ...] = (),
        operator: str = "",
        provider: str = "alipay",
    ) -> None:
        """Charge a scanned code; when the payer must confirm, ask every few seconds, then cancel."""
        w = self._config.wallet
        started = self._start(amount, "code", lines, operator, provider)
        if started is None:
            return
        row, order_no, stan, created = started
        machine = walletorder.code_payment(w.confirm_interval, w.confirm_timeout, w.qr_timeout, created)
        outcome = await self._run(machine, _Order(provider, order_no, amount, created, code, row=row))
        self._conclude(row, order_no, stan, "code", outcome)

    async def end_order(self, reason: str) -> None:
        """Close (shown code) or cancel (scanned code) the open order; a payment that got there first wins.
        The sale is journaled cancelled only when the order can no longer be paid."""
        if self.order is None:
            return
        row, order_no, kind, stan, amount, created, provider = self.order
        machine = walletorder.end_order(kind, reason, self._config.wallet.qr_timeout, created)
        outcome = await self._run(machine, _Order(provider, order_no, amount, created, row=row))
        self._conclude(row, order_no, stan, kind, outcome)

    async def refund(self, f: FollowUp) -> events.Event:
        """Refund (or void) a wallet sale at the provider; the idempotency key is the provider's
        out_request_no, so a resend after a lost answer refunds once. Returns the event for the flow."""
        original = self.journal.row(f.original_id) or {}
        before = int(original.get("refunded") or 0)
        name = str(original.get("provider") or "")
        try:
            provider = self.providers.get(name)
            if provider is None:  # left 'unknown': sent once the provider is configured again
                raise WalletError(f"no {name!r} provider is configured for this sale's refund")
            total = int(original.get("amount") or 0) or None  # WeChat wants the order's total with a refund
            made = str((self.journal.row(f.id) or {}).get("created_at") or "")
            at = datetime.fromisoformat(made) if made else None  # a resend after a restart: the same request
            result = await provider.refund(f.original_order_no, f.amount, f.idem_key, before, total, at)
        except WalletError as exc:
            log.warning("wallet %s %d: %s", f.kind, f.id, exc)
            self._record(f.id, "unknown", note=str(exc)[:200])  # resent at reconcile
            return events.HostFailed(str(exc), sent=True, stan=f.stan)
        approved = result.state == "refunded"
        if self._record(
            f.id, "approved" if approved else "declined", note=result.reason, wallet_trade_no=result.trade_no
        ):
            return events.HostFailed("the answer could not be journaled", sent=True, stan=f.stan)  # resent later
        code = "00" if approved else "05"
        return events.HostAnswered(AuthResponse(f.stan, code, "", "", self._config.terminal.terminal_id), f.stan)

    async def reconcile(self) -> None:
        """Orders whose fate is unknown (a crash, a lost or lying answer): ask the provider, close what is
        open; resend wallet refunds whose answer was lost. Whatever stays unsettled is asked again later."""
        if await self._reconcile_once():
            self._chase()

    def _chase(self) -> None:
        """Keep reconciling in the background, with backoff, until nothing is unsettled."""
        if self._chase_task is None or self._chase_task.done():
            self._chase_task = self._spawn(self._chase_loop())

    async def _chase_loop(self) -> None:
        delay = CHASE_FIRST
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, CHASE_MAX)
            try:
                if not await self._reconcile_once():
                    return
            except TerminalError as exc:  # the journal (a full disk): try again later
                log.error("wallet: reconciling failed: %s", exc)
            except Exception:  # a bug must not end reconciliation for good
                log.exception("wallet: reconciling failed unexpectedly; trying again later")

    def _write_unrecorded(self) -> None:
        for row, note in list(self._unrecorded.items()):
            self.journal.finish(row, "unknown", self._clock(), note=note)  # JournalError: still not
            del self._unrecorded[row]

    async def _reconcile_once(self) -> bool:
        """One pass over what is unsettled; True when something still is."""
        async with self._reconciling:
            self._write_unrecorded()
            for f in self.journal.retries("wallet"):
                await self.refund(f)
            for row in self.journal.unsettled_wallet_orders():
                await self._reconcile_order(row)
            return bool(self.journal.retries("wallet") or self.journal.unsettled_wallet_orders())

    async def _reconcile_order(self, row: dict[str, Any]) -> None:
        order_no, kind, amount = row["order_no"], row["entry_mode"], int(row["amount"])
        created = datetime.fromisoformat(row["created_at"])
        now = self._clock()
        if created.tzinfo is None and now.tzinfo is not None:
            created = created.astimezone()  # a naive stamp is local time
        cancelling = cancel_marked(str(row.get("idem_key") or "")) is not None  # its answer lost
        machine = walletorder.reconcile_order(kind, self._config.wallet.qr_timeout, created, cancelling)
        order = _Order(str(row["provider"]), order_no, amount, created, row=int(row["id"]))
        done: walletorder.Final | None = await self._run(machine, order)
        if done is None:
            log.info("wallet order %s still unknown; asked again later", order_no)
            return
        result = done.result
        if not self._record(
            row["id"],
            done.status,
            note=f"reconciled: {result.reason}".rstrip(": "),
            wallet_trade_no=result.trade_no,
            payer=result.payer,
        ):
            log.info("wallet order %s reconciled: %s", order_no, done.status)
