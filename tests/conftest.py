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


__all__ = ["ROOT", "SIM_TOML", "Timeouts", "sim_config"]
