"""A virtual ESC/POS printer on a serial pty: decodes the bytes python-escpos sends back into receipt text."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import tempfile
import threading
import tty
from dataclasses import dataclass, field

ESC, GS, FS, LF, CR, DLE, EOT = 0x1B, 0x1D, 0x1C, 0x0A, 0x0D, 0x10, 0x04
# DLE EOT n real-time status answers (ESC/POS): n=1 printer status (bit 3: offline), n=4 roll paper sensor
# (bits 2-3: near end, bits 5-6: paper out); bits 1 and 4 are always set.
STATUS_ONLINE, STATUS_OFFLINE = 0x16, 0x1E
PAPER_OK, PAPER_OUT = 0x12, 0x72
# Commands with a fixed number of parameter bytes after the two command bytes.
_FIXED = {
    (ESC, ord("@")): 0,
    (ESC, ord("t")): 1,
    (ESC, ord("!")): 1,
    (ESC, ord("E")): 1,
    (ESC, ord("a")): 1,
    (ESC, ord("-")): 1,
    (ESC, ord("M")): 1,
    (ESC, ord("{")): 1,
    (ESC, ord("d")): 1,
    (ESC, ord("2")): 0,
    (ESC, ord("3")): 1,
    (ESC, ord("G")): 1,
    (ESC, ord("V")): 1,
    (ESC, ord("J")): 1,
    (ESC, ord("p")): 3,
    (GS, ord("!")): 1,
    (GS, ord("b")): 1,
    (GS, ord("B")): 1,
    (GS, ord("h")): 1,
    (GS, ord("w")): 1,
    (GS, ord("H")): 1,
    (GS, ord("f")): 1,
    (FS, ord("&")): 0,
    (FS, ord(".")): 0,
}


KEEP_RECEIPTS = 200  # receipts the harness keeps (older ones are counted): its memory stays flat in a soak
KEEP_RAW = 512 * 1024  # bytes of printer input kept, the newest


@dataclass
class EscposDecoder:
    """Incremental ESC/POS decoder: text lines per receipt, split at each cut (GS V)."""

    receipts: list[str] = field(default_factory=list)  # the last KEEP_RECEIPTS cut (a soak stays flat)
    dropped: int = 0  # receipts cut before those, no longer kept
    unknown: list[bytes] = field(default_factory=list)
    _buf: bytearray = field(default_factory=bytearray)
    _line: bytearray = field(default_factory=bytearray)
    _pieces: list[str] = field(default_factory=list)
    _lines: list[str] = field(default_factory=list)
    _chinese: bool = False
    paper: bool = True  # without paper, what is sent is taken in and never comes out
    paper_left: int | None = None  # receipts the roll still has room for (None: endless); the next ends it
    lost: int = 0  # receipts cut while there was no paper, or cut short by its end
    queries: list[int] = field(default_factory=list)  # DLE EOT n requests not yet answered
    # GS v 0 raster images: (the receipt they are part of, by index in `receipts`, width in dots, the rows as
    # sets of black dots' x), in the order printed
    images: list[tuple[int, int, list[set[int]]]] = field(default_factory=list)

    def _flush_text(self) -> None:
        # Bytes of the current mode: GB18030 in Chinese mode, code page 437 (ESC t 0) otherwise.
        self._pieces.append(self._line.decode("gb18030" if self._chinese else "cp437", errors="replace"))
        self._line.clear()

    def _set_chinese(self, on: bool) -> None:
        self._flush_text()
        self._chinese = on

    def _end_line(self) -> None:
        self._flush_text()
        self._lines.append("".join(self._pieces))
        self._pieces = []

    def _cut(self) -> None:
        if self.paper and self.paper_left is not None:
            if self.paper_left == 0:
                self.paper = False  # the roll ends in this receipt: it never comes out whole
            else:
                self.paper_left -= 1
        if not self.paper:
            self._line.clear()
            self._pieces, self._lines = [], []
            self.lost += 1
            return
        if self._line or self._pieces:
            self._end_line()
        while self._lines and not self._lines[-1].strip():
            self._lines.pop()
        self.receipts.append("\n".join(self._lines))
        self._lines = []
        if len(self.receipts) > KEEP_RECEIPTS:
            del self.receipts[0]
            self.dropped += 1

    def cut(self) -> int:
        """Receipts cut: those kept and those dropped beyond KEEP_RECEIPTS."""
        return self.dropped + len(self.receipts)

    def feed(self, data: bytes) -> int:
        """Decode what can be decoded; returns how many receipts were completed by this data."""
        self._buf += data
        done = self.cut()
        while self._buf:
            used = self._step()
            if used == 0:
                break  # incomplete command: wait for more bytes
            del self._buf[:used]
        return self.cut() - done

    def _step(self) -> int:
        b = self._buf
        c = b[0]
        if c == LF:
            self._end_line()
            return 1
        if c == CR:
            return 1
        if c not in (ESC, GS, FS, DLE):
            if c < 0x20 and not self._chinese:
                self.unknown.append(bytes([c]))
            else:
                self._line.append(c)
            return 1
        if len(b) < 2:
            return 0
        if c == DLE and b[1] == EOT:  # real-time status request: DLE EOT n
            if len(b) < 3:
                return 0
            self.queries.append(b[2])
            return 3
        cmd = (c, b[1])
        if cmd == (GS, ord("V")):  # cut: GS V m, or GS V m n for m in 65/66
            if len(b) < 3:
                return 0
            size = 4 if b[2] in (65, 66) else 3
            if len(b) < size:
                return 0
            self._cut()
            return size
        if cmd in ((GS, ord("(")), (ESC, ord("("))):  # GS ( fn pL pH data (QR and friends)
            if len(b) < 5:
                return 0
            size = 5 + b[3] + 256 * b[4]
            return size if len(b) >= size else 0
        if cmd == (GS, ord("v")):  # GS v 0 m xL xH yL yH raster image
            if len(b) < 8:
                return 0
            size = 8 + (b[4] + 256 * b[5]) * (b[6] + 256 * b[7])
            if len(b) < size:
                return 0
            self._lines.append("[image]")
            if self.paper:
                self.images.append(
                    (len(self.receipts), 8 * (b[4] + 256 * b[5]), raster_rows(bytes(b[8:size]), b[4] + 256 * b[5]))
                )
            return size
        if cmd not in _FIXED:
            self.unknown.append(bytes(b[:2]))
            return 2
        size = 2 + _FIXED[cmd]
        if len(b) < size:
            return 0
        if cmd == (FS, ord("&")):
            self._set_chinese(True)
        elif cmd in ((FS, ord(".")), (ESC, ord("@"))):
            self._set_chinese(False)
        return size


def raster_rows(data: bytes, width_bytes: int) -> list[set[int]]:
    """GS v 0 raster data as rows of the black dots' x (each byte 8 dots, the most significant bit leftmost)."""
    rows = []
    for start in range(0, len(data), width_bytes):
        row = data[start : start + width_bytes]
        rows.append({8 * n + bit for n, byte in enumerate(row) for bit in range(8) if byte & (0x80 >> bit)})
    return rows


class VirtualPrinter:
    """A pty whose slave is the printer's serial device; a thread reads and decodes the master side.

    The printer is reached through a stable link (`devfile`), as udev gives a real one a stable name under
    /dev/serial/by-id: unplug() closes the pty (writes on the terminal's side then fail, as they do when a
    USB printer goes), plug() makes a new one behind the same name. `paper` False is an empty roll: the
    printer answers DLE EOT 4 with "paper out" and prints nothing; `online` False answers DLE EOT 1 offline;
    `powered` False is a serial printer switched off with its cable in: what is written is lost, nothing answers.
    """

    def __init__(self) -> None:
        self._folder = tempfile.mkdtemp(prefix="hwsim-printer-")
        self.devfile = os.path.join(self._folder, "ttyPRINTER")
        self.decoder = EscposDecoder()
        self.raw = bytearray()
        self.online = True
        self.powered = True
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.plug()

    @property
    def paper(self) -> bool:
        """False while the roll is empty."""
        return self.decoder.paper

    @paper.setter
    def paper(self, loaded: bool) -> None:
        with self._cond:
            self.decoder.paper = loaded
            self.decoder.paper_left = None

    def paper_for(self, receipts: int) -> None:
        """Load a roll that runs out in the receipt after the next `receipts` ones."""
        with self._cond:
            self.decoder.paper, self.decoder.paper_left = True, receipts

    def plug(self) -> None:
        """Connect the printer (again): a new pty behind the same device name."""
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        link = self.devfile + ".new"
        os.symlink(os.ttyname(self._slave), link)
        os.replace(link, self.devfile)
        self._stop_r, self._stop_w = os.pipe()
        self._thread = threading.Thread(
            target=self._pump, args=(self._master, self._stop_r), name="hwsim-printer", daemon=True
        )
        self._thread.start()

    def unplug(self) -> None:
        """Pull the cable: the pty goes, and with it every byte in flight; so does the device name, as udev
        removes a USB printer's /dev/serial/by-id link (left behind, it would point at a pty number the system
        hands to the next pty opened, anyone's)."""
        if self._thread is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.devfile)
        os.write(self._stop_w, b"x")
        self._thread.join(2)
        self._thread = None
        for fd in (self._master, self._slave, self._stop_r, self._stop_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _pump(self, master: int, stop: int) -> None:
        while True:
            ready, _, _ = select.select([master, stop], [], [])
            if stop in ready:
                return
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not self.powered:
                continue  # into a switched-off printer: gone
            with self._cond:
                self.raw += data
                if len(self.raw) > KEEP_RAW:
                    del self.raw[: len(self.raw) - KEEP_RAW]
                done = self.decoder.feed(data)
                answers = bytes(self._status(n) for n in self.decoder.queries)
                self.decoder.queries.clear()
                if done:
                    self._cond.notify_all()
            if answers:
                os.write(master, answers)

    def _status(self, n: int) -> int:
        if n == 4:
            return PAPER_OK if self.decoder.paper else PAPER_OUT
        return STATUS_ONLINE if self.online else STATUS_OFFLINE

    @property
    def receipts(self) -> list[str]:
        """Decoded receipts so far, one per cut (the last KEEP_RECEIPTS of them)."""
        with self._cond:
            return list(self.decoder.receipts)

    def images(self, receipt: int) -> list[tuple[int, list[set[int]]]]:
        """The raster images printed on receipt number `receipt` (as in `receipts`): (width in dots, rows)."""
        with self._cond:
            return [(width, rows) for n, width, rows in self.decoder.images if n == receipt]

    def wait_for_receipts(self, count: int, timeout: float) -> list[str]:
        """Block until at least `count` receipts were cut; TimeoutError otherwise. Returns the receipts kept
        (the last KEEP_RECEIPTS)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.decoder.cut() >= count, timeout):
                raise TimeoutError(f"{self.decoder.cut()} receipts after {timeout} s, expected {count}")
            return list(self.decoder.receipts)

    def close(self) -> None:
        """Stop the reader, close the pty and remove the device name."""
        self.unplug()
        shutil.rmtree(self._folder, ignore_errors=True)
