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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from firmware.errors import JournalError
from firmware.records import journal as journal_module
from firmware.records.journal import Journal
from firmware.records.schema import MIGRATIONS
from firmware.wallets.keycheck import CheckedKeys, load_private_key

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
    for folder in ("firmware", "drivers", "hw-sim/hwsim"):  # no office/: a tree without one still compiles
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


MERCHANT_PEM = (ROOT / "hw-sim" / "hwsim" / "testkeys" / "merchant.pem").read_bytes()  # a TEST-ONLY key


@pytest.fixture
def loads(monkeypatch):
    """Every private-key load by the firmware's wallets (not the simulator's gateways), as (the bytes, whether the
    RSA check was skipped)."""
    seen: list[tuple[bytes, bool]] = []
    real = serialization.load_pem_private_key

    def spy(data, password, backend=None, *, unsafe_skip_rsa_key_validation=False):
        if sys._getframe(1).f_globals["__name__"].startswith("firmware."):
            seen.append((bytes(data), unsafe_skip_rsa_key_validation))
        return real(data, password, unsafe_skip_rsa_key_validation=unsafe_skip_rsa_key_validation)

    monkeypatch.setattr(serialization, "load_pem_private_key", spy)
    return seen


def test_a_wallet_key_is_rsa_checked_the_first_time_its_bytes_are_loaded_only(tmp_path, loads):
    checked = CheckedKeys(tmp_path / "keys" / "checked-keys")
    first = checked.load(MERCHANT_PEM)
    again = CheckedKeys(tmp_path / "keys" / "checked-keys").load(MERCHANT_PEM)  # the next boot
    assert first.private_numbers() == again.private_numbers()
    other = MERCHANT_PEM + b"\n"  # other bytes (the same key): checked again
    CheckedKeys(tmp_path / "keys" / "checked-keys").load(other)
    assert loads == [(MERCHANT_PEM, False), (MERCHANT_PEM, True), (other, False)]
    assert (tmp_path / "keys" / "checked-keys").stat().st_mode & 0o077 == 0
    assert load_private_key(MERCHANT_PEM) and loads[-1] == (MERCHANT_PEM, False)  # no list: always checked


def test_a_key_that_fails_the_rsa_check_is_refused_at_every_load_and_never_listed(tmp_path):
    numbers = serialization.load_pem_private_key(MERCHANT_PEM, None).private_numbers()
    bad = rsa.RSAPrivateNumbers(  # a damaged CRT coefficient: parses, but signs wrongly
        numbers.p, numbers.q, numbers.d, numbers.dmp1, numbers.dmq1, numbers.iqmp ^ 1, numbers.public_numbers
    ).private_key(unsafe_skip_rsa_key_validation=True)
    pem = bad.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    checked = CheckedKeys(tmp_path / "checked-keys")
    for _ in range(2):
        with pytest.raises(ValueError):
            checked.load(pem)
    assert not (tmp_path / "checked-keys").exists()


def test_a_terminal_checks_its_wallet_keys_at_its_first_boot_only(tmp_path, loads):
    from hwsim import Simulator

    wechat_pem = (ROOT / "hw-sim" / "hwsim" / "testkeys" / "wechat-merchant.pem").read_bytes()
    firmware_keys = {MERCHANT_PEM.strip(), wechat_pem.strip()}  # the two the simulator's config hands the terminal

    def terminal_loads() -> list[bool]:
        return sorted(skipped for data, skipped in loads if data.strip() in firmware_keys)

    with Simulator(tmp_path) as sim:
        sim.wait_for("ENTER AMOUNT")
        assert terminal_loads() == [False, False]  # checked in full
        sim.restart()  # a power cut, and the terminal boots again on the same data
        sim.wait_for("ENTER AMOUNT")
    assert terminal_loads() == [False, False, True, True]  # the same bytes: not again
    assert len((tmp_path / "keys" / "checked-keys").read_text().split()) == 2
