"""Crash consistency with real processes: the terminal runs as its own OS process (`hwsim.child`) against
simulated devices and hosts that live here, in the harness's process, and is killed with SIGKILL at random
points of random transactions, booted again on the same data, and checked (`hwsim.invariants`).

    .venv/bin/python -m hwsim.killharness --kills 2000 --seed 7 --minutes 30
    ./countertop sim --kill-harness --kills 2000 --seed 7 --minutes 30      (the same)

What survives a kill, as in a shop where the terminal loses power: the acquirer (and its issuer's
accounts), the wallet gateway and the journal's files. What does not: the terminal process, its RF
field (a fresh `RfField` per boot: the cards in it lose power and reset) and its printer link (a fresh
virtual printer per boot; receipts already cut are kept for the receipt check). Input devices are new
pipes per boot, so nothing typed for a dead terminal reaches the next one.

Transactions, chosen at random (seeded per transaction): swipe (sometimes a card the issuer declines),
tap (Visa- and Mastercard-style cards and a phone; online PIN above the CVM limit), wallet with the code
on screen (the customer pays, or the cashier cancels), wallet with the customer's code scanned (pays at
once, or confirms in the app after a few queries), a UnionPay payment code the acquirer takes in place of a
card (pays, or wants its payment PIN first), refund (to the card or wallet, sometimes cash), void, settlement.
Every sale has an amount no other customer has, so a double charge shows as two standing charges of one amount.

Kill points, one plan per transaction (seeded):
- `timer`: after starting step i of the transaction (typing the amount, swiping, tapping, the PIN, ENTER
  on a result, the manager PIN, ...), wait a random fraction (0-120 %) of what that step has taken when
  it ran to its end, then `os.kill(pid, SIGKILL)`;
- `statement` / `commit`: the child is armed (control pipe) to SIGKILL itself at the k-th journal SQL
  statement (or the k-th COMMIT) from the transaction's start, before it, after it, or during it (a
  thread fires 0-300 µs into the statement, while SQLite writes the WAL and fsyncs) — k drawn up to the
  most this kind of transaction has used when it ran to its end;
- `boot`: after some kills the next boot is armed (`HWSIM_KILL_AT`) to die at a statement of its own
  recovery (pending rows made unknown, reversals queued, wallet orders reconciled), then booted again;
- `none`: the transaction runs to its end (the state later voids, refunds and settlements need).
A kill counts as inside a journal commit when the child was killed during a COMMIT before SQLite had
returned from it.

After every kill the journal files as the kill left them are copied and must pass `PRAGMA
integrity_check`; the terminal is booted again on them, must reach its idle screen, and gets up to 30 s
to send its queued reversals, resend lost voids and refunds and reconcile wallet orders; then every
invariant of `hwsim.invariants` is checked (also after transactions that ran to their end).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from firmware.config import Config, load

from . import invariants as inv
from .acquirer import CODE_PIN
from .cards import card as magstripe_card
from .emvcard import CardApplet, contactless_catalog
from .inputs import SimInputDevice, type_keys, type_text
from .nfcfield import RfField
from .printer import VirtualPrinter
from .rig import Hosts
from .simulator import DEFAULT_CONFIG

log = logging.getLogger(__name__)

KINDS = ("swipe", "tap", "wallet_qr", "wallet_scan", "unionpay_code", "refund", "void", "settlement")
WEIGHTS = (5, 3, 2, 2, 2, 2, 2, 1)
ALIPAY_CODE = "286123456789012345"
MANAGER_PIN = "8888"
RESULTS = (
    "APPROVED",
    "DECLINED",
    "NO HOST ANSWER",
    "HOST NOT AVAILABLE",
    "TERMINAL ERROR",
    "CANCELLED",
    "PIN PAD ERROR",
    "SIGN-ON FAILED",
    "TIMEOUT",
)
WALLET_RESULTS = ("PAID", "NOT PAID", "PAYMENT FAILED", "PAYMENT UNKNOWN", "CANCELLED", "TIMEOUT")
FOLLOW_UP_RESULTS = (
    "VOID APPROVED",
    "VOID DECLINED",
    "REFUND APPROVED",
    "REFUND DECLINED",
    "CASH REFUND",
    "NO HOST ANSWER",
    "HOST NOT AVAILABLE",
    "NOT ALLOWED",
    "TIMEOUT",
    "CANCELLED",
)
SETTLE_RESULTS = ("SETTLED, IN BALANCE", "OUT OF BALANCE", "SETTLEMENT FAILED", "TIMEOUT")
STEP_TIMEOUT = 30.0
SETTLE_TIMEOUT = 30.0
# The harness's own wallet timings (the child's config): quick polls so a paid code is seen at once.
WALLET_TIMINGS = {"poll_interval": 0.2, "confirm_interval": 0.3, "confirm_timeout": 6, "qr_timeout": 15}
# A shown code stays payable until it expires, so the terminal may keep an order whose code a kill took
# off the screen 'unknown' until then (plus its margin and its reconcile backoff): allowed this long.
QR_GRACE = WALLET_TIMINGS["qr_timeout"] + 150


class ChildDied(Exception):
    """The terminal process ended (killed at an armed kill point, or crashed)."""


class Killed(Exception):
    """This transaction ended in a kill."""


class HarnessStopped(Exception):
    """Nothing more can be tried (the terminal no longer boots)."""


@dataclass
class Plan:
    """Where to kill the terminal during one transaction."""

    how: str  # none | timer | statement | commit
    step: int = -1  # timer: after starting this step
    fraction: float = 0.0  # timer: of the step's learned duration
    count: int = 0  # statement / commit: the count-th from the transaction's start
    phase: str = ""  # before | during | after
    delay_us: float = 0.0  # during: how far into the statement

    def describe(self) -> str:
        if self.how == "timer":
            return f"timer after step {self.step} at {self.fraction:.0%} of its duration"
        if self.how in ("statement", "commit", "boot"):
            extra = f" +{self.delay_us:.0f} us" if self.phase == "during" else ""
            return f"{self.how} #{self.count} {self.phase}{extra}"
        return "none"


@dataclass
class Kill:
    """One kill: what was going on, how it was chosen, and where the child says it died."""

    number: int
    txn: int
    kind: str
    plan: Plan
    screen: str
    report: dict[str, Any] | None = None

    def describe(self) -> str:
        where = ""
        if self.report:
            r = self.report
            where = f"; died {r['phase']} statement {r['statement']} ({r['sql']}){' inside it' if r['inside'] else ''}"
        return (
            f"kill {self.number} in txn {self.txn} ({self.kind}), {self.plan.describe()}{where}; screen "
            f"{self.screen.replace(chr(10), ' | ')!r}"
        )


@dataclass
class Violation:
    """A broken invariant with what reproduces it."""

    finding: inv.Finding
    kill: str
    seed: int
    txn: int

    def describe(self) -> str:
        where = f"after {self.kill} (seed {self.seed}, txn {self.txn})"
        return f"[{self.finding.invariant}] {self.finding.detail}\n    {where}"


@dataclass
class Summary:
    """Counts of a harness run."""

    seed: int
    kills: int = 0
    unreached: int = 0  # kill points drawn that the transaction ended before reaching
    inside_commit: int = 0
    inside_statement: int = 0
    transactions: int = 0
    checks: int = 0
    seconds: float = 0.0
    by_kind: collections.Counter[str] = field(default_factory=collections.Counter)
    by_how: collections.Counter[str] = field(default_factory=collections.Counter)
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    violations: list[Violation] = field(default_factory=list)

    def text(self) -> str:
        lines = [
            f"kill harness, seed {self.seed}: {self.kills} kills in {self.transactions} transactions, "
            f"{self.seconds:.0f} s",
            f"  kill points tried: {self.kills + self.unreached} ({self.kills} fired, {self.unreached} not "
            f"reached before the transaction ended)",
            f"  inside a journal COMMIT (SQLite had not returned): {self.inside_commit}; inside another "
            f"journal statement: {self.inside_statement}",
            "  kills by transaction: " + ", ".join(f"{k} {self.by_kind[k]}" for k in (*KINDS, "boot")),
            "  kills by kill point: " + ", ".join(f"{k} {v}" for k, v in sorted(self.by_how.items())),
            f"  invariant checks: {self.checks} (each: {', '.join(inv.INVARIANTS)})",
            "  outcomes of transactions that ran to their end: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
            f"  violations: {len(self.violations)}",
        ]
        lines += ["  " + v.describe() for v in self.violations]
        return "\n".join(lines)


class TerminalProcess:
    """One boot of the terminal as a child process, with its own input pipes, printer pty and RF field."""

    def __init__(
        self, cfg: Config, config_path: Path, hosts: Hosts, data_dir: Path, stderr: Path, kill_at: str = ""
    ) -> None:
        self.cfg = cfg
        self.printer = VirtualPrinter()
        self.field = RfField()
        self.keypad = SimInputDevice("keypad")
        self.magstripe = SimInputDevice("magstripe")
        self.scanner = SimInputDevice("scanner") if cfg.scanner is not None else None
        report_r, report_w = os.pipe()
        control_r, control_w = os.pipe()
        overrides = hosts.overrides(data_dir, self.printer.devfile, self.field.port)
        if cfg.wallet.provider:
            overrides["wallet"].update(WALLET_TIMINGS)
        overrides["unionpay"] = {"via": "acquirer"}  # UnionPay codes go to the acquirer as cards
        inputs = [self.keypad, self.magstripe] + ([self.scanner] if self.scanner else [])
        cmd = [
            sys.executable,
            "-m",
            "hwsim.child",
            "--config",
            str(config_path),
            "--overrides",
            json.dumps(overrides),
            "--keypad-fd",
            str(self.keypad.fileno()),
            "--magstripe-fd",
            str(self.magstripe.fileno()),
            "--report-fd",
            str(report_w),
            "--control-fd",
            str(control_r),
        ]
        if self.scanner is not None:
            cmd += ["--scanner-fd", str(self.scanner.fileno())]
        env = dict(os.environ)
        env.pop("HWSIM_KILL_AT", None)
        if kill_at:
            env["HWSIM_KILL_AT"] = kill_at
        self.stderr = stderr
        self._stderr_from = stderr.stat().st_size if stderr.exists() else 0
        with open(stderr, "ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=[d.fileno() for d in inputs] + [report_w, control_r],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        for dev in inputs:
            dev.hand_over_reader()
        os.close(report_w)
        os.close(control_r)
        self._control = os.fdopen(control_w, "w", encoding="ascii", buffering=1)
        self._cond = threading.Condition()
        self.lines: tuple[str, ...] = ()
        self.qr = ""
        self.seq = 0
        self.statements = 0
        self.commits = 0
        self.pongs: dict[int, tuple[int, int]] = {}
        self.kill_report: dict[str, Any] | None = None
        self.dead = False
        self._reader = threading.Thread(target=self._read, args=(report_r,), name="hwsim-child-report", daemon=True)
        self._reader.start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as stream:
            for raw in stream:
                try:
                    msg = json.loads(raw)
                except ValueError:
                    continue
                with self._cond:
                    if "screen" in msg:
                        self.lines, self.qr = tuple(msg["screen"]), msg.get("qr", "")
                        self.statements, self.commits = msg["statements"], msg["commits"]
                        self.seq += 1
                    elif "pong" in msg:
                        self.pongs[msg["pong"]] = (msg["statements"], msg["commits"])
                    elif "kill" in msg:
                        self.kill_report = msg["kill"]
                    self._cond.notify_all()
        with self._cond:
            self.dead = True
            self._cond.notify_all()

    @property
    def screen(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, texts: tuple[str, ...], timeout: float = STEP_TIMEOUT, title: bool = False) -> str:
        """Until the screen shows one of `texts` (as its first line, with `title`); ChildDied, TimeoutError."""

        def matched() -> bool:
            if title:
                return bool(self.lines) and self.lines[0].startswith(texts)
            text = "\n".join(self.lines)
            return any(t in text for t in texts)

        with self._cond:
            if not self._cond.wait_for(lambda: matched() or self.dead, timeout):
                raise TimeoutError(f"none of {texts} on screen after {timeout} s; screen: {' | '.join(self.lines)}")
            if not matched():
                raise ChildDied(" | ".join(self.lines))
            return "\n".join(self.lines)

    def control(self, line: str) -> None:
        try:
            self._control.write(line + "\n")
        except OSError:
            raise ChildDied("control pipe closed") from None

    def counts(self, timeout: float = 10.0) -> tuple[int, int]:
        """(journal statements, commits) the child has run so far (asked over the control pipe)."""
        token = random.getrandbits(30)
        self.control(f"ping {token}")
        with self._cond:
            if not self._cond.wait_for(lambda: token in self.pongs or self.dead, timeout) or token not in self.pongs:
                raise ChildDied("no answer to ping")
            return self.pongs.pop(token)

    def type(self, action: Callable[[], None]) -> None:
        try:
            action()
        except OSError:  # EPIPE: nobody reads the device any more
            raise ChildDied("input pipe closed") from None

    def errors(self) -> str:
        """What this boot wrote to its standard error."""
        with open(self.stderr, "rb") as f:
            f.seek(self._stderr_from)
            return f.read().decode("utf-8", "replace")

    def kill(self) -> int:
        """SIGKILL (if still alive) and reap; returns the exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        code = self.proc.wait(30)
        self._reader.join(10)
        return code

    def close(self) -> list[str]:
        """After the process is gone: release the devices; returns the receipts its printer cut."""
        receipts = self.printer.receipts
        for dev in (self.keypad, self.magstripe, self.scanner):
            if dev is not None:
                dev.destroy()
        try:
            self._control.close()
        except OSError:
            pass
        self.printer.close()
        self.field.close()
        return receipts


class KillHarness:
    """Random transactions, random SIGKILLs, reboots and invariant checks; `run` returns a Summary."""

    def __init__(
        self,
        workdir: Path,
        seed: int,
        config: Path = DEFAULT_CONFIG,
        out: TextIO | None = None,
        stop_on_violation: bool = False,
        verbose: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.seed = seed
        self.config_path = Path(config)
        self.cfg = load(self.config_path)
        self.data_dir = self.workdir / "data"
        self.out = out
        self.stop_on_violation = stop_on_violation
        self.verbose = verbose
        self.summary = Summary(seed)
        self.hosts: Hosts | None = None
        self.proc: TerminalProcess | None = None
        self.receipts: list[str] = []  # cut by printers of earlier boots
        self.applets: dict[str, CardApplet] = {}  # cards keep their ATC across boots
        self._amounts = 0
        self._book = inv.MessageBook(self.cfg.host.dialect)
        self._durations: dict[tuple[str, int], float] = {}
        self._steps: dict[str, int] = {}
        self._statements: dict[str, int] = {}
        self._commits: dict[str, int] = {}
        self._boot_statements = 12
        self._seen: set[tuple[str, str]] = set()
        self._stuck: set[int] = set()  # rows reported as never settling
        self._last_kill = "no kill yet"
        self._txn = 0
        self._rng = random.Random(seed)

    # --- lifecycle ---------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        if self.out is not None:
            self.out.write(text + "\n")
            self.out.flush()

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.hosts = Hosts(self.cfg, self.data_dir / "keys")
        issuer = self.hosts.acquirer.issuer
        for pan in [magstripe_card(c).pan for c in ("visa-approve", "mc-approve", "unionpay-approve")] + [
            p.pan
            for p in contactless_catalog().values()
            if p.id in ("visa-tap-approve", "mc-tap-approve", "phone-wallet")
        ]:
            issuer.accounts[pan].balance = 10**13  # thousands of sales never run an account dry
        self._boot()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.receipts += self.proc.close()
            self.proc = None
        if self.hosts is not None:
            self.hosts.close()

    def __enter__(self) -> KillHarness:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _boot(self, kill_at: str = "") -> TerminalProcess:
        assert self.hosts is not None
        self.proc = TerminalProcess(
            self.cfg, self.config_path, self.hosts, self.data_dir, self.workdir / "child-stderr.log", kill_at
        )
        return self.proc

    # --- running -----------------------------------------------------------------------------

    def run(self, kills: int, seconds: float) -> Summary:
        """Until `kills` kills or `seconds` have passed (whichever first); the counts and violations."""
        started = time.monotonic()
        if self.proc is None:
            self.start()
        try:
            self._after_boot(Kill(0, 0, "boot", Plan("none"), ""))
            while self.summary.kills < kills and time.monotonic() - started < seconds:
                if self.stop_on_violation and self.summary.violations:
                    break
                self._txn += 1
                self._transaction(random.Random(f"{self.seed}:{self._txn}"))
                self.summary.seconds = time.monotonic() - started
        except HarnessStopped as exc:
            self._say(f"stopped: {exc}")
        if self.proc is not None and not self.proc.dead:
            self._settle(self.proc, final=True)  # shown codes' orders too: they have expired by now
            self._check("end of run")
        self.summary.seconds = time.monotonic() - started
        return self.summary

    def _transaction(self, rng: random.Random) -> None:
        kind = self._choose_kind(rng)
        plan = self._choose_plan(rng, kind)
        proc = self.proc
        assert proc is not None
        self._plan, self._kind, self._step_no = plan, kind, 0
        try:
            base = proc.counts()
            if plan.how in ("statement", "commit"):
                proc.control(
                    f"arm {plan.count} {plan.phase} {plan.delay_us:.0f}" + (" commit" if plan.how == "commit" else "")
                )
                proc.counts()  # the arm is in place before we start
            outcome = getattr(self, f"_do_{kind}")(rng)
            proc.control("disarm")
            proc.wait_for(("ENTER AMOUNT",), title=True)
            self._settle(proc)
            done = proc.counts()
        except (ChildDied, Killed):
            self._killed(kind, plan)
            return
        except TimeoutError as exc:
            self._violation(inv.Finding("settled", f"{kind}: the terminal is stuck: {exc}"))
            self._killed(kind, Plan("stuck"))
            return
        self.summary.transactions += 1
        if plan.how != "none":
            self.summary.unreached += 1
        self.summary.outcomes[f"{kind}:{outcome}"] += 1
        self._statements[kind] = max(self._statements.get(kind, 0), done[0] - base[0])
        self._commits[kind] = max(self._commits.get(kind, 0), done[1] - base[1])
        self._steps[kind] = max(self._steps.get(kind, 0), self._step_no)
        self._check("txn ran to its end")

    def _choose_kind(self, rng: random.Random) -> str:
        rows = self._rows()
        kinds = list(KINDS)
        if not self._refundable(rows):
            kinds.remove("refund")
        if not self._voidable(rows):
            kinds.remove("void")
        weights = [WEIGHTS[KINDS.index(k)] for k in kinds]
        return rng.choices(kinds, weights)[0]

    def _choose_plan(self, rng: random.Random, kind: str) -> Plan:
        how = rng.choices(("none", "timer", "statement", "commit"), (2, 4, 2, 2))[0]
        if how == "timer":
            return Plan("timer", step=rng.randrange(self._steps.get(kind, 4)), fraction=rng.uniform(0.0, 1.2))
        if how in ("statement", "commit"):
            most = (self._statements if how == "statement" else self._commits).get(
                kind, 20 if how == "statement" else 5
            )
            phase = rng.choices(("before", "during", "after"), (1, 3, 1) if how == "commit" else (1, 1, 1))[0]
            return Plan(how, count=rng.randint(1, max(1, most)), phase=phase, delay_us=rng.uniform(0, 300))
        return Plan("none")

    # --- the steps of a transaction -----------------------------------------------------------

    def _step(
        self, action: Callable[[], None], texts: tuple[str, ...], title: bool = False, timeout: float = STEP_TIMEOUT
    ) -> str:
        """Do one step (an input) and wait for its screen; the kill plan may end the transaction here."""
        proc = self.proc
        assert proc is not None
        number = self._step_no
        self._step_no += 1
        key = (self._kind, number)
        started = time.monotonic()
        proc.type(action)
        if self._plan.how == "timer" and self._plan.step == number:
            time.sleep(self._plan.fraction * self._durations.get(key, 0.5))
            raise Killed()
        screen = proc.wait_for(texts, timeout, title)
        self._durations[key] = max(self._durations.get(key, 0.0), time.monotonic() - started)
        return screen

    def _keys(self, text: str) -> Callable[[], None]:
        proc = self.proc
        assert proc is not None
        return lambda: type_keys(proc.keypad, self.cfg.keypad.keys, text)

    def _amount(self) -> int:
        self._amounts += 1
        return 100 + self._amounts  # no two customers pay the same amount

    def _end(self, screen: str) -> str:
        self._step(self._keys("{ENTER}"), ("ENTER AMOUNT",), title=True)
        return screen.split("\n")[0]

    def _do_swipe(self, rng: random.Random) -> str:
        amount = self._amount()
        card_id = rng.choices(("visa-approve", "mc-approve", "unionpay-approve", "visa-insufficient"), (4, 2, 2, 1))[0]
        c = magstripe_card(card_id)
        proc = self.proc
        assert proc is not None
        self._step(self._keys(f"{amount}{{ENTER}}"), ("SWIPE CARD",))
        self._step(lambda: type_text(proc.magstripe, c.track1 + c.track2 + "\n"), ("ENTER PIN",))
        return self._end(self._step(self._keys("1234{ENTER}"), RESULTS, title=True))

    def _do_tap(self, rng: random.Random) -> str:
        amount = self._amount()
        card_id = rng.choice(("visa-tap-approve", "mc-tap-approve", "phone-wallet"))
        proc = self.proc
        assert proc is not None
        profile = contactless_catalog()[card_id]
        applet = self.applets.setdefault(card_id, CardApplet(profile))
        self._step(self._keys(f"{amount}{{ENTER}}"), ("TAP OR SWIPE CARD",))
        screen = self._step(
            lambda: proc.field.present(applet, profile.technology), ("ENTER PIN",) + RESULTS, title=False
        )
        if "ENTER PIN" in screen:
            screen = self._step(self._keys("1234{ENTER}"), RESULTS, title=True)
        proc.field.remove()
        return self._end(screen)

    def _do_wallet_qr(self, rng: random.Random) -> str:
        assert self.hosts is not None
        amount = self._amount()
        self._step(self._keys(f"{amount}{{ENTER}}"), ("SWIPE CARD",))
        self._step(self._keys("{F1}"), ("SCAN TO PAY",))
        if rng.random() < 0.2:
            screen = self._step(self._keys("{CANCEL}"), WALLET_RESULTS, title=True)
        else:
            proc = self.proc
            assert proc is not None
            shown = proc.qr
            screen = self._step(lambda: self.hosts.wallet.pay(shown or None), WALLET_RESULTS, title=True)
        return self._end(screen)

    def _do_wallet_scan(self, rng: random.Random) -> str:
        assert self.hosts is not None
        amount = self._amount()
        proc = self.proc
        assert proc is not None
        self._step(self._keys(f"{amount}{{ENTER}}"), ("SWIPE CARD",))
        self.hosts.wallet.next_code(rng.choice(("pay", "pay", "confirm")))
        assert proc.scanner is not None
        scanner = proc.scanner
        screen = self._step(lambda: type_text(scanner, ALIPAY_CODE + "\n"), WALLET_RESULTS, title=True)
        return self._end(screen)

    def _do_unionpay_code(self, rng: random.Random) -> str:
        assert self.hosts is not None
        amount = self._amount()
        proc = self.proc
        assert proc is not None
        self._step(self._keys(f"{amount}{{ENTER}}"), ("SWIPE CARD",))
        self.hosts.acquirer.issuer.next_code(rng.choice(("pay", "pay", "password")))
        code = f"62{self.seed % 1000:03d}{self._txn:014d}"  # a new code each time: a code pays once
        assert proc.scanner is not None
        scanner = proc.scanner
        screen = self._step(lambda: type_text(scanner, code + "\n"), ("PAYMENT PIN NEEDED",) + RESULTS, title=True)
        if "PAYMENT PIN NEEDED" in screen:
            screen = self._step(self._keys(f"{CODE_PIN}{{ENTER}}"), RESULTS, title=True)
        return self._end(screen)

    def _manager(self) -> None:
        self._step(self._keys("{MENU}"), ("MANAGER PIN",))
        self._step(self._keys(MANAGER_PIN + "{ENTER}"), ("1 VOID  2 REFUND", "ACCESS DENIED"), title=True)

    def _do_refund(self, rng: random.Random) -> str:
        original = rng.choice(self._refundable(self._rows()))
        left = original["amount"] - original["refunded"]
        amount = rng.randint(1, left)
        self._manager()
        self._step(self._keys("2"), ("TRACE NO.",))
        screen = self._step(
            self._keys(f"{original['stan']}{{ENTER}}"), ("REFUND TRACE", "NOT ALLOWED", "NOT FOUND"), title=True
        )
        if screen.startswith("REFUND TRACE"):
            self._step(self._keys(f"{amount}{{ENTER}}"), ("2 CASH",))
            route = "2" if rng.random() < 0.15 else "1"
            screen = self._step(self._keys(route), FOLLOW_UP_RESULTS, title=True)
        return self._end(screen)

    def _do_void(self, rng: random.Random) -> str:
        original = rng.choice(self._voidable(self._rows()))
        self._manager()
        self._step(self._keys("1"), ("TRACE NO.",))
        screen = self._step(
            self._keys(f"{original['stan']}{{ENTER}}"),
            ("ENTER TO CONFIRM", "VOID NOT POSSIBLE", "NOT ALLOWED", "NOT FOUND"),
        )
        if "ENTER TO CONFIRM" in screen:
            screen = self._step(self._keys("{ENTER}"), FOLLOW_UP_RESULTS, title=True)
        return self._end(screen)

    def _do_settlement(self, rng: random.Random) -> str:
        self._manager()
        return self._end(self._step(self._keys("4"), SETTLE_RESULTS, title=True))

    # --- the journal's view ---------------------------------------------------------------------

    def _rows(self) -> list[dict[str, Any]]:
        path = self.data_dir / "journal.sqlite3"
        return inv.journal_rows(path) if path.exists() else []

    @staticmethod
    def _refundable(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in rows if r["kind"] == "sale" and r["status"] == "approved" and r["refunded"] < r["amount"]]

    def _voidable(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        batch = inv.counter(self.data_dir / "journal.sqlite3", "batch") or 1
        today = datetime.now().astimezone().date().isoformat()
        touched = {r["original_id"] for r in rows if r["kind"] in ("void", "refund")}
        return [
            r
            for r in rows
            if r["kind"] == "sale"
            and r["status"] == "approved"
            and r["batch"] == batch
            and r["created_at"][:10] == today
            and r["id"] not in touched
        ]

    # --- kills, reboots, checks -----------------------------------------------------------------

    def _killed(self, kind: str, plan: Plan) -> None:
        proc = self.proc
        assert proc is not None
        screen = proc.screen
        proc.kill()
        self.summary.kills += 1
        kill = Kill(self.summary.kills, self._txn, kind, plan, screen, proc.kill_report)
        self._count(kill)
        self.receipts += proc.close()
        self.proc = None
        self._after_kill(kill)

    def _count(self, kill: Kill) -> None:
        self.summary.by_kind[kill.kind] += 1
        how = kill.plan.how
        if kill.report is not None:
            how = f"{how}:{kill.report['phase']}"
            if kill.report["inside"]:
                if kill.report["commit"]:
                    self.summary.inside_commit += 1
                else:
                    self.summary.inside_statement += 1
        self.summary.by_how[how] += 1
        self._last_kill = kill.describe()
        if self.verbose:
            self._say(self._last_kill)

    def _after_kill(self, kill: Kill) -> None:
        state = inv.integrity(self.data_dir / "journal.sqlite3")
        if state != "ok":
            self._violation(inv.Finding("journal-integrity", f"after the kill: {state}"))
        rng = random.Random(f"{self.seed}:{self._txn}:boot")
        if rng.random() < 0.15 and self.summary.kills < 10**9:
            plan = Plan(
                "boot",
                count=rng.randint(1, max(1, self._boot_statements)),
                phase=rng.choice(("before", "during", "after")),
                delay_us=rng.uniform(0, 300),
            )
            proc = self._boot(f"{plan.count}:{plan.phase}:{plan.delay_us:.0f}")
            try:
                proc.wait_for(("ENTER AMOUNT",), title=True)
                self._settle(proc)
                proc.control("disarm")
                proc.counts()  # the disarm is in place, or the point came first
            except (ChildDied, TimeoutError):
                pass
            if proc.kill_report is not None:  # it died at its armed point: one more kill
                proc.kill()
                self.summary.kills += 1
                boot_kill = Kill(self.summary.kills, self._txn, "boot", plan, proc.screen, proc.kill_report)
                self._count(boot_kill)
                self.receipts += proc.close()
                self.proc = None
                state = inv.integrity(self.data_dir / "journal.sqlite3")
                if state != "ok":
                    self._violation(inv.Finding("journal-integrity", f"after a kill during boot: {state}"))
            else:  # recovery ran in fewer statements: carry on with it
                if not proc.dead:
                    self._check("reboot")
                    return
                self._boot_failed(proc)
        self._boot()
        self._after_boot(kill)

    def _boot_failed(self, proc: TerminalProcess) -> None:
        code = proc.kill()
        said = " | ".join(line for line in proc.errors().splitlines() if line.strip())[-600:]
        self._violation(inv.Finding("boot", f"the terminal did not boot (exit {code}): {said}"))
        self.receipts += proc.close()
        self.proc = None

    def _after_boot(self, kill: Kill, failures: int = 0) -> None:
        proc = self.proc
        assert proc is not None
        try:
            proc.wait_for(("ENTER AMOUNT",), timeout=60, title=True)
            self._settle(proc)
            statements, _ = proc.counts()
            self._boot_statements = max(self._boot_statements, statements)
        except ChildDied:
            self._boot_failed(proc)
            if failures >= 2:
                raise HarnessStopped("the terminal does not boot on this journal any more") from None
            self._boot()
            return self._after_boot(kill, failures + 1)
        except TimeoutError as exc:
            self._violation(inv.Finding("settled", f"after reboot: {exc}"))
        self._check("reboot")

    def _settle(self, proc: TerminalProcess, final: bool = False) -> None:
        """Until no row is pending, unknown or queued (the rebooted terminal sends its reversals, resends
        lost voids and refunds, and reconciles wallet orders) — except a shown code's order that may still
        be paid, which may stay unknown for QR_GRACE s after it was made (`final`: wait for those too)."""
        deadline = time.monotonic() + (QR_GRACE + SETTLE_TIMEOUT if final else SETTLE_TIMEOUT)
        while True:
            rows = self._rows()
            now = datetime.now().astimezone()
            waiting = [
                r
                for r in rows
                if r["status"] in inv.UNDECIDED and r["id"] not in self._stuck and (final or not self._payable(r, now))
            ]
            if not waiting:
                return
            if proc.dead:
                raise ChildDied("while settling")
            if time.monotonic() > deadline:
                for f in inv.unsettled(waiting):
                    self._violation(f)
                self._stuck.update(r["id"] for r in waiting)  # reported once; not waited for again
                return
            time.sleep(0.05)

    def _payable(self, row: dict[str, Any], now: datetime) -> bool:
        """A shown code's order, not paid, whose code may still be paid (or was, very recently, expired)."""
        if not (
            row["method"] == "wallet"
            and row["kind"] == "sale"
            and row["entry_mode"] == "qr"
            and row["status"] == "unknown"
        ):
            return False
        assert self.hosts is not None
        with self.hosts.wallet._lock:  # noqa: SLF001 - the order's state, consistently
            order = self.hosts.wallet.orders.get(row["order_no"])
            if order is not None and order.state == "paid":
                return False  # nothing to wait for: the terminal must see it
        created = datetime.fromisoformat(row["created_at"])
        if created.tzinfo is None:
            created = created.astimezone()
        return now < created + timedelta(seconds=QR_GRACE)

    def _check(self, when: str) -> None:
        assert self.hosts is not None
        self.summary.checks += 1
        rows = self._rows()
        tid = self.cfg.terminal.terminal_id
        ledger = list(self.hosts.acquirer.ledger)
        with self.hosts.wallet._lock:  # noqa: SLF001 - a consistent snapshot of the orders
            orders = {no: _snapshot(o) for no, o in self.hosts.wallet.orders.items()}
        receipts = self.receipts + (self.proc.printer.receipts if self.proc is not None else [])
        findings = (
            inv.host_vs_journal(ledger, rows, tid)
            + inv.wallet_vs_journal(orders, rows)
            + inv.charged_once(ledger, orders, tid)
            + self._book.feed(list(self.hosts.acquirer.host_log))
            + inv.receipt_truth(receipts, rows)
        )
        for f in findings:
            self._violation(f)

    def _violation(self, finding: inv.Finding) -> None:
        key = (finding.invariant, finding.detail)
        if key in self._seen:
            return
        self._seen.add(key)
        v = Violation(finding, self._last_kill, self.seed, self._txn)
        self.summary.violations.append(v)
        self._say("VIOLATION " + v.describe())


@dataclass(frozen=True)
class _OrderView:
    kind: str
    amount: str
    state: str
    refunds: dict[str, str]


def _snapshot(order: Any) -> _OrderView:
    return _OrderView(order.kind, order.amount, order.state, dict(order.refunds))


def main(argv: list[str] | None = None) -> int:
    """`python -m hwsim.killharness`: print the counts; exit 1 when an invariant broke."""
    parser = argparse.ArgumentParser(prog="python -m hwsim.killharness", description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=2000, help="stop after this many kills (default 2000)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--minutes", type=float, default=30.0, help="stop after this long (default 30)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--workdir", help="keep the journal, logs and child stderr here (default: a temp dir)")
    parser.add_argument("--stop-on-violation", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="print every kill as it happens")
    args = parser.parse_args(argv)
    return run_cli(
        args.kills, args.seed, args.minutes, Path(args.config), args.workdir, args.stop_on_violation, args.verbose
    )


def run_cli(
    kills: int,
    seed: int,
    minutes: float,
    config: Path,
    workdir: str | None = None,
    stop_on_violation: bool = False,
    verbose: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Run the harness with progress on `out`; 0 when every invariant held."""
    if workdir and (Path(workdir) / "data").exists():
        # A journal from another run meets a fresh acquirer and gateway: every check would fail.
        out.write(f"kill harness: {workdir} holds an earlier run's data; give an empty or new --workdir\n")
        return 2
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="hwsim-kill-")
    where = Path(workdir) if workdir else Path(tmp.name)  # type: ignore[union-attr]
    out.write(f"kill harness: up to {kills} kills or {minutes:g} min, seed {seed}, work dir {where}\n")
    harness = KillHarness(where, seed, config, out=out, stop_on_violation=stop_on_violation, verbose=verbose)
    stop = threading.Event()

    def progress() -> None:
        while not stop.wait(60):
            s = harness.summary
            out.write(
                f"  ... {s.kills} kills ({s.inside_commit} inside a commit), {s.transactions} transactions, "
                f"{len(s.violations)} violations\n"
            )
            out.flush()

    threading.Thread(target=progress, daemon=True).start()
    try:
        with harness:
            summary = harness.run(kills, minutes * 60)
    finally:
        stop.set()
        if tmp is not None:
            tmp.cleanup()
    out.write(summary.text() + "\n")
    return 1 if summary.violations else 0


if __name__ == "__main__":
    sys.exit(main())
