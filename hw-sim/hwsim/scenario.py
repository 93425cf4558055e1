"""Headless scenarios: steps from a TOML file run through the Simulator, a JSON report, an exit status."""

from __future__ import annotations

import json
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any, TextIO

from firmware.config import Config

from .simulator import Simulator

ACTIONS = ("keys", "swipe", "swipe_track1", "swipe_track2", "swipe_raw", "tap", "tap_profile", "remove_card",
           "pin", "fault", "restart",
           "expect_screen", "expect_receipts", "expect_receipt", "expect_journal")
OPTIONS = ("timeout", "note")


class ScenarioError(Exception):
    """The scenario file itself is wrong (not an expectation that failed)."""


def load_steps(path: str | Path) -> list[dict[str, Any]]:
    """Read and check a scenario file: a list of [[step]] tables, each with known keys."""
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from None
    extra = set(doc) - {"step", "description"}
    if extra:
        raise ScenarioError(f"{path}: unknown top-level key {sorted(extra)[0]!r}")
    steps = doc.get("step")
    if not isinstance(steps, list) or not steps:
        raise ScenarioError(f"{path}: no [[step]] tables")
    for i, step in enumerate(steps, 1):
        unknown = set(step) - set(ACTIONS) - set(OPTIONS)
        if unknown:
            raise ScenarioError(f"{path}: step {i}: unknown key {sorted(unknown)[0]!r}; known: {', '.join(ACTIONS)}")
        actions = [k for k in step if k in ACTIONS and not k.startswith("swipe_track")]
        if any(k.startswith("swipe_track") for k in step):
            actions.append("swipe_track")
        if len(actions) != 1:
            raise ScenarioError(f"{path}: step {i}: needs exactly one action, has {actions or 'none'}")
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
    timeout = float(step.get("timeout", 10))
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
        sim.restart(crash=step["restart"] != "clean")
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
        steps = load_steps(path)
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
