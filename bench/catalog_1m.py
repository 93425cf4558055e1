"""Benchmark: importing an item catalogue of 1,000,000 lines (parse_catalog, what `countertop items import` runs).

    .venv/bin/python bench/catalog_1m.py [lines]

Writes the CSV to a temporary file (UTF-8 with the BOM; most names Chinese, one in seven with a quoted
comma, one in seven starting with "="; tax rates 0/6/9/13%), then in a fresh child process each: reads it
as the command does, parses it and reports the time and the process's peak resident memory; and parses it
again under tracemalloc (slower, not timed) for the peak of Python allocations.
A second file with every line bad measures the refusal path (errors are capped at MAX_ERRORS). For the good
file the child then writes the items to a journal in a temporary folder (Journal.import_items) and reads
what the terminal does at F3 and at each PLU keyed (Journal.has_items() and Journal.item(plu) over
10,000 random PLUs, mean per lookup), each timed; and Journal.catalog() (`countertop items list`).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import datetime
from pathlib import Path

from firmware.core.items import parse_catalog
from firmware.core.money import Currency
from firmware.records.journal import Journal

NAMES = ["矿泉水 WATER 550ML", "苹果 APPLE (1KG)", "BREAD, WHOLEMEAL", "牛奶 MILK 1L", "RICE 5KG", "茶叶蛋", "=SUM(A1)"]


def catalogue(lines: int, bad: bool = False) -> bytes:
    rng = random.Random(11)
    out = ["plu,name,price,tax_rate"]
    for i in range(lines):
        name = NAMES[i % len(NAMES)]
        name = f'"{name}"' if "," in name else name
        price = "" if bad else f"{rng.randint(1, 99999)}.{rng.randint(0, 99):02d}"
        out.append(f"{i + 1},{name} {i},{price},{rng.choice((0, 6, 9, 13))}")
    return "\ufeff".encode() + ("\n".join(out) + "\n").encode("utf-8")


def _status_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MiB (ru_maxrss would include the forking parent's high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(path: str, traced: bool) -> dict[str, float]:
    raw = Path(path).read_bytes()  # as `countertop items import` reads it
    rss_before = _status_mb("VmRSS")
    if traced:
        tracemalloc.start()
    started = time.perf_counter()
    items, errors = parse_catalog(raw, Currency.of("CNY"))
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    figures = {
        "bytes": len(raw),
        "items": len(items),
        "errors": len(errors),
        "seconds": seconds,
        "python_peak_mb": peak / 2**20,
        "rss_before_mb": rss_before,
        "rss_peak_mb": _status_mb("VmHWM"),
    }
    if items and not traced:  # what follows the parse: the journal write, then F3
        with tempfile.TemporaryDirectory(prefix="countertop-bench-") as tmp:
            journal = Journal(Path(tmp) / "journal.sqlite3")
            started = time.perf_counter()
            journal.import_items(items, datetime.now().astimezone())
            figures["write_seconds"] = time.perf_counter() - started
            started = time.perf_counter()
            journal.has_items()
            figures["has_items_seconds"] = time.perf_counter() - started
            rng = random.Random(3)
            plus = [str(rng.randint(1, len(items) * 2)) for _ in range(10_000)]  # half of them missing
            started = time.perf_counter()
            for plu in plus:
                journal.item(plu)
            figures["lookup_seconds"] = (time.perf_counter() - started) / len(plus)
            started = time.perf_counter()
            journal.catalog()
            figures["catalog_seconds"] = time.perf_counter() - started
            journal.close()
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        print(json.dumps(measure(sys.argv[2], sys.argv[3] == "traced")))
        return
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory(prefix="countertop-bench-") as tmp:
        for bad in (False, True):
            path = Path(tmp) / "items.csv"
            path.write_bytes(catalogue(lines, bad))
            timed, traced = (
                json.loads(
                    subprocess.run(
                        [sys.executable, __file__, "--child", str(path), mode],
                        check=True,
                        capture_output=True,
                        text=True,
                    ).stdout
                )
                for mode in ("plain", "traced")
            )
            print(
                f"{'all lines bad' if bad else 'good lines':>13}: {lines:,} lines, {timed['bytes'] / 2**20:.1f} MiB"
                f" -> {timed['items']:,} items, {timed['errors']} error lines in {timed['seconds']:.2f} s; "
                f"peak Python allocations {traced['python_peak_mb']:.0f} MiB (tracemalloc); resident "
                f"{timed['rss_before_mb']:.0f} MiB with the file read -> peak {timed['rss_peak_mb']:.0f} MiB"
            )
            if "write_seconds" in timed:
                print(
                    f"{'':>13}  then Journal.import_items {timed['write_seconds']:.2f} s; at F3 has_items "
                    f"{timed['has_items_seconds'] * 1e6:.0f} µs, per PLU keyed item() "
                    f"{timed['lookup_seconds'] * 1e6:.1f} µs; the whole catalogue (items list) "
                    f"{timed['catalog_seconds']:.2f} s"
                )


if __name__ == "__main__":
    main()
