"""Crash consistency with real processes: the terminal as its own OS process, SIGKILLed at random points of
random transactions (journal commits among them), rebooted on the same data, and checked each time.

The quick version of `python -m hwsim.killharness` (see that module for the kill points and
`hwsim.invariants` for what is checked): a few dozen kills with a fixed seed. Where the kills land
differs from run to run (they depend on timing); the invariants must hold wherever they land.
"""

from __future__ import annotations

import io
import signal

from hwsim import invariants as inv
from hwsim.child import KillPoints, Reporter
from hwsim.killharness import KillHarness

QUICK_KILLS = 60
SEED = 11


def test_invariants_hold_across_kills(tmp_path):
    out = io.StringIO()
    with KillHarness(tmp_path, SEED, out=out, verbose=True) as harness:
        summary = harness.run(kills=QUICK_KILLS, seconds=float("inf"))
    report = summary.text() + "\n" + out.getvalue()
    assert summary.kills >= QUICK_KILLS, report
    assert summary.checks > summary.kills, report  # a check after every kill and reboot
    assert not summary.violations, report


def test_a_kill_point_kills_the_process_at_its_statement(tmp_path):
    """The child's kill points: the armed statement is where the process dies, and it says so first."""
    import multiprocessing
    import os
    import sqlite3

    r, w = os.pipe()

    def child() -> None:
        points = KillPoints(Reporter(w))
        points.install()
        points.arm(2, "during", 0.0, unit="commit")
        db = sqlite3.connect(tmp_path / "journal.sqlite3", isolation_level=None)
        db.execute("CREATE TABLE t (x)")
        for i in range(5):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO t VALUES (?)", (i,))
            db.execute("COMMIT")
        os._exit(0)  # not reached

    proc = multiprocessing.get_context("fork").Process(target=child)
    proc.start()
    proc.join(30)
    os.close(w)
    with os.fdopen(r, "rb") as stream:
        said = stream.read().decode()
    assert proc.exitcode == -signal.SIGKILL
    assert '"commit": true' in said and '"phase": "during"' in said
    assert inv.integrity(tmp_path / "journal.sqlite3") == "ok"
    rows = sqlite3.connect(tmp_path / "journal.sqlite3").execute("SELECT x FROM t").fetchall()
    assert rows in ([(0,)], [(0,), (1,)])  # the second commit, whole or not at all


def _row(**kw):
    row = {
        "id": 1,
        "kind": "sale",
        "method": "card",
        "entry_mode": "swipe",
        "stan": 1,
        "amount": 1250,
        "status": "approved",
        "response_code": "00",
        "note": "",
        "rrn": "263360000001",
        "original_id": None,
        "order_no": "",
        "refunded": 0,
    }
    return {**row, **kw}


def _entry(**kw):
    entry = {
        "kind": "sale",
        "stan": 1,
        "amount": 1250,
        "rrn": "263360000001",
        "response_code": "00",
        "reversed": False,
        "voided": False,
        "terminal_id": "SIM00001",
    }
    return {**entry, **kw}


def test_the_checks_catch_what_they_are_for():
    """Each invariant check fails on the state it exists to catch (and passes on its healthy twin)."""
    from firmware.host import dialect

    assert inv.host_vs_journal([_entry()], [_row()], "SIM00001") == []
    [f] = inv.host_vs_journal([_entry()], [_row(status="unknown")], "SIM00001")  # charged, told not approved
    assert f.invariant == "host-vs-journal" and "charged stan 1" in f.detail
    assert inv.host_vs_journal([_entry(reversed=True)], [_row(status="reversed")], "SIM00001") == []
    assert inv.host_vs_journal([_entry(reversed=True)], [_row()], "SIM00001")  # journal says paid, host undid it

    assert inv.charged_once([_entry(), _entry(stan=2)], {}, "SIM00001")[0].invariant == "charged-once"
    assert inv.charged_once([_entry(), _entry(stan=2, reversed=True)], {}, "SIM00001") == []

    approved = "消费 SALE\n流水号 TRACE              000001\n交易成功 APPROVED"
    assert inv.receipt_truth([approved], [_row()]) == []
    assert inv.receipt_truth([approved], [_row(status="reversed")])[0].invariant == "receipt-truth"
    assert (
        inv.receipt_truth([approved.replace("交易成功 APPROVED", "交易失败 DECLINED")], [_row(status="declined")]) == []
    )

    def msg(mti, stan, **fields):
        doc = {
            "t": mti,
            "11": f"{stan:06d}",
            "41": "SIM00001",
            "42": "102030405060708",
            "7": "1202120000",
            "49": "156",
            **fields,
        }
        return ("request", dialect.encode(doc))

    reversal = {"3": "000000", "4": "000000001250", "90": "0200000001" + "1202115959" + "0" * 22}
    sale = {"3": "000000", "4": "000000001250", "22": "021", "35": "4242424242424242=30121010000000000000"}
    book = inv.MessageBook()
    log = [msg("0200", 1, **sale), msg("0400", 2, **reversal), msg("0401", 2, **reversal)]  # a retried reversal
    assert book.feed(log) == []
    log.append(msg("0200", 2, **sale))  # a new sale on the reversal's STAN
    [f] = book.feed(log)
    assert f.invariant == "stan-unique"
    assert inv.MessageBook().feed([msg("0200", 1, **sale), msg("0200", 1, **sale)])  # a sale is never resent
    batch = {
        "3": "920000",
        "60": "000001",
        "74": "0000000000",
        "76": "0000000001",
        "86": "0" * 16,
        "88": "0000000000001250",
    }
    assert inv.MessageBook().feed([msg("0500", 3, **batch), msg("0500", 3, **batch)]) == []  # an unanswered one
    assert inv.MessageBook().feed([msg("0500", 3, **batch), msg("0500", 3, **{**batch, "88": "0" * 15 + "9"})])

    assert inv.unsettled([_row(status="pending")])[0].invariant == "settled"
