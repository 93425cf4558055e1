"""The Simulator harness: the real firmware and drivers wired to simulated devices and a simulated acquirer."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import fcntl
import logging
import shutil
import sqlite3
import struct
import tempfile
import termios
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.display import Display
from drivers.printer import ReceiptPrinter
from firmware.config import Config, InputDeviceConfig, TouchConfig, load
from firmware.core.screentext import ZH_CN, say
from firmware.host.signon import MASTER_KEY
from firmware.security.keystore import KeyStore
from firmware.shell.terminal import Devices, Terminal

from .acquirer import Acquirer
from .cards import card
from .emvcard import CardApplet, chip_catalog, contactless_catalog, load_profile
from .emvchip import ChipApplet
from .emvpki import TestPki
from .inputs import SimInputDevice, SimTouchDevice, type_keys, type_text

if TYPE_CHECKING:
    from PIL import Image

    from drivers.framebuffer import FramebufferDisplay

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "sim.toml"
# ANSI X9.24-1 test BDK: only the acquirer simulator knows it; the terminal holds the IPEK derived from it.
SIM_BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
# The terminal master key the simulated acquirer shares with the terminal (as if loaded at installation).
SIM_TMK = bytes.fromhex("C1D0F8FB4958670DBA40AB1F3752EF0D")


def _pending_bytes(fd: int) -> int:
    buf = fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0")
    return struct.unpack("i", buf)[0]


class TerminalStopped(TimeoutError):
    """The terminal stopped before it was ready (it refused its journal, its disk, its keys): raised by start()
    at once, with `failure` the reason. A TimeoutError, as the wait for the ready screen used to raise."""


class Simulator:
    """Firmware + simulated keypad, magstripe reader, printer, display and acquirer, with a blocking API."""

    def __init__(
        self,
        data_dir: str | Path,
        config: str | Path | Config | None = None,
        late_delay: float | None = None,
        display: Display | None = None,
        items: str | Path | None = None,
        touch: bool = False,
    ) -> None:
        base = config if isinstance(config, Config) else load(config or DEFAULT_CONFIG)
        if touch and base.touch is None:  # a touch screen over the display: the cardholder signs on it
            base = dataclasses.replace(base, touch=TouchConfig(InputDeviceConfig(name="hwsim touch")))
        self.data_dir = Path(data_dir)
        self._base = base
        self._late_delay = late_delay
        self._items = Path(items) if items else None  # a catalogue CSV to stock an empty journal with
        self._cond = threading.Condition()
        self._wallet: dict[str, CardApplet] = {}
        self._chips: dict[str, Any] = {}  # contact cards by id (ChipApplet)
        self.display = display or Display(base.display.width)
        self.display.listen(self._screen_changed)
        self._pixels: FramebufferDisplay | None = None  # the pixel panel, made when first looked at: panel()
        self.config: Config = base
        self.host: Acquirer | None = None
        self.terminal: Terminal | None = None

    def panel(self) -> FramebufferDisplay:
        """The simulated pixel panel: the real framebuffer driver on a memory-backed framebuffer (`[display]
        size`, default a 480x320 RGB565 panel as 3.5-inch SPI TFTs are; rotation and font as configured),
        showing the terminal's screen from now on. Made when first asked for (a screenshot): drawing every
        screen in pixels costs the simulator's boot and every sale some milliseconds of CPU that tests and
        benchmarks which never look at the pixels should not pay."""
        if self._pixels is None:
            from drivers.framebuffer import open_display  # deferred: Pillow and the fonts, only for pixels

            from .framebuffer import SimFramebuffer

            width, height = self._base.display.size or (480, 320)
            fb = SimFramebuffer(width, height, bpp=16)
            cfg = dataclasses.replace(self._base.display, kind="framebuffer", device=str(fb.device), size=None)
            pixels = self._pixels = open_display(cfg, fb.sysfs)
            self._framebuffer = fb
            screen = self.display
            screen.listen(lambda lines: pixels.show(lines, screen.qr, screen.strokes))
            pixels.show(screen.lines, screen.qr, screen.strokes)
        return self._pixels

    # --- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        """Start the acquirer and printer, then boot the terminal."""
        from .chipslot import ChipSlot
        from .lakalagw import LakalaGateway
        from .nfcfield import RfField
        from .pcscd import vpcd_port
        from .printer import VirtualPrinter
        from .unionpaygw import UnionPayGateway
        from .walletgw import WalletGateway
        from .wechatgw import WechatGateway

        late = self._late_delay if self._late_delay is not None else self._base.timeouts.host + 1.0
        scheme = self._base.keys.scheme
        self.host = Acquirer(
            SIM_BDK,
            late_delay=late,
            contactless=[*contactless_catalog().values(), *chip_catalog().values()],  # chip cards: same issuer
            dialect=self._base.host.dialect,
            key_scheme=scheme,
            tmk=SIM_TMK if scheme else b"",
        )
        if scheme and KeyStore(self.data_dir / "keys").get(MASTER_KEY) is None:
            KeyStore(self.data_dir / "keys").put(MASTER_KEY, SIM_TMK, scheme)  # the installer's key loading
        port = self.host.start()
        self.printer = VirtualPrinter()
        self.field = RfField()
        self.chip = ChipSlot(vpcd_port())  # vpcd's slot: a private pcscd's (HWSIM_VPCD_PORT) or the machine's
        self.wallet = WalletGateway(app_id=self._base.wallet.app_id or "2021000000000000")
        # The merchant's wallet keys for this run: the harness's own files, kept out of the terminal's data.
        keys = self._own = Path(tempfile.mkdtemp(prefix="hwsim-wallet-keys-"))
        self.pki = TestPki(keys / "emv-pki")  # test CA, issuer and ICC keys for chip cards, made when first used
        (keys / "merchant_private.pem").write_bytes(self.wallet.merchant_private_pem)
        (keys / "alipay_public.pem").write_bytes(self.wallet.gateway_public_pem)
        b = self._base
        wc = b.wechat
        self.wechat = WechatGateway(wc.mchid, wc.appid, wc.platform) if wc is not None else WechatGateway()
        (keys / "wechat_apiclient_key.pem").write_bytes(self.wechat.merchant_private_pem)
        (keys / "wechat_apiv3_key.txt").write_bytes(self.wechat.apiv3_key)
        (keys / "wechat_pub_key.pem").write_bytes(self.wechat.public_key_pem)
        up = b.unionpay if b.unionpay is not None and b.unionpay.via == "unionpay" else None  # else: the acquirer's
        self.unionpay = UnionPayGateway(up.mer_id) if up is not None else UnionPayGateway()
        (keys / "unionpay_sign.pem").write_bytes(self.unionpay.merchant_pem)
        (keys / "unionpay_root.cer").write_bytes(self.unionpay.root_pem)
        (keys / "unionpay_middle.cer").write_bytes(self.unionpay.middle_pem)
        ag = b.aggregator
        self.aggregator = LakalaGateway(ag.appid, ag.merchant_no, ag.term_no) if ag is not None else LakalaGateway()
        (keys / "lakala_private.pem").write_bytes(self.aggregator.merchant_private_pem)
        (keys / "lakala_platform.pem").write_bytes(self.aggregator.platform_cert_pem)
        self.config = dataclasses.replace(
            b,
            terminal=dataclasses.replace(b.terminal, data_dir=self.data_dir),
            host=dataclasses.replace(b.host, host="127.0.0.1", port=port, tls=False),
            printer=dataclasses.replace(b.printer, backend="serial", devfile=self.printer.devfile),
            contactless=dataclasses.replace(
                b.contactless, device=f"udp:127.0.0.1:{self.field.port}" if b.contactless.device else ""
            ),
            wallet=dataclasses.replace(
                b.wallet,
                gateway=self.wallet.url,
                app_id=self.wallet.app_id,
                private_key=str(keys / "merchant_private.pem"),
                provider_public_key=str(keys / "alipay_public.pem"),
            )
            if b.wallet.provider
            else b.wallet,
            emv=dataclasses.replace(b.emv, ca_keys=str(keys / "ca_keys.toml")),
            wechat=dataclasses.replace(
                wc,
                gateway=self.wechat.url,
                private_key=str(keys / "wechat_apiclient_key.pem"),
                merchant_serial=self.wechat.merchant_serial,
                apiv3_key=str(keys / "wechat_apiv3_key.txt"),
                public_key=str(keys / "wechat_pub_key.pem"),
                public_key_id=self.wechat.public_key_id,
            )
            if wc is not None
            else None,
            unionpay=dataclasses.replace(
                up,
                gateway=self.unionpay.url,
                sign_cert=str(keys / "unionpay_sign.pem"),
                root_cert=str(keys / "unionpay_root.cer"),
                middle_cert=str(keys / "unionpay_middle.cer"),
            )
            if up is not None
            else b.unionpay,
            aggregator=dataclasses.replace(
                ag,
                gateway=self.aggregator.url,
                serial_no=self.aggregator.serial_no,
                private_key=str(keys / "lakala_private.pem"),
                platform_cert=str(keys / "lakala_platform.pem"),
            )
            if ag is not None
            else None,
        )
        if self._items is not None:
            self._stock(self._items)
        self._boot()

    def _stock(self, csv_path: Path) -> None:
        """Import a catalogue into a journal that has none, as the shop would with `countertop items import`."""
        from firmware.core.items import parse_catalog
        from firmware.records.journal import Journal

        self.data_dir.mkdir(parents=True, exist_ok=True)
        journal = Journal(self.data_dir / "journal.sqlite3")
        try:
            if not journal.has_items():
                items, errors = parse_catalog(csv_path.read_bytes(), self._base.terminal.currency)
                if errors:
                    raise ValueError(f"{csv_path}: {errors[0]}")
                journal.import_items(items, datetime.now().astimezone())
        finally:
            journal.close()

    def _boot(self) -> None:
        cfg = self.config
        self.keypad_device = SimInputDevice(cfg.keypad.name or "hwsim keypad", 0x1209, 0x0001)
        self.reader_device = SimInputDevice(cfg.magstripe.name or "hwsim magstripe", 0x1209, 0x0002)
        self.scanner_device = (
            SimInputDevice(cfg.scanner.name or "hwsim scanner", 0x1209, 0x0003) if cfg.scanner else None
        )
        t = cfg.touch
        self.touch_device = (
            SimTouchDevice(t.device.name or "hwsim touch", width=t.width, height=t.height) if t is not None else None
        )
        self._unplugged: set[str] = set()
        self._retired: list[SimInputDevice] = []
        devices = Devices(
            open_keypad=lambda: self._open("keypad"),
            open_magstripe=lambda: self._open("magstripe"),
            printer=ReceiptPrinter(cfg.printer),
            display=self.display,
            open_scanner=(lambda: self._open("scanner")) if self.scanner_device else None,
            open_touch=(lambda: self.touch_device) if self.touch_device else None,  # type: ignore[return-value,arg-type]
        )
        self.terminal = Terminal(cfg, devices)
        self._loop = asyncio.new_event_loop()
        self.failure: BaseException | None = None
        self._power_cut = False
        self._running = True  # the firmware thread's loop has not ended
        self._thread = threading.Thread(
            target=self._run, args=(self._loop, self.terminal), name="countertop-firmware", daemon=True
        )
        self._thread.start()
        idle = say(cfg.terminal.language, "ENTER AMOUNT")  # the idle screen, in the shop's language
        with self._cond:  # ready, or stopped: a terminal that refused to start is not waited for
            self._cond.wait_for(lambda: idle in self.display.text or not self._running, 10)
        if idle not in self.display.text:
            if not self._running:
                raise TerminalStopped(
                    f"the terminal stopped before it was ready ({self.failure}); screen:\n{self.screen}"
                )
            raise TimeoutError(f"the terminal was not ready after 10 s; screen:\n{self.screen}")

    _INPUTS = {
        "keypad": ("keypad_device", 0x0001),
        "magstripe": ("reader_device", 0x0002),
        "scanner": ("scanner_device", 0x0003),
    }

    def _open(self, kind: str) -> SimInputDevice:
        """What the terminal's opener finds: the device, or no such device while it is unplugged."""
        if kind in self._unplugged:
            raise OSError(errno.ENODEV, f"no {kind} plugged in (hwsim)")
        return getattr(self, self._INPUTS[kind][0])

    def unplug(self, kind: str) -> None:
        """Pull a device out while the terminal runs: "keypad", "magstripe", "scanner" or "printer"."""
        if kind == "printer":
            self.printer.unplug()
            return
        attr, _ = self._INPUTS[kind]
        device = getattr(self, attr)
        if device is None:
            raise ValueError(f"this configuration has no {kind}")
        self._unplugged.add(kind)
        device.unplug()

    def plug(self, kind: str) -> None:
        """Plug a device back in (a new device node, as the kernel makes one); the terminal finds it."""
        if kind == "printer":
            self.printer.plug()
            return
        attr, product = self._INPUTS[kind]
        old = getattr(self, attr)
        self._retired.append(old)  # closed at halt: the terminal may still hold it now
        setattr(self, attr, SimInputDevice(old.name, 0x1209, product))
        self._unplugged.discard(kind)

    def _run(self, loop: asyncio.AbstractEventLoop, terminal: Terminal) -> None:
        """The firmware thread: the terminal's loop until it stops (clean stop) or is stopped (power cut).
        Should the terminal's run() itself fail, the failure is logged as an error and kept in `failure`."""
        asyncio.set_event_loop(loop)
        main = loop.create_task(terminal.run())
        main.add_done_callback(lambda _: loop.stop())
        try:
            loop.run_forever()
            if self._power_cut:
                # What the OS does for a process that dies, here in the terminal's own thread (SQLite wants the
                # journal closed by the thread that opened it): the frozen tasks are dropped, files and threads
                # let go of, nothing flushed or recorded.
                self._bury(loop)
                terminal.abandon()
                return
            if main.done() and not main.cancelled() and main.exception() is not None:
                self.failure = main.exception()
                log.error("simulator: the terminal's loop died", exc_info=self.failure)
        finally:
            with self._cond:  # start() waits for the ready screen or for this
                self._running = False
                self._cond.notify_all()

    def _halt(self, crash: bool) -> None:
        if crash:
            # Power cut: the loop stops where it is; nothing is flushed, closed or cancelled (see _run).
            self._power_cut = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if self._thread.is_alive():  # a second terminal must never share the devices with a first
                raise RuntimeError("simulator: the terminal's thread did not stop after a power cut")
        else:
            assert self.terminal is not None
            self._loop.call_soon_threadsafe(self.terminal.stop)
            self._thread.join(10)
            if self._thread.is_alive():
                raise RuntimeError("simulator: the terminal did not stop within 10 s")
            self._loop.close()
        for dev in (self.keypad_device, self.reader_device, self.scanner_device, self.touch_device, *self._retired):
            if dev is not None:
                dev.destroy()
        # The screen goes dark with the terminal: the next boot is waited for by its own idle screen, not the
        # one the stopped terminal left (a restart at rest used to return before the new terminal had booted).
        self.display.show(())

    @staticmethod
    def _bury(loop: asyncio.AbstractEventLoop) -> None:
        """Dispose of a loop stopped mid-flight without resuming any of its tasks.

        Every callback and timer the dead terminal had scheduled is dropped unrun. Each frozen coroutine is
        closed (GeneratorExit runs only its `finally` blocks: sockets and devices are released, as the OS
        does at a power cut; no `except` handler runs, so nothing is journaled), then the loop runs once
        for the transports those blocks closed. No task is ever stepped again, so none can end with an
        exception nobody retrieves. (For a real power cut, SIGKILL of a real process, see hwsim's kill
        harness; this in-process imitation never stops inside a SQLite statement.)
        """
        for handle in [*loop._ready, *loop._scheduled]:  # noqa: SLF001 - the dead terminal's wake-ups
            handle.cancel()
        for task in asyncio.all_tasks(loop):
            task._log_destroy_pending = False  # noqa: SLF001 - these tasks die on purpose
            task.get_coro().close()
        for handle in loop._ready:  # noqa: SLF001 - a `finally` that cancelled a task (or
            if isinstance(getattr(handle._callback, "__self__", None), asyncio.Future):  # completed a future)
                handle.cancel()  # woke it: it must not step a closed coroutine
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.close()

    def restart(self, crash: bool = True) -> None:
        """Power-cycle the terminal (crash=True: no clean shutdown) and boot it on the same data."""
        self._halt(crash)
        self._boot()

    def close(self) -> None:
        """Shut everything down."""
        if self._pixels is not None:
            self._pixels.close()
            self._framebuffer.close()
        if self.terminal is not None:
            self._halt(crash=False)
            self.terminal = None
        if self.host is not None:
            self.host.stop()
        self.printer.close()
        self.field.close()
        self.chip.close()
        self.wallet.close()
        self.wechat.close()
        self.unionpay.close()
        self.aggregator.close()
        shutil.rmtree(self._own, ignore_errors=True)

    # --- observation ----------------------------------------------------------------------

    def _screen_changed(self, lines: tuple[str, ...]) -> None:
        with self._cond:
            self._cond.notify_all()

    @property
    def screen(self) -> str:
        """The display's text now."""
        return self.display.text

    def wait_for(self, text: str, timeout: float = 10, *more: str) -> str:
        """Block until the screen contains `text` (or any of `more`); TimeoutError shows what the screen says
        instead."""
        texts = (text, *more)
        with self._cond:
            if not self._cond.wait_for(lambda: any(t in self.display.text for t in texts), timeout):
                raise TimeoutError(f"{texts!r} not on screen after {timeout} s; screen:\n{self.display.text}")
            return self.display.text

    def wait_while(self, text: str, timeout: float = 10) -> str:
        """Block while the screen contains `text` (e.g. until a tapped card has been read); returns the screen."""
        with self._cond:
            if not self._cond.wait_for(lambda: text not in self.display.text, timeout):
                raise TimeoutError(f"{text!r} still on screen after {timeout} s")
            return self.display.text

    @property
    def receipts(self) -> list[str]:
        """Decoded receipt texts, one per cut."""
        return self.printer.receipts

    def wait_for_receipts(self, count: int, timeout: float = 10) -> list[str]:
        """Block until `count` receipts have been cut."""
        return self.printer.wait_for_receipts(count, timeout)

    @property
    def printer_bytes(self) -> bytes:
        """The bytes the printer received (the newest 512 kB)."""
        return bytes(self.printer.raw)

    @property
    def host_log(self) -> list[tuple[str, bytes]]:
        """('request' | 'response', raw ISO 8583 bytes without the length header), in order (the last 1,000)."""
        assert self.host is not None
        return list(self.host.host_log)

    def journal(self) -> list[dict[str, Any]]:
        """The journal's rows (a sale's approved refunds summed as `refunded`), read on a connection of its own."""
        path = self.data_dir / "journal.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            db.row_factory = sqlite3.Row
            return [dict(r) for r in db.execute("SELECT * FROM transaction_summary ORDER BY id")]
        finally:
            db.close()

    # --- input ----------------------------------------------------------------------------

    def _settle(self, device: SimInputDevice, timeout: float = 5.0) -> None:
        """Wait until the firmware has read and handled everything typed on `device`."""
        deadline = time.monotonic() + timeout
        while _pending_bytes(device.fileno()) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert self.terminal is not None
        asyncio.run_coroutine_threadsafe(self.terminal.settle(), self._loop).result(timeout)

    def keys(self, text: str) -> None:
        """Press keypad keys: digits, and named keys in braces ({ENTER} {CANCEL} {CLEAR} {F1}..{F4} {MENU})."""
        type_keys(self.keypad_device, self.config.keypad.keys, text)
        self._settle(self.keypad_device)

    def pin(self, digits: str, timeout: float = 5.0) -> None:
        """Wait for the PIN prompt as a customer would (in either language: F4 switches a sale's), then type the
        digits and ENTER."""
        self.wait_for("ENTER PIN", timeout, say(ZH_CN, "ENTER PIN"))
        self.keys(digits + "{ENTER}")

    def swipe(
        self,
        card_id: str | None = None,
        *,
        track1: str | None = None,
        track2: str | None = None,
        raw: str | None = None,
    ) -> None:
        """Swipe a catalog card, or these tracks (with sentinels), or `raw` characters, then Enter."""
        if card_id is not None:
            c = card(card_id)
            text = c.track1 + c.track2
        elif raw is not None:
            text = raw
        else:
            text = (track1 or "") + (track2 or "")
        type_text(self.reader_device, text + "\n")
        self._settle(self.reader_device)

    def tap(
        self, card_id: str | None = None, *, profile: str | Path | None = None, together: bool = False
    ) -> CardApplet:
        """Hold a contactless card in the field: a catalog id (hwsim/cards/) or a profile TOML file.

        Like a customer, the card stays until remove_card() (or until its profile makes it vanish).
        `together=True` holds it beside the cards already there (a wallet with two cards in it).
        Returns the card, whose `apdus` counts the commands it answered.
        """
        applet = self._card("tap", card_id, profile)
        self.field.present(applet, applet.profile.technology, together=together)
        return applet

    def insert(self, card_id: str | None = None, *, profile: str | Path | None = None) -> Any:
        """Insert a chip card into the chip reader (through pcscd's virtual reader): a catalog id (hwsim/cards/
        or hwsim/cards/chip/) or a profile TOML file; its `protocol` ("T=0" or "T=1", default T=1) picks the ATR.
        A profile with a [contact] table answers as a contact EMV card (offline data authentication with the
        run's test CA keys, whose public halves are written where [emv] ca_keys points). The card stays until
        remove_card(). Returns the card, whose `apdus` counts the commands it answered."""
        if card_id is not None and card_id in chip_catalog():
            applet: Any = self._chip_card(chip_catalog()[card_id])
        elif profile is not None and load_profile(profile).contact:
            chosen = load_profile(profile)
            assert self.host is not None
            self.host.issuer.add_contactless(chosen)
            applet = self._chip_card(chosen)
        else:
            applet = self._card("insert", card_id, profile)
        self.chip.insert(applet)
        return applet

    def _chip_card(self, chosen: Any) -> Any:
        """A contact card (keeping its ATC and PIN tries within this run), with its CA keys published."""
        applet = self._chips.get(chosen.id)
        if applet is None or applet.profile != chosen:
            applet = self._chips[chosen.id] = ChipApplet(chosen, self.pki)
        index = int(chosen.contact.get("ca_index", "92"), 16)
        for app in applet.apps:  # the CA keys its certificates are signed with, before the terminal asks
            self.pki.ca(app.aid[:10], 0x92 if index == 0x99 else index)  # 99: a key the terminal lacks
        if self.config.emv.ca_keys:
            self.pki.write_ca_file(Path(self.config.emv.ca_keys))
        applet.apdus = 0
        return applet

    def _card(self, verb: str, card_id: str | None, profile: str | Path | None) -> CardApplet:
        """The card a catalog id or profile file names, with the ATC it kept from earlier use in this run."""
        if (card_id is None) == (profile is None):
            raise ValueError(f"{verb}() takes a catalog id or profile=PATH")
        if card_id is not None:
            catalog = contactless_catalog()
            if card_id not in catalog:
                kind = "contactless" if verb == "tap" else "chip"
                raise KeyError(f"no {kind} card {card_id!r}; the catalog has: {', '.join(catalog)}")
            chosen = catalog[card_id]
        else:
            chosen = load_profile(profile)  # type: ignore[arg-type]
            assert self.host is not None
            self.host.issuer.add_contactless(chosen)
        # A card keeps its ATC from tap to tap, as a real one does (a reused ATC is a replay to the issuer).
        applet = self._wallet.get(chosen.id)
        if applet is None or applet.profile != chosen:
            applet = self._wallet[chosen.id] = CardApplet(chosen)
        applet.apdus = 0
        return applet

    def sign(self, strokes: list[list[tuple[int, int]]]) -> None:
        """Sign on the touch screen: each stroke a list of (x, y) display pixels, drawn by one finger (put down,
        moved, lifted); returns when the terminal has read them. Needs a touch screen (Simulator(touch=True))."""
        if self.touch_device is None:
            raise ValueError("this simulator has no touch screen: Simulator(..., touch=True) or [touch] in config")
        self.touch_device.draw(strokes)
        self._settle(self.touch_device)

    def scan(self, code: str) -> None:
        """Scan a code with the 2D scanner (typed as a keyboard-mode scanner types it, then Enter)."""
        if self.scanner_device is None:
            raise RuntimeError("this configuration has no [scanner]")
        type_text(self.scanner_device, code + "\n")
        self._settle(self.scanner_device)

    @property
    def display_qr(self) -> str:
        """The payload of the QR code on screen ("" when none)."""
        return self.display.qr

    def screen_image(self) -> Image.Image:
        """What the simulated panel shows (read back from its framebuffer once the last screen is drawn)."""
        return self.panel().screenshot()

    def screenshot(self, path: str | Path) -> Path:
        """Save what the simulated panel shows as a PNG."""
        path = Path(path)
        self.screen_image().save(path, format="PNG")
        return path

    def remove_card(self, card: CardApplet | None = None) -> None:
        """Take a card out: by default every card from the field and the chip reader, else just that one."""
        self.field.remove(card)
        if card is None or card is self.chip.card:
            self.chip.remove()
