"""Benchmark: the terminal's sale time with forwarding to the back office off, on, and on with the back office
out of reach — forwarding must not change it.

    .venv/bin/python bench/office_sale_time.py [sales]

The same swipe -> PIN -> APPROVED as bench/swipe_to_result.py, on three simulated terminals in turn: one without
[office]; one forwarding over TLS to a back office on a private PostgreSQL (durable: fsync on) while it sells;
one whose back office never answers (a closed port: the forwarder retries, backing off). The modes alternate
sale by sale, so a slow moment of the machine falls on all three alike. Also says how far behind the
forwarding terminal was at the end (it should be nothing a second later).
"""

from __future__ import annotations

import dataclasses
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from firmware.config import OfficeConfig, load
from hwsim import Simulator
from hwsim.simulator import DEFAULT_CONFIG
from office.config import OfficeSettings, ServerConfig
from office.localdb import LocalPostgres
from office.schema import migrate
from office.tlscert import self_signed
from office.users import add_terminal
from office.web import BackgroundOffice


def sale(sim: Simulator, n: int) -> tuple[float, float]:
    sim.keys("1250{ENTER}")
    sim.wait_for("SWIPE CARD")
    t0 = time.perf_counter()
    sim.swipe("visa-approve")
    sim.wait_for("ENTER PIN")
    t1 = time.perf_counter()
    sim.keys("1234{ENTER}")
    sim.wait_for("APPROVED")
    t2 = time.perf_counter()
    sim.wait_for_receipts(2 * n)
    sim.keys("{ENTER}")
    sim.wait_for("ENTER AMOUNT")
    return (t1 - t0) * 1000, (t2 - t1) * 1000


def waiting(data: Path) -> int:
    db = sqlite3.connect(f"file:{data / 'journal.sqlite3'}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT COUNT(*) FROM forward_queue").fetchone()[0])
    finally:
        db.close()


def line(name: str, xs: list[float]) -> str:
    xs = sorted(xs)
    return f"{name:<34} median {statistics.median(xs):6.1f} ms, p95 {xs[int(0.95 * (len(xs) - 1))]:6.1f} ms"


def main(sales: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="office-sale-"))
    pg = LocalPostgres(durable=True).start()
    try:
        with psycopg.connect(pg.dsn(), autocommit=True) as conn:
            migrate(conn)
            tokens = {t: add_terminal(conn, t) for t in ("BENCH001", "BENCH002")}
        cert, key, _ = self_signed(["127.0.0.1"])
        (tmp / "cert.pem").write_bytes(cert)
        (tmp / "key.pem").write_bytes(key)
        server = ServerConfig("127.0.0.1", 0, str(tmp / "cert.pem"), str(tmp / "key.pem"))
        settings = OfficeSettings("bench", pg.dsn(), server)
        office = BackgroundOffice(settings).start()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]  # nobody listens here once this socket is closed
        base = load(DEFAULT_CONFIG)
        configs = {"forwarding off": base}
        modes = (("forwarding on", "BENCH001", office.port), ("back office down", "BENCH002", closed))
        for mode, terminal, port in modes:
            (tmp / f"{terminal}.token").write_text(tokens[terminal])
            configs[mode] = dataclasses.replace(
                base,
                terminal=dataclasses.replace(base.terminal, terminal_id=terminal),
                office=OfficeConfig(
                    f"https://127.0.0.1:{port}", str(tmp / f"{terminal}.token"), str(tmp / "cert.pem"), interval=0.5
                ),
            )
        sims = {mode: Simulator(tmp / mode.replace(" ", "-"), cfg) for mode, cfg in configs.items()}
        results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in sims}
        try:
            for s in sims.values():
                s.start()
            for n in range(1, sales + 1):
                for mode, s in sims.items():
                    results[mode].append(sale(s, n))
            on = sims["forwarding on"]
            t0 = time.perf_counter()
            while waiting(on.data_dir):
                time.sleep(0.05)
            behind = time.perf_counter() - t0
            down = waiting(sims["back office down"].data_dir)
        finally:
            for s in sims.values():
                s.close()
            office.stop()
    finally:
        pg.stop()
    print(f"{sales} approved sales per mode")
    for mode, times in results.items():
        print(line(f"{mode}: swipe -> PIN prompt", [a for a, _ in times]))
        print(line(f"{mode}: PIN ENTER -> APPROVED", [b for _, b in times]))
    print(f"forwarding on: the outbox was empty {behind * 1000:.0f} ms after the last sale")
    print(f"back office down: {down} snapshots kept for later")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
