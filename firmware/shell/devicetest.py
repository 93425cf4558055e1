"""`countertop print-test` and `countertop read-test`: one device at a time, through the terminal's own drivers,
so what works here works in the terminal. Card data is shown as the terminal may show it: a masked PAN at most."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Callable
from typing import Any, TextIO

from firmware.config import InputDeviceConfig, PrinterConfig
from firmware.core import emv
from firmware.core.events import BadRead, CardFailed, Key, Scanned, Swiped, Tapped
from firmware.core.paycode import classify_code
from firmware.core.receipt import Line, Receipt
from firmware.core.text import clean
from firmware.errors import ConfigError, DeviceError

log = logging.getLogger(__name__)

USB_ID = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}")
CHINESE_SAMPLE = "中文打印 GB18030：收银 退货 结算 ¥12.50"
PPSE_GONE = "the card left the field"


# --- print-test ----------------------------------------------------------------------------------------------


def printer_config(
    base: PrinterConfig | None,
    *,
    serial: str = "",
    usb: str = "",
    file: str = "",
    network: str = "",
    baudrate: int | None = None,
    width: int | None = None,
    chinese: bool | None = None,
) -> PrinterConfig:
    """The printer to test: the configured one (`base`), or the one named on the command line."""
    cfg = base or PrinterConfig()
    if usb and not USB_ID.fullmatch(usb):
        raise ConfigError(f"--usb {usb!r}: must be VVVV:PPPP in hex")
    host, _, port = network.partition(":")
    if port and not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"--network {network!r}: the port must be a number from 1 to 65535")
    if serial:
        cfg = dataclasses.replace(cfg, backend="serial", devfile=serial)
    elif usb:
        cfg = dataclasses.replace(cfg, backend="usb", usb=usb)
    elif file:
        cfg = dataclasses.replace(cfg, backend="file", devfile=file)
    elif network:
        cfg = dataclasses.replace(cfg, backend="network", host=host, port=int(port) if port else 9100)
    if baudrate is not None:
        cfg = dataclasses.replace(cfg, baudrate=baudrate)
    if width is not None:
        cfg = dataclasses.replace(cfg, width=width)
    if chinese is not None:
        cfg = dataclasses.replace(cfg, chinese=chinese)
    if cfg.backend == "none":
        raise DeviceError("print-test: no printer configured; name one (--serial, --usb, --file or --network)")
    return cfg


def where(cfg: PrinterConfig) -> str:
    """The printer's address as a person reads it."""
    return {"usb": f"usb {cfg.usb}", "serial": f"serial {cfg.devfile} at {cfg.baudrate} baud", "file": cfg.devfile}.get(
        cfg.backend, f"network {cfg.host}:{cfg.port}"
    )


def sample_receipt(cfg: PrinterConfig) -> Receipt:
    """A ticket that shows what the settings must be: the width ruler fits one line exactly, the emphasis and the
    double size print as such, the Chinese line prints as characters (not as question marks or garbage), and the
    QR code scans."""
    ruler = "".join(str(i % 10) for i in range(1, cfg.width + 1))
    lines = [
        Line("PRINT TEST", align="center", big=True),
        Line(where(cfg), align="center"),
        Line(f"width = {cfg.width}: the digits fill one line"),
        Line(ruler),
        Line("bold line", bold=True),
        Line("right aligned", align="right"),
        Line("ASCII !\"#$%&'()*+,-./:;<=>?@[]^_{|}~"),
    ]
    if cfg.chinese:
        lines.append(Line(CHINESE_SAMPLE))
    else:
        lines.append(Line("chinese = false: no Chinese line"))
    lines.append(Line("the QR code below reads COUNTERTOP PRINT TEST", align="center"))
    return Receipt(tuple(lines), qr="COUNTERTOP PRINT TEST")


def print_test(cfg: PrinterConfig, out: TextIO) -> int:
    """Print the test ticket through the terminal's printer driver; DeviceError says what went wrong."""
    from drivers.printer import ReceiptPrinter  # noqa: PLC0415 - python-escpos: only for the printer

    printer = ReceiptPrinter(cfg)
    try:
        printer.print_receipts([sample_receipt(cfg)])
    finally:
        printer.close()
    out.write(f"printed a test ticket on {where(cfg)}; check the ruler, the Chinese line and the QR code\n")
    return 0


# --- read-test -----------------------------------------------------------------------------------------------


def describe(event: Any) -> str:
    """What one read shows: keys by name, a swipe by its masked PAN, a payment code by its wallet and length."""
    if isinstance(event, Key):
        return f"key {event.name}"
    if isinstance(event, Swiped):
        card = event.card
        return f"swipe: {card.masked_pan}, service code {card.service_code}, track 2 read"
    if isinstance(event, BadRead):
        return f"bad read: {event.reason}"
    if isinstance(event, Scanned):
        wallet = classify_code(event.code)
        if wallet:
            return f"scan: {wallet} payment code, {len(event.code)} digits ({event.code[:2]}…{event.code[-2:]})"
        return f"scan: {clean(event.code)!r} ({len(event.code)} characters)"
    return repr(event)


async def read_input(
    kind: str, dev_cfg: InputDeviceConfig, keys: dict[str, str], count: int, seconds: float, out: TextIO
) -> int:
    """Open the keypad, magstripe reader or scanner as the terminal does (grabbed), and show `count` reads or
    what came in `seconds`; the keypad also stops at CANCEL. 0 when something was read, 1 when nothing came."""
    from drivers import hid  # noqa: PLC0415 - evdev: only for input devices

    device = hid.open_input_device(dev_cfg)
    out.write(f"{kind}: {getattr(device, 'path', '?')} {device.name!r}; waiting {seconds:g} s\n")
    out.flush()
    events: asyncio.Queue[Any] = asyncio.Queue()
    emit: Callable[[Any], None] = events.put_nowait
    if kind == "keypad":
        reading = hid.read_keypad(device, keys, emit)
    elif kind == "magstripe":
        reading = hid.read_magstripe(device, emit)
    else:
        reading = hid.read_scanner(device, emit)
    task = asyncio.ensure_future(reading)
    got = 0
    deadline = asyncio.get_running_loop().time() + seconds
    try:
        while got < count:
            left = deadline - asyncio.get_running_loop().time()
            waiting = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({waiting, task}, timeout=max(0.0, left), return_when=asyncio.FIRST_COMPLETED)
            if waiting not in done:
                waiting.cancel()
                if task in done:
                    raise DeviceError(f"{kind}: the device went away: {task.exception()!r}")
                break
            event = waiting.result()
            got += 1
            out.write(describe(event) + "\n")
            out.flush()
            if isinstance(event, Key) and event.name == "CANCEL":
                break
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        device.close()
    if not got:
        out.write(f"nothing read in {seconds:g} s\n")
    return 0 if got else 1


async def _ppse(session: Any) -> list[emv.Candidate]:
    """SELECT PPSE through a reader session: the card's payment applications."""
    steps = emv.select_ppse()
    apdu = next(steps)
    while True:
        answer = await session.transceive(apdu)
        try:
            apdu = steps.send(answer)
        except StopIteration as done:
            result: list[emv.Candidate] = done.value
            return result


async def read_nfc(path: str, aids: tuple[str, ...], seconds: float, out: TextIO) -> int:
    """Open the contactless reader as the terminal does, wait for a card, and list the payment applications its
    PPSE names (and which of them [contactless] aids supports). 0 when a card was read."""
    from drivers.nfc import READER_DOWN, NfcReader  # noqa: PLC0415 - nfcpy: only for the reader

    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()
    reader = NfcReader(path, loop, events.put_nowait)
    reader.start()
    reader.set_polling(True)
    out.write(f"contactless: {path}; hold a card to the reader ({seconds:g} s)\n")
    out.flush()
    deadline = loop.time() + seconds
    try:
        while True:
            try:
                event = await asyncio.wait_for(events.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                out.write(f"no card in {seconds:g} s\n")
                return 1
            if isinstance(event, CardFailed):
                out.write(f"{event.screen}: {event.reason}\n")
                if event.screen == READER_DOWN:
                    return 1
                continue
            if isinstance(event, Tapped):
                reader.set_polling(False)
                return await _show_card(event.session, aids, out)
    finally:
        reader.stop()


async def _show_card(session: Any, aids: tuple[str, ...], out: TextIO) -> int:
    try:
        candidates = await _ppse(session)
    except emv.CardError as exc:  # not a payment card, gone, or an answer that makes no sense
        out.write(f"card in the field (ISO-DEP), but: {exc}\n")
        return 0
    finally:
        session.close()
    out.write(f"card in the field (ISO-DEP); its PPSE lists {len(candidates)} application(s):\n")
    for c in candidates:
        label = clean((c.label or b"").decode("ascii", "replace")).strip()
        supported = "supported" if any(c.aid.startswith(a.upper()) for a in aids) else "not in [contactless] aids"
        priority = f", priority {c.priority}" if c.priority else ""
        out.write(f"  {c.aid} {label!r}{priority}: {supported}\n")
    return 0


def read_chip(aids: tuple[str, ...], seconds: float, out: TextIO) -> int:
    """Wait for a card in the first PC/SC reader, show its ATR, and SELECT each configured AID. pyscard is
    imported here only; without it, a DeviceError says so."""
    try:
        from smartcard.CardRequest import CardRequest  # noqa: PLC0415 - optional: the chip reader's library
        from smartcard.Exceptions import CardRequestTimeoutException  # noqa: PLC0415
        from smartcard.System import readers  # noqa: PLC0415
    except ImportError:
        raise DeviceError("chip reader: pyscard not installed") from None
    try:
        names = readers()
    except Exception as exc:  # noqa: BLE001 - pyscard's own types when pcscd is not running
        raise DeviceError(f"chip reader: cannot reach pcscd: {exc}") from None
    if not names:
        raise DeviceError("chip reader: pcscd lists no reader")
    out.write(f"chip: {names[0]}; insert a card ({seconds:g} s)\n")
    out.flush()
    try:
        service = CardRequest(timeout=seconds, readers=names[:1]).waitforcard()
    except CardRequestTimeoutException:
        out.write(f"no card in {seconds:g} s\n")
        return 1
    connection = service.connection
    connection.connect()
    try:
        out.write(f"ATR {bytes(connection.getATR()).hex().upper()}\n")
        for aid in aids:
            apdu = emv.command(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(aid))
            _, sw1, sw2 = connection.transmit(list(apdu))
            if sw1 == 0x61:  # T=0: the answer waits for GET RESPONSE
                _, sw1, sw2 = connection.transmit([0x00, 0xC0, 0x00, 0x00, sw2])
            out.write(f"  SELECT {aid}: status {sw1:02X}{sw2:02X}{' (present)' if (sw1, sw2) == (0x90, 0) else ''}\n")
    finally:
        connection.disconnect()
    return 0
