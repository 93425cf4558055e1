"""The soak (bench/soak.py, a documented command, not part of CI) kept from rotting: a dozen transactions of
different kinds through the real command, its accounting catching what does not add up, its leak verdicts."""

from __future__ import annotations

import dataclasses
import random
import re
import subprocess
import sys

from conftest import ROOT
from hwsim import Simulator

sys.path.insert(0, str(ROOT / "bench"))

import soak
import soak_mix

KINDS = (
    "swipe_approved",
    "tap_no_cvm",
    "qr_paid",
    "code_paid",
    "void",
    "refund",
    "host_no_answer",
    "power_cut_while_host_asked",
    "code_untrusted_answer",
    "code_payer_cancels",
    "settlement",
)


def test_a_short_soak_runs_every_kind_asked_and_adds_up(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "soak.py"),
            "--transactions",
            str(len(KINDS)),
            "--warmup",
            "2",
            "--report-every",
            "5",
            "--only",
            ",".join(KINDS),
            "--host-timeout",
            "2.5",
            "--data",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.rstrip().endswith("soak: ok")
    for kind in KINDS:
        assert re.search(rf"^  {kind} +1 ", out, re.MULTILINE), f"{kind} did not run once:\n{out}"
    start = rf"^\s+2/{len(KINDS)} .* rss .* fds .* threads .* tasks .* rows .*<- start"
    assert re.search(start, out, re.MULTILINE), out
    for figure in ("resident memory   start", "file descriptors", "threads", "firmware tasks", "journal rows"):
        assert figure in out
    assert "power cut': 1" in out
    assert re.search(r"^after restarts    1 .* journal connections .* event loops .* still alive .*: 0$", out, re.M), (
        out
    )
    assert re.search(r"^  kept free       by glibc's malloc", out, re.MULTILINE), out
    assert (tmp_path / "soak.log").stat().st_size > 0


def test_the_accounting_catches_what_does_not_add_up(tmp_path):
    with Simulator(tmp_path / "journal", soak.soak_config(2.0)) as sim:
        till = soak_mix.Till(sim, tmp_path, random.Random(1))
        soak_mix.swipe_approved(till)
        till.idle()
        checks = soak.Checks(sim.config.host.dialect)
        checks.take(sim, till)
        findings, _, tally = soak.account(sim, till, checks)
        assert findings == [] and tally == {("sale", "card", "approved"): 1}
        assert checks.requests == 1 and checks.receipts == 2
        assert sim.printer.decoder.receipts == [] and sim.host.host_log == []  # checked, then dropped
        # A charge the journal does not hold, and a row the transactions run should have left.
        sim.host.ledger.append(
            {
                "kind": "sale",
                "stan": 999,
                "amount": 700,
                "rrn": "x",
                "response_code": "00",
                "reversed": False,
                "voided": False,
                "terminal_id": sim.config.terminal.terminal_id,
                "transmitted_at": "",
                "settled": False,
            }
        )
        till.expect("refund", "cash", "approved")
        findings, _, _ = soak.account(sim, till, checks)
    assert any(f.startswith("host-vs-journal: the acquirer charged stan 999") for f in findings), findings
    assert "journal rows refund/cash/approved: 0, the transactions run must leave 1" in findings


def _sample(
    done: int,
    heap_kb: int = 40_000,
    threads: int = 9,
    fds: int = 36,
    tasks: int = 7,
    objects: int = 50_000,
    sqlite_kb: int = 1500,
) -> soak.Sample:
    return soak.Sample(
        done=done,
        elapsed=done / 3,
        rss_kb=heap_kb + 60_000,
        heap_kb=heap_kb,
        sqlite_kb=sqlite_kb,
        fds=fds,
        threads=threads,
        tasks=tasks,
        objects=objects,
        records_kb=done // 10,
        records_objects=done * 2,
        rows=done,
    )


def test_leak_verdicts():
    flat = [_sample(d) for d in range(500, 10_001, 500)]
    assert soak.judge(flat)[0] == []
    # A cache that fills early and then stops is no leak; memory that keeps rising is.
    filling = [_sample(d, heap_kb=40_000 + min(d, 3000) * 8) for d in range(500, 10_001, 500)]
    assert soak.judge(filling)[0] == []
    rising = [_sample(d, heap_kb=40_000 + d) for d in range(500, 10_001, 500)]  # 1 kB per transaction
    assert [v.split(" still")[0] for v in soak.judge(rising)[0]] == [
        "memory in use beyond the simulator's records and SQLite's caches"
    ]
    sqlite = [_sample(d, heap_kb=40_000 + d, sqlite_kb=1500 + d) for d in range(500, 10_001, 500)]
    assert soak.judge(sqlite)[0] == []  # SQLite's caches are measured and taken off
    objects = [_sample(d, objects=50_000 + 3 * d) for d in range(500, 10_001, 500)]  # records: 2 per transaction
    assert soak.judge(objects)[0][0].startswith("Python objects")
    climbing = [
        _sample(d, threads=9 + d // 1000, fds=36 + d // 1000, tasks=7 + d // 1000) for d in range(500, 10_001, 500)
    ]
    assert [v.split(":")[0] for v in soak.judge(climbing)[0]] == ["fds", "threads", "tasks"]
    # One sample just after a restart (fewer fds) or with a connection in flight (more) is no leak.
    dip = [_sample(500, fds=31)] + flat[1:-1] + [_sample(10_000, fds=38)]
    assert soak.judge(dip)[0] == []
    short = [_sample(d, heap_kb=40_000 + 10 * d) for d in range(100, 1001, 100)]  # too few to judge memory
    assert soak.judge(short)[0] == []


def _after(restart: int, threads: int = 12, fds: int = 40, journal_fds: int = 2, loops: int = 2) -> soak.AfterRestart:
    return soak.AfterRestart(restart, threads, fds, journal_fds, loops, stale=False)


def test_restart_verdicts():
    flat = [_after(n) for n in range(1, 26)]
    assert soak.judge_restarts(flat) == []
    # An executor worker at the first census, a connection in flight at the last: no leak.
    assert soak.judge_restarts([_after(1, threads=13), *flat[1:-1], _after(25, fds=41)]) == []
    climbing = [_after(n, 12 + n, 40 + n, 2 + n // 10, 2 + n // 10) for n in range(1, 26)]
    verdicts = soak.judge_restarts(climbing)
    assert [v.split(" right")[0] for v in verdicts] == ["threads", "fds", "journal_fds", "loops"], verdicts
    held = [*flat[:5], dataclasses.replace(flat[5], stale=True), *flat[6:]]
    assert soak.judge_restarts(held) == ["the terminal restarted away at restart 6 was still alive 10 s later"]
