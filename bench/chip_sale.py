"""Benchmark: whole chip sales through the real stack — the simulated card behind a private pcscd and vpcd, the
project's PC/SC driver, the contact kernel in the terminal, the acquirer on loopback — from the card going in to
APPROVED on screen.

    .venv/bin/python bench/chip_sale.py [sales]

Runs as the tests do (root, or a user namespace, for the private pcscd). Each sale is split into:
  detection  card inserted -> the card's first APDU: pcscd's fixed 400 ms reader poll, not the terminal
  host       the acquirer's own time per request (decode, ARQC check, ARPC, encode), measured inside it
  cardholder the PIN prompt on screen -> the PIN typed (the harness types at once; a person takes seconds)
  card       the simulated card's own time answering (its RSA signatures, MACs): not the terminal's either
  terminal   first APDU -> APPROVED, less host, card and cardholder time: driver, pyscard, pcscd, vpcd, kernel,
             PIN block, journal, ISO 8583 and the loopback round trip, receipts queued, the screen drawn
Cards in turn: a Visa with SDA and signature (no PIN), a UnionPay debit with DDA and online PIN.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

from firmware.config import ChipConfig, load
from hwsim import Simulator
from hwsim.pcscd import PrivatePcscd
from hwsim.simulator import DEFAULT_CONFIG

CARDS = (("visa-chip-sda-signature", ""), ("unionpay-debit-chip", "1234"))


class Stopwatch:
    """Wraps a callable: the time spent inside it, summed, and when it was first called."""

    def __init__(self, call: Any) -> None:
        self.call, self.spent, self.first = call, 0.0, 0.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        self.first = self.first or t0
        try:
            return self.call(*args, **kwargs)
        finally:
            self.spent += time.perf_counter() - t0

    def reset(self) -> None:
        self.spent, self.first = 0.0, 0.0


def one_sale(sim: Simulator, card_id: str, pin: str, watches: dict[str, Stopwatch]) -> dict[str, float] | None:
    """One sale; None for a warm-up (the card's stopwatch is put on it)."""
    sim.keys("100{ENTER}")
    sim.wait_for("CARD")
    for w in watches.values():
        w.reset()
    t0 = time.perf_counter()
    applet = sim.insert(card_id)
    cardholder = 0.0
    if pin:
        sim.wait_for("ENTER PIN")
        t1 = time.perf_counter()
        sim.keys(pin + "{ENTER}")
        cardholder = time.perf_counter() - t1
    sim.wait_for("APPROVED")
    t_end = time.perf_counter()
    sim.remove_card()
    sim.keys("{ENTER}")
    sim.wait_for("ENTER AMOUNT")
    watch = watches.get(card_id)
    if watch is None:
        watches[card_id] = applet.process = Stopwatch(applet.process)  # the slot calls the applet's process
        return None
    host = watches["host"].spent
    return {
        "detection": (watch.first - t0) * 1000,
        "host": host * 1000,
        "cardholder": cardholder * 1000,
        "terminal": (t_end - watch.first - host - watch.spent - cardholder) * 1000,
        "card": watch.spent * 1000,
        "apdus": applet.apdus,
    }


def main(sales: int) -> None:
    daemon = PrivatePcscd()
    daemon.start()
    os.environ.update(daemon.environ())  # before the first PC/SC call of this process
    cfg = replace(load(DEFAULT_CONFIG), chip=ChipConfig(reader="hwsim chip slot"))
    results: dict[str, dict[str, list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp, Simulator(tmp, cfg) as sim:
            assert sim.host is not None
            watches = {"host": Stopwatch(sim.host._answer)}
            sim.host._answer = watches["host"]  # type: ignore[method-assign]
            for i in range(sales + len(CARDS)):
                card_id, pin = CARDS[i % len(CARDS)]
                got = one_sale(sim, card_id, pin, watches)
                if got is not None:
                    for name, value in got.items():
                        results.setdefault(card_id, {}).setdefault(name, []).append(value)
            assert all(r["status"] == "approved" for r in sim.journal() if r["kind"] == "sale")
    finally:
        daemon.close()
    print(f"{sales} approved chip sales through pcscd and vpcd, in turn: {', '.join(c for c, _ in CARDS)}")
    for card_id, figures in results.items():
        print(f"{card_id} ({int(figures['apdus'][0])} APDUs, {len(figures['apdus'])} sales):")
        for name in ("terminal", "host", "card", "cardholder", "detection"):
            xs = sorted(figures[name])
            p95 = xs[int(0.95 * (len(xs) - 1))]
            print(f"  {name:10} median {statistics.median(xs):6.1f} ms, p95 {p95:6.1f} ms, max {xs[-1]:6.1f} ms")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
