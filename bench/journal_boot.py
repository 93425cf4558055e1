"""Benchmark: how long the boot check of the journal (SQLite's integrity_check, then opening) takes.

    .venv/bin/python bench/journal_boot.py [rows ...]        (default: 100000 1000000)

Builds journals of synthetic sales with the real schema (as bench/reports_1m.py does), closes them,
then times Journal(path) — which runs PRAGMA integrity_check before anything else — three times each
and prints the best, with the file size.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from firmware.records.journal import Journal
from reports_1m import fill


def main(sizes: list[int]) -> None:
    for rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "journal.sqlite3"
            journal = Journal(path)
            fill(journal, rows)
            journal.close()
            best = min(_timed_open(path) for _ in range(3))
            size = path.stat().st_size / 1e6
            print(f"{rows:>9} rows, {size:7.1f} MB: boot check and open {best * 1000:8.1f} ms")


def _timed_open(path: Path) -> float:
    started = time.perf_counter()
    Journal(path).close()
    return time.perf_counter() - started


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [100_000, 1_000_000])
