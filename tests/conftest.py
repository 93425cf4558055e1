"""Shared fixtures: the simulator's config with short timeouts, and a running Simulator."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest

from firmware.config import Config, Timeouts, load

ROOT = Path(__file__).resolve().parent.parent
SIM_TOML = ROOT / "config" / "sim.toml"

# pyemv/psec call TripleDES with short keys; cryptography warns. Not ours to fix; keep the output readable.
warnings.filterwarnings("ignore", message=".*TripleDES.*")


def sim_config(**timeouts: float) -> Config:
    """config/sim.toml with some timeouts replaced (seconds)."""
    cfg = load(SIM_TOML)
    return dataclasses.replace(cfg, timeouts=dataclasses.replace(cfg.timeouts, **timeouts))


@pytest.fixture
def sim(tmp_path):
    """A running simulator on config/sim.toml (host timeout 2 s) with its own data folder."""
    from hwsim import Simulator
    with Simulator(tmp_path / "data", sim_config(host=2.0), late_delay=3.0) as s:
        yield s


def wait_until(check, timeout: float = 10.0, what: str = "condition"):
    """Poll `check()` until it returns something truthy (for state that settles in the background)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout} s")
        time.sleep(0.02)


def sales(sim) -> list[dict]:
    """The journal's sale rows."""
    return [r for r in sim.journal() if r["kind"] == "sale"]


def assert_ledger_agrees(sim) -> None:
    """No customer charged without a recorded approval, none charged twice, none recorded but not charged."""
    charged = sorted(e["stan"] for e in sim.host.ledger if e["response_code"] == "00" and not e["reversed"])
    recorded = sorted(r["stan"] for r in sales(sim) if r["status"] == "approved")
    assert charged == recorded, f"host charged {charged}, journal approved {recorded}"
    undecided = [r for r in sales(sim) if r["status"] in ("pending", "unknown")]
    assert not undecided, f"sales without a settled outcome: {undecided}"


__all__ = ["ROOT", "SIM_TOML", "Timeouts", "assert_ledger_agrees", "sales", "sim_config", "wait_until"]
