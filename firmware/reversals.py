"""The reversal queue's sender: 0400/0401 for each queued reversal, oldest first, until the host acknowledges it."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import Callable

from . import dialect
from .config import Config
from .errors import CodecError, HostError
from .hostlink import HostLink
from .journal import Journal, QueuedReversal
from .messages import ReversalRequest, iso_to_reversal_ack, reversal_to_iso

log = logging.getLogger(__name__)


class ReversalSender:
    """Flushes the journal's reversal queue; one flush at a time. Triggered at boot, after a sale with
    an unknown outcome, and before every new sale (a new sale waits until the queue is empty)."""

    def __init__(self, journal: Journal, host: HostLink, config: Config, clock: Callable[[], datetime]) -> None:
        self._journal, self._host, self._config, self._clock = journal, host, config, clock
        self._lock = asyncio.Lock()

    async def flush(self) -> bool:
        """Send every queued reversal; True when the queue is empty afterwards."""
        async with self._lock:
            for queued in self._journal.queued_reversals():
                if not await self._send(queued):
                    return False
            return True

    async def _send(self, q: QueuedReversal) -> bool:
        now = self._clock()
        req = ReversalRequest(
            stan=q.stan, amount=q.amount, currency_numeric=self._config.terminal.currency.numeric,
            terminal_id=q.terminal_id, merchant_id=q.merchant_id, original_stan=q.original_stan,
            original_transmitted_at=q.original_transmitted_at, local_time=now,
            utc_time=now.astimezone(timezone.utc), repeat=q.attempts > 0)
        try:
            answer = await self._host.exchange(dialect.encode(reversal_to_iso(req)), self._config.timeouts.host)
            stan, rc = iso_to_reversal_ack(dialect.decode(answer))
            if stan != q.stan:
                raise CodecError(f"acknowledgement for stan {stan:06d}, expected {q.stan:06d}")
        except (HostError, CodecError) as exc:
            log.warning("reversal %d of sale stan %06d not acknowledged: %s", q.id, q.original_stan, exc)
            self._journal.reversal_attempted(q.id, self._clock(), str(exc))
            return False
        self._journal.reversal_acknowledged(q.id, rc, self._clock())
        log.info("reversal %d of sale stan %06d acknowledged (%s)", q.id, q.original_stan, rc)
        return True
