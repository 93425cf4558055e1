"""Countertop hardware simulator: simulated devices, test cards and acquirer, and the Simulator harness."""

from .cards import CATALOG, TestCard
from .simulator import Simulator, TerminalStopped

__all__ = ["CATALOG", "Simulator", "TerminalStopped", "TestCard"]
