"""Benchmark: the terminal's speed and footprint against the simulator, each figure beside a floor measured in the
same run (what the machine itself costs for the same kind of work), as median and 95th percentile.

    .venv/bin/python bench/suite.py [--quick] [--json FILE]        (or: countertop bench [--quick] [--json FILE])

Floors: a bare interpreter start; bare imports of what the terminal cannot boot without; one nfcpy UDP round
trip (an APDU through nfcpy's `udp:` driver to the simulated RF field); one pyiso8583 encode + decode plus one
SQLite commit (WAL, synchronous=FULL). Figures: boot to the idle screen of `countertop run` (a card-only config
on this machine: no input devices, so the terminal boots and shows idle while it looks for them) and of the
simulator (a fresh process: imports, simulated hosts and devices, terminal, idle screen), both from the project's
bytecode compiled first as an install has it (compile_code); idle CPU share (the
firmware's threads, and the whole simulator process) and resident memory at idle and after N sales; keypress to
screen; swipe to result and tap to result with the acquirer's own time apart (from its request's arrival to its
answer's departure); card-in-field time and APDU count; report timings on a journal of 1,000,000 rows.
`--quick` shrinks every window and count (for tests: the figures' shape, not their size). Targets: issue 15.
"""

from __future__ import annotations

import argparse
import compileall
import json
import logging
import math
import os
import platform
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # the other bench scripts (reports_1m's journal filler, idle_cpu's thread clock)

from idle_cpu import TICK, thread_cpu  # noqa: E402
from reports_1m import fill  # noqa: E402

TARGETS = {  # issue 15, on the development machine (ms, %, MB)
    "boot_run_ms": 300,
    "boot_sim_ms": 400,
    "idle_cpu_firmware_pct": 0.2,
    "rss_idle_mb": 45,
    "keypress_to_screen_ms": 5,
    "swipe_terminal_ms": 10,  # the terminal's side of a sale: the host's own time taken out
    "tap_to_result_ms": 30,  # the simulated tap, host included
    "report_year_ms": 30,
    "report_ten_years_ms": 300,
}
BARE_IMPORTS = "import asyncio, sqlite3, logging, tomllib, iso8583, evdev, cryptography.hazmat.primitives.ciphers"
READ = re.compile(r"read in (\d+) ms, (\d+) APDUs")
SIM_BOOT = """
import sys, tempfile, time
from hwsim import Simulator
with tempfile.TemporaryDirectory() as tmp:
    sim = Simulator(tmp)
    sim.start()
    sim.wait_for("ENTER AMOUNT", timeout=30)
    print("READY", flush=True)
    sim.close()
"""


def summary(values: list[float], unit: str, target: float | None = None, **extra: Any) -> dict[str, Any]:
    """Median and 95th percentile (nearest rank) of `values`."""
    xs = sorted(values)
    out: dict[str, Any] = {
        "median": round(statistics.median(xs), 3),
        "p95": round(xs[max(0, math.ceil(0.95 * len(xs)) - 1)], 3),
        "n": len(xs),
        "unit": unit,
    }
    if target is not None:
        out["target"] = target
    out.update(extra)
    return out


def _ms(fn: Callable[[], Any], times: int) -> list[float]:
    out = []
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _until_line(
    cmd: list[str], marker: str, cwd: Path, timeout: float = 60, then: Callable[[int], None] | None = None
) -> float:
    """Milliseconds from starting `cmd` until it writes a line containing `marker`; then `then(pid)` runs, and the
    process is stopped."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        deadline = t0 + timeout
        for line in proc.stdout:
            if marker in line:
                elapsed = (time.perf_counter() - t0) * 1000
                if then is not None:
                    then(proc.pid)
                return elapsed
            if time.perf_counter() > deadline:
                break
        raise RuntimeError(f"{' '.join(cmd[:4])}...: no {marker!r} within {timeout} s")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- floors ------------------------------------------------------------------------------------------------


def floor_interpreter(runs: int) -> dict[str, Any]:
    return summary(_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], check=True), runs), "ms")


def floor_imports(runs: int) -> dict[str, Any]:
    cmd = [sys.executable, "-c", BARE_IMPORTS]
    return summary(_ms(lambda: subprocess.run(cmd, check=True, cwd=ROOT), runs), "ms", imports=BARE_IMPORTS[7:])


def floor_nfc_round_trip(times: int) -> dict[str, Any]:
    """One APDU through nfcpy's UDP driver to the simulated field and back, with a card activated."""
    import nfc
    from nfc.clf import RemoteTarget

    from hwsim.emvcard import CardApplet, contactless_catalog
    from hwsim.nfcfield import RfField

    field = RfField()
    try:
        field.present(CardApplet(contactless_catalog()["visa-tap-approve"]), "A")
        clf = nfc.ContactlessFrontend(f"udp:127.0.0.1:{field.port}")
        try:
            target = clf.sense(RemoteTarget("106A"), iterations=1)
            tag = nfc.tag.activate(clf, target)
            ppse = bytes.fromhex("00A404000E325041592E5359532E444446303100")
            return summary(_ms(lambda: tag.transceive(ppse), times), "ms")
        finally:
            clf.close()
    finally:
        field.close()


def floor_codec_commit(times: int) -> dict[str, Any]:
    """One 0200 encoded and decoded by pyiso8583 plus one committed SQLite insert (WAL, synchronous=FULL)."""
    import iso8583
    from iso8583.specs import default_ascii

    doc = {"t": "0200", "2": "4242424242424242", "3": "000000", "4": "000000001250", "11": "000001", "41": "SIM00001"}
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")

        def once() -> None:
            raw, _ = iso8583.encode(dict(doc), default_ascii)
            iso8583.decode(raw, default_ascii)
            db.execute("BEGIN")
            db.execute("INSERT INTO t (body) VALUES (?)", (bytes(raw),))
            db.execute("COMMIT")

        result = summary(_ms(once, times), "ms")
        db.close()
        return result


# --- boot --------------------------------------------------------------------------------------------------

CODE = ("firmware", "drivers", "hw-sim/hwsim", "office")  # the project's own code (the libraries pip compiled)


def compile_code() -> bool:
    """Bytecode for the project's own code, as `./countertop` makes it at install and after a change (an installed
    terminal boots from it: its code tree is read-only to the service). Without it every boot below would first
    compile about 1 MB of source (PYTHONDONTWRITEBYTECODE, or a tree the user cannot write). True when all
    compiled."""
    return all(compileall.compile_dir(ROOT / folder, quiet=2) for folder in CODE)


def run_config(folder: Path) -> Path:
    """config/sim.toml as a card-only terminal for `countertop run` (no [wallet], no [wechat]), data in `folder`."""
    kept, skip = [], False
    for line in (ROOT / "config" / "sim.toml").read_text(encoding="utf-8").splitlines():
        section = re.match(r"\[([A-Za-z_.]+)\]", line)
        if section:
            skip = section.group(1).split(".")[0] in ("wallet", "wechat")
        if not skip:
            kept.append(line)
    text = re.sub(r'(?m)^data_dir = ".*"', f'data_dir = "{folder / "data"}"', "\n".join(kept) + "\n")
    path = folder / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def boot_run(runs: int) -> dict[str, dict[str, Any]]:
    """Boot to idle of `countertop run`; and, a second after one boot, that process's resident memory: the
    firmware's own, with no simulator beside it."""
    rss: list[float] = []

    def settled(pid: int) -> None:
        time.sleep(1.0)
        rss.append(rss_mb(pid))

    with tempfile.TemporaryDirectory() as tmp:
        config = run_config(Path(tmp))
        cmd = [sys.executable, "-m", "firmware.shell.cli", "run", "--config", str(config)]
        boots = [_until_line(cmd, "ENTER AMOUNT", ROOT, then=settled if n == 0 else None) for n in range(runs)]
    return {
        "boot_run_ms": summary(boots, "ms", TARGETS["boot_run_ms"]),
        "rss_run_idle_mb": summary(rss, "MB", TARGETS["rss_idle_mb"]),
    }


def boot_sim(runs: int) -> dict[str, Any]:
    cmd = [sys.executable, "-c", SIM_BOOT]
    return summary([_until_line(cmd, "READY", ROOT) for _ in range(runs)], "ms", TARGETS["boot_sim_ms"])


# --- the running terminal ----------------------------------------------------------------------------------


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory (VmRSS) of a process, MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class HostClock:
    """Times the acquirer's own work: from a request's arrival to its answer's departure (its message log)."""

    def __init__(self, host: Any) -> None:
        self.spans: list[float] = []
        self._arrived = 0.0
        logged = host._log

        def log(direction: str, raw: bytes) -> None:
            now = time.perf_counter()
            if direction == "request":
                self._arrived = now
            elif self._arrived:
                self.spans.append((now - self._arrived) * 1000)
                self._arrived = 0.0
            logged(direction, raw)

        host._log = log

    def since(self, mark: int) -> float:
        return sum(self.spans[mark:])


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def terminal_figures(idle_seconds: float, sales: int, taps: int, keys: int) -> dict[str, Any]:
    from hwsim import Simulator

    out: dict[str, Any] = {}
    capture = Capture()
    shell_log = logging.getLogger("firmware.shell.terminal")
    shell_log.addHandler(capture)
    shell_log.setLevel(logging.INFO)
    with tempfile.TemporaryDirectory() as tmp, Simulator(tmp) as sim:
        sim.wait_for("ENTER AMOUNT")
        time.sleep(min(1.0, idle_seconds))  # boot work settles
        firmware = [
            t.native_id
            for t in threading.enumerate()
            if t.native_id and not t.name.startswith("hwsim-") and t is not threading.main_thread()
        ]
        t0, p0, f0 = time.monotonic(), time.process_time(), sum(thread_cpu(n) for n in firmware)
        time.sleep(idle_seconds)
        t1, p1, f1 = time.monotonic(), time.process_time(), sum(thread_cpu(n) for n in firmware)
        wall = t1 - t0
        resolution = 100 / TICK / wall
        out["idle_cpu_firmware_pct"] = summary(
            [100 * (f1 - f0) / wall],
            "%",
            TARGETS["idle_cpu_firmware_pct"],
            seconds=round(wall, 1),
            resolution_pct=round(resolution, 3),
        )
        out["idle_cpu_process_pct"] = summary([100 * (p1 - p0) / wall], "%", seconds=round(wall, 1))
        out["rss_sim_idle_mb"] = summary([rss_mb()], "MB")

        press = []
        for n in range(keys):  # a digit appears on the amount screen, CLEAR takes it away again
            before = sim.screen
            t = time.perf_counter()
            sim.keys(str(n % 9 + 1))
            sim.wait_while(before)
            press.append((time.perf_counter() - t) * 1000)
            before = sim.screen
            sim.keys("{CLEAR}")
            sim.wait_while(before)
        out["keypress_to_screen_ms"] = summary(press, "ms", TARGETS["keypress_to_screen_ms"])

        host = HostClock(sim.host)
        swipe_total, swipe_host = [], []
        printed = len(sim.receipts)
        warm = max(1, sales // 20)  # after these sales every lazy import and cache of a sale has happened
        for n in range(sales):
            if n == warm:
                rss_warm = rss_mb()
            sim.keys("1250{ENTER}")
            sim.wait_for("SWIPE CARD")
            t0 = time.perf_counter()
            sim.swipe("visa-approve")
            sim.wait_for("ENTER PIN")
            t1 = time.perf_counter()
            mark = len(host.spans)
            sim.keys("1234{ENTER}")
            sim.wait_for("APPROVED")
            t2 = time.perf_counter()
            swipe_total.append((t1 - t0 + t2 - t1) * 1000)
            swipe_host.append(host.since(mark))
            printed += 2
            sim.wait_for_receipts(printed, timeout=30)
            sim.keys("{ENTER}")
            sim.wait_for("ENTER AMOUNT")
        out["swipe_to_result_ms"] = summary(swipe_total, "ms")
        out["swipe_host_ms"] = summary(swipe_host, "ms")
        out["swipe_terminal_ms"] = summary(
            [a - b for a, b in zip(swipe_total, swipe_host, strict=True)], "ms", TARGETS["swipe_terminal_ms"]
        )
        out["rss_sim_after_sales_mb"] = summary([rss_mb()], "MB", sales=sales)
        out["rss_sim_growth_after_warmup_mb"] = summary([rss_mb() - rss_warm], "MB", sales=sales - warm)

        tap_total, tap_host, apdus = [], [], []
        cards = ("visa-tap-approve", "mc-tap-approve", "visa-tap-type-b")
        for i in range(taps):
            sim.keys("1250{ENTER}")
            sim.wait_for("TAP OR SWIPE CARD")
            mark = len(host.spans)
            t0 = time.perf_counter()
            card = sim.tap(cards[i % len(cards)])
            sim.wait_for("APPROVED")
            tap_total.append((time.perf_counter() - t0) * 1000)
            tap_host.append(host.since(mark))
            apdus.append(float(card.apdus))
            sim.remove_card()
            sim.keys("{ENTER}")
            sim.wait_for("ENTER AMOUNT")
        in_field = [float(m.group(1)) for line in capture.lines if (m := READ.search(line))]
        out["tap_to_result_ms"] = summary(tap_total, "ms", TARGETS["tap_to_result_ms"], cards=list(cards))
        out["tap_host_ms"] = summary(tap_host, "ms")
        out["tap_terminal_ms"] = summary([a - b for a, b in zip(tap_total, tap_host, strict=True)], "ms")
        out["card_in_field_ms"] = summary(in_field or [0.0], "ms", resolution_ms=1)
        out["tap_apdus"] = summary(apdus, "APDUs")
        if not all(r["status"] == "approved" for r in sim.journal()):
            raise RuntimeError("a benchmark sale was not approved: the figures would not be of approved sales")
    shell_log.removeHandler(capture)
    out["peak_rss_mb"] = summary([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024], "MB")
    return out


# --- reports -----------------------------------------------------------------------------------------------


def report_figures(rows: int, runs: int) -> dict[str, Any]:
    from firmware.records.journal import Journal

    with tempfile.TemporaryDirectory() as tmp:
        journal = Journal(Path(tmp) / "journal.sqlite3")
        t0 = time.perf_counter()
        first, last = fill(journal, rows)
        load_s = time.perf_counter() - t0
        year_last = f"{int(last[:4]) - 1}-12-31"
        year_first = f"{int(last[:4]) - 1}-01-01"
        spans = {
            "report_day_ms": (last, last),
            "report_month_ms": (last[:8] + "01", last),
            "report_year_ms": (year_first, year_last),
            "report_ten_years_ms": (first, last),
        }
        out = {
            name: summary(
                _ms(lambda span=span: journal.figures(*span), runs), "ms", TARGETS.get(name), rows=rows, span=list(span)
            )
            for name, span in spans.items()
        }
        out["report_journal_load_s"] = summary([load_s], "s", rows=rows)
        journal.close()
    return out


# --- the whole run -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line), "")
    except OSError:
        pass
    return {
        "cpu": model or platform.processor(),
        "cpus": os.cpu_count(),
        "load_1min": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
    }


def run(quick: bool) -> dict[str, Any]:
    runs = 2 if quick else 10
    bytecode = compile_code()
    floors = {
        "interpreter_start_ms": floor_interpreter(runs),
        "bare_imports_ms": floor_imports(runs),
        "nfc_udp_round_trip_ms": floor_nfc_round_trip(20 if quick else 200),
        "codec_and_commit_ms": floor_codec_commit(20 if quick else 200),
    }
    figures: dict[str, Any] = boot_run(runs)
    figures["boot_sim_ms"] = boot_sim(runs)
    sizes = {"idle_seconds": 2.0 if quick else 30.0, "sales": 5 if quick else 1000, "taps": 3 if quick else 60}
    sizes["keys"] = 5 if quick else 100
    part = [sys.executable, str(Path(__file__).resolve()), "--part", "terminal", "--sizes", json.dumps(sizes)]
    done = subprocess.run(part, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the terminal's figures failed:\n{done.stderr[-2000:]}")
    figures.update(json.loads(done.stdout))
    figures.update(report_figures(rows=20_000 if quick else 1_000_000, runs=3 if quick else 10))
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "machine": machine(),
        "bytecode": bytecode,
        "floors": floors,
        "figures": figures,
    }


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [
        f"countertop bench {'(quick) ' if result['quick'] else ''}{result['date']}",
        f"{m['cpu']}, {m['cpus']} CPUs, load {m['load_1min']}, Python {m['python']}, SQLite {m['sqlite']}",
        f"the project's bytecode: {'compiled first' if result.get('bytecode') else 'NOT all compiled'}",
        "",
        f"{'floor':34} {'median':>10} {'p95':>10}",
    ]
    for name, f in result["floors"].items():
        lines.append(f"{name:34} {f['median']:>10.3f} {f['p95']:>10.3f} {f['unit']}")
    lines += ["", f"{'figure':34} {'median':>10} {'p95':>10} {'target':>8}"]
    for name, f in result["figures"].items():
        target = f.get("target")
        mark = "" if target is None else ("  ok" if f["median"] < target else "  MISSED")
        shown = "" if target is None else f"{target:>8}"
        lines.append(f"{name:34} {f['median']:>10.3f} {f['p95']:>10.3f} {shown:>8} {f['unit']}{mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="countertop bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows and small counts (for tests)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-': stdout only)")
    parser.add_argument("--part", choices=("terminal",), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shown = logging.StreamHandler()
    shown.setLevel(logging.WARNING)  # the terminal's INFO lines are read by Capture, not printed
    logging.getLogger().addHandler(shown)
    if args.part == "terminal":  # the running terminal, alone in a fresh process (its memory is its own)
        print(json.dumps(terminal_figures(**json.loads(args.sizes))))
        return 0
    result = run(args.quick)
    if args.json == "-":
        print(json.dumps(result, indent=2))
        return 0
    print(render(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
