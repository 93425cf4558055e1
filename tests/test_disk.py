"""A full or read-only disk, for real: the data folder on a small tmpfs that the test fills up.

Nothing is sent when the journal could not record it; an answer the journal cannot take is never shown as
approved and ends in a reversal once the disk has room again; the loop never dies. Mounting needs root
(CI runs as root); elsewhere these tests are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path

import pytest

from conftest import assert_ledger_agrees, sales, sim_config, wait_until
from test_e2e import sale


@contextlib.contextmanager
def tmpfs(mount: Path, options: str):
    """A tmpfs mounted at `mount` (made here) with these mount options, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs at tmp_path/disk."""
    with tmpfs(tmp_path / "disk", "size=4m") as mount:
        yield mount


def fill(disk: Path) -> Path:
    """Take every free byte of the disk with a file (returned, to be deleted to make room again)."""
    filler = disk / "filler"
    with open(filler, "ab", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


@pytest.fixture
def disk_sim(small_disk):
    from hwsim import Simulator

    with Simulator(small_disk / "data", sim_config(host=5.0), late_delay=1.5) as sim:
        sim.disk = small_disk
        yield sim


def test_full_disk_refuses_the_sale_before_anything_is_sent(disk_sim):
    sim = disk_sim
    filler = fill(sim.disk)
    sim.keys("1250{ENTER}")
    sim.tap("visa-tap-approve")  # under the CVM limit: no PIN, straight to the host
    screen = sim.wait_for("DISK FULL")
    assert "NOT CHARGED" in screen
    assert sim.host_log == [] and sim.journal() == []
    sim.remove_card()
    filler.unlink()
    sim.keys("{ENTER}")
    sale(sim, "visa-approve")
    sim.wait_for("APPROVED")
    assert_ledger_agrees(sim)


def test_disk_full_when_the_approval_arrives_ends_in_a_reversal(disk_sim):
    sim = disk_sim
    sim.host.fault("late")  # the answer takes 1.5 s ...
    sale(sim, "visa-approve")
    wait_until(lambda: sim.host_log, what="the request at the host")
    filler = fill(sim.disk)  # ... and meanwhile the disk fills up
    screen = sim.wait_for("NOT APPROVED", timeout=10)
    assert "DISK FULL" in screen and "12.50" not in screen
    assert sim.host.ledger[0]["response_code"] == "00"  # the host did approve: the customer is charged
    assert sim.receipts == []
    sim.keys("{ENTER}")
    sale(sim, "mc-approve", amount="990")  # the next sale is refused while the disk is full
    sim.wait_for("DISK FULL")
    assert len(sim.host_log) == 2  # nothing more was sent
    filler.unlink()
    sim.keys("{ENTER}")
    sale(sim, "mc-approve", amount="990")  # room again: the lost outcome is written, reversed
    sim.wait_for("APPROVED")
    assert [r["status"] for r in sales(sim)] == ["reversed", "approved"]
    assert sim.host.ledger[0]["reversed"]
    assert_ledger_agrees(sim)


def test_power_cut_while_the_outcome_waits_for_room(disk_sim):
    sim = disk_sim
    sim.host.fault("late")
    sale(sim, "visa-approve")
    wait_until(lambda: sim.host_log, what="the request at the host")
    filler = fill(sim.disk)
    sim.wait_for("NOT APPROVED", timeout=10)
    filler.unlink()
    sim.restart(crash=True)  # the pending row is recovered at boot
    wait_until(lambda: sales(sim)[0]["status"] == "reversed", what="reversed after the reboot")
    assert_ledger_agrees(sim)


def test_disk_full_at_pin_entry_keeps_the_terminal_alive(disk_sim):
    sim = disk_sim
    sim.keys("1250{ENTER}")
    sim.swipe("visa-approve")
    sim.wait_for("ENTER PIN")
    filler = fill(sim.disk)  # the DUKPT counter cannot be taken
    sim.keys("1234{ENTER}")
    screen = sim.wait_for("PIN PAD ERROR")
    assert "DISK FULL" in screen and sim.host_log == []
    filler.unlink()
    sim.keys("{ENTER}")
    sale(sim, "visa-approve")
    sim.wait_for("APPROVED")
    assert_ledger_agrees(sim)


def test_read_only_data_folder_stops_the_terminal_at_boot(small_disk, no_loop_errors):
    """A data folder that became read-only (a worn SD card is remounted so): the terminal says so and sells
    nothing. (A remount while the journal is open for writing is refused by the kernel, so this is at boot.)"""
    from hwsim import Simulator, TerminalStopped

    with Simulator(small_disk / "data", sim_config(host=2.0)) as sim:
        sale(sim, "visa-approve")
        sim.wait_for("APPROVED")
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    sim = Simulator(small_disk / "data", sim_config(host=2.0))
    with pytest.raises(TerminalStopped):  # at once, not after the ready screen's 10 s wait
        sim.start()
    try:
        assert "DISK READ-ONLY" in sim.screen and "TERMINAL STOPPED" in sim.screen
        assert "read-only file system" in str(sim.failure)
    finally:
        sim.close()
    assert [r.getMessage() for r in no_loop_errors.records] == ["simulator: the terminal's loop died"]
    no_loop_errors.records.clear()  # the refusal to start is this test's point


def wallet_rows(sim):
    return [r for r in sim.journal() if r["method"] == "wallet"]


def test_full_disk_refuses_a_wallet_order_before_the_provider_hears_of_it(disk_sim):
    sim = disk_sim
    filler = fill(sim.disk)
    sim.keys("1250{ENTER}")
    sim.wait_for("SWIPE CARD")
    sim.keys("{F1}")  # show a wallet code
    screen = sim.wait_for("PAYMENT FAILED")
    assert "DISK FULL" in screen and sim.wallet.orders == {} and wallet_rows(sim) == []
    filler.unlink()


def test_a_wallet_payment_the_journal_cannot_take_is_reconciled_when_it_can(disk_sim):
    sim = disk_sim
    sim.keys("1250{ENTER}")
    sim.wait_for("SWIPE CARD")
    sim.keys("{F1}")
    sim.wait_for("SCAN TO PAY")
    filler = fill(sim.disk)
    sim.wallet.pay()  # the customer pays; the journal cannot say so
    screen = sim.wait_for("PAYMENT UNKNOWN", timeout=10)
    assert "DISK FULL" in screen and "PAID" not in screen.replace("NOT PAID", "")
    assert wallet_rows(sim)[0]["status"] == "pending"
    filler.unlink()  # room again: the order is asked and recorded
    wait_until(lambda: wallet_rows(sim)[0]["status"] == "approved", timeout=30, what="reconciled as paid")
    assert [o.state for o in sim.wallet.orders.values()] == ["paid"]


def test_run_on_a_read_only_data_folder_says_so_in_one_line(tmp_path):
    """`countertop run` used to die with an OSError traceback from the log file."""
    from conftest import SIM_TOML

    with tmpfs(tmp_path / "ro", "size=1m,ro") as ro:
        cfg = tmp_path / "board.toml"
        cfg.write_text(
            SIM_TOML.read_text(encoding="utf-8").replace('data_dir = "data/sim"', f'data_dir = "{ro}/data"'),
            encoding="utf-8",
        )
        import sys

        proc = subprocess.run(
            [sys.executable, "-m", "firmware.shell.cli", "run", "--config", str(cfg)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [line] = proc.stderr.strip().splitlines()
    assert "data folder must be writable" in line and "Read-only file system" in line
