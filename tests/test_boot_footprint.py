"""What the boot-time and memory targets of issue 15 rest on: what an idle card-only terminal leaves unloaded, the
journal's schema built in one transaction, and the bootstrap's bytecode for the project's own code."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from firmware.errors import JournalError
from firmware.records import journal as journal_module
from firmware.records.journal import Journal
from firmware.records.schema import MIGRATIONS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from suite import run_config  # noqa: E402 - the benchmark's own card-only configuration

# Modules an idle terminal with no chip reader, no wallet and no back office has no use for: PC/SC (pyscard), the
# contact kernel and its desk, HTTP (and the email package it brings), python-escpos and its cache's pickle.
NOT_AT_IDLE = (
    "smartcard",
    "drivers.chip",
    "firmware.shell.chipdesk",
    "firmware.core.emv.contact",
    "http.client",
    "email.parser",
    "escpos",
    "pickle",
    "firmware.wallets.alipay",
    "firmware.wallets.desk",
)

# Boots `countertop run` and, when the idle screen is written, prints the modules loaded by then and leaves.
AT_IDLE = textwrap.dedent(
    """
    import io, os, sys
    class Screen(io.TextIOWrapper):
        def write(self, text):
            if "ENTER AMOUNT" in text:
                os.write(2, ("MODULES " + " ".join(sorted(sys.modules)) + "\\n").encode())
                os._exit(0)
            return super().write(text)
    sys.stdout = Screen(sys.stdout.detach(), encoding="utf-8", line_buffering=True)
    from firmware.shell import cli
    sys.exit(cli.main(["run", "--config", sys.argv[1]]))
    """
)


def test_an_idle_card_only_terminal_loads_no_chip_wallet_office_or_printer_library(tmp_path):
    config = run_config(tmp_path)
    assert "[chip]" not in config.read_text() and "[office]" not in config.read_text()
    done = subprocess.run(
        [sys.executable, "-c", AT_IDLE, str(config)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    line = next((x for x in done.stderr.splitlines() if x.startswith("MODULES ")), "")
    assert line, f"the terminal did not reach its idle screen: {done.stderr[-2000:]}"
    loaded = set(line.split()[1:])
    assert "firmware.shell.terminal" in loaded and "drivers.nfc" in loaded  # the terminal, its contactless reader
    assert sorted(m for m in NOT_AT_IDLE if m in loaded) == []


def test_a_new_journal_is_built_in_one_transaction(tmp_path, monkeypatch):
    """All pending schema steps commit together: a step that fails leaves the journal as it was (version 0, no
    table of the steps before it), and the next boot with good steps builds all of them."""
    path = tmp_path / "journal.sqlite3"
    monkeypatch.setattr(journal_module, "MIGRATIONS", (*MIGRATIONS[:3], "CREATE TABLE broken ("))
    with pytest.raises(JournalError):
        Journal(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 0
    assert db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall() == []
    db.close()
    monkeypatch.setattr(journal_module, "MIGRATIONS", MIGRATIONS)
    journal = Journal(path)
    assert journal._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    journal.close()


def test_an_upgrade_applies_every_pending_step(tmp_path):
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(f"BEGIN; {MIGRATIONS[0]}; {MIGRATIONS[1]}; PRAGMA user_version = 2; COMMIT;")
    db.close()
    journal = Journal(path)
    assert journal._db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {r[0] for r in journal._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    fresh = Journal(tmp_path / "fresh.sqlite3", tmp_path / "fresh.counters.json")
    assert tables == {r[0] for r in fresh._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    journal.close()
    fresh.close()


def _fake_checkout(tmp_path: Path) -> Path:
    """The bootstrap script in a tree of its own, with an installed .venv whose `countertop` does nothing."""
    tree = tmp_path / "tree"
    for folder in ("firmware", "drivers", "hw-sim/hwsim", "office"):
        (tree / folder).mkdir(parents=True)
    shutil.copy(ROOT / "countertop", tree / "countertop")
    (tree / "pyproject.toml").write_text("")
    venv = tree / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    (venv / "bin" / "countertop").write_text("#!/bin/sh\nexit 0\n")
    (venv / "bin" / "countertop").chmod(0o755)
    (venv / ".countertop-installed").touch()
    later = (tree / "pyproject.toml").stat().st_mtime + 10
    os.utime(venv / ".countertop-installed", (later, later))  # installed after pyproject.toml changed
    return tree


def test_the_bootstrap_compiles_the_projects_code_and_again_after_a_change(tmp_path):
    tree = _fake_checkout(tmp_path)
    source = tree / "firmware" / "sale.py"
    source.write_text("X = 1\n")
    tag = sys.implementation.cache_tag
    compiled = tree / "firmware" / "__pycache__" / f"sale.{tag}.pyc"
    stamp = tree / ".venv" / ".countertop-compiled"

    def bootstrap() -> None:
        done = subprocess.run(["sh", str(tree / "countertop"), "version"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr

    bootstrap()
    assert compiled.exists() and stamp.exists()
    first = compiled.read_bytes()
    source.write_text("X = 22\n")
    later = stamp.stat().st_mtime + 5
    os.utime(source, (later, later))
    bootstrap()
    assert compiled.read_bytes() != first  # made again for the changed file
    before = stamp.stat().st_mtime_ns
    (tree / "drivers" / "broken.py").write_text("def (\n")
    bootstrap()  # a file that does not compile does not stop the command, and the next run tries again
    assert stamp.stat().st_mtime_ns == before and compiled.exists()
