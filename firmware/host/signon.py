"""Sign-on (签到): fetch the day's working keys from the host under the terminal master key."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from firmware.errors import CodecError, HostError, KeyMaterialError, SignOnError
from firmware.host.dialect import Dialect
from firmware.host.link import HostLink
from firmware.host.messages import bind, iso_to_signon, signon_to_iso
from firmware.records.journal import STAN_STEP, Journal
from firmware.security import keys
from firmware.security.keystore import KeyStore

log = logging.getLogger(__name__)

MASTER_KEY = "tmk"


class Session:
    """The working keys of today's sign-on. `ensure` signs on when there are none, when they are from an
    earlier day (renewed daily) or after `invalidate`; keys live in memory only, never at rest."""

    def __init__(
        self,
        scheme: str,
        store: KeyStore,
        host: HostLink,
        dialect: Dialect,
        journal: Journal,
        terminal_id: str,
        merchant_id: str,
        timeout: float,
        clock: Callable[[], datetime],
    ) -> None:
        self._scheme, self._store, self._host, self._dialect = scheme, store, host, dialect
        self._journal, self._tid, self._mid, self._timeout, self._clock = (
            journal,
            terminal_id,
            merchant_id,
            timeout,
            clock,
        )
        self._keys: keys.WorkingKeys | None = None
        self._lock = asyncio.Lock()

    def mac_key(self) -> bytes | None:
        """Today's MAC key, if signed on."""
        return bytes(self._keys.mac_key) if self._keys else None

    def pin_key(self) -> bytes | None:
        """Today's PIN key, if signed on."""
        return bytes(self._keys.pin_key) if self._keys else None

    def invalidate(self) -> None:
        """Forget the working keys (the next exchange signs on again)."""
        if self._keys:
            self._keys.wipe()
        self._keys = None

    async def ensure(self) -> None:
        """Make sure today's keys are here; SignOnError when they cannot be had."""
        async with self._lock:
            today = self._clock().strftime("%Y-%m-%d")
            if self._keys is not None and self._keys.day == today:
                return
            self.invalidate()
            self._keys = await self._sign_on(today)

    async def _sign_on(self, today: str) -> keys.WorkingKeys:
        tmk = self._store.get(MASTER_KEY)
        if tmk is None:
            raise SignOnError("no terminal master key: load one with `countertop keys load tmk`")
        try:
            now = self._clock()
            stan = self._journal.take_counter("stan", 1, STAN_STEP)
            doc = signon_to_iso(stan, self._tid, self._mid, now, now.astimezone(UTC))
            _, rc, block = await self._host.exchange(
                self._dialect.encode(doc),
                self._timeout,
                lambda raw: iso_to_signon(bind(doc, self._dialect.decode(raw))),
            )
            if rc != "00":
                raise SignOnError(f"the host refused the sign-on (response {rc})")
            working = keys.open_key_block(self._scheme, tmk, block, today)
        except (HostError, CodecError, KeyMaterialError) as exc:
            log.warning("sign-on failed: %s", exc)
            raise SignOnError(f"sign-on failed: {exc}") from None
        finally:
            keys.wipe(tmk)
        log.info(
            "signed on: working keys for %s (PIN KCV %s, MAC KCV %s)",
            today,
            keys.kcv(self._scheme, working.pin_key).hex().upper()[:6],
            keys.kcv(self._scheme, working.mac_key).hex().upper()[:6],
        )
        return working
