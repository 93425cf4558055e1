"""Benchmark: one APDU's round trip through the contact stack — driver (asyncio loop -> card thread), pyscard,
a private pcscd, vpcd, TCP, the simulated chip slot and card — and the same without the driver (pyscard alone).

    .venv/bin/python bench/chip_apdu.py [apdus] [--no-quickack]

Runs as the tests do (root, for the mount namespace of the private pcscd). --no-quickack leaves out the card's
TCP_QUICKACK to show what Debian's vpcd costs without it (a delayed ACK per APDU).
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import sys
import time

from hwsim import chipslot
from hwsim.emvcard import CardApplet, contactless_catalog
from hwsim.pcscd import PrivatePcscd

PPSE = bytes.fromhex("00A404000E325041592E5359532E444446303100")  # case 4: a T=0 card answers 61xx


def _no_quickack(sock: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _summary(name: str, seconds: list[float]) -> str:
    us = sorted(s * 1e6 for s in seconds)
    p95 = us[int(0.95 * (len(us) - 1))]
    return f"{name}: median {statistics.median(us):.0f} µs, p95 {p95:.0f} µs, max {us[-1]:.0f} µs ({len(us)} APDUs)"


async def _through_driver(reader_name: str, slot: chipslot.ChipSlot, protocol: str, apdus: int) -> list[float]:
    from drivers.chip import ChipReader
    from firmware.core.events import ChipInserted

    queue: asyncio.Queue[object] = asyncio.Queue()
    reader = ChipReader(reader_name, asyncio.get_running_loop(), queue.put_nowait)
    reader.start()
    try:
        slot.insert(CardApplet(contactless_catalog()["mc-tap-approve"]), protocol=protocol)
        while not isinstance(event := await asyncio.wait_for(queue.get(), 10), ChipInserted):
            pass
        session = event.session
        times = []
        for _ in range(apdus):
            t0 = time.perf_counter()
            await session.transceive(PPSE)
            times.append(time.perf_counter() - t0)
        session.close()
        return times
    finally:
        reader.stop()
        slot.remove()


def _pyscard_alone(reader_name: str, slot: chipslot.ChipSlot, apdus: int) -> list[float]:
    from smartcard import scard

    slot.insert(CardApplet(contactless_catalog()["mc-tap-approve"]), protocol="T=1")
    _, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    try:
        state = scard.SCARD_STATE_UNAWARE
        while not state & scard.SCARD_STATE_PRESENT:
            hr, states = scard.SCardGetStatusChange(context, 1000, [(reader_name, state)])
            state = states[0][1] & ~scard.SCARD_STATE_CHANGED if hr == scard.SCARD_S_SUCCESS else state
        want = scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1
        _, handle, protocol = scard.SCardConnect(context, reader_name, scard.SCARD_SHARE_EXCLUSIVE, want)
        times = []
        command = list(PPSE)
        for _ in range(apdus):
            t0 = time.perf_counter()
            scard.SCardTransmit(handle, protocol, command)
            times.append(time.perf_counter() - t0)
        scard.SCardDisconnect(handle, scard.SCARD_UNPOWER_CARD)
        return times
    finally:
        scard.SCardReleaseContext(context)
        slot.remove()


def main(apdus: int, quickack: bool) -> None:
    if not quickack:
        chipslot._exactly = _no_quickack  # type: ignore[assignment]
    with PrivatePcscd() as pcscd:
        os.environ.update(pcscd.environ())
        slot = chipslot.ChipSlot(pcscd.port)
        print(f"SELECT PPSE to a simulated card through a private pcscd{'' if quickack else ' (no TCP_QUICKACK)'}")
        for protocol in ("T=1", "T=0"):
            times = asyncio.run(_through_driver(pcscd.reader, slot, protocol, apdus))
            print(_summary(f"driver, {protocol} (await session.transceive)", times))
        print(_summary("pyscard alone, T=1 (SCardTransmit)", _pyscard_alone(pcscd.reader, slot, apdus)))


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    main(int(args[0]) if args else 2000, "--no-quickack" not in sys.argv)
