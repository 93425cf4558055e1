"""The acquirer link: ISO 8583 messages over TCP (optionally TLS), each behind a 2-byte big-endian length."""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Callable
from typing import TypeVar

from firmware.config import HostConfig
from firmware.errors import HostError, StaleAnswer

log = logging.getLogger(__name__)

MAX_MESSAGE = 0xFFFF
T = TypeVar("T")


def frame(message: bytes) -> bytes:
    """Prefix a message with its 2-byte big-endian length."""
    if len(message) > MAX_MESSAGE:
        raise HostError(f"message of {len(message)} bytes does not fit a 2-byte length", sent=False)
    return struct.pack(">H", len(message)) + message


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """Read one length-prefixed message; IncompleteReadError if the peer closes part-way."""
    header = await reader.readexactly(2)
    (length,) = struct.unpack(">H", header)
    return await reader.readexactly(length)


class HostLink:
    """One connection per exchange: connect, send, read one answer, close.

    A late or second answer therefore lands on a closed socket and can never be taken for the
    answer to a later request.
    """

    def __init__(self, cfg: HostConfig, connect_timeout: float = 10.0) -> None:
        self._cfg = cfg
        self._connect_timeout = connect_timeout
        self._ssl: ssl.SSLContext | None = None
        if cfg.tls:
            # Certificate and host name are checked (the default context); TLS 1.2 at least.
            self._ssl = ssl.create_default_context(cafile=cfg.ca_file or None)
            self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2
            if cfg.client_cert:
                self._ssl.load_cert_chain(cfg.client_cert, cfg.client_key)

    async def exchange(self, message: bytes, timeout: float, accept: Callable[[bytes], T]) -> T:
        """Send one message and return `accept(answer)`; HostError says whether it may have been sent.

        `accept` decodes and checks an answer against the request. A frame it calls StaleAnswer (another
        request's answer: a late one, or one a proxy replays) is logged and dropped, and the wait for this
        request's answer goes on until the deadline; any other error of `accept` ends the exchange.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self._cfg.host, self._cfg.port, ssl=self._ssl),
                min(self._connect_timeout, timeout),
            )
        except (TimeoutError, OSError, ssl.SSLError) as exc:
            raise HostError(f"cannot connect to {self._cfg.host}:{self._cfg.port}: {exc!r}", sent=False) from None
        try:
            writer.write(frame(message))
            await writer.drain()
            log.debug("host: sent %d bytes", len(message))
            while True:
                remaining = max(0.0, deadline - loop.time())
                answer = await asyncio.wait_for(read_frame(reader), remaining)
                log.debug("host: received %d bytes", len(answer))
                try:
                    result = accept(answer)
                    break
                except StaleAnswer as exc:
                    log.warning("host: discarded an answer that is not ours: %s", exc)
        except TimeoutError:
            raise HostError(f"no answer within {timeout:g} s", sent=True) from None
        except asyncio.IncompleteReadError:
            raise HostError("host closed the connection without a complete answer", sent=True) from None
        except OSError as exc:
            raise HostError(f"connection failed during the exchange: {exc!r}", sent=True) from None
        finally:
            writer.close()  # a late or second answer now lands on a closed socket
        try:
            await asyncio.wait_for(writer.wait_closed(), 1.0)
        except (TimeoutError, OSError, ssl.SSLError):
            pass
        return result
