"""The Debian packages the pixel display and spoken-prompt tests need (tools/system-packages display: the CJK
font, espeak-ng, aplay), installed once per session where apt can; a test that needs them skips, saying why,
where they cannot be had."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def display_packages() -> None:
    """Installs fonts-wqy-microhei, espeak-ng and alsa-utils when missing (as root, with apt-get)."""
    done = subprocess.run(
        ["sh", str(ROOT / "tools" / "system-packages"), "display"], capture_output=True, text=True, timeout=900
    )
    if done.returncode in (1, 2):
        pytest.skip(f"the display and audio tests need fonts-wqy-microhei and espeak-ng: {done.stderr.strip()}")
    assert done.returncode == 0, f"tools/system-packages failed:\n{done.stderr}"


@pytest.fixture
def espeak(display_packages: None) -> str:
    path = shutil.which("espeak-ng")
    assert path, "tools/system-packages display installed no espeak-ng"
    return path
