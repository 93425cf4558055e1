"""Resident memory of the simulator process over thousands of swipe sales with no restart: does it keep growing?

    .venv/bin/python bench/sales_rss.py [--sales 3000] [--every 250] [--operator-every 50]

One simulator, one terminal, approved swipe sales with a PIN one after the other (as `countertop bench` runs
its 1,000), and every `--operator-every` sales a manager signs in (an operator PIN check: scrypt, 16 MiB). Every
`--every` sales, at rest and after a garbage collection, a line gives resident memory (VmRSS), memory in use
(glibc's and pymalloc's, see bench/soak.py heap_in_use_kb), of which SQLite's and the simulator's own records
(its acquirer's message log and ledger, the printer's bytes and receipts: they grow by design), the free memory
glibc's malloc keeps and in how many arenas, threads and file descriptors. At the end: the growth per 1,000
sales over the second half (a cache fills early and then stops; a leak keeps going). A figure, not a verdict:
exit status 0 unless a sale was not approved.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hwsim import Simulator
from soak import heap_in_use_kb, malloc_kept, open_fds, per_1000, reachable, rss_kb, sqlite_in_use_kb


def records(sim: Simulator) -> list[Any]:
    """What the simulator keeps of every sale by design."""
    host, printer = sim.host, sim.printer
    kept = [getattr(host, name, {}) for name in ("_answered", "_accounts_of", "_settled_batches")]
    return [host.ledger, host.host_log, host.issuer.accounts, *kept, printer.raw, printer.decoder.receipts]


def sale(sim: Simulator) -> None:
    printed = len(sim.receipts)
    sim.keys("100{ENTER}")
    sim.wait_for("SWIPE CARD")
    sim.swipe("visa-approve")
    sim.wait_for("ENTER PIN")
    sim.keys("1234{ENTER}")
    sim.wait_for("APPROVED")
    sim.wait_for_receipts(printed + 2, timeout=30)
    sim.keys("{ENTER}")
    sim.wait_for("ENTER AMOUNT")


def manager_signs_in(sim: Simulator) -> None:
    sim.keys("{MENU}")
    sim.wait_for("MANAGER PIN")
    sim.keys("8888{ENTER}")
    sim.wait_for("1 VOID")
    sim.keys("{CANCEL}")
    sim.wait_for("CANCELLED")
    sim.keys("{ENTER}")
    sim.wait_for("ENTER AMOUNT")


def sample(sim: Simulator, done: int) -> dict[str, Any]:
    gc.collect()
    size, _ = reachable(records(sim))
    kept, arenas, big = malloc_kept()
    return {
        "sales": done,
        "rss": rss_kb() / 1024,
        "in_use": (heap_in_use_kb() or 0) / 1024,
        "sqlite": sqlite_in_use_kb() / 1024,
        "records": size / 1024 / 1024,
        "kept": (kept or 0) / 1024,
        "arenas": arenas,
        "big": big,
        "threads": threading.active_count(),
        "fds": sum(open_fds().values()),
    }


def line(s: dict[str, Any]) -> str:
    beyond = s["in_use"] - s["sqlite"] - s["records"]
    return (
        f"{s['sales']:>6} sales  rss {s['rss']:6.1f} MB  in use {s['in_use']:5.1f} MB (sqlite {s['sqlite']:3.1f}, "
        f"records {s['records']:4.1f}, beyond them {beyond:5.1f})  malloc keeps {s['kept']:5.1f} MB free in "
        f"{s['arenas']} arenas ({s['big']} keeping 8 MiB+)  threads {s['threads']}  fds {s['fds']}"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sales", type=int, default=3000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--operator-every", type=int, default=50, help="a manager signs in every N sales (0: never)")
    args = ap.parse_args(argv)
    samples = []
    with tempfile.TemporaryDirectory(prefix="countertop-sales-rss-") as tmp, Simulator(tmp) as sim:
        sim.wait_for("ENTER AMOUNT")
        samples.append(sample(sim, 0))
        print(line(samples[-1]) + "   <- idle", flush=True)
        for n in range(1, args.sales + 1):
            sale(sim)
            if args.operator_every and n % args.operator_every == 0:
                manager_signs_in(sim)
            if n % args.every == 0 or n == args.sales:
                samples.append(sample(sim, n))
                print(line(samples[-1]), flush=True)
        approved = all(r["status"] == "approved" for r in sim.journal() if r["kind"] == "sale")
    late = [s for s in samples[1:] if s["sales"] >= args.sales / 2]
    if len(late) >= 3:
        print("\nsecond half, per 1,000 sales:")
        for key in ("rss", "in_use", "records", "sqlite", "kept"):
            print(f"  {key:8} {per_1000([(s['sales'], s[key] * 1024) for s in late]):+8.0f} kB")
        beyond = [(s["sales"], (s["in_use"] - s["sqlite"] - s["records"]) * 1024) for s in late]
        print(f"  {'beyond':8} {per_1000(beyond):+8.0f} kB (in use beyond SQLite and the records)")
    if not approved:
        print("a sale was not approved: the figures are not of approved sales")
    return 0 if approved else 1


if __name__ == "__main__":
    sys.exit(main())
