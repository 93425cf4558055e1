"""The wallet desk: a terminal's wallet payments — journal first, then the provider; polling, closing,
reconciling after a crash, and refunds back to the wallet. Part of the shell (it does I/O)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import datetime
from typing import Any, Callable

from . import flow
from .config import Config
from .items import BasketLine
from .journal import FollowUp, Journal, NewSale
from .messages import AuthResponse
from .wallet import WalletError, WalletProvider, WalletResult

log = logging.getLogger(__name__)


class WalletDesk:
    """One open wallet order at a time; answers the flow with events through `post`."""

    def __init__(self, provider: WalletProvider, journal: Journal, config: Config, clock: Callable[[], datetime],
                 post: Callable[[Any], None], spawn: Callable[[Any], Any]) -> None:
        self.provider, self.journal, self._config = provider, journal, config
        self._clock, self._post, self._spawn = clock, post, spawn
        self.order: tuple[int, str, str, int] | None = None        # (row, order number, "qr" | "code", stan)
        self.basket: tuple[BasketLine, ...] = ()                    # the lines of the next order (HoldBasket)
        self.operator = ""                                          # who is signed in at the till

    def _begin(self, amount: int, kind: str) -> tuple[int, str, int]:
        """Journal a pending wallet sale before the provider hears of it; (row, order number, stan)."""
        t = self._config.terminal
        now = self._clock()
        order_no = f"{t.terminal_id}{now:%y%m%d%H%M%S}{secrets.token_hex(3).upper()}"
        row, stan = self.journal.begin_sale(NewSale("wallet", kind, amount, t.currency.alpha, "", t.terminal_id,
                                                    t.merchant_id, provider=self.provider.name, order_no=order_no,
                                                    lines=self.basket, operator=self.operator),
                                            now)
        self.order = (row, order_no, kind, stan)
        return row, order_no, stan

    def _settle(self, row: int, order_no: str, stan: int, kind: str, result: WalletResult) -> bool:
        """Journal a final provider answer and tell the flow; False when the order is still open."""
        if result.state == "paid":
            self.journal.finish(row, "approved", self._clock(), wallet_trade_no=result.trade_no, payer=result.payer)
            self._post(flow.WalletPaid(order_no, result.trade_no, result.payer, stan, kind.upper()))
        elif result.state == "closed":
            self.journal.finish(row, "cancelled", self._clock(), note=result.reason)
            self._post(flow.WalletEnded("closed", result.reason or "ORDER CLOSED"))
        elif result.state == "failed":
            self.journal.finish(row, "declined", self._clock(), note=result.reason)
            self._post(flow.WalletEnded("failed", result.reason or "PAYMENT FAILED"))
        else:
            return False
        self.order = None
        return True

    async def qr_order(self, amount: int) -> None:
        """Create the order, show its code, then ask the provider with backoff until it is paid or ends."""
        row, order_no, stan = self._begin(amount, "qr")
        try:
            created = await self.provider.create_order(order_no, amount, self._config.wallet.subject)
        except WalletError as exc:
            log.warning("wallet order %s: %s", order_no, exc)
            self.journal.finish(row, "unknown", self._clock(), note=str(exc)[:200])   # closed at reconcile
            self.order = None
            self._post(flow.WalletEnded("unknown", exc.screen))
            return
        if created.state != "waiting":
            self._settle(row, order_no, stan, "qr", created)
            return
        self._post(flow.OrderShown(created.qr, order_no))
        delay = self._config.wallet.poll_interval
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)
            try:
                result = await self.provider.query(order_no)
            except WalletError as exc:
                log.warning("wallet order %s: query failed: %s", order_no, exc)
                continue                                     # keep asking; the countdown bounds the wait
            if result.state in ("paid", "closed", "failed") and self._settle(row, order_no, stan, "qr", result):
                return

    async def code_payment(self, amount: int, code: str) -> None:
        """Charge a scanned code; when the payer must confirm, ask every few seconds, then cancel."""
        w = self._config.wallet
        row, order_no, stan = self._begin(amount, "code")
        try:
            result = await self.provider.pay_by_code(order_no, amount, code, w.subject)
        except WalletError as exc:
            log.warning("wallet payment %s: %s", order_no, exc)
            self.journal.finish(row, "unknown", self._clock(), note=str(exc)[:200])
            self.order = None
            self._spawn(self.reconcile())
            self._post(flow.WalletEnded("unknown", "CHECKING WITH WALLET"))
            return
        if result.state == "waiting":
            self._post(flow.WalletConfirming())
            deadline = asyncio.get_running_loop().time() + w.confirm_timeout
            while asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(w.confirm_interval)
                try:
                    result = await self.provider.query(order_no)
                except WalletError as exc:
                    log.warning("wallet payment %s: query failed: %s", order_no, exc)
                    continue
                if result.state != "waiting":
                    break
            if result.state == "waiting":
                await self.end_order("CUSTOMER DID NOT CONFIRM")
                return
        if not self._settle(row, order_no, stan, "code", result):
            await self.end_order("PAYMENT FAILED")

    async def end_order(self, reason: str) -> None:
        """Close (shown code) or cancel (scanned code) the open order; a payment that got there first wins."""
        if self.order is None:
            return
        row, order_no, kind, stan = self.order
        try:
            ended = await (self.provider.close(order_no) if kind == "qr" else self.provider.cancel(order_no))
            if ended.state != "closed":
                ended = await self.provider.query(order_no)          # paid in the meantime, or never created
                if ended.state in ("not_found", "waiting"):
                    ended = WalletResult("closed", reason)
        except WalletError as exc:
            log.warning("wallet order %s: could not close: %s", order_no, exc)
            self.journal.finish(row, "unknown", self._clock(), note=f"close failed: {exc}"[:200])
            self.order = None
            self._post(flow.WalletEnded("unknown", "CHECKING WITH WALLET"))
            return
        if ended.state == "closed":
            ended = WalletResult("closed", reason)
        self._settle(row, order_no, stan, kind, ended)

    async def refund(self, f: FollowUp) -> Any:
        """Refund (or void) a wallet sale at the provider; the idempotency key is the provider's
        out_request_no, so a resend after a lost answer refunds once. Returns the event for the flow."""
        try:
            result = await self.provider.refund(f.original_order_no, f.amount, f.idem_key)
        except WalletError as exc:
            log.warning("wallet %s %d: %s", f.kind, f.id, exc)
            self.journal.finish(f.id, "unknown", self._clock(), note=str(exc)[:200])    # resent at reconcile
            return flow.HostFailed(str(exc), sent=True, stan=f.stan)
        approved = result.state == "paid"
        self.journal.finish(f.id, "approved" if approved else "declined", self._clock(), note=result.reason,
                            wallet_trade_no=result.trade_no)
        code = "00" if approved else "05"
        return flow.HostAnswered(AuthResponse(f.stan, code, "", "", self._config.terminal.terminal_id), f.stan)

    async def reconcile(self) -> None:
        """Orders whose fate is unknown (a crash, a lost answer): ask the provider, close what is open;
        resend wallet refunds whose answer was lost."""
        for f in self.journal.retries("wallet"):
            await self.refund(f)
        for row in self.journal.unsettled_wallet_orders():
            order_no = row["order_no"]
            try:
                result = await self.provider.query(order_no)
                if result.state in ("waiting", "not_found"):
                    closer = self.provider.close if row["entry_mode"] == "qr" else self.provider.cancel
                    result = await closer(order_no)
                    if result.state != "closed":
                        result = await self.provider.query(order_no)
                    if result.state == "not_found":
                        result = WalletResult("closed", "NEVER CREATED")
            except WalletError as exc:
                log.warning("wallet order %s still unknown: %s", order_no, exc)
                continue
            status = {"paid": "approved", "closed": "cancelled", "failed": "declined"}.get(result.state)
            if status:
                self.journal.finish(row["id"], status, self._clock(), note="reconciled", wallet_trade_no=result.trade_no,
                                    payer=result.payer)
                log.info("wallet order %s reconciled: %s", order_no, status)
