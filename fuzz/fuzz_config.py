"""atheris target: configuration files (firmware.config.loads: UTF-8, TOML, then every section's checks).

Invariant: a Config or a one-line ConfigError; a Config's ids fit ISO 8583 and its codes are ASCII."""

from __future__ import annotations

import math
import re
from pathlib import Path

import _harness  # noqa: F401 - sys.path first
import atheris

with atheris.instrument_imports(include=["firmware"]):
    from firmware.config import loads
    from firmware.errors import ConfigError


def test_one_input(data: bytes) -> None:
    try:
        cfg = loads(data, "fuzz.toml", Path("/nonexistent"))
    except ConfigError as exc:
        assert "\n" not in str(exc), str(exc)
        return
    assert re.fullmatch(r"[\x21-\x7e]([\x20-\x7e]{6})[\x21-\x7e]", cfg.terminal.terminal_id)
    assert re.fullmatch(r"[\x20-\x7e]{1,15}", cfg.terminal.merchant_id)
    assert re.fullmatch(r"[0-9]{3}", cfg.contactless.country)
    assert all(math.isfinite(v) for v in vars(cfg.timeouts).values())


if __name__ == "__main__":
    _harness.run(test_one_input)
