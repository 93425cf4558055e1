"""Configuration: the shipped files validate; every kind of mistake stops with one line naming file and key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from firmware.config import load
from firmware.errors import ConfigError

from conftest import ROOT, SIM_TOML


def test_shipped_configs_validate():
    sim = load(SIM_TOML)
    assert sim.terminal.currency.numeric == "156"
    assert sim.merchant.name.startswith("示例小店")
    assert sim.keypad.keys["ENTER"] == "KEY_KPENTER"
    real = load(ROOT / "config" / "terminal.toml")
    assert real.printer.backend == "usb" and real.host.tls


def _write(tmp_path, text: str):
    p = tmp_path / "t.toml"
    p.write_text(text, encoding="utf-8")
    return p


def _edit(old: str, new: str) -> str:
    text = SIM_TOML.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("old, new, message", [
    ('currency = "CNY"', 'curency = "CNY"', "[terminal] currency: missing"),
    ('min_amount = 1 ', 'min_amont = 1 ', "[terminal] min_amont: unknown key"),
    ('port = 8583', 'port = "8583"', "[host] port: expected an integer, got str '8583'"),
    ('port = 8583', 'port = 70000', "[host] port: must be between 1 and 65535"),
    ('max_amount = 5000000', 'max_amount = 0', "[terminal] max_amount: must be between"),
    ('min_amount = 1 ', 'min_amount = 6000000 ', "[terminal] max_amount: must not be below min_amount"),
    ('currency = "CNY"', 'currency = "XYZ"', "[terminal] currency: unknown currency"),
    ('name = "hwsim magstripe"', 'nme = "x"', "[magstripe] nme: unknown key"),
    ('name = "hwsim magstripe"', '', "[magstripe] path: missing: give path, usb"),
    ('ENTER = "KEY_KPENTER"', 'ENTER = "ENTER"', "[keypad.keys] ENTER: must be an evdev name"),
    ('ENTER = "KEY_KPENTER"', '', "[keypad.keys] ENTER: missing"),
    ('devfile = "/dev/null"', '', "[printer] devfile: missing: the serial backend needs it"),
    ('backend = "serial"', 'backend = "bluetooth"', "[printer] backend: must be one of"),
    ('ksn = "FFFF9876543210E00000"', 'ksn = "FFFF"', "[pin] ksn: must be 20 hex digits"),
    ('chinese = true', 'chinese = "yes"', "[printer] chinese: expected true or false"),
    ('[display]', '[dispaly]', "[top level] dispaly: unknown key"),
    ('pin = 30', 'pin = 0', "[timeouts] pin: must be between 1 and 600"),
])
def test_bad_values_name_file_and_key(tmp_path, old, new, message):
    path = _write(tmp_path, _edit(old, new))
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text
    assert "\n" not in text


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(_write(tmp_path, "[terminal\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.toml")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"name = '\xe9'")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load(bad)


def test_check_config_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "firmware.cli", "check-config", str(SIM_TOML)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "ok (terminal SIM00001, CNY)" in ok.stdout
    path = _write(tmp_path, _edit('port = 8583', 'port = "x"'))
    bad = subprocess.run([sys.executable, "-m", "firmware.cli", "check-config", str(path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert "[host] port" in bad.stderr


def test_pin_scheme_and_dialect_go_together(tmp_path):
    text = SIM_TOML.read_text(encoding="utf-8").replace('[pin]\n', '[pin]\nscheme = "aes"\n'
                                                       'initial_key = "1273671EA26AC29AFA4D1084127652A1"\n'
                                                       'key_id = "1234567890123456"\n')
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=r'\[pin\] scheme: "aes" needs \[host\] dialect = "aes-dukpt"'):
        load(path)
    path = _write(tmp_path, text.replace('port = 8583', 'port = 8583\ndialect = "aes-dukpt"'))
    cfg = load(path)
    assert cfg.pin.scheme == "aes" and cfg.host.dialect == "aes-dukpt"
