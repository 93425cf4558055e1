"""Receipt printer on python-escpos: backend from config, styled lines to ESC/POS, GB18030 for Chinese printers."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import logging
import os
import stat
import threading
import time
from typing import Any

from firmware.config import PrinterConfig
from firmware.core.receipt import Receipt
from firmware.core.text import clean
from firmware.errors import DeviceError

log = logging.getLogger(__name__)

FS_CHINESE_ON = b"\x1c\x26"  # FS &: Chinese character mode (GB18030 on Chinese firmware)
FS_CHINESE_OFF = b"\x1c\x2e"  # FS .: back to single-byte mode
PAPER_STATUS = b"\x10\x04\x04"  # DLE EOT 4: roll paper sensor status (ESC/POS real-time command)
PAPER_OUT = 0x60  # ... bits 5 and 6: the paper has run out
STATUS_WAIT = 0.5  # seconds a serial printer has to answer a status request


def _escpos_files() -> tuple[str, str]:
    """(the folder for python-escpos's capabilities cache, its capabilities.json): one cache folder per installed
    python-escpos (a second install with another capabilities.json never rewrites this one's), in the temp
    folder."""
    import tempfile  # here and below: these stdlib modules are needed at the first print only, as escpos is

    spec = importlib.util.find_spec("escpos")
    if spec is None or spec.origin is None:
        raise DeviceError("printer: python-escpos is not installed", screen="PRINTER OFFLINE")
    folder = os.path.dirname(spec.origin)
    source = os.path.join(folder, "capabilities.json")
    try:
        stamp = os.stat(source).st_mtime_ns
    except OSError:
        stamp = 0
    key = hashlib.sha256(f"{folder}:{stamp}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"countertop-escpos-{key}"), source


def _escpos_cache() -> str:
    """The folder for python-escpos's capabilities cache (see _escpos_files)."""
    return _escpos_files()[0]


def _private(folder: str) -> bool:
    """True when `folder` is a folder of this user's that nobody else can enter: python-escpos unpickles the
    cache, and a pickle someone else could plant or swap would run their code here."""
    try:
        st = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


def _loads(path: str, source: str) -> bool:
    """True when `path` holds a whole pickle no older than python-escpos's `source` (else python-escpos would
    rewrite it in place at import); a damaged one (a power cut while it was written) is removed."""
    import pickle

    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_mtime < os.stat(source).st_mtime:
                return False
            pickle.load(f)
        return True
    except FileNotFoundError:
        return False
    except Exception:  # noqa: BLE001 - any damage: rebuild it
        log.warning("printer: python-escpos's capabilities cache %s is damaged; rebuilding it", path)
        with contextlib.suppress(OSError):
            os.remove(path)
        return False


def _import_escpos() -> Any:
    """Import python-escpos with its import-time side effects contained (temp folders, root logging).

    python-escpos caches its printer database as a pickle, written in place; a process killed while writing it
    left an empty file that made every later import fail (EOFError), so no receipt printed again. The cache is
    built in a folder of its own and moved into the shared one whole (only a folder no one else can enter is
    shared at all); a damaged or stale one is rebuilt. python-escpos also makes a temp folder at every import,
    whatever it is told: that one is made inside the build folder and goes with it."""
    import glob
    import platform
    import shutil
    import tempfile

    shared, source = _escpos_files()
    name = f"{platform.python_version()}.capabilities.pickle"
    cached = os.path.join(shared, name)
    with contextlib.suppress(OSError):
        os.makedirs(shared, mode=0o700, exist_ok=True)
    usable = _private(shared)
    fresh = usable and _loads(cached, source)
    build = tempfile.mkdtemp(prefix="build-", dir=shared if usable else None)
    os.environ["ESCPOS_CAPABILITIES_PICKLE_DIR"] = shared if fresh else build
    root = logging.getLogger()
    before, temp = list(root.handlers), tempfile.tempdir
    tempfile.tempdir = build
    try:
        import escpos.printer as printers  # noqa: PLC0415 - deferred: heavy and not needed by an idle terminal
    finally:
        tempfile.tempdir = temp
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
    if usable and not fresh:
        built = os.path.join(build, name)
        try:
            os.chmod(built, 0o600)
            at = max(time.time(), os.stat(source).st_mtime)  # never older than its source, even on a clock behind
            os.utime(built, (at, at))
            os.replace(built, cached)  # whole or not at all, for every other process
        except OSError as exc:
            log.debug("printer: capabilities cache not kept: %s", exc)
    shutil.rmtree(build, ignore_errors=True)
    if usable:  # builds a kill interrupted (a minute is far longer than a build)
        for left in glob.glob(os.path.join(shared, "build-*")):
            with contextlib.suppress(OSError):
                if time.time() - os.stat(left).st_mtime > 60:
                    shutil.rmtree(left, ignore_errors=True)
    return printers


def _status_byte(b: int) -> bool:
    """True for a byte shaped like an ESC/POS real-time status answer (bits 1 and 4 set, bits 0 and 7 clear);
    an XON/XOFF or an automatic status byte is not one."""
    return b & 0x93 == 0x12


def _ask_status(dev: Any, serial: bool) -> bytes:
    """Send DLE EOT 4 and return the printer's status byte (b"" when none came). python-escpos's serial `_read`
    asks pyserial for 16 bytes, which waits out the whole timeout for a one-byte answer (half a second per
    ask, twice per receipt); a serial printer is read a byte at a time, which returns as soon as it arrives."""
    if serial:
        dev.device.reset_input_buffer()  # a late answer to an earlier ask is not this one's
        dev._raw(PAPER_STATUS)
        for _ in range(4):  # a stray flow-control or automatic-status byte may come first
            got = bytes(dev.device.read(1))
            if not got or _status_byte(got[0]):
                return got
        return b""
    dev._raw(PAPER_STATUS)
    answers = [b for b in bytes(dev._read()) if _status_byte(b)]
    return bytes(answers[-1:])


class ReceiptPrinter:
    """Prints Receipts through one python-escpos backend; opens the device on first print, reopens after errors."""

    def __init__(self, cfg: PrinterConfig) -> None:
        self._cfg = cfg
        self._device: Any = None
        self._lock = threading.Lock()
        # Does this printer answer DLE EOT? Learnt on the first ask; a file backend cannot be read from.
        self._answers_status: bool | None = False if cfg.backend == "file" else None

    @property
    def enabled(self) -> bool:
        """False for backend 'none' (no printer fitted)."""
        return self._cfg.backend != "none"

    def _open(self) -> Any:
        printers = _import_escpos()
        c = self._cfg
        kw = {"profile": c.profile}
        if c.backend == "usb":
            vid, pid = (int(x, 16) for x in c.usb.split(":"))
            dev = printers.Usb(vid, pid, **kw)
        elif c.backend == "serial":
            dev = printers.Serial(devfile=c.devfile, baudrate=c.baudrate, dsrdtr=False, timeout=STATUS_WAIT, **kw)
        elif c.backend == "network":
            dev = printers.Network(host=c.host, port=c.port, timeout=10, **kw)
        else:
            dev = printers.File(devfile=c.devfile, **kw)
        dev.open()
        return dev

    def print_receipts(self, receipts: list[Receipt]) -> None:
        """Print each receipt and cut after it (blocking: call from a worker thread)."""
        if not self.enabled:
            return
        with self._lock:
            try:
                if self._device is None:
                    self._device = self._open()
                for receipt in receipts:
                    self._check_paper(self._device, before=True)
                    self._print_one(self._device, receipt)
                    self._check_paper(self._device, before=False)  # it ran out during this one: not whole
            except DeviceError:
                raise
            except Exception as exc:  # python-escpos and its backends raise many unrelated types
                self._drop()
                raise DeviceError(f"printer ({self._cfg.backend}): {exc!r}", screen="PRINTER OFFLINE") from None

    def _check_paper(self, dev: Any, before: bool) -> None:
        """DeviceError when the printer says its roll is empty, or, `before` a receipt, when a printer that
        always answered does not (switched off with its cable in: the receipt waits instead of vanishing). After
        a receipt a missing answer proves nothing (a slow answer would print the receipt twice). A printer that
        never answers status requests (many cheap ones, or the file backend) is asked once and then trusted."""
        if self._answers_status is False:
            return
        try:
            answer = _ask_status(dev, self._cfg.backend == "serial")
        except NotImplementedError:
            answer = b""
        if not answer:
            if self._answers_status and before:  # it always answered: now it is off, or its cable is out
                raise DeviceError("printer: no answer to a status request", screen="PRINTER OFFLINE")
            if self._answers_status:
                log.warning("printer: no answer to the status request after a receipt")
                return
            log.info("printer: it does not answer status requests; paper is not checked")
            self._answers_status = False
            return
        self._answers_status = True
        if answer[-1] & PAPER_OUT == PAPER_OUT:
            raise DeviceError("printer: out of paper", screen="PRINTER: NO PAPER")

    def _print_one(self, dev: Any, receipt: Receipt) -> None:
        dev.hw("INIT")
        for line in receipt.lines:
            dev.set(
                align=line.align,
                bold=line.bold,
                double_height=line.big,
                double_width=line.big,
                normal_textsize=not line.big,
            )
            if line.image:
                self._print_image(dev, line.image)
                continue
            text = clean(line.text)  # no control character reaches the printer: ESC p would open the drawer
            if self._cfg.chinese and not text.isascii():
                dev._raw(FS_CHINESE_ON + text.encode("gb18030", errors="replace") + FS_CHINESE_OFF + b"\n")
            else:
                dev.text(text + "\n")
        dev.set_with_default()
        qr = clean(receipt.qr)
        if qr:
            dev.set(align="center")
            dev.qr(qr, native=True, size=5)  # GS ( k: the printer draws it
            dev.set_with_default()
        dev.cut()

    def _print_image(self, dev: Any, png: bytes) -> None:
        """A picture line (the cardholder's signature) as a GS v 0 raster image, scaled to fit the paper."""
        from PIL import Image  # noqa: PLC0415 - python-escpos's own dependency; only for a picture

        image: Image.Image = Image.open(io.BytesIO(png))
        image.load()
        dots = self._paper_dots(dev)
        if image.width > dots:
            height = max(1, round(image.height * dots / image.width))
            image = (
                image.convert("L").resize((dots, height), Image.Resampling.BOX).point(lambda v: 255 if v > 160 else 0)
            )
        dev.set(align="left")
        # python-escpos prints a note to stdout when the profile does not know the paper's width: kept out of
        # the terminal's console (logged instead).
        said = io.StringIO()
        with contextlib.redirect_stdout(said):
            dev.image(image.convert("1"), impl="bitImageRaster")
        if said.getvalue().strip():
            log.debug("printer: python-escpos: %s", said.getvalue().strip())

    def _paper_dots(self, dev: Any) -> int:
        """How many dots a line of paper has: the profile's media width, else 12 per character column."""
        try:
            return int(dev.profile.profile_data["media"]["width"]["pixels"])
        except (KeyError, TypeError, ValueError):
            return 12 * self._cfg.width

    def _drop(self) -> None:
        dev, self._device = self._device, None
        self._answers_status = False if self._cfg.backend == "file" else None
        if dev is not None:
            try:
                dev.close()
            except Exception:  # already broken; nothing more to do
                log.debug("printer: close after error failed", exc_info=True)

    def close(self) -> None:
        """Release the device."""
        with self._lock:
            self._drop()
