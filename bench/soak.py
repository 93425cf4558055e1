"""Soak: thousands of simulated transactions of every kind, outcome and fault through the real firmware.
Memory in use, file descriptors, threads and the firmware loop's tasks must stay flat, and every
transaction must be accounted for in the journal, the acquirer's ledger and the wallet gateway's orders.

    .venv/bin/python bench/soak.py [--transactions 10000] [--seed 1] [--report-every 500] [--data DIR]

The mix (bench/soak_mix.py, seeded): swipes (approved, every declining card, a wrong PIN then the right one,
a PIN the issuer never matches, cancelled at the PIN), taps (no CVM, online PIN with and without a wrong
PIN first, a phone that verified its holder, declines, a card pulled away too early), Alipay both ways
(code on screen paid, never paid, cancelled, lying query answers, a close to retry; the customer's code
paid, confirmed in the app, refused, never confirmed, cancelled by the payer, answered untrustworthily),
voids, partial and full refunds to the card, the wallet or in cash, settlements, reports, host faults
(timeout, drop, garble, late, twice, a lying host, CANCEL while the host is asked, a lost refund answer),
power cuts (at rest, while the reader looks for a card, while the host is asked, with a code on screen,
during a refund) and clean restarts. `--only KIND,...` runs just those kinds, in turn.

Every `--report-every` transactions a line gives resident memory (VmRSS), memory in use (see heap_in_use_kb)
and the free memory glibc's malloc keeps (see malloc_kept: how much, in how many arenas, how many keeping a
block of 8 MiB or more), open file descriptors, threads, the firmware loop's tasks, Python objects, journal
rows and the simulator's own records (see below). After every restart, once the terminal restarted away is
gone, the threads, file descriptors, journal connections and event loops alive are counted (RestartCensus).
At the end, once the terminal has sent its reversals and resends and reconciled its wallet orders:

- accounting (hwsim.invariants): the journal passes `PRAGMA integrity_check`; every approval the acquirer
  holds that was neither reversed nor voided is an approved journal row and vice versa, voids and refunds
  agree sale by sale; every order the gateway marked paid is an approved (or voided) wallet row and wallet
  refunds agree; no row is left pending, unknown or queued; every receipt that says APPROVED names an
  approved row; sale STANs and DUKPT KSNs only ever increase on the wire; and the journal holds exactly the
  rows the transactions run must have left (kind, method and final status counted);
- leaks, measured from the end of the warm-up to the end: see THRESHOLDS for what counts as one and why;
  and across restarts: a terminal restarted away still alive, or threads, descriptors, journal connections
  or event loops alive after the last restarts beyond those after the first (judge_restarts).

Resident memory itself is reported, not judged: beyond memory in use it is mostly free memory glibc's malloc
keeps, and the soak's in-process restarts make that climb in 16 MiB steps a real terminal never takes (see
malloc_kept). `GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4194304` (as deploy/countertop.service sets) has
malloc give such blocks back at once: resident memory then follows memory in use.

The simulator keeps records of everything (the acquirer's ledger and message log, the gateway's orders and
request log, every receipt printed). The soak checks the message log, the request log and the receipts as
it goes and then drops them; the ledger and the orders are kept for the final accounting, so their size is
measured (every object reachable from them) and taken off the growth of memory in use before it is judged.

Exit status 0 when everything added up and nothing leaked, 1 otherwise. Not part of the test suite
(tests/test_soak_smoke.py runs a dozen transactions so that this script cannot rot).
"""

from __future__ import annotations

import _sqlite3
import argparse
import asyncio
import ctypes
import dataclasses
import gc
import logging
import os
import random
import re
import sqlite3
import sys
import tempfile
import threading
import time
import tracemalloc
import types
import weakref
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import iso8583

sys.path.insert(0, str(Path(__file__).resolve().parent))

import soak_mix
from firmware.config import Config, load
from firmware.core import walletorder
from firmware.shell import logs
from hwsim import Simulator, invariants
from hwsim.acquirer import SPEC, SPEC_AES
from hwsim.simulator import DEFAULT_CONFIG
from soak_mix import Till, Unexpected

log = logging.getLogger(__name__)

# What counts as a leak, from the sample at the end of the warm-up to the sample at the end (both taken at
# rest, after a garbage collection):
THRESHOLDS = {
    # Per 1,000 transactions over the second half of the run, of memory in use beyond the simulator's own
    # records and SQLite's page caches (both measured and taken off; the records' size is an estimate some 15 %
    # short, about 100 kB per 1,000 here). One leaked object graph per transaction (a task and its frames, a
    # receipt, a journal row kept in memory: 1-5 kB each) is 1-5 MB per 1,000. Judged from 2,000 measured
    # transactions on (fewer are too few to tell growth from noise).
    "heap_kb_per_1000": 512,
    # Python objects the garbage collector tracks, per 1,000 transactions, not counting the simulator's
    # records: one leaked container per transaction is 1,000.
    "objects_per_1000": 150,
    # Absolute growth. A connection in flight at a sample is 1-2 fds; one leaked per power cut (dozens per
    # run) or per transaction is far more.
    "fds": 3,
    # asyncio.to_thread's executor starts workers on demand (at most min(32, cores + 4)) and keeps them;
    # the HTTP gateway's request threads come and go. A thread left behind per power cut is dozens.
    "threads": 4,
    # The firmware loop at rest runs its device readers and the event loop's getters; a wallet chase or an
    # outbox flush may be running at a sample. One task left per transaction is thousands.
    "tasks": 3,
    # Right after each restart, once the terminal restarted away is gone (see RestartCensus): the threads and
    # file descriptors alive then, from the first restarts to the last. A thread or a descriptor left by each
    # restart is one per restart (dozens); the slack is for an executor worker or a connection in flight. A
    # journal connection or an event loop left open is never slack.
    "restart_threads": 2,
    "restart_fds": 2,
    "restart_journal_fds": 0,
    "restart_loops": 0,
}
MIN_JUDGED = 2000


# --- measuring ------------------------------------------------------------------------------------


@dataclass
class Sample:
    """The process at one moment, at rest."""

    done: int
    elapsed: float
    rss_kb: int
    heap_kb: int | None  # memory in use (heap_in_use_kb); None where it cannot be had
    sqlite_kb: int  # of which SQLite's (sqlite_in_use_kb)
    fds: int
    threads: int
    tasks: int
    objects: int  # gc-tracked Python objects
    records_kb: int  # the simulator's records (ledger, orders, logs, receipts) and the soak's own
    records_objects: int
    rows: int
    kept_kb: int | None = None  # free memory glibc's malloc keeps in its arenas (malloc_kept); None without glibc
    arenas: int | None = None
    big_free: int | None = None  # arenas keeping BIG_FREE_KB or more free


def rss_kb() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


try:
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None)
except OSError:
    _LIBC = None


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (every field a size_t)."""

    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


if _LIBC is not None and hasattr(_LIBC, "mallinfo2"):
    _LIBC.mallinfo2.restype = _MallInfo2
try:  # the SQLite library Python's sqlite3 module runs on
    _SQLITE: ctypes.CDLL | None = ctypes.CDLL(_sqlite3.__file__)
    _SQLITE.sqlite3_memory_used.restype = ctypes.c_int64
except (OSError, AttributeError):
    _SQLITE = None


def _pymalloc_allocated() -> int | None:
    """Bytes in the blocks CPython's small-object allocator has handed out (it prints them to fd 2 only)."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        found = re.search(rb"# bytes in allocated blocks\s*=\s*([\d,]+)", out.read())
    return int(found.group(1).replace(b",", b"")) if found else None


def heap_in_use_kb() -> int | None:
    """Memory in use: what malloc has handed out and not had back (every arena, and its mmapped blocks; glibc's
    mallinfo2) plus pymalloc's allocated blocks (its arenas are mmapped, outside malloc). None without glibc, and
    while tracemalloc traces (CPython then keeps its allocator's figures to itself).

    Resident memory is the footprint, but it also holds free memory malloc keeps: each operator PIN check runs
    scrypt (16 MiB) on an executor thread, and glibc keeps such a block as the free top of that thread's arena
    (malloc_trim cannot give a thread arena's top back), so resident memory steps up 16 MiB at a time with
    the threads that ever checked a PIN. A leak is memory in use; this is what is judged."""
    mallinfo2 = getattr(_LIBC, "mallinfo2", None)
    if mallinfo2 is None:
        return None
    info = mallinfo2()
    small = _pymalloc_allocated()
    return None if small is None else (info.uordblks + info.hblkhd + small) // 1024


if _LIBC is not None and hasattr(_LIBC, "malloc_info"):
    _LIBC.fopen.restype = ctypes.c_void_p
    _LIBC.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    _LIBC.fclose.argtypes = [ctypes.c_void_p]
    _LIBC.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]


def malloc_arenas() -> list[tuple[int, int]] | None:
    """(kB from the system, kB of it free) for each of glibc's malloc arenas (malloc_info(3)), the main arena
    first; None without glibc."""
    if _LIBC is None or not hasattr(_LIBC, "malloc_info"):
        return None
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        stream = _LIBC.fopen(out.name.encode(), b"w")
        if not stream:
            return None
        try:
            _LIBC.malloc_info(0, stream)
        finally:
            _LIBC.fclose(stream)
        xml = out.read()
    arenas = []
    for heap in re.findall(rb'<heap nr="\d+">(.*?)</heap>', xml, re.S):
        system = re.search(rb'<system type="current" size="(\d+)"/>', heap)
        free = re.search(rb'<total type="rest" count="\d+" size="(\d+)"/>', heap)
        arenas.append((int(system.group(1)) // 1024 if system else 0, int(free.group(1)) // 1024 if free else 0))
    return arenas


BIG_FREE_KB = 8 * 1024  # an arena keeping this much free holds a block like scrypt's (16 MiB)


def malloc_kept() -> tuple[int | None, int | None, int | None]:
    """(kB, arenas, big): the free memory glibc's malloc keeps in its arenas, how many arenas there are and how
    many of them keep BIG_FREE_KB or more free; None without glibc.

    Resident memory beyond memory in use is mostly this. glibc gives each thread an arena (at most 8 per core)
    and raises its trim threshold to twice the largest block it freed from mmap (mallopt(3)), so a block of
    scrypt's 16 MiB (an operator PIN check) freed inside a thread's arena stays there as its free top for good.
    Bounded by the arenas, not a leak. The terminal checks operator PINs on one thread of their own (PinPad), so
    one arena keeps such a block; but each in-process restart of the soak starts that thread anew, and it may
    take another arena: the soak's resident memory climbs in 16 MiB steps towards one such block per arena,
    which a process that really restarts (power cut, systemd) never does."""
    arenas = malloc_arenas()
    if arenas is None:
        return None, None, None
    return sum(free for _, free in arenas), len(arenas), sum(free >= BIG_FREE_KB for _, free in arenas)


def sqlite_in_use_kb() -> int:
    """What SQLite has allocated, over every connection in the process (sqlite3_memory_used; 0 where it cannot be
    had): mostly page caches, each at most `cache_size` (2 MB by default) a connection, filling as the journal
    grows past that. Bounded by configuration, so taken off memory in use before it is judged; a connection
    left open would show as file descriptors."""
    return 0 if _SQLITE is None else int(_SQLITE.sqlite3_memory_used()) // 1024


def open_fds() -> dict[str, int]:
    """Open file descriptors by what they are (socket, pipe, anon_inode:[eventpoll], /dev/ptmx, a path)."""
    kinds: Counter[str] = Counter()
    base = "/proc/self/fd"
    for name in os.listdir(base):
        try:
            target = os.readlink(f"{base}/{name}")
        except OSError:
            continue  # the listing's own descriptor
        kinds[re.sub(r"\[\d+\]$", "", target)] += 1
    return dict(kinds)


def thread_names() -> Counter[str]:
    return Counter(re.sub(r"[-_ (]?\d+\)?", "", t.name) for t in threading.enumerate())


def firmware_tasks(sim: Simulator) -> Counter[str]:
    """The firmware loop's tasks by coroutine, asked on the loop's own thread."""

    async def census() -> Counter[str]:
        me = asyncio.current_task()
        return Counter(
            getattr(t.get_coro(), "__qualname__", repr(t.get_coro())) for t in asyncio.all_tasks() if t is not me
        )

    return asyncio.run_coroutine_threadsafe(census(), sim._loop).result(10)


_OPAQUE = (
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.CodeType,
    types.FrameType,
    threading.Lock().__class__,
    threading.Thread,
)


def reachable(roots: list[Any]) -> tuple[int, int]:
    """(bytes, gc-tracked objects) of everything reachable from `roots`, each object once; classes, modules,
    functions, frames, locks and threads are not followed."""
    seen: set[int] = set()
    stack = list(roots)
    size = tracked = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _OPAQUE):
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj)
        tracked += gc.is_tracked(obj)
        stack.extend(gc.get_referents(obj))
    return size, tracked


def records(sim: Simulator, till: Till) -> list[Any]:
    """What the simulator and the soak keep by design: it grows with the transactions and is no leak."""
    host, wallet, printer = sim.host, sim.wallet, sim.printer
    return [
        host.ledger,
        host.host_log,
        host.issuer.accounts,
        getattr(host, "_answered", {}),
        getattr(host, "_accounts_of", {}),
        getattr(host, "_settled_batches", {}),
        wallet.orders,
        wallet.requests,
        printer.raw,
        printer.decoder.receipts,
        printer.decoder.unknown,
        till.expected,
        till.sales,
        till.restarts,
        getattr(till.after_restart, "taken", []),  # the soak's own census after each restart
    ]


def census() -> Counter[str]:
    """gc-tracked objects by type (to say what grew)."""
    return Counter(type(o).__qualname__ for o in gc.get_objects())


def journal_count(sim: Simulator) -> int:
    db = sqlite3.connect(f"file:{sim.data_dir / 'journal.sqlite3'}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute("SELECT COUNT(*) FROM transactions").fetchone()[0])
    finally:
        db.close()


def sample(sim: Simulator, till: Till, done: int, started: float) -> Sample:
    gc.collect()
    size, objs = reachable(records(sim, till))
    rss = rss_kb()
    heap = heap_in_use_kb()
    kept, arenas, big = malloc_kept()
    return Sample(
        done=done,
        elapsed=time.monotonic() - started,
        rss_kb=rss,
        heap_kb=heap,
        sqlite_kb=sqlite_in_use_kb(),
        fds=sum(open_fds().values()),
        threads=threading.active_count(),
        tasks=sum(firmware_tasks(sim).values()),
        objects=len(gc.get_objects()),
        records_kb=size // 1024,
        records_objects=objs,
        rows=journal_count(sim),
        kept_kb=kept,
        arenas=arenas,
        big_free=big,
    )


def line(s: Sample, total: int) -> str:
    heap = f"{s.heap_kb / 1024:5.1f}, sqlite {s.sqlite_kb / 1024:3.1f}" if s.heap_kb is not None else "n/a"
    kept = ""
    if s.kept_kb is not None:
        kept = f"; malloc keeps {s.kept_kb / 1024:5.1f} free, {s.big_free} of {s.arenas} arenas 8 MiB+"
    return (
        f"{s.done:>6}/{total}  {s.elapsed:7.0f} s  rss {s.rss_kb / 1024:6.1f} MB (in use {heap}{kept})  "
        f"fds {s.fds:3}  "
        f"threads {s.threads:2}  tasks {s.tasks:2}  objects {s.objects:7}  rows {s.rows:6}  "
        f"sim records {s.records_kb / 1024:5.1f} MB"
    )


@dataclass
class AfterRestart:
    """What is alive right after a restart, once the terminal restarted away is gone."""

    restart: int
    threads: int
    fds: int
    journal_fds: int  # the journal's database file open: one per SQLite connection
    loops: int  # epoll instances: one per open event loop (the terminal's, the simulated acquirer's)
    stale: bool  # the terminal restarted away was still alive STALE_AFTER seconds later: something holds it


STALE_AFTER = 10.0  # seconds; a power-cut terminal's NFC reader thread ends within a poll (nfcpy: up to 2 s)


class RestartCensus:
    """Called by the till after each restart (power cut or clean): waits until the terminal restarted away has
    been let go of (its threads ended, nothing else holding it), then counts what is alive."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._current = weakref.ref(sim.terminal)
        self.taken: list[AfterRestart] = []

    def __call__(self) -> None:
        old, self._current = self._current, weakref.ref(self._sim.terminal)
        deadline = time.monotonic() + STALE_AFTER
        while True:
            gc.collect()
            if old() is None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        fds = open_fds()
        journal = os.path.realpath(self._sim.data_dir / "journal.sqlite3")
        self.taken.append(
            AfterRestart(
                restart=len(self.taken) + 1,
                threads=threading.active_count(),
                fds=sum(fds.values()),
                journal_fds=fds.get(journal, 0),
                loops=fds.get("anon_inode:[eventpoll]", 0),
                stale=old() is not None,
            )
        )


def judge_restarts(taken: list[AfterRestart]) -> list[str]:
    """Leaks across restarts: a terminal restarted away that stayed alive; threads, descriptors, journal
    connections or event loops that grew from the first restarts to the last (the most of the first three
    against the fewest of the last three, as for the samples)."""
    leaks = [
        f"the terminal restarted away at restart {a.restart} was still alive {STALE_AFTER:g} s later"
        for a in taken
        if a.stale
    ]
    if len(taken) < 2:
        return leaks
    first, last = taken[:3], taken[-3:]
    for what in ("threads", "fds", "journal_fds", "loops"):
        before = max(getattr(a, what) for a in first)
        after = min(getattr(a, what) for a in last)
        limit = THRESHOLDS[f"restart_{what}"]
        if after - before > limit:
            leaks.append(
                f"{what} right after a restart: {before} -> {after} over {len(taken)} restarts (limit +{limit})"
            )
    return leaks


# --- checking as it goes ----------------------------------------------------------------------------


@dataclass
class Checks:
    """What is checked from the simulator's logs before they are dropped."""

    dialect: str
    requests: int = 0
    wallet_requests: int = 0
    receipts: int = 0
    last_stan: int = 0
    last_ksn: int = -1
    findings: list[str] = field(default_factory=list)
    _first_row: int = 0

    def wire(self, sim: Simulator) -> None:
        """Take the acquirer's message log: a new sale's STAN is above the last one's (wrapping after
        999999), a PIN block's KSN above the last one's."""
        spec = SPEC_AES if self.dialect == "aes-dukpt" else SPEC
        logged = sim.host.host_log
        taken = logged[: len(logged)]
        del logged[: len(taken)]
        for direction, raw in taken:
            if direction != "request":
                continue
            self.requests += 1
            try:
                doc, _ = iso8583.decode(raw, spec)
            except iso8583.DecodeError:
                self.findings.append("the acquirer received a request it cannot decode")
                continue
            if doc.get("t") == "0200" and doc.get("3") == "000000":
                stan = int(doc.get("11", "0"))
                if stan <= self.last_stan and not (self.last_stan > 990000 and stan < 10000):
                    self.findings.append(f"sale STAN {stan} after {self.last_stan}")
                self.last_stan = stan
            if "52" in doc and doc.get("53"):
                ksn = int(doc["53"], 16)
                if ksn <= self.last_ksn:
                    self.findings.append(f"KSN {doc['53']} not above the previous one")
                self.last_ksn = ksn

    def receipts_and_requests(self, sim: Simulator, till: Till) -> None:
        """Receipts printed since the last check: APPROVED only on approved rows. Then drop them, and the
        gateway's request log."""
        printer = sim.printer
        cut = printer.decoder.receipts
        taken = cut[: len(cut)]
        path = sim.data_dir / "journal.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            db.row_factory = sqlite3.Row
            rows = [
                dict(r)
                for r in db.execute(
                    "SELECT * FROM transaction_summary WHERE id > ? ORDER BY id", (max(0, self._first_row - 100),)
                )
            ]
        finally:
            db.close()
        self.findings += [f"{f.invariant}: {f.detail}" for f in invariants.receipt_truth(taken, rows)]
        if rows:
            self._first_row = rows[-1]["id"]
        self.receipts += len(taken)
        del cut[: len(taken)]
        del printer.raw[: len(printer.raw)]
        till.receipts_due = max(0, till.receipts_due - len(taken))
        gw = sim.wallet.requests
        n = len(gw)
        self.wallet_requests += n
        del gw[:n]

    def take(self, sim: Simulator, till: Till) -> None:
        self.wire(sim)
        self.receipts_and_requests(sim, till)


class ErrorLog(logging.Handler):
    """Counts ERROR (and worse) records by logger and message template."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.name}: {str(record.msg)[:90]}"] += 1


# --- the run --------------------------------------------------------------------------------------


def soak_config(host_timeout: float) -> Config:
    """config/sim.toml with the waits a soak would otherwise spend idle cut short."""
    cfg = load(DEFAULT_CONFIG)
    return dataclasses.replace(
        cfg,
        timeouts=dataclasses.replace(cfg.timeouts, host=host_timeout),
        wallet=dataclasses.replace(
            cfg.wallet, qr_timeout=4, poll_interval=0.1, confirm_timeout=1.0, confirm_interval=0.1
        ),
    )


@dataclass
class Outcome:
    counts: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    unexpected_total: int = 0


def run_one(till: Till, kind: soak_mix.Kind, out: Outcome, number: int) -> None:
    name = kind.__name__
    began = time.monotonic()
    log.info("soak: transaction %d: %s", number, name)
    try:
        if kind(till) is False:  # nothing to void or refund yet
            name = "swipe_approved"
            soak_mix.swipe_approved(till)
        till.idle()
    except (Unexpected, TimeoutError) as exc:
        out.unexpected_total += 1
        if len(out.unexpected) < 50:
            out.unexpected.append(f"#{number} {name}: {exc}")
        log.warning("soak: transaction %d (%s) went wrong: %s", number, name, exc)
        till.recover()
    finally:
        till.clear_faults()
        till.note_sales()
    out.counts[name] += 1
    out.seconds[name] += time.monotonic() - began


def per_1000(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of (transactions, value), per 1,000 transactions."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return 1000 * sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def judge(samples: list[Sample]) -> tuple[list[str], dict[str, float]]:
    """Leaks over the samples from the end of the warm-up to the end; and the growth figures.

    Memory is judged on its slope over the second half of the run: caches that fill and then stop (SQLite's
    page cache, a thread's malloc arena) raise it early and then leave it flat; a leak keeps it rising.
    Counts (fds, threads, tasks) are judged at the start against the end."""
    start, end = samples[0], samples[-1]
    measured = end.done - start.done
    half = [s for s in samples if s.done >= start.done + measured / 2]
    heap = all(s.heap_kb is not None for s in samples)
    beyond = [(s.done, (s.heap_kb or 0) - s.records_kb - s.sqlite_kb) for s in half]
    objects = [(s.done, s.objects - s.records_objects) for s in half]
    whole = 1000 / max(1, measured)
    nan = float("nan")
    figures = {
        "rss_kb_per_1000": (end.rss_kb - start.rss_kb) * whole,
        "heap_kb_per_1000": ((end.heap_kb or 0) - (start.heap_kb or 0)) * whole if heap else nan,
        "records_kb_per_1000": (end.records_kb - start.records_kb) * whole,
        "sqlite_kb_per_1000": (end.sqlite_kb - start.sqlite_kb) * whole,
        "late_kb_per_1000": per_1000(beyond) if len(half) >= 3 and heap else nan,
        "late_objects_per_1000": per_1000(objects) if len(half) >= 3 else nan,
    }
    leaks = []
    if measured >= MIN_JUDGED and len(half) >= 3:
        if heap and figures["late_kb_per_1000"] > THRESHOLDS["heap_kb_per_1000"]:
            leaks.append(
                f"memory in use beyond the simulator's records and SQLite's caches still grows "
                f"{figures['late_kb_per_1000']:.0f} kB per 1,000 transactions in the second half "
                f"(limit {THRESHOLDS['heap_kb_per_1000']})"
            )
        if figures["late_objects_per_1000"] > THRESHOLDS["objects_per_1000"]:
            leaks.append(
                f"Python objects beyond the simulator's records still grow "
                f"{figures['late_objects_per_1000']:.0f} per 1,000 transactions in the second half "
                f"(limit {THRESHOLDS['objects_per_1000']})"
            )
    # A sample can land just after a restart (a printer or a reader not open yet) or while a connection is in
    # flight: compare the most of the first three samples with the fewest of the last three. A leak keeps
    # climbing, so it shows in both.
    first, last = samples[:3], samples[-3:]
    for what in ("fds", "threads", "tasks"):
        before = max(getattr(s, what) for s in first)
        after = min(getattr(s, what) for s in last)
        if after - before > THRESHOLDS[what]:
            leaks.append(
                f"{what}: {before} -> {after} (the most of the first three samples, the fewest of the "
                f"last three; limit +{THRESHOLDS[what]})"
            )
    return leaks, figures


def journal_tally(rows: list[dict[str, Any]]) -> Counter[tuple[str, str, str]]:
    return Counter((r["kind"], r["method"], r["status"]) for r in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--transactions", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--report-every", type=int, default=500, metavar="K")
    ap.add_argument(
        "--warmup", type=int, default=None, help="transactions before the start sample (default: a tenth, at most 500)"
    )
    ap.add_argument("--data", type=Path, default=None, help="keep the journal and soak.log here (default: a temp dir)")
    ap.add_argument("--host-timeout", type=float, default=1.5, help="seconds (config/sim.toml says 5)")
    ap.add_argument(
        "--trace-memory",
        action="store_true",
        help="also trace Python allocations (tracemalloc, slower) and name the places whose memory grew "
        "over the second half",
    )
    ap.add_argument(
        "--only",
        default="",
        metavar="KIND,...",
        help="run only these kinds of transaction, in turn (to reproduce one kind's trouble)",
    )
    args = ap.parse_args(argv)
    by_name = {kind.__name__: kind for kind, _ in soak_mix.MIX}
    only = [k for k in args.only.split(",") if k]
    unknown = [k for k in only if k not in by_name]
    if unknown:
        ap.error(f"no kind {unknown[0]!r}; the kinds are: {', '.join(by_name)}")
    total = args.transactions
    warmup = args.warmup if args.warmup is not None else min(500, total // 10)
    if total < 1 or not 0 <= warmup < total or args.report_every < 1:
        ap.error("need 1 <= transactions, 0 <= warmup < transactions, report-every >= 1")

    tmp = None
    if args.data is None:
        tmp = tempfile.TemporaryDirectory(prefix="countertop-soak-")
        data = Path(tmp.name)
    else:
        data = args.data
        data.mkdir(parents=True, exist_ok=True)
        if (data / "journal" / "journal.sqlite3").exists():
            ap.error(f"{data} already holds a soak's journal; give an empty folder")
    logs.setup(logging.INFO, data / "soak.log", console_level=logging.CRITICAL)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    # One clock for terminal and gateway here: a code nobody scanned is dead at its expiry, not 30 s later.
    walletorder.EXPIRY_MARGIN = timedelta(0)
    rng = random.Random(args.seed)
    cfg = soak_config(args.host_timeout)
    print(f"soak: {total} transactions, seed {args.seed}, warm-up {warmup}, data {data}", flush=True)
    started = time.monotonic()
    out = Outcome()
    samples: list[Sample] = []
    sim = Simulator(data / "journal", cfg, late_delay=args.host_timeout + 0.5)
    sim.start()
    code = 1
    cards = tempfile.TemporaryDirectory(prefix="countertop-soak-cards-")
    try:
        till = Till(sim, Path(cards.name), rng)
        restarts = RestartCensus(sim)
        till.after_restart = restarts
        checks = Checks(cfg.host.dialect)
        counted: Counter[str] = Counter()
        halfway: tracemalloc.Snapshot | None = None
        if warmup == 0:
            samples.append(sample(sim, till, 0, started))
            counted = census()
            print(line(samples[0], total) + "   <- start", flush=True)
        for i in range(1, total + 1):
            kind = by_name[only[(i - 1) % len(only)]] if only else soak_mix.pick(rng)
            run_one(till, kind, out, i)
            if i == warmup or i % args.report_every == 0 or i == total:
                checks.take(sim, till)
                s = sample(sim, till, i, started)
                if i >= warmup:
                    samples.append(s)
                if i == warmup:
                    counted = census()
                    if args.trace_memory:
                        tracemalloc.start(12)
                if args.trace_memory and halfway is None and i >= warmup + (total - warmup) / 2:
                    halfway = tracemalloc.take_snapshot()
                print(line(s, total) + ("   <- start (after warm-up)" if i == warmup else ""), flush=True)
        # Let the terminal finish what it does by itself: reversals, resends, wallet reconciliation.
        left = till.quiet(timeout=300)
        checks.take(sim, till)
        end = sample(sim, till, total, started)
        final = tracemalloc.take_snapshot() if halfway is not None else None
        tasks_end, threads_end, fds_end = firmware_tasks(sim), thread_names(), open_fds()
        samples.append(end)
        grown = census()
        grown.subtract(counted)
        code = report(
            sim, till, checks, out, errors, samples, left, tasks_end, threads_end, fds_end, grown, restarts.taken
        )
        if halfway is not None and final is not None:
            print_growth(halfway, final)
    finally:
        sim.close()
        cards.cleanup()
        if tmp is not None:
            tmp.cleanup()
    return code


def print_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int = 12) -> None:
    """The allocation sites whose live memory grew most between two snapshots, each with the calls that led
    there (the simulator's records among them: its ledger and orders grow by design)."""
    skip = (
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
        tracemalloc.Filter(False, f"*{Path(__file__).name}"),
    )
    diff = after.filter_traces(skip).compare_to(before.filter_traces(skip), "traceback")
    grew = [d for d in diff if d.size_diff > 0]
    print(
        f"\n== allocations grown over the second half (tracemalloc): {sum(d.size_diff for d in grew) / 1024:+.0f} kB "
        f"live in all, {sum(d.count_diff for d in grew):+} blocks =="
    )
    for d in grew[:top]:
        frames = [f for f in d.traceback if "site-packages" not in f.filename and "/lib/python3" not in f.filename]
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in (frames or list(d.traceback))[-1:-5:-1])
        print(f"{d.size_diff / 1024:+9.1f} kB {d.count_diff:+7} blocks  {where}")


def account(
    sim: Simulator, till: Till, checks: Checks
) -> tuple[list[str], list[dict[str, Any]], Counter[tuple[str, str, str]]]:
    """The accounting at the end: findings (empty when everything adds up), the journal's rows, their tally."""
    path = sim.data_dir / "journal.sqlite3"
    integrity = invariants.integrity(path)
    rows = invariants.journal_rows(path)
    found = [
        *([invariants.Finding("journal-integrity", integrity)] if integrity != "ok" else []),
        *invariants.host_vs_journal(sim.host.ledger, rows, sim.config.terminal.terminal_id),
        *invariants.wallet_vs_journal(sim.wallet.orders, rows),
        *invariants.unsettled(rows),
    ]
    findings = [f"{f.invariant}: {f.detail}" for f in found] + checks.findings
    tally = journal_tally(rows)
    expected = +till.expected
    for key in sorted(set(tally) | set(expected)):
        if tally[key] != expected[key]:
            findings.append(
                f"journal rows {'/'.join(key)}: {tally[key]}, the transactions run must leave {expected[key]}"
            )
    return findings, rows, tally


def report(
    sim: Simulator,
    till: Till,
    checks: Checks,
    out: Outcome,
    errors: ErrorLog,
    samples: list[Sample],
    left: int,
    tasks: Counter[str],
    threads: Counter[str],
    fds: dict[str, int],
    grown: Counter[str],
    after_restarts: list[AfterRestart],
) -> int:
    start, end = samples[0], samples[-1]
    findings, rows, tally = account(sim, till, checks)
    loop_errors = {
        k: n
        for k, n in errors.counts.items()
        if k.startswith(("asyncio", "hwsim.simulator", "firmware.shell.terminal: terminal:"))
    }
    leaks, fig = judge(samples)
    leaks += judge_restarts(after_restarts)
    ledger = sim.host.ledger
    orders = sim.wallet.orders

    print("\n== soak report ==")
    print(
        f"transactions      {end.done} in {end.elapsed:.0f} s ({end.elapsed / max(1, end.done) * 1000:.0f} ms each), "
        f"restarts: {dict(till.restarts)}"
    )
    print(
        "by kind (count, mean seconds)\n  "
        + "\n  ".join(
            f"{k:30} {n:6} {out.seconds[k] / n:6.2f}" for k, n in sorted(out.counts.items(), key=lambda kv: -kv[1])
        )
    )
    print(f"journal rows      {len(rows)}: " + ", ".join(f"{'/'.join(k)} {n}" for k, n in sorted(tally.items())))
    print(
        f"acquirer          {len(ledger)} ledger entries, {checks.requests} requests; gateway {len(orders)} orders, "
        f"{checks.wallet_requests} requests; printer {checks.receipts} receipts"
    )
    judged = end.done - start.done >= MIN_JUDGED
    late_kb = f"{fig['late_kb_per_1000']:+.0f} kB per 1,000" if judged else "not judged"
    late_objects = f"{fig['late_objects_per_1000']:+.0f} per 1,000" if judged else "not judged"
    print(
        f"resident memory   start {start.rss_kb / 1024:.1f} MB (after {start.done} transactions), end "
        f"{end.rss_kb / 1024:.1f} MB: {fig['rss_kb_per_1000']:+.0f} kB per 1,000 transactions"
    )
    if start.heap_kb is not None and end.heap_kb is not None:
        print(
            f"  in use          start {start.heap_kb / 1024:.1f} MB, end {end.heap_kb / 1024:.1f} MB: "
            f"{fig['heap_kb_per_1000']:+.0f} kB per 1,000, of which the simulator's records "
            f"{fig['records_kb_per_1000']:+.0f} kB ({start.records_kb / 1024:.1f} -> {end.records_kb / 1024:.1f} MB) "
            f"and SQLite {fig['sqlite_kb_per_1000']:+.0f} kB ({start.sqlite_kb / 1024:.1f} -> "
            f"{end.sqlite_kb / 1024:.1f} MB); beyond them, second half: {late_kb}"
        )
    else:
        print("  in use          not measured (needs glibc's mallinfo2, and no tracemalloc)")
    if start.kept_kb is not None and end.kept_kb is not None and start.heap_kb is not None and end.heap_kb is not None:
        rest0, rest1 = (x.rss_kb - (x.heap_kb or 0) - (x.kept_kb or 0) for x in (start, end))
        print(
            f"  kept free       by glibc's malloc, resident but neither in use nor given back (see malloc_kept): "
            f"start {start.kept_kb / 1024:.1f} MB, {start.big_free} of {start.arenas} arenas keeping 8 MiB or more; "
            f"end {end.kept_kb / 1024:.1f} MB, {end.big_free} of {end.arenas}. Resident beyond in use and kept "
            f"free (code, libraries, stacks): {rest0 / 1024:.1f} -> {rest1 / 1024:.1f} MB"
        )
    print(
        f"python objects    {start.objects} -> {end.objects} (the records' {start.records_objects} -> "
        f"{end.records_objects}); beyond them, second half: {late_objects}"
    )
    print("  grew most       " + ", ".join(f"{k} {n:+}" for k, n in grown.most_common(8) if n > 0))
    print(f"file descriptors  {start.fds} -> {end.fds}   {fds}")
    print(f"threads           {start.threads} -> {end.threads}   {dict(threads)}")
    print(f"firmware tasks    {start.tasks} -> {end.tasks}   {dict(tasks)}")
    if after_restarts:
        a, z = after_restarts[0], after_restarts[-1]
        print(
            f"after restarts    {len(after_restarts)} (each counted once the terminal restarted away was gone): "
            f"threads {a.threads} -> {z.threads}, fds {a.fds} -> {z.fds}, journal connections {a.journal_fds} -> "
            f"{z.journal_fds}, event loops {a.loops} -> {z.loops}; terminals restarted away still alive "
            f"{STALE_AFTER:g} s later: {sum(x.stale for x in after_restarts)}"
        )
    if not judged:
        print(
            f"(memory growth not judged: {end.done - start.done} transactions after the warm-up, fewer than "
            f"{MIN_JUDGED})"
        )
    if errors.counts:
        print("error log records " + "; ".join(f"{k} x{n}" for k, n in errors.counts.most_common(10)))
    problems = 0
    if left:
        print(f"UNSETTLED: {left} rows still undecided after waiting")
    for title, items in (
        ("ACCOUNTING", findings),
        ("LEAK", leaks),
        ("UNEXPECTED", out.unexpected),
        ("LOOP ERROR", [f"{k} x{n}" for k, n in loop_errors.items()]),
    ):
        for item in items[:30]:
            print(f"{title}: {item}")
        if len(items) > 30:
            print(f"{title}: ... and {len(items) - 30} more")
        problems += len(items)
    if out.unexpected_total > len(out.unexpected):
        print(f"UNEXPECTED: {out.unexpected_total} in all")
    ok = problems == 0 and not left
    print("soak: ok" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
