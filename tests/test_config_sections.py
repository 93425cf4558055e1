"""Configuration, section by section: every section's reader refuses keys it does not know, holds each number
to its range, says which choices there are, and fills what a file leaves out with its dataclass's defaults;
what spans sections ([pin] scheme with [keys] and [host]) is checked once every section has been read."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest

from conftest import SIM_TOML
from firmware import config
from firmware.config import parse
from firmware.errors import ConfigError

SIM_DOC = tomllib.loads(SIM_TOML.read_text(encoding="utf-8"))
BASE = Path("/srv/till")


def _doc(**sections: dict[str, Any]) -> dict[str, Any]:
    """sim.toml with the given sections' keys set (a value of None removes the key)."""
    doc = copy.deepcopy(SIM_DOC)
    for name, keys in sections.items():
        outer, _, inner = name.partition("__")
        table = doc.setdefault(outer, {})
        if inner:
            table = table.setdefault(inner, {})
        for key, value in keys.items():
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
    return doc


def _refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as err:
        parse(doc, "t.toml", BASE)
    return str(err.value)


@pytest.mark.parametrize(
    "section",
    [
        "terminal",
        "merchant",
        "timeouts",
        "keypad",
        "keypad.keys",
        "magstripe",
        "printer",
        "display",
        "host",
        "keys",
        "pin",
        "operators",
        "contactless",
        "wallet",
        "scanner",
        "reports",
        "update",
    ],
)
def test_every_section_refuses_a_key_it_does_not_know(section):
    assert (
        _refusal(_doc(**{section.replace(".", "__"): {"colour": "red"}}))
        == f"t.toml: [{section}] colour: unknown key (a typo?)"
    )


def test_operators_cashiers_is_a_table_of_its_own():
    """[operators.cashiers] holds cashier numbers, not settings: a stray setting there is a bad cashier number."""
    assert "[operators] cashiers: cashier number 'max failures' must be 1 to 8" in _refusal(
        _doc(operators__cashiers={"max failures": 3})
    )


RANGES = [
    ("terminal", "min_amount", 1, 10**12 - 1),
    ("terminal", "max_amount", 1, 10**12 - 1),
    *[("timeouts", key, 1, 600) for key in ("amount", "card", "pin", "host", "result", "retry")],
    ("printer", "baudrate", 1200, 921600),
    ("printer", "port", 1, 65535),
    ("printer", "width", 24, 64),
    ("display", "width", 16, 80),
    ("host", "port", 1, 65535),
    ("pin", "min_length", 4, 12),
    ("pin", "max_length", 4, 12),
    ("operators", "max_failures", 1, 10),
    ("operators", "lockout", 10, 86400),
    ("contactless", "cvm_limit", 0, 10**12 - 1),
    ("contactless", "transaction_limit", 0, 10**12 - 1),
    ("contactless", "floor_limit", 0, 10**12 - 1),
    ("wallet", "qr_timeout", 10, 900),
    ("wallet", "poll_interval", 0.1, 10),
    ("wallet", "confirm_timeout", 1, 120),
    ("wallet", "confirm_interval", 0.1, 30),
    ("reports", "refund_share_percent", 1, 100),
    ("reports", "declines_per_card", 2, 100),
    ("reports", "just_under_count", 2, 1000),
    ("reports", "fallback_per_card", 1, 100),
]


@pytest.mark.parametrize("section, key, lo, hi", RANGES)
def test_numbers_are_held_to_their_range(section, key, lo, hi):
    step = 1 if isinstance(lo, int) and isinstance(hi, int) else 0.05
    for inside in (lo, hi):
        extra = {"max_amount": inside} if key == "min_amount" else {}  # the maximum may not fall below it
        cfg = parse(_doc(**{section: {key: inside, **extra}}), "t.toml", BASE)
        assert getattr(getattr(cfg, section), key) == inside
    for outside in (lo - step, hi + step):
        assert _refusal(_doc(**{section: {key: outside}})).startswith(
            f"t.toml: [{section}] {key}: must be between {lo} and {hi}, got "
        )


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("printer", "backend", "lpt", "must be one of usb, serial, network, file, none"),
        ("printer", "language", "de", 'must be "en" or "zh"'),
        ("display", "kind", "lcd", 'must be "console" or "framebuffer"'),
        ("host", "dialect", "aes", 'must be "default" or "aes-dukpt"'),
        ("keys", "scheme", "des", 'must be "", "tdes" or "aes"'),
        ("pin", "scheme", "dukpt", 'must be "tdes", "aes" or "session"'),
        ("wallet", "provider", "wechat", 'must be "alipay" or empty'),
    ],
)
def test_a_wrong_choice_names_the_choices(section, key, value, message):
    assert _refusal(_doc(**{section: {key: value}})) == f"t.toml: [{section}] {key}: {message}"


@pytest.mark.parametrize(
    "pin, keys, host, message",
    [
        (
            {"scheme": "session"},
            {},
            {},
            '"session" needs [keys] scheme = "tdes" or "aes" (the PIN key comes at sign-on)',
        ),
        (
            {"scheme": "session"},
            {"scheme": "aes"},
            {},
            '"session" with [keys] scheme = "aes" needs [host] dialect = "aes-dukpt" (the PIN block size)',
        ),
        (
            {"scheme": "session"},
            {"scheme": "tdes"},
            {"dialect": "aes-dukpt"},
            '"session" with [keys] scheme = "tdes" needs [host] dialect = "default" (the PIN block size)',
        ),
        ({}, {}, {"dialect": "aes-dukpt"}, '"tdes" needs [host] dialect = "default"'),
        ({"scheme": "aes", "key_id": "1234567890123456"}, {}, {}, '"aes" needs [host] dialect = "aes-dukpt"'),
    ],
)
def test_pin_scheme_fits_keys_and_host(pin, keys, host, message):
    assert _refusal(_doc(pin=pin, keys=keys, host=host)) == f"t.toml: [pin] scheme: {message}"


@pytest.mark.parametrize(
    "pin, keys, host",
    [
        ({"scheme": "session"}, {"scheme": "tdes"}, {}),
        ({"scheme": "session"}, {"scheme": "aes"}, {"dialect": "aes-dukpt"}),
        ({"scheme": "aes", "key_id": "1234567890123456"}, {}, {"dialect": "aes-dukpt"}),
    ],
)
def test_pin_schemes_that_fit(pin, keys, host):
    cfg = parse(_doc(pin=pin, keys=keys, host=host), "t.toml", BASE)
    assert (cfg.pin.scheme, cfg.keys.scheme, cfg.host.dialect) == (
        pin["scheme"],
        keys.get("scheme", ""),
        host.get("dialect", "default"),
    )


def test_a_misspelt_section_is_named_before_what_it_leaves_out():
    """[kyes] for [keys]: the typo is the mistake to report, not the [pin] scheme that then lacks its keys
    (which is what the file said when [pin] checked [keys] while it was being read)."""
    doc = _doc(pin={"scheme": "session", "ksn": None, "ipek": None})
    doc["kyes"] = {"scheme": "tdes"}
    assert _refusal(doc) == "t.toml: [top level] kyes: unknown key (a typo?)"


def test_a_section_left_out_is_its_dataclass_defaults():
    doc = {
        "terminal": {"terminal_id": "T0000001", "merchant_id": "M1", "currency": "CNY"},
        "merchant": {"name": "Shop"},
        "keypad": {"name": "kp", "keys": {"ENTER": "KEY_ENTER", "CANCEL": "KEY_ESC", "CLEAR": "KEY_BACKSPACE"}},
        "magstripe": {"name": "ms"},
        "host": {"host": "localhost", "port": 8583},
        "pin": {"ksn": "FFFF9876543210E00000"},
    }
    cfg = parse(doc, "t.toml", BASE)
    assert (cfg.terminal.min_amount, cfg.terminal.max_amount, cfg.terminal.data_dir) == (1, 99_999_999, BASE / "data")
    assert cfg.merchant == config.MerchantConfig("Shop")
    assert cfg.host == config.HostConfig("localhost", 8583)
    assert cfg.pin == config.PinConfig(ipek=b"", ksn=bytes.fromhex("FFFF9876543210E00000"))
    assert cfg.scanner is None and cfg.magstripe == config.InputDeviceConfig(name="ms")
    assert (
        cfg.timeouts,
        cfg.printer,
        cfg.display,
        cfg.keys,
        cfg.operators,
        cfg.contactless,
        cfg.wallet,
        cfg.reports,
        cfg.update,
    ) == (
        config.Timeouts(),
        config.PrinterConfig(),
        config.DisplayConfig(),
        config.KeysConfig(),
        config.OperatorsConfig(),
        config.ContactlessConfig(),
        config.WalletConfig(),
        config.ReportsConfig(),
        config.UpdateConfig(),
    )


def test_a_section_that_is_not_a_table():
    with pytest.raises(ConfigError, match=r"^t\.toml: \[printer\] must be a table$"):
        parse(_doc() | {"printer": "usb"}, "t.toml", BASE)
