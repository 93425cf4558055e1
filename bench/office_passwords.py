"""Benchmark: what one owner's sign-in costs in the back office's password check, scrypt with r=8, p=1 at N=2^14
(the old cost) to 2^17 (OWASP's, the one new hashes use): the time of one check, the memory a process takes for
it, and the time of users.CHECKS_AT_ONCE checks side by side (what the sign-in gate lets run at once).

    .venv/bin/python bench/office_passwords.py [checks]

Each cost runs in a fresh process, so its peak resident memory is its own.
"""

from __future__ import annotations

import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor


def one_cost(log2_n: int, checks: int, at_once: int) -> str:
    import hashlib

    n, r, p = 2**log2_n, 8, 1
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def check() -> float:
        start = time.perf_counter()
        hashlib.scrypt(b"correct horse battery", salt=b"\x01" * 16, n=n, r=r, p=p, dklen=32, maxmem=256 << 20)
        return time.perf_counter() - start

    times = sorted(check() for _ in range(checks))
    alone = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    start = time.perf_counter()
    with ThreadPoolExecutor(at_once) as pool:
        list(pool.map(lambda _: check(), range(at_once)))
    side_by_side = time.perf_counter() - start
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return (
        f"N=2^{log2_n} ({128 * n * r >> 20} MiB): one check median {statistics.median(times) * 1000:.0f} ms,"
        f" slowest {times[-1] * 1000:.0f} ms, peak memory +{alone:.0f} MB; {at_once} at once"
        f" {side_by_side * 1000:.0f} ms, +{grown:.0f} MB"
    )


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(one_cost(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
        return
    from office.users import CHECKS_AT_ONCE

    checks = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    with open("/proc/loadavg", encoding="ascii") as f:
        print(f"load average {f.read().split()[0]}")
    for log2_n in (14, 15, 16, 17):
        args = [sys.executable, __file__, "--one", str(log2_n), str(checks), str(CHECKS_AT_ONCE)]
        print(subprocess.run(args, capture_output=True, text=True, check=True).stdout.strip())


if __name__ == "__main__":
    main()
