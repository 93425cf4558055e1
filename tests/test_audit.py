"""The audit log: who did what, hash-chained so that an edit or a removal shows."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime

from firmware.records.journal import Journal
from test_refunds import approved_sale, manager, refund

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def filled(path) -> Journal:
    j = Journal(path)
    for i in range(5):
        j.audit("manager", "refund", f"cash {100 + i} against sale {i}", NOW)
    return j


def test_intact_chain(tmp_path):
    assert filled(tmp_path / "j.sqlite3").verify_audit() == (True, "5 entries, chain intact")


def tamper(path, sql):
    db = sqlite3.connect(path)
    db.execute(sql)
    db.commit()
    db.close()


def test_edit_is_detected(tmp_path):
    filled(tmp_path / "j.sqlite3").close()
    tamper(tmp_path / "j.sqlite3", "UPDATE audit SET detail = 'cash 1 against sale 2' WHERE id = 3")
    assert Journal(tmp_path / "j.sqlite3").verify_audit() == (False, "entry 3 was altered")


def test_removals_are_detected(tmp_path):
    filled(tmp_path / "j.sqlite3").close()
    tamper(tmp_path / "j.sqlite3", "DELETE FROM audit WHERE id = 2")
    assert Journal(tmp_path / "j.sqlite3").verify_audit() == (False, "entry 2 is missing")
    filled(tmp_path / "k.sqlite3").close()
    tamper(tmp_path / "k.sqlite3", "DELETE FROM audit WHERE id = 5")
    assert Journal(tmp_path / "k.sqlite3").verify_audit() == (False, "1 entries at the end were removed")


def test_terminal_actions_are_audited_and_verify_command(sim):
    original = approved_sale(sim)
    manager(sim, "0000")
    sim.wait_for("WRONG OPERATOR PIN")
    sim.keys("{ENTER}")
    refund(sim, original["stan"], "300", "cash")
    sim.wait_for("CASH REFUND")
    db = sqlite3.connect(sim.data_dir / "journal.sqlite3")
    actions = [r[0] for r in db.execute("SELECT action FROM audit ORDER BY id")]
    db.close()
    assert actions == ["sign-in refused", "sign-in", "refund"]
    ok = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "audit", "verify", "--data-dir", str(sim.data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0 and "3 entries, chain intact" in ok.stdout
