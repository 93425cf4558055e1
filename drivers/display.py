"""Display drivers: the screen model (lines of text) and a text-console renderer for the board's tty."""

from __future__ import annotations

import logging
import textwrap
import threading
from typing import Callable, TextIO

log = logging.getLogger(__name__)


class Display:
    """The current screen: a few lines of text, fitted to the width; listeners hear every change."""

    def __init__(self, width: int = 20) -> None:
        self.width = width
        self._lines: tuple[str, ...] = ()
        self._listeners: list[Callable[[tuple[str, ...]], None]] = []
        self._lock = threading.Lock()

    def listen(self, callback: Callable[[tuple[str, ...]], None]) -> None:
        """Call `callback(lines)` on every change (from the firmware's thread)."""
        self._listeners.append(callback)

    @property
    def lines(self) -> tuple[str, ...]:
        """The lines on screen now."""
        with self._lock:
            return self._lines

    @property
    def text(self) -> str:
        """The screen as one string, lines joined by newlines."""
        return "\n".join(self.lines)

    def show(self, lines: tuple[str, ...]) -> None:
        """Replace the screen; a line wider than the display wraps at word boundaries."""
        fitted = tuple(part for line in lines for part in (textwrap.wrap(line, self.width) or [""]))
        with self._lock:
            self._lines = fitted
        for callback in self._listeners:
            callback(fitted)


class ConsoleDisplay(Display):
    """A Display that also draws itself on a text console (HDMI tty or a terminal window)."""

    def __init__(self, stream: TextIO, width: int = 20) -> None:
        super().__init__(width)
        self._stream = stream

    def show(self, lines: tuple[str, ...]) -> None:
        super().show(lines)
        border = "+" + "-" * (self.width + 2) + "+"
        body = [f"| {line.center(self.width)} |" for line in self.lines] or [f"| {'':{self.width}} |"]
        try:
            self._stream.write("\n".join([border, *body, border]) + "\n")
            self._stream.flush()
        except OSError as exc:
            log.error("display: cannot write to the console: %s", exc)
