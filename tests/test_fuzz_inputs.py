"""Hostile input, fuzzed: CSV catalogues, configuration files and scenario files. Whatever comes in, the
parser answers with its documented result (items and line-numbered errors; a Config or a ConfigError; a run
plan or a ScenarioError) and never lets another exception out.

Runs are deterministic (derandomize, no example database) and bounded: the number of examples per property
is in EXAMPLES. The longer, coverage-guided runs are the atheris harnesses in fuzz/.
"""

from __future__ import annotations

import codecs
import copy
import csv
import dataclasses
import io
import math
import re
import tomllib
import unicodedata
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, SIM_TOML
from firmware import config
from firmware.config import Config, load, parse
from firmware.core.items import MAX_ERRORS, MAX_PRICE, parse_catalog
from firmware.core.money import Currency
from firmware.core.text import problem as unsafe_text
from firmware.errors import ConfigError
from hwsim import scenario
from hwsim.scenario import ScenarioError, check_steps

EXAMPLES = {
    "csv_bytes": 300,
    "csv_rows": 300,
    "csv_valid": 150,
    "config_doc": 300,
    "config_text": 200,
    "scenario_doc": 300,
    "scenario_text": 150,
}


def fuzz(name: str):
    """Hypothesis settings for one property: its example count, no deadline, the same examples every run."""
    return settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


CNY, JPY = Currency.of("CNY"), Currency.of("JPY")
_ERROR = re.compile(r"line [0-9]+: .+|\.\.\. and [0-9]+ more bad lines", re.DOTALL)

# --- CSV catalogues ------------------------------------------------------------------------------------

NASTY_TEXT = [
    "",
    " ",
    "0",
    "00000001",
    "123456789",
    "１２",
    "²",
    "٣",
    "1e23",
    "-1.00",
    "0.00",
    "NaN",
    "Infinity",
    "99999999.99",
    "100000000.00",
    "9" * 200,
    "1.005",
    "12,50",
    "=cmd|' /C calc'!A0",
    "+1",
    "@SUM(A1)",
    "\t-2",
    "\x1bp\x00\x19\x19",
    "\x1dV\x00",
    "\x1b[2J",
    "\x9b2J",
    "\u202eevil",
    "\ufeff",
    "\u2028",
    '"',
    '""',
    'a"b',
    "a,b",
    "a\nb",
    "a\rb",
    "矿泉水",
    "茅台",
    "Café",
    "\udcff",
    "\x00",
    "%",
    "13%",
    "6.5",
    "100",
    "101",
    "sNaN",
    "1e999999",
]
fields = st.one_of(
    st.sampled_from(NASTY_TEXT), st.text(max_size=12), st.from_regex(r"[0-9]{1,9}(\.[0-9]{0,3})?", fullmatch=True)
)
headers = st.one_of(
    st.just(["plu", "name", "price", "tax_rate"]),
    st.just(["PLU", " Name ", "PRICE"]),
    st.permutations(["plu", "name", "price", "tax_rate", "extra"]).map(list),
    st.lists(st.sampled_from(["plu", "name", "price", "tax_rate", "", "x"]), max_size=5),
)
ENCODINGS = ["utf-8", "utf-8-sig", "gb18030", "utf-16", "utf-16-le", "latin-1", "cp1252"]


def _check_catalog(raw: bytes, currency: Currency = CNY) -> tuple[list, list[str]]:
    """parse_catalog's contract, whatever the bytes: only its two lists, each error naming a line, each item sane."""
    items, errors = parse_catalog(raw, currency)
    assert len(errors) <= MAX_ERRORS + 1
    for error in errors:
        assert _ERROR.fullmatch(error), error
    plus = [i.plu for i in items]
    assert len(plus) == len(set(plus))
    for item in items:
        assert re.fullmatch(r"[0-9]{1,8}", item.plu)
        assert item.name and len(item.name) <= 40 and unsafe_text(item.name) is None and item.name == item.name.strip()
        assert 0 < item.price <= MAX_PRICE and 0 <= item.tax_rate_bp <= 10000
    return items, errors


@fuzz("csv_bytes")
@given(
    st.one_of(
        st.binary(max_size=600),
        st.tuples(
            st.sampled_from([b"plu,name,price,tax_rate\n", b"\xef\xbb\xbfplu,name,price\n", codecs.BOM_UTF16_LE, b""]),
            st.binary(max_size=400),
        ).map(b"".join),
    )
)
def test_csv_any_bytes(raw):
    _check_catalog(raw)


@fuzz("csv_rows")
@given(
    headers,
    st.lists(st.lists(fields, max_size=6), max_size=12),
    st.sampled_from(ENCODINGS),
    st.sampled_from(["\n", "\r\n", "\r"]),
    st.booleans(),
)
def test_csv_structured_nasties(header, rows, encoding, end, quote_all):
    out = io.StringIO()
    csv.writer(out, lineterminator=end, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL).writerows(
        [header, *rows]
    )
    raw = out.getvalue().encode(encoding, errors="surrogatepass" if encoding.startswith("utf") else "replace")
    _check_catalog(raw)
    _check_catalog(raw, JPY)


safe_names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp", "Zs")), min_size=1, max_size=20
)
valid_rows = st.lists(
    st.tuples(
        st.from_regex(r"[0-9]{1,8}", fullmatch=True),
        st.one_of(safe_names, st.sampled_from(["=1+1", "+x", "-x", "@x", "矿泉水 WATER"])),
        st.integers(1, MAX_PRICE),
        st.integers(0, 10000),
    ),
    max_size=15,
    unique_by=lambda r: r[0],
)


@fuzz("csv_valid")
@given(valid_rows, st.sampled_from(["utf-8-sig", "utf-16"]))
def test_csv_valid_catalogues_round_trip(rows, encoding):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["plu", "name", "price", "tax_rate"])
    for plu, name, price, tax in rows:
        writer.writerow([plu, name, f"{price // 100}.{price % 100:02d}", f"{tax // 100}.{tax % 100:02d}"])
    items, errors = _check_catalog(out.getvalue().encode(encoding))
    assert errors == []
    assert [(i.plu, i.name, i.price, i.tax_rate_bp) for i in items] == [(p, n.strip(), pr, t) for p, n, pr, t in rows]


# --- configuration files -------------------------------------------------------------------------------

SIM_DOC = tomllib.loads(SIM_TOML.read_text(encoding="utf-8"))
# Each section's keys, from the dataclasses the sections fill (so the fuzzer edits keys that are read).
SECTION_KEYS = {
    name: [f.name for f in dataclasses.fields(kind)] + ["bogus"]
    for name, kind in {
        "terminal": config.TerminalConfig,
        "merchant": config.MerchantConfig,
        "timeouts": config.Timeouts,
        "keypad": config.InputDeviceConfig,
        "magstripe": config.InputDeviceConfig,
        "scanner": config.InputDeviceConfig,
        "printer": config.PrinterConfig,
        "display": config.DisplayConfig,
        "host": config.HostConfig,
        "pin": config.PinConfig,
        "operators": config.OperatorsConfig,
        "contactless": config.ContactlessConfig,
        "wallet": config.WalletConfig,
        "reports": config.ReportsConfig,
        "keys": config.KeysConfig,
        "update": config.UpdateConfig,
    }.items()
}
SECTION_KEYS["keypad.keys"] = [*config.LOGICAL_KEYS, "bogus"]
DEFAULTS = {
    (section, f.name): f.default
    for section, kind in (
        ("reports", config.ReportsConfig),
        ("contactless", config.ContactlessConfig),
        ("update", config.UpdateConfig),
    )
    for f in dataclasses.fields(kind)
    if f.default is not dataclasses.MISSING
}
SECTION_KEYS["bogus"] = ["bogus"]
SECTIONS = sorted(SECTION_KEYS)
KEYS = sorted({k for keys in SECTION_KEYS.values() for k in keys})
NASTY_VALUES = [
    "²-22",
    "08-22",
    "¹56",
    "156",
    "终端号码一二三四",
    "SIM0000¹",
    "SIM00001",
    "KEY_NOPE",
    "KEY_KP5",
    "KEY_ESC",
    "KEY_MAX",
    "KEY_F1",
    "\x1bp",
    "\u202e",
    "",
    " ",
    "0483:5740\n",
    "0483:5740",
    "A0000000031010",
    "FFFF9876543210E0000\n",
    "FFFF9876543210E00000",
    "udp:",
    "tty:",
    "https://x",
    "tdes",
    "aes",
    "session",
    "aes-dukpt",
    "alipay",
    "zh",
    "none",
    "file",
    "usb",
    "serial",
    "network",
    "scrypt$00$00",
    "1234567890123456",
    "1273671EA26AC29AFA4D1084127652A1",
]
toml_scalars = st.one_of(
    st.sampled_from(NASTY_VALUES),
    st.text(max_size=16),
    st.integers(-(2**70), 2**70),
    st.sampled_from([0, 1, 8, 15, 24, 65535, 65536, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=8,
)
edits = st.lists(
    st.sampled_from(SECTIONS).flatmap(
        lambda section: st.tuples(
            st.just(section),
            st.sampled_from(SECTION_KEYS[section]),
            st.sampled_from(["delete", "replace", "mutate", "mutate"]),
        )
    ),
    min_size=1,
    max_size=4,
)
SUPERSCRIPT = "⁰¹²³⁴⁵⁶⁷⁸⁹"


def _lookalike_digit(d: str, style: int) -> str:
    """A character str.isdigit() (or int()) takes for the ASCII digit `d`: superscript, full-width, Arabic-Indic."""
    n = unicodedata.digit(d)  # `d` may itself be a look-alike already (a value mutated twice)
    return (SUPERSCRIPT[n], chr(0xFF10 + n), chr(0x660 + n))[style]


def mutated(data, value):
    """A small, type-aware change to a config value: what a typo, a paste or an input method does."""
    if isinstance(value, str):
        how = data.draw(st.sampled_from(["digit", "control", "wide", "cut", "pad", "case"]))
        at = data.draw(st.integers(0, len(value)))
        if how == "digit" and any(c.isdigit() for c in value):
            i = next(i for i, c in enumerate(value) if c.isdigit())
            return value[:i] + _lookalike_digit(value[i], data.draw(st.integers(0, 2))) + value[i + 1 :]
        if how == "control":
            return value[:at] + data.draw(st.sampled_from(["\x1b", "\x00", "\n", "\u202e", "\x9b", "\t"])) + value[at:]
        if how == "wide":
            return value[:at] + data.draw(st.sampled_from(["终", "é", "\uff21", "\U0001f600"])) + value[at:]
        if how == "cut":
            return value[:at]
        if how == "pad":
            return value + data.draw(st.sampled_from([" ", "0", "X", value]))
        return value.swapcase()
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return data.draw(
            st.sampled_from(
                [0, -1, value + 1, value - 1, value * 10**6, float("nan"), float("inf"), 2**64, str(value), [value]]
            )
        )
    if isinstance(value, list):
        return data.draw(st.sampled_from([[], value * 2, value[:1], [mutated(data, v) for v in value], "x"]))
    return data.draw(toml_values)


def _check_config(run) -> None:
    """Either a Config or a one-line ConfigError; no other exception."""
    try:
        cfg = run()
    except ConfigError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 400, str(exc)
        return
    assert isinstance(cfg, Config)
    assert re.fullmatch(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?", cfg.terminal.terminal_id)
    assert len(cfg.terminal.terminal_id) == 8 and 1 <= len(cfg.terminal.merchant_id) <= 15
    assert re.fullmatch(r"[0-9]{3}", cfg.contactless.country)
    assert all(unsafe_text(v) is None for v in (cfg.merchant.name, cfg.merchant.address, cfg.merchant.phone))
    assert all(math.isfinite(t) for t in vars(cfg.timeouts).values())


@fuzz("config_doc")
@given(edits, st.data())
def test_config_documents_mutated_from_sim_toml(changes, data):
    doc = copy.deepcopy(SIM_DOC)
    for section, key, how in changes:
        outer, _, inner = section.partition(".")
        table = doc.setdefault(outer, {})
        if inner and isinstance(table, dict):
            table = table.setdefault(inner, {})
        if not isinstance(table, dict):
            continue  # an earlier edit made it a value; test_config_random_documents
        if how == "delete":  # covers sections that are not tables
            table.pop(key, None)
        elif how == "replace":
            table[key] = data.draw(toml_values)
        else:
            default = DEFAULTS.get((outer, key), "")
            table[key] = mutated(data, table.get(key, default))
    _check_config(lambda: parse(doc, "fuzz.toml", Path("/nonexistent")))


@fuzz("config_doc")
@given(st.dictionaries(st.sampled_from(SECTIONS), toml_values, max_size=6))
def test_config_random_documents(doc):
    _check_config(lambda: parse(doc, "fuzz.toml", Path("/nonexistent")))


SIM_LINES = SIM_TOML.read_text(encoding="utf-8").splitlines()


@fuzz("config_text")
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(SIM_LINES) - 1),
            st.sampled_from(["drop", "dup", "value", "bytes", "nest"]),
            st.one_of(
                st.sampled_from(
                    [
                        '"²-22"',
                        '"¹56"',
                        "nan",
                        "-inf",
                        "1e999",
                        '"\\u001b"',
                        "[[[1]]]",
                        "{a={b=1}}",
                        "1979-05-27",
                        "true",
                        '"KEY_NOPE"',
                    ]
                ),
                st.text(max_size=12),
            ),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_config_text_mutations_through_load(tmp_path_factory, mutations):
    lines = list(SIM_LINES)
    for index, how, value in mutations:
        index %= len(lines)
        if how == "drop":
            del lines[index]
        elif how == "dup":
            lines.insert(index, lines[index])
        elif how == "value" and "=" in lines[index]:
            lines[index] = lines[index].split("=", 1)[0] + "= " + value
        elif how == "bytes":
            lines[index] = value + lines[index]
        elif how == "nest":
            lines[index] = "x = " + "[" * 600 + "]" * 600
        if not lines:
            lines = [""]
    path = tmp_path_factory.mktemp("cfg") / "t.toml"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    _check_config(lambda: load(path))


# --- scenario files ------------------------------------------------------------------------------------

STEP_KEYS = [*scenario.ACTIONS, *scenario.OPTIONS, "bogus"]  # every key a step may hold, and one it may not
step_values = st.one_of(
    toml_values,
    st.sampled_from(
        [
            "visa-approve",
            "mc-tap-approve",
            "1250{ENTER}",
            "{F9}",
            "1234",
            "clean",
            "crash",
            "bogus",
            "timeout",
            "/dev/zero",
            str(ROOT / "hw-sim/hwsim/cards/visa-tap-approve.toml"),
            "/etc/passwd",
            ";4242424242424242=30121010000?",
        ]
    ),
    st.floats(),
    st.dictionaries(st.sampled_from(["count", "last_status", "status"]), toml_scalars, max_size=2),
)
steps = st.lists(
    st.one_of(st.dictionaries(st.sampled_from(STEP_KEYS), step_values, max_size=3), toml_scalars), max_size=5
)


def _check_plan(run) -> None:
    try:
        plan = run()
    except ScenarioError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)
        return
    for step in plan:  # a plan the runner can execute without surprises
        timeout = step.get("timeout", 10)
        assert not isinstance(timeout, bool) and math.isfinite(timeout) and 0 < timeout <= 600
        assert step.get("restart", "clean") in ("clean", "crash")


@fuzz("scenario_doc")
@given(
    st.one_of(
        st.fixed_dictionaries({"step": steps}),
        st.dictionaries(st.sampled_from(["step", "description", "x"]), step_values, max_size=2),
    )
)
def test_scenario_documents(doc):
    _check_plan(lambda: check_steps(doc, "fuzz.toml"))


SCENARIO = (ROOT / "tests" / "scenarios" / "sale_approved.toml").read_text(encoding="utf-8")


@fuzz("scenario_text")
@given(st.integers(0, len(SCENARIO)), st.integers(0, 40), st.text(max_size=20))
def test_scenario_text_mutations(at, cut, insert):
    text = SCENARIO[:at] + insert + SCENARIO[at + cut :]
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return  # load_steps turns this into ScenarioError
    _check_plan(lambda: check_steps(doc, "fuzz.toml"))
