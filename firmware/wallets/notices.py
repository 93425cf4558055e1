"""What WeChat Pay's callbacks told the back office, asked by a terminal that shows a WeChat code: a hint that
an order has been paid, so the terminal asks WeChat Pay now instead of at its next poll. The terminal's own
query stays the source of truth: a notice only ever shortens a wait, and only a notice bound to the order
(out_trade_no, mchid, amount.total in fen, SUCCESS) does even that.

The back office (office/web.py `GET /api/v1/wallet/notice?order=…&wait=…`) holds the request open until the
callback arrives or `wait` seconds pass; the terminal authenticates with its [office] token as the forwarder
does. Where there is no back office, or it cannot be reached, the terminal simply polls.

Each request runs in a thread of its own (a daemon: a back office that trickles its answer byte by byte can hold
it past any socket timeout, but never a thread the provider calls share, nor the terminal's shutdown), at most
one at a time: while one still hangs, the terminal polls without asking.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from firmware.config import Config, OfficeConfig

log = logging.getLogger(__name__)

NOTICE_PATH = "/api/v1/wallet/notice"


class OfficeNotices:
    """Long-polls the back office for WeChat Pay payment notices of this terminal's orders."""

    def __init__(self, cfg: OfficeConfig, mchid: str) -> None:
        self._cfg, self._mchid = cfg, mchid
        self._woken: set[str] = set()  # orders a notice has already hurried: the next waits are plain polls
        self._asking = False  # a request is in its thread (set and cleared on the event loop only)

    @classmethod
    def from_config(cls, config: Config) -> OfficeNotices | None:
        """Notices when [wechat] office_notices is on and [office] names a back office; else None."""
        w = config.wechat
        if w is None or not w.office_notices or not config.office.url:
            return None
        return cls(config.office, w.mchid)

    def _get(self, order_no: str, wait: float) -> dict[str, Any] | None:
        """The back office's notice of `order_no` (blocking: a worker thread), or None (none, or unreachable)."""
        url = urllib.parse.urlsplit(self._cfg.url)
        timeout = self._cfg.timeout + wait
        conn: http.client.HTTPConnection
        if url.scheme == "https":
            ctx = ssl.create_default_context(cafile=self._cfg.ca_file or None)
            conn = http.client.HTTPSConnection(url.hostname or "", url.port or 443, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(url.hostname or "", url.port or 80, timeout=timeout)
        try:
            token = Path(self._cfg.token_file).read_text(encoding="ascii").strip()
            query = urllib.parse.urlencode({"order": order_no, "wait": f"{wait:.1f}"})
            conn.request("GET", f"{NOTICE_PATH}?{query}", headers={"Authorization": f"Bearer {token}"})
            answer = conn.getresponse()
            body = answer.read(1 << 16)
            if answer.status != 200:
                return None
            data = json.loads(body)
            return data if isinstance(data, dict) else None
        except (OSError, http.client.HTTPException, ValueError, UnicodeDecodeError) as exc:
            log.debug("office notice of %s: %s", order_no, exc)
            return None
        finally:
            conn.close()

    def bound(self, notice: dict[str, Any] | None, order_no: str, amount: int) -> bool:
        """A notice that says this order, of this merchant, was paid this amount."""
        return (
            isinstance(notice, dict)
            and notice.get("out_trade_no") == order_no
            and notice.get("mchid") == self._mchid
            and notice.get("trade_state") == "SUCCESS"
            and type(notice.get("total")) is int
            and notice.get("total") == amount
        )

    def _ask(self, order_no: str, wait: float) -> asyncio.Future[dict[str, Any] | None]:
        """_get in its own daemon thread; None at once while an earlier request still hangs."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[dict[str, Any] | None] = loop.create_future()
        if self._asking:
            answer.set_result(None)
            return answer

        def done(notice: dict[str, Any] | None) -> None:
            self._asking = False
            if not answer.done():  # not given up on (wait_for cancels it at its deadline)
                answer.set_result(notice)

        def run() -> None:
            try:
                notice = self._get(order_no, wait)
            except Exception as exc:  # e.g. an unreadable [office] ca_file: no notice, and ask again next time
                log.warning("office notice of %s: %s", order_no, exc)
                notice = None
            try:
                loop.call_soon_threadsafe(done, notice)
            except RuntimeError:  # the loop has ended meanwhile: nobody is waiting
                pass

        self._asking = True
        threading.Thread(target=run, name="office-notice", daemon=True).start()
        return answer

    async def wait(self, order_no: str, amount: int, seconds: float) -> None:
        """Sleep `seconds`, or less when the back office has (or receives meanwhile) a notice bound to this order
        that says it was paid. Never longer, whatever the back office does."""
        loop = asyncio.get_running_loop()
        until = loop.time() + seconds
        if order_no not in self._woken:
            try:
                notice = await asyncio.wait_for(self._ask(order_no, seconds), seconds)
            except TimeoutError:
                notice = None
            if self.bound(notice, order_no, amount):
                self._woken.add(order_no)
                log.info("wallet order %s: the back office has WeChat Pay's payment notice; asking now", order_no)
                return
            if notice is not None:
                log.warning("wallet order %s: a back-office notice that is not this order's, ignored", order_no)
        await asyncio.sleep(max(until - loop.time(), 0.0))
