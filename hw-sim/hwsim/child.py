"""A terminal as its own OS process on the simulator's devices: the composition root the kill harness boots.

    python -m hwsim.child --config sim.toml --overrides JSON --keypad-fd N --magstripe-fd N
                          [--scanner-fd N] --report-fd N [--control-fd N]

The terminal is built by `firmware.shell.cli.build_terminal` and run by `firmware.shell.cli.serve`, exactly as
`countertop run` does, with three things standing in for hardware at the drivers' own seams: the input
devices are `SimInputDevice`s over pipe read ends inherited from the parent (which types on the write
ends), the printer is the real ReceiptPrinter on the parent's virtual-printer pty, and the contactless
reader is nfcpy's `udp:` driver talking to the parent's RF field (both named in `--overrides`, as are
the parent's acquirer and wallet gateway on loopback).

The child reports to the parent on `--report-fd`, one JSON object per line (each below PIPE_BUF, so
written atomically): every screen change (`screen`, `qr`) with the count of journal statements so far,
and, just before it kills itself at an armed kill point, where that was (`kill`).

Kill points inside the journal: this module gives the journal's SQLite connection a Connection
subclass (through `sqlite3.connect`'s `factory`; firmware/ is untouched) that counts the statements it
executes. Armed at statement N (`HWSIM_KILL_AT=N:phase[:delay_us]` counts from boot; a control line
`arm K phase delay_us [commit]` counts K statements, or K COMMITs, from now; `disarm`), the process
SIGKILLs itself:
`before` the statement runs, `after` it returned, or `during` it — a thread spins for delay_us while
the statement runs in SQLite (which releases the GIL) and then kills; a COMMIT killed that way dies
inside SQLite's commit (WAL frame writes and fsync), and the report says whether the statement had
returned by then (`inside`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

KILL_ENV = "HWSIM_KILL_AT"
PHASES = ("before", "during", "after")


class Reporter:
    """JSON lines to the parent, one write each (atomic below PIPE_BUF); a closed pipe ends nothing."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._lock = threading.Lock()

    def send(self, **record: Any) -> None:
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                os.write(self._fd, data[:4000] if len(data) > 4000 else data)
            except OSError:
                pass


class KillPoints:
    """Counts the journal's SQL statements and SIGKILLs this process at the armed one."""

    def __init__(self, report: Reporter) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._guard = threading.Lock()
        self.statements = 0
        self.commits = 0
        self._target = 0  # 0: not armed
        self._unit = "statement"  # what _target counts: statements or commits
        self._phase = "before"
        self._delay = 0.0
        self._inside = False

    def arm(
        self, after: int, phase: str, delay_us: float = 0.0, absolute: bool = False, unit: str = "statement"
    ) -> None:
        """Kill at the `after`-th statement (or COMMIT, `unit="commit"`) from now (or from boot, `absolute`)."""
        if phase not in PHASES or after < 1 or unit not in ("statement", "commit"):
            raise ValueError(f"bad kill point {after}:{phase}:{unit}")
        with self._lock:
            base = 0 if absolute else (self.commits if unit == "commit" else self.statements)
            self._target, self._unit = base + after, unit
            self._phase, self._delay = phase, delay_us / 1e6

    def disarm(self) -> None:
        with self._lock:
            self._target = 0

    def run(self, call: Callable[..., Any], sql: str, *args: Any, script: bool = False) -> Any:
        """Execute one journal call, killing the process around it when it is the armed statement."""
        commit = "COMMIT" in sql.upper() if script else sql.lstrip().upper().startswith(("COMMIT", "END"))
        with self._lock:
            self.statements += 1
            if commit:
                self.commits += 1
            hit = self._target != 0 and self._target == (
                self.statements if self._unit == "statement" else self.commits if commit else -1
            )
            if hit:
                self._target = 0
            number, phase, delay = self.statements, self._phase, self._delay
        if not hit:
            return call(sql, *args)
        where = {"statement": number, "commit": commit, "sql": " ".join(sql.split())[:60]}
        if phase == "before":
            self._die(where, "before", inside=False)
        if phase == "after":
            result = call(sql, *args)
            self._die(where, "after", inside=False)
            return result
        self._inside = True
        threading.Thread(target=self._killer, args=(where, delay), daemon=True).start()
        try:
            return call(sql, *args)
        finally:
            with self._guard:
                self._inside = False

    def _killer(self, where: dict[str, Any], delay: float) -> None:
        deadline = time.perf_counter() + delay
        while time.perf_counter() < deadline:
            pass  # spin: sleep() cannot wait microseconds
        with self._guard:  # the statement cannot return to Python meanwhile
            self._die(where, "during", inside=self._inside)

    def _die(self, where: dict[str, Any], phase: str, inside: bool) -> None:
        self._report.send(kill={**where, "phase": phase, "inside": inside})
        os.kill(os.getpid(), signal.SIGKILL)

    def install(self) -> None:
        """Make every connection opened on a `journal.sqlite3` file one of ours (before the terminal opens it)."""
        points = self

        class Counted(sqlite3.Connection):
            def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
                return points.run(super().execute, sql, *args)

            def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:  # type: ignore[override]
                return points.run(super().executemany, sql, *args)

            def executescript(self, sql: str) -> sqlite3.Cursor:  # type: ignore[override]
                return points.run(super().executescript, sql, script=True)

        original = sqlite3.connect

        def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            if str(database).endswith("journal.sqlite3") and "factory" not in kwargs:
                kwargs["factory"] = Counted
            return original(database, *args, **kwargs)

        sqlite3.connect = connect  # type: ignore[assignment]


def _listen(fd: int, points: KillPoints, report: Reporter) -> None:
    """Control lines from the parent: `arm K phase delay_us [commit]`, `disarm`, `ping TOKEN` (answered
    with the statement and commit counts, once everything before it has been applied)."""
    with os.fdopen(fd, "r", encoding="ascii", closefd=True) as lines:
        for line in lines:
            words = line.split()
            if words[:1] == ["arm"] and len(words) in (4, 5):
                points.arm(int(words[1]), words[2], float(words[3]), unit=words[4] if len(words) == 5 else "statement")
            elif words[:1] == ["disarm"]:
                points.disarm()
            elif words[:1] == ["ping"] and len(words) == 2:
                report.send(pong=int(words[1]), statements=points.statements, commits=points.commits)


def main(argv: list[str] | None = None) -> int:
    """Boot the terminal on inherited devices and serve until killed (or SIGTERM)."""
    parser = argparse.ArgumentParser(prog="python -m hwsim.child")
    parser.add_argument("--config", required=True)
    parser.add_argument("--overrides", required=True, help="JSON: {section: {key: value}}")
    parser.add_argument("--keypad-fd", type=int, required=True)
    parser.add_argument("--magstripe-fd", type=int, required=True)
    parser.add_argument("--scanner-fd", type=int)
    parser.add_argument("--report-fd", type=int, required=True)
    parser.add_argument("--control-fd", type=int)
    args = parser.parse_args(argv)

    from drivers.display import Display
    from firmware.config import InputDeviceConfig, load
    from firmware.errors import ConfigError, TerminalError
    from firmware.shell import logs
    from firmware.shell.cli import build_terminal, serve

    from .inputs import SimInputDevice
    from .rig import apply_overrides

    report = Reporter(args.report_fd)
    points = KillPoints(report)
    points.install()
    armed = os.environ.get(KILL_ENV, "")
    if armed:
        n, phase, *delay = armed.split(":")
        points.arm(int(n), phase, float(delay[0]) if delay else 0.0, absolute=True)
    if args.control_fd is not None:
        threading.Thread(
            target=_listen, args=(args.control_fd, points, report), name="hwsim-control", daemon=True
        ).start()

    try:
        cfg = apply_overrides(load(args.config), json.loads(args.overrides))
    except (ConfigError, ValueError) as exc:
        print(f"hwsim.child: {exc}", file=sys.stderr)
        return 2
    logs.setup(logging.INFO, Path(cfg.terminal.data_dir) / "countertop.log", console_level=logging.ERROR)
    fds = {id(cfg.keypad): args.keypad_fd, id(cfg.magstripe): args.magstripe_fd}
    if cfg.scanner is not None and args.scanner_fd is not None:
        fds[id(cfg.scanner)] = args.scanner_fd

    def open_input(dev: InputDeviceConfig) -> SimInputDevice:
        fd = fds.get(id(dev))
        if fd is None:
            raise OSError(f"no device handed over for {dev.describe()}")
        return SimInputDevice.adopt(dev.name or dev.describe(), fd)

    display = Display(cfg.display.width)
    display.listen(
        lambda lines: report.send(
            screen=list(lines), qr=display.qr, statements=points.statements, commits=points.commits
        )
    )
    try:
        terminal = build_terminal(cfg, display, open_input)
        report.send(boot=os.getpid())
        return serve(terminal)
    except TerminalError as exc:
        print(f"hwsim.child: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
