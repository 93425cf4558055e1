"""The journal: schema, counters, recovery, and what survives a process killed mid-flight."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, date, datetime

import pytest

from firmware.errors import JournalError
from firmware.records.journal import Journal, NewSale
from firmware.records.schema import MIGRATIONS

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SALE = NewSale("card", "swipe", 1250, "CNY", "424242******4242", "SIM00001", "102030405060708")


def test_wal_full_and_schema_version(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    assert j._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert j._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    j.close()
    Journal(tmp_path / "j.sqlite3").close()  # reopening migrates nothing


def test_upgrade_from_schema_1_keeps_rows(tmp_path):
    path = tmp_path / "j.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(MIGRATIONS[0] + "; PRAGMA user_version = 1;")
    db.execute(
        "INSERT INTO transactions (kind, method, entry_mode, amount, currency, status, stan, terminal_id,"
        " merchant_id, created_at, updated_at) VALUES ('sale','card','swipe',5,'CNY','approved',1,'T','M','x','x')"
    )
    db.commit()
    db.close()
    j = Journal(path)
    [row] = j.rows()
    assert row["status"] == "approved" and row["original_id"] is None and row["attempts"] == 0


def test_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "j.sqlite3")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(JournalError, match="newer"):
        Journal(tmp_path / "j.sqlite3")


def test_sale_lifecycle_and_stan(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    row, stan = j.begin_sale(SALE, NOW)
    assert stan == 1 and j.rows()[0]["status"] == "pending"
    j.finish(row, "approved", NOW, response_code="00", auth_code="123456", rrn="263300000001")
    j.finish(row, "unknown", NOW)  # completed rows stay as they are
    r = j.rows()[0]
    assert (r["status"], r["auth_code"], r["masked_pan"]) == ("approved", "123456", "424242******4242")
    assert j.begin_sale(SALE, NOW)[1] == 2
    with pytest.raises(JournalError):
        j.finish(row, "pending", NOW)


def test_stan_wraps_after_999999(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    j._db.execute("INSERT INTO counters VALUES ('stan', 999998)")
    assert [j.begin_sale(SALE, NOW)[1] for _ in range(3)] == [999999, 1, 2]


def test_amount_must_be_positive(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    with pytest.raises(sqlite3.IntegrityError):
        j.begin_sale(NewSale("card", "swipe", 0, "CNY", "", "T", "M"), NOW)


def test_recover_marks_pending_unknown_and_queues_its_reversal(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    row, stan = j.begin_sale(SALE, NOW)
    assert [r["id"] for r in j.recover(NOW)] == [row]
    assert j.rows()[0]["status"] == "unknown"
    [queued] = j.queued_reversals()
    assert (queued.original_id, queued.original_stan, queued.amount, queued.stan) == (row, stan, 1250, stan + 1)
    assert j.recover(NOW) == []
    assert len(j.queued_reversals()) == 1  # queued once, not per boot


def test_unknown_outcome_queues_a_reversal_until_acknowledged(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    row, _ = j.begin_sale(SALE, NOW)
    j.finish(row, "declined", NOW, response_code="51")
    assert j.queued_reversals() == []  # a known outcome needs none
    row, _ = j.begin_sale(SALE, NOW)
    j.finish(row, "unknown", NOW, note="no answer")
    [q] = j.queued_reversals()
    j.note_attempt(q.id, NOW, "host down")
    [q] = j.queued_reversals()
    assert q.attempts == 1
    j.reversal_acknowledged(q.id, "00", NOW)
    assert j.queued_reversals() == []
    by_id = {r["id"]: r for r in j.rows()}
    assert by_id[row]["status"] == "reversed" and by_id[q.id]["status"] == "acknowledged"
    assert by_id[q.id]["original_id"] == row and by_id[q.id]["attempts"] == 2


CHILD = textwrap.dedent("""
    import os, signal, sys
    from datetime import datetime, timezone
    from pathlib import Path
    from firmware.records.journal import Journal, NewSale
    from firmware.records.schema import MIGRATIONS
    now = datetime(2026, 11, 26, tzinfo=timezone.utc)
    j = Journal(Path(sys.argv[1]))
    sale = NewSale("card", "swipe", 1250, "CNY", "424242******4242", "SIM00001", "102030405060708")
    approved, _ = j.begin_sale(sale, now)
    j.finish(approved, "approved", now, response_code="00", auth_code="654321", rrn="1")
    in_flight, _ = j.begin_sale(sale, now)
    j.take_counter("dukpt", 1)
    os.kill(os.getpid(), signal.SIGKILL)      # power cut: no close, no atexit, nothing flushed by Python
""")


def test_sigkill_loses_nothing_committed(tmp_path):
    path = tmp_path / "j.sqlite3"
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], cwd=os.getcwd(), capture_output=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    j = Journal(path)
    rows = j.rows()
    assert [r["status"] for r in rows] == ["approved", "pending"]
    assert rows[0]["auth_code"] == "654321"
    j.recover(NOW)
    assert [r["status"] for r in j.rows()] == ["approved", "unknown", "queued"]
    assert j.counter("stan") == 3 and j.counter("dukpt") == 1  # the reversal took STAN 3
    assert j.begin_sale(SALE, NOW)[1] == 4  # STAN never reused


def test_rows_never_hold_card_data(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    row, _ = j.begin_sale(SALE, NOW)
    j.finish(row, "approved", NOW, response_code="00", auth_code="1", rrn="2")
    j.close()
    data = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"4242424242424242" not in data


def test_finding_a_sale_by_date_looks_back_a_year_from_the_terminals_clock(tmp_path):
    """Search by date (MMDD) + amount + last four finds sales of the year before the terminal's own today, not
    SQLite's clock (which a moved clock, or a terminal whose clock is set by hand, does not share)."""
    j = Journal(tmp_path / "j.sqlite3")
    row, _ = j.begin_sale(SALE, NOW)
    j.finish(row, "approved", NOW, response_code="00", auth_code="123456", rrn="1")
    found = j.find_sale(date="1126", amount=1250, last4="4242", today=NOW.date())
    assert found is not None and found["id"] == row
    assert j.find_sale(date="1126", amount=1250, last4="4242", today=date(2027, 11, 20))["id"] == row
    assert j.find_sale(date="1126", amount=1250, last4="4242", today=date(2027, 12, 1)) is None  # over a year
    assert j.find_sale(date="1126", amount=990, last4="4242", today=NOW.date()) is None
