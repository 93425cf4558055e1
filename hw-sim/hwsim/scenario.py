"""Headless scenarios: steps from a TOML file run through the Simulator, a JSON report, an exit status.

The whole file is checked before the first step runs (`load_steps`): each step has exactly one action,
each value has the type and range its action needs, card ids and fault names exist, and timeouts are
finite, above zero and at most MAX_TIMEOUT seconds. A wrong file is exit status 2 with one line naming
the file, the step and the key; 1 means a step ran and its expectation failed.
"""

from __future__ import annotations

import json
import math
import re
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

from firmware.config import LOGICAL_KEYS, Config

from .acquirer import FAULTS
from .cards import CATALOG
from .emvcard import contactless_catalog, load_profile
from .inputs import keystroke
from .simulator import Simulator

ACTIONS = (
    "keys",
    "swipe",
    "swipe_track1",
    "swipe_track2",
    "swipe_raw",
    "tap",
    "tap_profile",
    "remove_card",
    "pin",
    "fault",
    "restart",
    "expect_screen",
    "expect_receipts",
    "expect_receipt",
    "expect_journal",
)
OPTIONS = ("timeout", "note")
MAX_TIMEOUT = 600.0  # seconds one step may wait
MAX_TEXT = 4096  # characters of one typed or expected text
_KEY_TOKEN = re.compile(r"\{([A-Z0-9]+)\}|([0-9])|(\s)|(.)", re.DOTALL)
_JOURNAL_KEY = re.compile(r"count|last_[a-z][a-z0-9_]*")


class ScenarioError(Exception):
    """The scenario file itself is wrong (not an expectation that failed)."""


def _kind(value: Any) -> str:
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }
    return names.get(type(value), type(value).__name__)


def _text(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a string, got {_kind(value)}"
    if len(value) > MAX_TEXT:
        return f"longer than {MAX_TEXT} characters"
    return None


def _typed(value: Any) -> str | None:
    """Text a keyboard-wedge reader can type (the simulator types swipes on a US HID layout)."""
    problem = _text(value)
    if problem:
        return problem
    for ch in value:
        try:
            keystroke(ch)
        except ValueError:
            return f"a card reader cannot type {ch!r}"
    return None


def _keys(keypad: Iterable[str]) -> Callable[[Any], str | None]:
    names = tuple(keypad)

    def check(value: Any) -> str | None:
        problem = _text(value)
        if problem:
            return problem
        for m in _KEY_TOKEN.finditer(value):
            named, _, _, other = m.groups()
            if other:
                return f"the keypad has no key {other!r}; use digits and {{NAMES}}"
            if named and named not in names:
                return f"the keypad has no key {{{named}}}; it has {', '.join(names)}"
        return None

    return check


def _one_of(choices: Iterable[str], what: str) -> Callable[[Any], str | None]:
    known = tuple(choices)
    return lambda v: _text(v) or (None if v in known else f"no {what} {v[:40]!r}; known: {', '.join(known)}")


def _pin(value: Any) -> str | None:
    return _text(value) or (None if re.fullmatch(r"[0-9]{4,12}", value) else "must be 4 to 12 digits")


def _count(value: Any) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 10_000
    return None if ok else f"expected a count from 0 to 10000, got {_kind(value)} {value!r}"[:120]


def _journal(value: Any) -> str | None:
    if not isinstance(value, dict) or not value:
        return f'expected a table such as {{ count = 1, last_status = "approved" }}, got {_kind(value)}'
    for key, want in value.items():
        if not _JOURNAL_KEY.fullmatch(key):
            return f"{key[:40]!r} is neither count nor last_<column>"
        if key == "count":
            problem = _count(want)
        elif isinstance(want, (str, int)) and not isinstance(want, float):
            problem = _text(want) if isinstance(want, str) else None
        else:
            problem = f"expected a string, integer or true/false, got {_kind(want)}"
        if problem:
            return f"{key}: {problem}"
    return None


def _profile(value: Any) -> str | None:
    problem = _text(value)
    if problem:
        return problem
    path = Path(value)
    if not path.is_file() or path.stat().st_size > 65536:  # not /dev/zero, a folder or a stray big file
        return f"not a card profile: {value[:80]!r} is not a TOML file of at most 64 KiB"
    try:
        load_profile(value)
    except ValueError as exc:
        return f"not a card profile: {exc}"
    return None


def _timeout(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"expected a number of seconds, got {_kind(value)}"
    if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT):
        return f"must be above 0 and at most {MAX_TIMEOUT:g} seconds, got {value!r}"
    return None


def _checks(keypad: Iterable[str]) -> dict[str, Callable[[Any], str | None]]:
    return {
        "keys": _keys(keypad),
        "swipe": _one_of(CATALOG, "test card"),
        "swipe_track1": _typed,
        "swipe_track2": _typed,
        "swipe_raw": _typed,
        "tap": _one_of(contactless_catalog(), "contactless card"),
        "tap_profile": _profile,
        "remove_card": lambda v: None if v is True else "must be true (the card leaves the field)",
        "pin": _pin,
        "fault": _one_of(("", *FAULTS), "host fault"),
        "restart": _one_of(("clean", "crash"), "restart kind"),
        "expect_screen": lambda v: _text(v) or (None if v.strip() else "must not be empty"),
        "expect_receipts": _count,
        "expect_receipt": _text,
        "expect_journal": _journal,
        "timeout": _timeout,
        "note": _text,
    }


def load_steps(path: str | Path, keypad: Iterable[str] = LOGICAL_KEYS) -> list[dict[str, Any]]:
    """Read and check a whole scenario file (check_steps). ScenarioError names the file, the step and the key."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ScenarioError(f"{path}: {exc.strerror}") from None
    return parse_steps(raw, str(path), keypad)


def parse_steps(raw: bytes, source: str, keypad: Iterable[str] = LOGICAL_KEYS) -> list[dict[str, Any]]:
    """Check the bytes of a scenario file named `source`: UTF-8 TOML, then check_steps."""
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{source}: {exc}") from None
    except RecursionError:
        raise ScenarioError(f"{source}: arrays or tables nested too deeply") from None
    return check_steps(doc, source, keypad)


def check_steps(doc: dict[str, Any], source: str, keypad: Iterable[str] = LOGICAL_KEYS) -> list[dict[str, Any]]:
    """The run plan of a parsed scenario: its [[step]] tables, each with exactly one action whose value is
    what the action needs. `keypad` is the named keys the keypad has."""
    extra = set(doc) - {"step", "description"}
    if extra:
        raise ScenarioError(f"{source}: unknown top-level key {sorted(extra)[0][:40]!r}")
    if "description" in doc and _text(doc["description"]):
        raise ScenarioError(f"{source}: description: {_text(doc['description'])}")
    steps = doc.get("step")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{source}: no [[step]] tables")
    checks = _checks(keypad)
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict):
            raise ScenarioError(f"{source}: step {i}: expected a [[step]] table, got {_kind(step)}")
        unknown = set(step) - set(ACTIONS) - set(OPTIONS)
        if unknown:
            raise ScenarioError(
                f"{source}: step {i}: unknown key {sorted(unknown)[0][:40]!r}; known: {', '.join(ACTIONS)}"
            )
        actions = [k for k in step if k in ACTIONS and not k.startswith("swipe_track")]
        if any(k.startswith("swipe_track") for k in step):
            actions.append("swipe_track")
        if len(actions) != 1:
            raise ScenarioError(f"{source}: step {i}: needs exactly one action, has {actions or 'none'}")
        for key, value in step.items():
            problem = checks[key](value)
            if problem:
                raise ScenarioError(f"{source}: step {i}: {key}: {problem}")
    return steps


def _check_journal(sim: Simulator, expect: dict[str, Any]) -> None:
    rows = sim.journal()
    if "count" in expect and len(rows) != expect["count"]:
        raise AssertionError(f"journal has {len(rows)} rows, expected {expect['count']}")
    last = rows[-1] if rows else {}
    for key, want in expect.items():
        if key == "count":
            continue
        field = key.removeprefix("last_")
        if last.get(field) != want:
            raise AssertionError(f"last journal row {field} = {last.get(field)!r}, expected {want!r}")


def _do(sim: Simulator, step: dict[str, Any]) -> None:
    timeout = float(step.get("timeout", 10))  # checked by load_steps: finite, 0 < timeout <= 600
    if "keys" in step:
        sim.keys(step["keys"])
    elif "swipe" in step:
        sim.swipe(step["swipe"])
    elif "swipe_track1" in step or "swipe_track2" in step:
        sim.swipe(track1=step.get("swipe_track1"), track2=step.get("swipe_track2"))
    elif "swipe_raw" in step:
        sim.swipe(raw=step["swipe_raw"])
    elif "tap" in step:
        sim.tap(step["tap"])
    elif "tap_profile" in step:
        sim.tap(profile=step["tap_profile"])
    elif "remove_card" in step:
        sim.remove_card()
    elif "pin" in step:
        sim.pin(step["pin"], timeout)
    elif "fault" in step:
        assert sim.host is not None
        sim.host.fault(step["fault"] or None)
    elif "restart" in step:
        sim.restart(crash=step["restart"] == "crash")
    elif "expect_screen" in step:
        sim.wait_for(step["expect_screen"], timeout)
    elif "expect_receipts" in step:
        sim.wait_for_receipts(int(step["expect_receipts"]), timeout)
    elif "expect_receipt" in step:
        receipts = sim.receipts
        if not receipts or step["expect_receipt"] not in receipts[-1]:
            raise AssertionError(f"last receipt lacks {step['expect_receipt']!r}")
    elif "expect_journal" in step:
        _check_journal(sim, step["expect_journal"])


def run_scenario(path: str | Path, cfg: Config, data_dir: Path | None = None, out: TextIO = sys.stdout) -> int:
    """Run a scenario; print the JSON report; 0 when every step passed, 1 when one failed, 2 for a bad file."""
    try:
        steps = load_steps(path, cfg.keypad.keys)
    except ScenarioError as exc:
        print(f"countertop: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {"scenario": str(path), "passed": True, "steps": []}
    with tempfile.TemporaryDirectory(prefix="countertop-scenario-") as tmp:
        with Simulator(data_dir or Path(tmp), cfg) as sim:
            for i, step in enumerate(steps, 1):
                entry: dict[str, Any] = {"step": i, **{k: v for k, v in step.items()}}
                try:
                    _do(sim, step)
                    entry["ok"] = True
                except (AssertionError, TimeoutError, ValueError, KeyError) as exc:
                    entry["ok"], entry["error"] = False, str(exc)
                entry["screen"] = sim.screen.split("\n")
                report["steps"].append(entry)
                if not entry["ok"]:
                    report["passed"] = False
                    break
            report["receipts"] = sim.receipts
            report["host_log"] = [{"direction": d, "hex": raw.hex()} for d, raw in sim.host_log]
            report["journal"] = sim.journal()
    json.dump(report, out, ensure_ascii=False, indent=2)
    out.write("\n")
    return 0 if report["passed"] else 1
