"""Logging set-up for the terminal: card numbers redacted on every handler, optional log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from firmware.errors import TerminalError
from firmware.security.cardsec import RedactingFilter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: int = logging.INFO, log_file: Path | None = None, console_level: int = logging.WARNING) -> None:
    """Configure the root logger: stderr at `console_level`, a file at `level`; all redacted."""
    root = logging.getLogger()
    root.setLevel(min(level, console_level))
    for handler in root.handlers[:]:
        root.removeHandler(handler)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    handlers[0].setLevel(console_level)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            fh = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise TerminalError(
                f"cannot write the log file {log_file}: {exc.strerror or exc}; the data folder "
                f"must be writable (a worn SD card is remounted read-only: check `dmesg`)",
                screen="DISK READ-ONLY",
            ) from None
        fh.setLevel(level)
        handlers.append(fh)
    for handler in handlers:
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    # nfcpy's debug traces are raw APDUs in hex (track 2 equivalent data among them), which the PAN filter
    # cannot recognise inside longer hex runs: keep them off even in --debug.
    logging.getLogger("nfc").setLevel(logging.INFO)
