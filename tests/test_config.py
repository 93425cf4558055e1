"""Configuration: the shipped files validate; every kind of mistake stops with one line naming file and key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT, SIM_TOML
from firmware.config import load
from firmware.errors import ConfigError


def test_shipped_configs_validate():
    sim = load(SIM_TOML)
    assert sim.terminal.currency.numeric == "156"
    assert sim.merchant.name.startswith("示例小店")
    assert sim.keypad.keys["ENTER"] == "KEY_KPENTER"
    real = load(ROOT / "config" / "terminal.toml")
    assert real.printer.backend == "usb" and real.host.tls
    assert real.wechat is None  # shipped commented out


def test_the_shipped_wechat_example_reads_when_uncommented(tmp_path):
    text = (ROOT / "config" / "terminal.toml").read_text(encoding="utf-8")
    block = text[text.index("# [wechat]") : text.index("[scanner]")]
    uncommented = "\n".join(line.removeprefix("# ") for line in block.splitlines())
    cfg = load(_write(tmp_path, text.replace(block, uncommented + "\n")))
    assert cfg.wechat is not None and cfg.wechat.mchid == "1900000109" and cfg.wechat.platform == "certificates"


def _write(tmp_path, text: str):
    p = tmp_path / "t.toml"
    p.write_text(text, encoding="utf-8")
    return p


def _edit(old: str, new: str) -> str:
    text = SIM_TOML.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    "old, new, message",
    [
        ('currency = "CNY"', 'curency = "CNY"', "[terminal] currency: missing"),
        ("min_amount = 1 ", "min_amont = 1 ", "[terminal] min_amont: unknown key"),
        ("port = 8583", 'port = "8583"', "[host] port: expected an integer, got str '8583'"),
        ("port = 8583", "port = 70000", "[host] port: must be between 1 and 65535"),
        ("max_amount = 5000000", "max_amount = 0", "[terminal] max_amount: must be between"),
        ("min_amount = 1 ", "min_amount = 6000000 ", "[terminal] max_amount: must not be below min_amount"),
        ('currency = "CNY"', 'currency = "XYZ"', "[terminal] currency: unknown currency"),
        ('name = "hwsim magstripe"', 'nme = "x"', "[magstripe] nme: unknown key"),
        ('name = "hwsim magstripe"', "", "[magstripe] path: missing: give path, usb"),
        ('ENTER = "KEY_KPENTER"', 'ENTER = "ENTER"', "[keypad.keys] ENTER: must be an evdev name"),
        ('ENTER = "KEY_KPENTER"', "", "[keypad.keys] ENTER: missing"),
        ('devfile = "/dev/null"', "", "[printer] devfile: missing: the serial backend needs it"),
        ('backend = "serial"', 'backend = "bluetooth"', "[printer] backend: must be one of"),
        ('ksn = "FFFF9876543210E00000"', 'ksn = "FFFF"', "[pin] ksn: must be 20 hex digits"),
        ("chinese = true", 'chinese = "yes"', "[printer] chinese: expected true or false"),
        ("[display]", "[dispaly]", "[top level] dispaly: unknown key"),
        ("pin = 30", "pin = 0", "[timeouts] pin: must be between 1 and 600"),
        ("pin = 30", "pin = nan", "[timeouts] pin: must be between 1 and 600, got nan"),
        ("pin = 30", "pin = inf", "[timeouts] pin: must be between 1 and 600, got inf"),
        # What used to be accepted and then broke every sale or left the keypad dead:
        (
            'terminal_id = "SIM00001"',
            'terminal_id = "终端号码一二三四"',
            "[terminal] terminal_id: must be 8 printable ASCII",
        ),
        (
            'terminal_id = "SIM00001"',
            'terminal_id = "SIM0000\u00b9"',
            "[terminal] terminal_id: must be 8 printable ASCII",
        ),
        ('terminal_id = "SIM00001"', 'terminal_id = "SIM0001 "', "no space at either end (ISO 8583 field 41)"),
        (
            'merchant_id = "102030405060708"',
            'merchant_id = "商户号"',
            "[terminal] merchant_id: must be 1 to 15 printable",
        ),
        ('merchant_id = "102030405060708"', 'merchant_id = "1020304050607080"', "ISO 8583 field 42"),
        ('country = "156"', 'country = "\u00b956"', "[contactless] country: must be 3 digits"),
        ('country = "156"', 'country = "\uff11\uff15\uff16"', "[contactless] country: must be 3 digits"),
        ('ENTER = "KEY_KPENTER"', 'ENTER = "KEY_KPENTRE"', "[keypad.keys] ENTER: KEY_KPENTRE is not an evdev key name"),
        ('F1 = "KEY_F1"', 'F1 = "KEY_MAX"', "[keypad.keys] F1: KEY_MAX is not an evdev key name"),
        ('F1 = "KEY_F1"', 'F1 = "KEY_RESERVED"', "[keypad.keys] F1: KEY_RESERVED is not an evdev key name"),
        ('F1 = "KEY_F1"', 'F1 = "KEY_KP5"', "[keypad.keys] F1: KEY_KP5 types a digit"),
        ('F2 = "KEY_F2"', 'F2 = "KEY_ESC"', "[keypad.keys] F2: KEY_ESC is already CANCEL"),
        (
            'name = "示例小店 DEMO SHOP"',
            r'name = "SHOP\u001bp\u0000\u0019\u0019"',
            "[merchant] name: contains U+001B (ESC)",
        ),
        ('address = "北京市朝阳区示例路1号"', 'address = "\u202eX"', "[merchant] address: contains U+202E"),
        ('data_dir = "data/sim"', r'data_dir = "data\u0000"', "[terminal] data_dir: contains U+0000"),
        ('phone = "010-12345678"', r'phone = "\u009b2J"', "[merchant] phone: contains U+009B"),
        ('aids = ["A0000000031010"', 'aids = ["A000000003101"', "[contactless] aids: must be a list of AIDs in hex"),
        ('"01" = "scrypt', '"\u00b9" = "scrypt', "[operators] cashiers: cashier number '¹' must be 1 to 8"),
        ("port = 8583", "port = [[[[1]]]]", "[host] port: expected an integer, got a list"),
        ("port = 8583", 'port = "' + "x" * 500 + '"', "[host] port: expected an integer, got str 'xxxxxxxx"),
    ],
)
def test_bad_values_name_file_and_key(tmp_path, old, new, message):
    path = _write(tmp_path, _edit(old, new))
    with pytest.raises(ConfigError) as err:
        load(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ") and message in text
    assert "\n" not in text and len(text) < 300


@pytest.mark.parametrize(
    "hours, ok",
    [
        ("08-22", True),
        ("0-24", True),
        ("8-9", True),
        ("²-22", False),
        ("08-２２", False),
        ("22-08", False),
        ("08-25", False),
        ("-", False),
        ("", False),
    ],
)
def test_opening_hours_in_ascii_digits(tmp_path, hours, ok):
    path = _write(
        tmp_path, SIM_TOML.read_text(encoding="utf-8") + f"\n[reports]\nopening_hours = {hours!r}\n".replace("'", '"')
    )
    if ok:
        assert load(path).reports.opening_hours == hours
        return
    with pytest.raises(ConfigError, match=r"\[reports\] opening_hours: must be \"HH-HH\" in ASCII digits"):
        load(path)


def test_deep_nesting_is_a_config_error_not_a_traceback(tmp_path):
    for doc in (
        "a = " + "[" * 5000 + "]" * 5000,
        "a = " + "{b = " * 5000 + "1" + "}" * 5000,
        _edit("port = 8583", "port = " + "[" * 400 + "]" * 400),
    ):
        with pytest.raises(ConfigError) as err:
            load(_write(tmp_path, doc))
        assert len(str(err.value)) < 300


def test_a_quoted_key_with_a_newline_is_named_on_one_line(tmp_path):
    """Found by atheris: TOML allows any key in quotes; the message printed it raw, over two lines."""
    for text in (_edit("pin = 30", 'pin = 30\n"\\n\\u001b[2J" = 1'), _edit("[display]", '["\\n"]\nx = 1\n[display]')):
        with pytest.raises(ConfigError) as err:
            load(_write(tmp_path, text))
        assert "\n" not in str(err.value) and "\x1b" not in str(err.value) and "unknown key" in str(err.value)


def test_hex_values_end_where_they_end(tmp_path):
    """A trailing newline in a key (TOML '\\n') used to pass the "$"-anchored hex check."""
    text = _edit('ksn = "FFFF9876543210E00000"', 'ksn = "FFFF9876543210E0000\\n"')
    with pytest.raises(ConfigError, match=r"\[pin\] ksn: (must be 20 hex digits|contains U\+000A)"):
        load(_write(tmp_path, text))
    text = _edit('name = "hwsim keypad"', 'usb = "0483:5740\\n"')
    with pytest.raises(ConfigError, match=r"\[keypad\] usb: "):
        load(_write(tmp_path, text))


def test_check_config_refuses_what_would_break_the_till(tmp_path):
    path = _write(tmp_path, _edit('country = "156"', 'country = "¹56"'))
    bad = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "check-config", str(path)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert (
        bad.stderr.strip()
        == f"countertop: {path}: [contactless] country: must be 3 digits (ISO 3166 numeric, e.g. 156)"
    )


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
    ok = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "check-config", str(SIM_TOML)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and "ok (terminal SIM00001, CNY)" in ok.stdout
    path = _write(tmp_path, _edit("port = 8583", 'port = "x"'))
    bad = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "check-config", str(path)], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert "[host] port" in bad.stderr


def test_pin_scheme_and_dialect_go_together(tmp_path):
    text = SIM_TOML.read_text(encoding="utf-8").replace(
        "[pin]\n",
        '[pin]\nscheme = "aes"\ninitial_key = "1273671EA26AC29AFA4D1084127652A1"\nkey_id = "1234567890123456"\n',
    )
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=r'\[pin\] scheme: "aes" needs \[host\] dialect = "aes-dukpt"'):
        load(path)
    path = _write(tmp_path, text.replace("port = 8583", 'port = 8583\ndialect = "aes-dukpt"'))
    cfg = load(path)
    assert cfg.pin.scheme == "aes" and cfg.host.dialect == "aes-dukpt"
