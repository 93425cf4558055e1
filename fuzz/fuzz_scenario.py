"""atheris target: simulator scenario files (hwsim.scenario.parse_steps).

Invariant: a run plan or a one-line ScenarioError; a plan's timeouts are finite and bounded and its
restarts are "clean" or "crash"."""

from __future__ import annotations

import math

import _harness  # noqa: F401 - sys.path first
import atheris

with atheris.instrument_imports(include=["hwsim.scenario", "firmware"]):
    from hwsim.scenario import MAX_TIMEOUT, ScenarioError, parse_steps


def test_one_input(data: bytes) -> None:
    try:
        plan = parse_steps(data, "fuzz.toml")
    except ScenarioError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    for step in plan:
        timeout = step.get("timeout", 10)
        assert not isinstance(timeout, bool) and math.isfinite(timeout) and 0 < timeout <= MAX_TIMEOUT, step
        assert step.get("restart", "clean") in ("clean", "crash"), step


if __name__ == "__main__":
    _harness.run(test_one_input)
