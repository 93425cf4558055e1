"""Benchmark: time from swipe to PIN prompt, from PIN ENTER to the result screen and from there to both receipts.

    .venv/bin/python bench/swipe_to_result.py [sales]

Typing is instant in the simulator (a real reader takes 0.1-0.3 s to type a swipe), so these are the
terminal's own latencies: track decoding, PIN block and DUKPT key, journal writes (fsync), ISO 8583
over loopback TCP and the issuer's work. The receipts go to the simulated serial printer (a pty), which
answers the paper-status ask before and after each of the two copies as a real one does.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from hwsim import Simulator


def main(sales: int) -> None:
    swipe_ms, pin_ms, print_ms = [], [], []
    with tempfile.TemporaryDirectory() as tmp, Simulator(tmp) as sim:
        for _ in range(sales):
            sim.keys("1250{ENTER}")
            sim.wait_for("SWIPE CARD")
            t0 = time.perf_counter()
            sim.swipe("visa-approve")
            sim.wait_for("ENTER PIN")
            t1 = time.perf_counter()
            sim.keys("1234{ENTER}")
            sim.wait_for("APPROVED")
            t2 = time.perf_counter()
            sim.wait_for_receipts(2 * (len(print_ms) + 1))
            t3 = time.perf_counter()
            swipe_ms.append((t1 - t0) * 1000)
            pin_ms.append((t2 - t1) * 1000)
            print_ms.append((t3 - t2) * 1000)
            sim.keys("{ENTER}")
            sim.wait_for("ENTER AMOUNT")
        assert all(r["status"] == "approved" for r in sim.journal())

    def line(name: str, xs: list[float]) -> str:
        xs = sorted(xs)
        return (
            f"{name}: median {statistics.median(xs):.1f} ms, p95 {xs[int(0.95 * (len(xs) - 1))]:.1f} ms, "
            f"max {xs[-1]:.1f} ms"
        )

    print(f"{sales} approved sales")
    print(line("swipe -> PIN prompt", swipe_ms))
    print(line("PIN ENTER -> APPROVED", pin_ms))
    print(line("APPROVED -> both receipts cut", print_ms))
    print(line("swipe -> APPROVED (no human time)", [a + b for a, b in zip(swipe_ms, pin_ms, strict=True)]))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
