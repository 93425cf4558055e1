"""What a long run and in-process restarts leave behind: operator-PIN checks (scrypt, 16 MiB each) stay on one
thread of their own, and power cuts and clean restarts leave no thread, file descriptor, SQLite connection,
event loop or terminal behind (counted, not timed: the soak's resident-memory growth was traced to glibc keeping
scrypt's block in the malloc arena of every executor thread that ever checked a PIN)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import re
import threading
import weakref
from collections import Counter

from conftest import sim_config, wait_until
from test_e2e import sale


def manager_signs_in(sim) -> None:
    sim.keys("{MENU}")
    sim.wait_for("MANAGER PIN")
    sim.keys("8888{ENTER}")
    sim.wait_for("1 VOID")
    sim.keys("{CANCEL}")
    sim.wait_for("CANCELLED")
    sim.keys("{ENTER}")
    sim.wait_for("ENTER AMOUNT")


def approved_sale(sim) -> None:
    printed = len(sim.receipts)
    sale(sim, "visa-approve")
    sim.wait_for("APPROVED")
    sim.wait_for_receipts(printed + 2)
    sim.keys("{ENTER}")
    sim.wait_for("ENTER AMOUNT")


def test_operator_pins_are_checked_on_one_thread_of_their_own(tmp_path, monkeypatch):
    """Every check runs on the same thread, also while the loop's shared executor is busy (where a shared
    worker pool would start another worker): one thread, so one malloc arena holds scrypt's block."""
    from hwsim import Simulator

    ran_on: list[tuple[int, str]] = []
    real_scrypt = hashlib.scrypt

    def scrypt(*args, **kwargs):
        ran_on.append((threading.get_ident(), threading.current_thread().name))
        return real_scrypt(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", scrypt)
    release = threading.Event()
    with Simulator(tmp_path / "data", sim_config(host=2.0)) as sim:
        manager_signs_in(sim)
        for _ in range(2):  # a worker of the loop's default executor held up (printing, a wallet's request)
            busy = asyncio.run_coroutine_threadsafe(asyncio.to_thread(release.wait, 30), sim._loop)
            try:
                approved_sale(sim)
                manager_signs_in(sim)
            finally:
                release.set()
                busy.result(30)
                release.clear()
    assert ran_on, "no operator PIN was checked"
    assert len({ident for ident, _ in ran_on}) == 1, f"operator PINs checked on several threads: {set(ran_on)}"
    assert not any(name.startswith("asyncio") for _, name in ran_on), (
        f"operator PINs checked on the loop's shared executor: {set(ran_on)}"
    )


def _census() -> dict[str, Counter[str]]:
    """Threads by name and open file descriptors by what they are (the journal's files, sockets, pipes, the
    event loops' epoll instances), read from the OS: no walk over the garbage collector's objects, which
    would keep a cursor of the running terminal alive and its transaction from committing."""
    fds: Counter[str] = Counter()
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[re.sub(r"\[\d+\]$", "", os.readlink(f"/proc/self/fd/{name}"))] += 1
        except OSError:
            continue  # the listing's own descriptor
    return {"threads": Counter(re.sub(r"[-_ (]?\d+\)?", "", t.name) for t in threading.enumerate()), "fds": fds}


def test_restarts_leave_nothing_behind(tmp_path):
    """Power cuts and clean restarts, each after a sale and an operator sign-in. The terminal restarted away
    must die (its reader threads end within a poll of nfcpy's, up to 2 s), and then the threads and
    descriptors alive after the last restart are those alive after the first (a connection may be in flight)."""
    from hwsim import Simulator

    def gone(terminal: weakref.ref[object]) -> bool:
        gc.collect()
        return terminal() is None

    with Simulator(tmp_path / "data", sim_config(host=2.0)) as sim:
        censuses = []
        for crash in (True, True, False, True, False, True):
            approved_sale(sim)
            manager_signs_in(sim)
            before = weakref.ref(sim.terminal)
            sim.restart(crash=crash)
            wait_until(lambda before=before: gone(before), timeout=10, what="the terminal restarted away let go of")
            censuses.append(_census())
        first = censuses[0]
        assert first["fds"]["anon_inode:[eventpoll]"] >= 1 and any("journal.sqlite3" in k for k in first["fds"])

        def same_as_first() -> bool:
            now = _census()
            return now["threads"] == first["threads"] and not now["fds"] - first["fds"]

        try:
            wait_until(same_as_first, timeout=10, what="the census after the first restart")
        except TimeoutError:
            now = _census()
            raise AssertionError(
                f"threads after the first restart {dict(first['threads'])}, now {dict(now['threads'])}; "
                f"descriptors more now: {dict(now['fds'] - first['fds'])}"
            ) from None
