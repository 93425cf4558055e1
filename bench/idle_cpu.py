"""Benchmark: CPU used by the idle terminal (firmware thread and whole simulator process), and memory.

    .venv/bin/python bench/idle_cpu.py [seconds]

The firmware threads' CPU comes from /proc/self/task/<tid>/stat; the process figure also counts the
simulated acquirer, printer, RF field and wallet gateway threads, so it is an upper bound.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import threading
import time

from hwsim import Simulator

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(native_id: int) -> float:
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def main(seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp, Simulator(tmp):
        time.sleep(1.0)  # let boot work settle
        # The firmware's threads: the event loop, the NFC reader, asyncio's workers (not the simulator's).
        firmware = [
            t.native_id
            for t in threading.enumerate()
            if t.native_id and not t.name.startswith("hwsim-") and t is not threading.main_thread()
        ]
        names = sorted(t.name for t in threading.enumerate() if t.native_id in firmware)
        t0, p0, f0 = time.monotonic(), time.process_time(), sum(thread_cpu(n) for n in firmware)
        time.sleep(seconds)
        t1, p1, f1 = time.monotonic(), time.process_time(), sum(thread_cpu(n) for n in firmware)
        wall = t1 - t0
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"idle for {wall:.1f} s")
        print(
            f"firmware threads ({', '.join(names)}) CPU: {f1 - f0:.3f} s = {100 * (f1 - f0) / wall:.3f} % "
            f"of one core (resolution {1 / TICK:.2f} s)"
        )
        print(f"whole simulator process CPU: {p1 - p0:.3f} s = {100 * (p1 - p0) / wall:.3f} % of one core")
        print(f"peak RSS of the simulator process: {rss:.1f} MB")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 60.0)
