"""Benchmark: contactless taps through the simulator — card-in-field time, APDUs, tap-to-result.

    .venv/bin/python bench/tap_to_result.py [taps]

card-in-field: first to last APDU as the terminal's kernel saw them (from the log line the shell
writes); tap-to-result: from the card entering the field to APPROVED on screen, host round trip
included. Both kernels on ISO 14443 Type A and the Visa-style card on Type B, amounts under the CVM limit
(no PIN).
"""

from __future__ import annotations

import logging
import re
import statistics
import sys
import tempfile
import time

from hwsim import Simulator

CARDS = ("visa-tap-approve", "mc-tap-approve", "visa-tap-type-b")  # Type A, Type A, Type B
READ = re.compile(r"read in (\d+) ms, (\d+) APDUs")


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def main(taps: int) -> None:
    capture = Capture()
    logging.getLogger("firmware.shell.terminal").addHandler(capture)
    logging.getLogger("firmware.shell.terminal").setLevel(logging.INFO)
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, Simulator(tmp) as sim:
        for i in range(taps):
            card_id = CARDS[i % len(CARDS)]
            sim.keys("1250{ENTER}")
            sim.wait_for("TAP OR SWIPE CARD")
            t0 = time.perf_counter()
            card = sim.tap(card_id)
            sim.wait_for("APPROVED")
            results.setdefault(f"{card_id} tap->APPROVED ms", []).append((time.perf_counter() - t0) * 1000)
            results.setdefault(f"{card_id} APDUs", []).append(card.apdus)
            sim.remove_card()
            sim.keys("{ENTER}")
            sim.wait_for("ENTER AMOUNT")
        in_field = [float(m.group(1)) for line in capture.lines if (m := READ.search(line))]
        assert all(r["status"] == "approved" for r in sim.journal())
    print(f"{taps} approved taps, in turn: {', '.join(CARDS)}")
    print(
        f"kernel time with the card in the field: median {statistics.median(in_field):.0f} ms, "
        f"p95 {sorted(in_field)[int(0.95 * (len(in_field) - 1))]:.0f} ms (log resolution 1 ms)"
    )
    for name, xs in sorted(results.items()):
        xs = sorted(xs)
        print(f"{name}: median {statistics.median(xs):.1f}, p95 {xs[int(0.95 * (len(xs) - 1))]:.1f}, max {xs[-1]:.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
