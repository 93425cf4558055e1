"""The wallet desk: a terminal's wallet payments — journal first, then the provider; polling, closing,
reconciling orders whose fate is unknown until the provider has said what became of them, and refunds
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
from datetime import datetime, timedelta
from typing import Any

from firmware.config import Config
from firmware.core import events
from firmware.core.events import AuthResponse
from firmware.core.items import BasketLine
from firmware.errors import TerminalError
from firmware.records.journal import FollowUp, Journal, NewSale
from firmware.wallets.alipay import WalletError, WalletMismatch, WalletProvider, WalletResult

log = logging.getLogger(__name__)

# How far the provider's clock may lag the terminal's: a shown code that was never scanned is taken as
# dead only this long after the expiry the order was created with.
EXPIRY_MARGIN = timedelta(seconds=30)
END_ATTEMPTS = 4  # close/cancel tries while the cashier waits (Alipay's retry_flag), then reconcile
END_FIRST_DELAY = 0.5  # seconds before the second try; doubles
CHASE_FIRST, CHASE_MAX = 1.0, 60.0  # seconds between reconcile passes while anything is unsettled


class WalletDesk:
    """One open wallet order at a time; answers the flow with events through `post`."""

    def __init__(
        self,
        provider: WalletProvider,
        journal: Journal,
        config: Config,
        clock: Callable[[], datetime],
        post: Callable[[Any], None],
        spawn: Callable[[Any], Any],
    ) -> None:
        self.provider, self.journal, self._config = provider, journal, config
        self._clock, self._post, self._spawn = clock, post, spawn
        # (row, order number, "qr" | "code", stan, amount, created)
        self.order: tuple[int, str, str, int, int, datetime] | None = None
        self._reconciling = asyncio.Lock()
        self._chase_task: Any = None
        self._unrecorded: dict[int, str] = {}  # rows whose outcome the journal refused (disk full): 'unknown'

    def _begin(
        self, amount: int, kind: str, lines: tuple[BasketLine, ...], operator: str
    ) -> tuple[int, str, int, datetime]:
        """Journal a pending wallet sale before the provider hears of it; (row, order number, stan, created).
        JournalError (a full or read-only disk) when it cannot be: then nothing is sent."""
        t = self._config.terminal
        self.journal.check_room()
        now = self._clock().replace(microsecond=0)  # the journal keeps seconds; so does the expiry
        order_no = f"{t.terminal_id}{now:%y%m%d%H%M%S}{secrets.token_hex(3).upper()}"
        row, stan = self.journal.begin_sale(
            NewSale(
                "wallet",
                kind,
                amount,
                t.currency.alpha,
                "",
                t.terminal_id,
                t.merchant_id,
                provider=self.provider.name,
                order_no=order_no,
                lines=lines,
                operator=operator,
            ),
            now,
        )
        self.order = (row, order_no, kind, stan, amount, now)
        return row, order_no, stan, now

    def _expiry(self, created: datetime) -> datetime:
        """When a shown code created at `created` stops being payable (sent to the provider with the order)."""
        return created.replace(microsecond=0) + timedelta(seconds=self._config.wallet.qr_timeout)

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

    def _settle(self, row: int, order_no: str, stan: int, kind: str, result: WalletResult) -> bool:
        """Journal a final provider answer and tell the flow; False when the order is still open."""
        status = {"paid": "approved", "closed": "cancelled", "failed": "declined"}.get(result.state)
        if status is None:
            return False
        self.order = None
        fields = (
            {"wallet_trade_no": result.trade_no, "payer": result.payer}
            if status == "approved"
            else {"note": result.reason}
        )
        trouble = self._record(row, status, **fields)
        if trouble:
            self._post(events.WalletEnded("unknown", trouble))  # said truly later, by reconciliation
        elif status == "approved":
            self._post(
                events.WalletPaid(order_no, result.trade_no, result.payer, stan, "QR" if kind == "qr" else "CODE")
            )
        elif status == "cancelled":
            self._post(events.WalletEnded("closed", result.reason or "ORDER CLOSED"))
        else:
            self._post(events.WalletEnded("failed", result.reason or "PAYMENT FAILED"))
        return True

    def _unknown(
        self, row: int, note: str, screen: str = "CHECKING WITH WALLET", state: events.WalletEnd = "unknown"
    ) -> None:
        """Leave the order to reconciliation: journal 'unknown', tell the flow, keep asking in the background."""
        self._record(row, "unknown", note=note[:200])
        self.order = None
        self._post(events.WalletEnded(state, screen))
        self._chase()

    def _start(
        self, amount: int, kind: str, lines: tuple[BasketLine, ...], operator: str
    ) -> tuple[int, str, int, datetime] | None:
        """_begin, or None (and the flow told why) when the journal cannot take the order."""
        try:
            return self._begin(amount, kind, lines, operator)
        except TerminalError as exc:
            log.error("wallet %s order refused before anything was sent: %s", kind, exc)
            self._post(events.WalletEnded("failed", exc.screen))
            return None

    async def qr_order(self, amount: int, lines: tuple[BasketLine, ...] = (), operator: str = "") -> None:
        """Create the order, show its code, then ask the provider with backoff until it is paid or ends."""
        started = self._start(amount, "qr", lines, operator)
        if started is None:
            return
        row, order_no, stan, created = started
        try:
            shown = await self.provider.create_order(
                order_no, amount, self._config.wallet.subject, self._expiry(created)
            )
        except WalletError as exc:
            log.warning("wallet order %s: %s", order_no, exc)
            self._unknown(row, str(exc), exc.screen)  # closed at reconcile
            return
        if shown.state != "waiting":
            self._settle(row, order_no, stan, "qr", shown)
            return
        self._post(events.OrderShown(shown.qr, order_no))
        delay = self._config.wallet.poll_interval
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)
            try:
                result = await self.provider.query(order_no, amount)
            except WalletMismatch as exc:
                log.warning("wallet order %s: an answer that is not this order's, ignored: %s", order_no, exc)
                continue
            except WalletError as exc:
                log.warning("wallet order %s: query failed: %s", order_no, exc)
                continue  # keep asking; the countdown bounds the wait
            if result.state in ("paid", "closed") and self._settle(row, order_no, stan, "qr", result):
                return

    async def code_payment(
        self, amount: int, code: str, lines: tuple[BasketLine, ...] = (), operator: str = ""
    ) -> None:
        """Charge a scanned code; when the payer must confirm, ask every few seconds, then cancel."""
        w = self._config.wallet
        started = self._start(amount, "code", lines, operator)
        if started is None:
            return
        row, order_no, stan, _ = started
        try:
            result = await self.provider.pay_by_code(order_no, amount, code, w.subject)
        except WalletError as exc:
            log.warning("wallet payment %s: %s", order_no, exc)
            self._unknown(row, str(exc))
            return
        if result.state == "waiting":
            self._post(events.WalletConfirming())
            deadline = asyncio.get_running_loop().time() + w.confirm_timeout
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(w.confirm_interval)
                try:
                    result = await self.provider.query(order_no, amount)
                except WalletError as exc:
                    log.warning("wallet payment %s: query failed: %s", order_no, exc)
                    continue
                if result.state in ("paid", "closed"):
                    break
            if result.state not in ("paid", "closed"):
                await self.end_order("CUSTOMER DID NOT CONFIRM")
                return
        if not self._settle(row, order_no, stan, "code", result):
            await self.end_order("PAYMENT FAILED")

    async def _end_trade(self, order_no: str, kind: str, amount: int, attempts: int) -> WalletResult | None:
        """Close (shown code) or cancel (scanned code) an order until the provider says it is closed or
        paid; retried while Alipay asks for it (retry_flag) or cannot be reached. Returns the closed or
        paid result, `not_found` for a shown code nobody scanned, or None when its fate is still open."""
        end = self.provider.close if kind == "qr" else self.provider.cancel
        delay = END_FIRST_DELAY
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(delay)
                delay *= 2
            try:
                ended = await end(order_no)
                if ended.state == "closed":
                    return ended
                now = await self.provider.query(order_no, amount)  # paid in the meantime?
            except WalletError as exc:
                log.warning("wallet order %s: could not end it (try %d): %s", order_no, attempt + 1, exc)
                continue
            if now.state in ("paid", "closed"):
                return now
            if kind == "qr" and ended.state == now.state == "not_found":
                return now
            log.info(
                "wallet order %s: %s answered %s, the order is %s; trying again",
                order_no,
                "close" if kind == "qr" else "cancel",
                ended.state,
                now.state,
            )
        return None

    async def end_order(self, reason: str) -> None:
        """Close (shown code) or cancel (scanned code) the open order; a payment that got there first wins.
        The sale is journaled cancelled only when the order can no longer be paid."""
        if self.order is None:
            return
        row, order_no, kind, stan, amount, created = self.order
        ended = await self._end_trade(order_no, kind, amount, END_ATTEMPTS)
        if ended is None:
            log.warning("wallet order %s: its fate is open; reconciling until the provider says", order_no)
            self._unknown(row, "could not close the order: reconciling")
            return
        if ended.state == "not_found":  # a shown code nobody scanned
            expiry = self._expiry(created)
            if self._clock() < expiry + EXPIRY_MARGIN:
                # Payable until its expiry (a printed copy may still be scanned): unknown until then.
                log.info("wallet order %s: never scanned; open until %s, then reconciled", order_no, expiry)
                self._unknown(row, f"never scanned; payable until {expiry.isoformat()}", reason, state="closed")
                return
            ended = WalletResult("closed", reason)
        elif ended.state == "closed" and ended.reason != "REFUNDED TO PAYER":  # cancel of a paid trade
            ended = WalletResult("closed", reason)
        self._settle(row, order_no, stan, kind, ended)

    async def refund(self, f: FollowUp) -> Any:
        """Refund (or void) a wallet sale at the provider; the idempotency key is the provider's
        out_request_no, so a resend after a lost answer refunds once. Returns the event for the flow."""
        original = self.journal.row(f.original_id) or {}
        before = int(original.get("refunded") or 0)
        try:
            result = await self.provider.refund(f.original_order_no, f.amount, f.idem_key, refunded_before=before)
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
        try:
            result: WalletResult | None = await self.provider.query(order_no, amount)
        except WalletError as exc:
            log.warning("wallet order %s still unknown: %s", order_no, exc)
            return
        assert result is not None
        if result.state in ("waiting", "not_found"):
            result = await self._end_trade(order_no, kind, amount, 1)
            if result is None:
                return
            if result.state == "not_found":  # a shown code nobody scanned
                now = self._clock()
                created = datetime.fromisoformat(row["created_at"])
                if created.tzinfo is None and now.tzinfo is not None:
                    created = created.astimezone()  # a naive stamp is local time
                if now < self._expiry(created) + EXPIRY_MARGIN:
                    return  # still payable: ask again later
                result = WalletResult("closed", "NEVER PAID; CODE EXPIRED")
        status = {"paid": "approved", "closed": "cancelled"}.get(result.state)
        if status and not self._record(
            row["id"],
            status,
            note=f"reconciled: {result.reason}".rstrip(": "),
            wallet_trade_no=result.trade_no,
            payer=result.payer,
        ):
            log.info("wallet order %s reconciled: %s", order_no, status)
