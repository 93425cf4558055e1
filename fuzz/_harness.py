"""Shared by the atheris harnesses: the project on sys.path, and the run loop with libFuzzer's arguments."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
for folder in (ROOT, ROOT / "hw-sim"):  # the checkout, installed or not
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
warnings.filterwarnings("ignore", message=".*TripleDES.*")  # pyemv's short TDES keys (see tests/conftest.py)


def run(test_one_input: Callable[[bytes], None]) -> None:
    """Hand `test_one_input` to libFuzzer with the command line's arguments (corpus folders, -max_total_time...)."""
    import atheris  # noqa: PLC0415 - `pip install atheris`; not a dependency

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
