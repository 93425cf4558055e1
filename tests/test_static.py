"""The static checks CI holds: ruff (lint and format) over the project, mypy over firmware/ and drivers/ (strict for
the pure core); the settings are in pyproject.toml. `./countertop test tests/test_static.py` runs just these."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

PATHS = ("firmware", "drivers", "hw-sim", "tests", "bench", "fuzz", "tools")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(
    "command", [("ruff", "check", *PATHS), ("ruff", "format", "--check", *PATHS)], ids=["ruff-lint", "ruff-format"]
)
def test_ruff(command):
    done = _run(*command)
    assert done.returncode == 0, (
        f"{' '.join(command)}:\n{done.stdout}{done.stderr}\n"
        "(`.venv/bin/ruff check --fix` and `.venv/bin/ruff format` mend most of it)"
    )


def test_mypy():
    done = _run("mypy", "--no-error-summary")
    assert done.returncode == 0, f"mypy:\n{done.stdout}{done.stderr}"
