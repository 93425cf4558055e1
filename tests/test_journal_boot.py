"""The journal at boot: a damaged, emptied or missing journal is refused and left as it is; counters never go
backwards, even when an older copy of the journal is put back; the counters' copy is written before a commit."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from datetime import UTC, datetime

import pytest

from conftest import sim_config, wait_until
from firmware.errors import JournalError
from firmware.host import dialect
from firmware.records.journal import Journal, NewSale
from test_e2e import sale

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SALE = NewSale("card", "swipe", 1250, "CNY", "424242******4242", "SIM00001", "102030405060708")


def used(tmp_path, sales: int = 3) -> Journal:
    j = Journal(tmp_path / "journal.sqlite3")
    for _ in range(sales):
        row, _ = j.begin_sale(SALE, NOW)
        j.finish(row, "approved", NOW)
    j.take_counter("dukpt:FFFF9876543210E00000", 1)
    j.audit("manager", "report", "x", NOW)
    return j


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_emptied_journal_is_refused_and_kept(tmp_path):
    used(tmp_path).close()
    path = tmp_path / "journal.sqlite3"
    for leftover in tmp_path.glob("journal.sqlite3-*"):
        leftover.unlink()
    path.write_bytes(b"")  # what a bad shutdown or a careless copy leaves
    with pytest.raises(JournalError, match="missing or empty.*STAN 3") as refused:
        Journal(path)
    assert refused.value.screen == "JOURNAL MISSING"
    assert path.read_bytes() == b""  # not migrated into a fresh journal


def test_a_missing_journal_is_refused_and_not_created(tmp_path):
    used(tmp_path).close()
    for f in tmp_path.glob("journal.sqlite3*"):
        f.unlink()
    with pytest.raises(JournalError, match="journal new"):
        Journal(tmp_path / "journal.sqlite3")
    assert not (tmp_path / "journal.sqlite3").exists()


def test_a_new_terminal_starts_a_journal(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3")  # no counters' copy yet: a first boot
    assert j.begin_sale(SALE, NOW)[1] == 1


def _checkpointed(tmp_path):
    j = used(tmp_path, sales=200)
    j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    j.close()
    return tmp_path / "journal.sqlite3"


@pytest.mark.parametrize("damage", ["flipped", "truncated", "zeroed page"])
def test_a_damaged_journal_is_refused_and_kept(tmp_path, damage):
    path = _checkpointed(tmp_path)
    data = bytearray(path.read_bytes())
    page = 4096
    if damage == "flipped":  # bits flipped in b-tree page headers
        for n in range(2, len(data) // page):
            for i in range(n * page, n * page + 12):
                data[i] ^= 0xA5
    elif damage == "truncated":
        del data[len(data) // 2 :]
    else:
        data[page * 3 : page * 4] = bytes(page)
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(JournalError) as refused:
        Journal(path)
    assert refused.value.screen == "JOURNAL DAMAGED" and "backup" in str(refused.value)
    assert digest(path) == before  # never overwritten or "repaired"


def test_a_queued_reversal_cannot_hide_behind_a_broken_index(tmp_path):
    j = used(tmp_path, sales=50)
    row, _ = j.begin_sale(SALE, NOW)
    j.finish(row, "unknown", NOW)  # its reversal is queued
    assert len(j.queued_reversals()) == 1
    j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    j.close()
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    (rootpage,) = db.execute("SELECT rootpage FROM sqlite_master WHERE name = 'transactions_queue'").fetchone()
    (page_size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    data = bytearray(path.read_bytes())
    start = (rootpage - 1) * page_size
    cells = data[start + 100 if rootpage == 1 else start : start + page_size]
    # Turn the queued reversal's index key into another status: the row is still 'queued', its index says not.
    at = bytes(cells).find(b"queued")
    assert at > 0
    data[start + at : start + at + 6] = b"queuez"
    path.write_bytes(bytes(data))
    with pytest.raises(JournalError, match="damaged"):
        Journal(path)


def test_an_older_copy_put_back_continues_the_counters(tmp_path):
    j = used(tmp_path, sales=2)
    j._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    shutil.copy(tmp_path / "journal.sqlite3", tmp_path / "backup.sqlite3")
    for _ in range(3):
        j.begin_sale(SALE, NOW)
    dukpt = j.take_counter("dukpt:FFFF9876543210E00000", 1)
    j.close()
    for f in tmp_path.glob("journal.sqlite3*"):
        f.unlink()
    shutil.copy(tmp_path / "backup.sqlite3", tmp_path / "journal.sqlite3")  # the backup of two sales
    j = Journal(tmp_path / "journal.sqlite3")
    assert len(j.rows()) == 2
    assert j.begin_sale(SALE, NOW)[1] == 6  # STANs 3-5 went out already: not again
    assert j.take_counter("dukpt:FFFF9876543210E00000", 1) == dukpt + 1  # no KSN twice
    ok, summary = j.verify_audit()
    assert ok, summary


def test_start_new_continues_every_counter(tmp_path):
    used(tmp_path).close()
    for f in tmp_path.glob("journal.sqlite3*"):
        f.unlink()
    j = Journal.start_new(tmp_path / "journal.sqlite3")
    assert j.rows() == [] and j.begin_sale(SALE, NOW)[1] == 4
    assert j.take_counter("dukpt:FFFF9876543210E00000", 1) == 2
    j.close()
    with pytest.raises(JournalError, match="not empty"):
        Journal.start_new(tmp_path / "journal.sqlite3")


def test_no_commit_without_the_counters_copy(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3")
    j.begin_sale(SALE, NOW)
    copy = tmp_path / "keys" / "journal.counters.json"
    copy.unlink()
    copy.mkdir()  # the copy cannot be replaced now
    with pytest.raises(JournalError, match="counters"):
        j.begin_sale(SALE, NOW)
    assert len(j.rows()) == 1 and j.counter("stan") == 1  # nothing committed: the STAN was not taken


def test_a_terminal_will_not_reuse_a_ksn_after_its_journal_was_emptied(tmp_path, no_loop_errors):
    """The issue's case: an emptied journal used to boot as a new one — STAN, batch and the DUKPT counter back
    at 1, so KSNs were reused. Now it refuses to start; started anew on purpose, every counter continues."""
    from hwsim import Simulator, TerminalStopped

    data = tmp_path / "data"
    with Simulator(data, sim_config(host=2.0)) as sim:
        sale(sim, "visa-approve")
        sim.wait_for("APPROVED")
        first_ksn = dialect.decode(sim.host_log[0][1])["53"]
    for f in data.glob("journal.sqlite3*"):
        f.write_bytes(b"")
    sim = Simulator(data, sim_config(host=2.0))
    with pytest.raises(TerminalStopped):  # at once, not after the ready screen's 10 s wait
        sim.start()
    try:
        assert "JOURNAL MISSING" in sim.screen and "TERMINAL STOPPED" in sim.screen
    finally:
        sim.close()
    no_loop_errors.records.clear()  # the refusal is this test's point
    for f in data.glob("journal.sqlite3*"):
        f.unlink()
    Journal.start_new(data / "journal.sqlite3").close()
    with Simulator(data, sim_config(host=2.0)) as sim:
        sale(sim, "visa-approve")
        sim.wait_for("APPROVED")
        request = dialect.decode(sim.host_log[0][1])
        assert request["11"] == "000002"
        assert int(request["53"][-5:], 16) > int(first_ksn[-5:], 16)
        wait_until(lambda: sim.journal()[0]["status"] == "approved", what="journaled")


def test_a_cash_refund_cut_off_before_the_payout_fails_at_boot(tmp_path):
    """Found by the kill harness: a cash refund row left pending became 'unknown' for ever and blocked its
    sale's refundable amount, for cash the till was never told to pay out."""
    j = Journal(tmp_path / "journal.sqlite3")
    row, _ = j.begin_sale(SALE, NOW)
    j.finish(row, "approved", NOW)
    j.begin_follow_up("refund", row, 1250, "cash", "k1", "1126120000", NOW)
    [cut] = j.recover(NOW)
    refund = j.row(cut["id"])
    assert refund["status"] == "failed" and "cash" in refund["note"]
    assert j.begin_follow_up("refund", row, 1250, "cash", "k2", "1126120000", NOW).amount == 1250  # all of it again
    assert j.retries("cash") == [] and j.queued_reversals() == []


def test_journal_new_from_the_command_line(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    used(data).close()
    for f in data.glob("journal.sqlite3*"):
        f.unlink()
    audit = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "audit", "verify", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert audit.returncode == 2  # no journal: nothing to verify
    made = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "journal", "new", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0 and "next STAN 4" in made.stdout, made.stderr
    again = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "journal", "new", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "not empty" in again.stderr and "Traceback" not in again.stderr


def test_a_second_process_cannot_write_the_copy_back(tmp_path):
    """Found in review: the copy was merged into a snapshot read at open, so `countertop items import` (a
    second Journal on the same file) wrote older values back, and a boot then took them: STANs and KSNs
    twice. Now the copy keeps the higher value per counter, under a lock, and boot never lowers one."""
    path = tmp_path / "journal.sqlite3"
    terminal = Journal(path)
    row, _ = terminal.begin_sale(SALE, NOW)
    terminal.take_counter("dukpt:FFFF9876543210E00000", 1)
    cli = Journal(path)  # opened now, written to later
    for _ in range(5):
        terminal.begin_sale(SALE, NOW)
    dukpt = terminal.take_counter("dukpt:FFFF9876543210E00000", 1)
    cli.audit("manager", "items imported", "x", NOW)  # the older view writes the copy
    cli.close()
    terminal.close()
    j = Journal(path)
    assert j.begin_sale(SALE, NOW)[1] == 7
    assert j.take_counter("dukpt:FFFF9876543210E00000", 1) == dukpt + 1


def test_a_copy_restored_from_an_older_backup_never_lowers_a_counter(tmp_path):
    j = used(tmp_path, sales=2)
    copy = tmp_path / "keys" / "journal.counters.json"
    old = copy.read_bytes()
    for _ in range(3):
        j.begin_sale(SALE, NOW)
    dukpt = j.take_counter("dukpt:FFFF9876543210E00000", 1)
    j.close()
    copy.write_bytes(old)  # the owner put back an older copy
    j = Journal(tmp_path / "journal.sqlite3")
    assert j.begin_sale(SALE, NOW)[1] == 6 and j.take_counter("dukpt:FFFF9876543210E00000", 1) == dukpt + 1
    j.close()
    assert b'"stan_seq": 6' in copy.read_bytes()  # and the copy is brought up to the journal


def test_the_stan_wraps_and_its_copy_does_not(tmp_path):
    j = Journal(tmp_path / "journal.sqlite3")
    with j._tx():
        j._set("stan", 999_998)
        j._set("stan_seq", 999_998)
    assert [j.begin_sale(SALE, NOW)[1] for _ in range(3)] == [999_999, 1, 2]
    j.close()
    j = Journal(tmp_path / "journal.sqlite3")
    assert j.counter("stan_seq") == 1_000_001 and j.begin_sale(SALE, NOW)[1] == 3
    j.close()
