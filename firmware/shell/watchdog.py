"""systemd's notify protocol: READY=1 once the terminal can sell, WATCHDOG=1 from the event loop while it turns.

A datagram to the unix socket named by $NOTIFY_SOCKET (an '@' first means the abstract namespace), as
sd_notify(3) describes. The pings come from a timer on the terminal's own loop, so a loop that stalls stops
pinging and systemd (WatchdogSec=) restarts the service. Outside systemd there is no socket and nothing is sent.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages to one socket; failures are logged once and never raised."""

    def __init__(self, address: str, watchdog_usec: int = 0) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.interval = watchdog_usec / 2e6 if watchdog_usec > 0 else 0.0  # ping at half the timeout
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._warned = False

    def notify(self, message: str) -> None:
        """Send one message (e.g. "READY=1"); a dead socket is logged once, never raised."""
        try:
            self._sock.sendto(message.encode(), self._address)
        except OSError as exc:
            if not self._warned:
                log.warning("watchdog: cannot notify systemd at %s: %s", self._address.lstrip("\0"), exc)
                self._warned = True

    async def keep_alive(self) -> None:
        """Ping WATCHDOG=1 every `interval` seconds from the running loop (until cancelled)."""
        while self.interval:
            self.notify("WATCHDOG=1")
            await asyncio.sleep(self.interval)

    def close(self) -> None:
        """Release the socket."""
        self._sock.close()


def from_environment(env: Mapping[str, str] | None = None) -> Notifier | None:
    """The notifier systemd asked for ($NOTIFY_SOCKET, $WATCHDOG_USEC, $WATCHDOG_PID), or None."""
    env = os.environ if env is None else env
    address = env.get("NOTIFY_SOCKET", "")
    if not address:
        return None
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    watchdog = int(usec) if usec.isascii() and usec.isdigit() and (not pid or pid == str(os.getpid())) else 0
    return Notifier(address, watchdog)
