"""The `countertop run` composition root on a board with nothing plugged in: it starts, says so (for every
device the config names, the 2D scanner too), stops cleanly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import SIM_TOML


def test_run_without_devices_starts_reports_and_stops(tmp_path):
    text = SIM_TOML.read_text(encoding="utf-8")
    text = text.replace('name = "hwsim keypad"', 'path = "/nonexistent/input/event7"')
    text = text.replace('name = "hwsim magstripe"', 'usb = "0801:0001"')
    text = text.replace('name = "hwsim scanner"', 'path = "/nonexistent/input/event9"')
    text = text.replace('backend = "serial"', 'backend = "file"').replace(
        'devfile = "/dev/null"', f'devfile = "{tmp_path}/lp0"'
    )
    text = text.replace('data_dir = "data/sim"', f'data_dir = "{tmp_path}/data"')
    text = text.replace('device = "udp:127.0.0.1:54321"', 'device = "tty:nonexistent:pn532"')
    text = text.replace('provider = "alipay"', 'provider = ""')
    text = text[: text.index("[wechat]")] + text[text.index("[scanner]") :]  # no wallets on this board
    cfg = tmp_path / "board.toml"
    cfg.write_text(text, encoding="utf-8")

    proc = subprocess.Popen(
        [sys.executable, "-m", "firmware.shell.cli", "run", "--config", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "data" / "countertop.log"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (
        log.exists()
        and "magstripe:" in log.read_text()
        and "scanner:" in log.read_text()
        and "nfc: cannot open" in log.read_text()
    ):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "ENTER AMOUNT" in out and "CNY 0.00" in out  # the console display drew the idle screen
    assert "keypad: cannot open /nonexistent/input/event7" in err  # a clear line per missing device
    assert "no input device with usb 0801:0001" in err
    assert "scanner: cannot open /nonexistent/input/event9" in err  # the configured 2D scanner is opened too
    assert "nfc: cannot open reader tty:nonexistent:pn532" in err
    assert "Traceback" not in err
    assert "terminal stopped" in log.read_text()
    assert (tmp_path / "data" / "journal.sqlite3").exists()


def test_hash_pin_command():
    from firmware.security.operators import pin_matches

    ok = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "hash-pin"], input="2468\n", capture_output=True, text=True
    )
    assert ok.returncode == 0 and pin_matches("2468", ok.stdout.strip())
    bad = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "hash-pin"], input="12\n", capture_output=True, text=True
    )
    assert bad.returncode == 2 and "4 to 12 digits" in bad.stderr


def test_run_with_missing_wallet_keys_says_so(tmp_path):
    text = SIM_TOML.read_text(encoding="utf-8").replace('data_dir = "data/sim"', f'data_dir = "{tmp_path}/data"')
    cfg = tmp_path / "board.toml"
    cfg.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "run", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "[wallet] keys:" in proc.stderr and "Traceback" not in proc.stderr
