"""Display drivers: the screen model (lines of text and an optional QR code) and a text-console renderer for
the board's tty (pixel panels: drivers/framebuffer.py)."""

from __future__ import annotations

import io
import logging
import threading
import unicodedata
from collections.abc import Callable
from typing import TextIO

from firmware.core.screentext import clip, columns, wrap
from firmware.core.text import clean

log = logging.getLogger(__name__)

Strokes = tuple[tuple[tuple[int, int], ...], ...]  # a signature being drawn: strokes of (x, y) display pixels


def qr_symbol(payload: str):  # noqa: ANN201 - segno.QRCode
    """The QR symbol for a payload (segno; error correction M, as wallets use)."""
    import segno  # deferred: only needed while a code is shown

    return segno.make(payload, error="m", micro=False)


class Display:
    """The current screen: a few lines of text, fitted to the width, and maybe a QR code; listeners hear
    every change."""

    def __init__(self, width: int = 20) -> None:
        self.width = width
        self._lines: tuple[str, ...] = ()
        self._qr = ""
        self._strokes: Strokes = ()
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
    def qr(self) -> str:
        """The payload of the QR code on screen, or ""."""
        with self._lock:
            return self._qr

    @property
    def strokes(self) -> Strokes:
        """The signature being drawn on screen: polylines in display pixels (a touch screen's layer), or ()."""
        with self._lock:
            return self._strokes

    @property
    def text(self) -> str:
        """The screen as one string, lines joined by newlines."""
        return "\n".join(self.lines)

    def show(self, lines: tuple[str, ...], qr: str = "", strokes: Strokes = ()) -> None:
        """Replace the screen; a line wider than the display wraps at word boundaries. Control characters
        (ANSI escapes, bidi overrides) never reach the screen, whatever text comes in. `strokes`: a signature
        being drawn (display pixels), for a graphic display to draw over the screen."""
        fitted = tuple(part for line in lines for part in _rows(clean(line), self.width))
        with self._lock:
            self._lines, self._qr, self._strokes = fitted, qr, strokes
        for callback in self._listeners:
            callback(fitted)


class ConsoleDisplay(Display):
    """A Display that also draws itself on a text console (HDMI tty or a terminal window); a QR code is
    drawn with half-block characters, two modules per character cell."""

    def __init__(self, stream: TextIO, width: int = 20) -> None:
        super().__init__(width)
        self._stream = stream

    def show(self, lines: tuple[str, ...], qr: str = "", strokes: Strokes = ()) -> None:
        redraw_qr = qr and qr != self.qr
        before = (self.lines, self.qr, bool(self.strokes))
        super().show(lines, qr, strokes)
        if strokes and before == (self.lines, self.qr, True):
            return  # only the signature's ink grew: a text console shows words only, not redrawn per touch
        shown = (*self.lines, "SIGNING...") if strokes else self.lines
        border = "+" + "-" * (self.width + 2) + "+"
        body = [f"| {_center(line, self.width)} |" for line in shown] or [f"| {'':{self.width}} |"]
        text = "\n".join([border, *body, border]) + "\n"
        if redraw_qr:
            buf = io.StringIO()
            qr_symbol(qr).terminal(out=buf, compact=True, border=2)
            text += buf.getvalue()
        try:
            self._stream.write(text)
            self._stream.flush()
        except OSError as exc:
            log.error("display: cannot write to the console: %s", exc)


def _center(text: str, width: int) -> str:
    """Centre `text` in `width` terminal columns (CJK characters take two)."""
    used = sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)
    left = max(0, width - used) // 2
    return " " * left + text + " " * max(0, width - used - left)


def _rows(line: str, width: int) -> list[str]:
    """`line` as display rows of at most `width` columns (CJK characters take two): broken at spaces, and a word
    wider than the display broken where it reaches the edge."""
    if columns(line) <= width:
        return [line]  # as it is, double spaces and all
    rows: list[str] = []
    for row in wrap(line, width):
        while columns(row) > width:
            head = clip(row, width) or row[0]  # a display narrower than one wide character
            rows.append(head)
            row = row[len(head) :]
        rows.append(row)
    return rows
