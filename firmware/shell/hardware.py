"""What the board has, read without touching any device: evdev input devices and what they look like from their
keys, USB devices from sysfs, serial ports, contactless readers nfcpy knows, PC/SC readers, printers, display."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

USB_PRINTER_CLASS = 0x07  # bInterfaceClass of a USB printer interface
# Vendors whose HID keyboard-wedge devices are magstripe readers or code scanners (USB-IF vendor ids).
MAGSTRIPE_VENDORS = {0x0801: "MagTek", 0x0ACD: "ID TECH"}
SCANNER_VENDORS = {0x0C2E: "Honeywell", 0x05E0: "Zebra (Symbol)", 0x05F9: "Datalogic", 0x1EAB: "Newland"}
MAGSTRIPE_WORDS = ("magstripe", "magnetic", "msr", "swipe", "card reader", "magtek", "idtech", "id tech")
SCANNER_WORDS = ("scanner", "barcode", "bar code", "qr", "honeywell", "zebra", "symbol", "datalogic", "newland")
KEYPAD_WORDS = ("keypad", "numpad", "number pad", "numeric", "pin pad", "pinpad")


@dataclass(frozen=True)
class InputInfo:
    """One evdev input device and what it looks like: kind is keypad | magstripe | scanner | wedge | other."""

    path: str
    name: str
    vendor: int
    product: int
    by_id: str  # a /dev/input/by-id link to it, when udev made one
    kind: str
    why: str
    writable: bool  # this user can open it for reading and grab it

    @property
    def usb_id(self) -> str:
        return f"{self.vendor:04x}:{self.product:04x}"


def classify(name: str, vendor: int, keys: set[int]) -> tuple[str, str]:
    """(kind, why) for an input device, from its name, its USB vendor and the keys it declares.

    A keypad declares the keypad digits and no letters (or says so in its name); a magstripe reader and a code
    scanner in keyboard mode both declare a whole US keyboard (letters, digits, Enter), so only their vendor or
    name tells them apart, and a keyboard looks the same. Anything without letters or keypad digits (power
    buttons, lid switches, mice) is "other"."""
    from evdev import ecodes  # noqa: PLC0415 - the input library, only where input devices are examined

    letters = sum(ecodes.ecodes[f"KEY_{c}"] in keys for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    row = sum(ecodes.ecodes[f"KEY_{d}"] in keys for d in "0123456789")
    pad = sum(ecodes.ecodes[f"KEY_KP{d}"] in keys for d in "0123456789")
    enter = bool({ecodes.KEY_ENTER, ecodes.KEY_KPENTER} & keys)
    lowered = name.lower()
    if pad == 10 and letters == 0:
        return "keypad", "keypad digits and no letters"
    if letters < 26 or row < 10 or not enter:
        if pad == 10:
            return "keypad", "keypad digits"
        return "other", "no keyboard keys"
    if any(w in lowered for w in KEYPAD_WORDS):
        return "keypad", "a whole keyboard's keys, named a keypad"
    if vendor in MAGSTRIPE_VENDORS:
        return "magstripe", f"a keyboard wedge from {MAGSTRIPE_VENDORS[vendor]}"
    if vendor in SCANNER_VENDORS:
        return "scanner", f"a keyboard wedge from {SCANNER_VENDORS[vendor]}"
    if any(w in lowered for w in MAGSTRIPE_WORDS):
        return "magstripe", "a keyboard wedge named a card reader"
    if any(w in lowered for w in SCANNER_WORDS):
        return "scanner", "a keyboard wedge named a scanner"
    return "wedge", "a whole keyboard's keys: a magstripe reader, a scanner or a keyboard (`countertop read-test`)"


def board_inputs(dev_root: Path) -> list[InputInfo]:
    """Every evdev input device this user can open, described (each opened, read for its ids, closed)."""
    import evdev  # noqa: PLC0415 - see classify

    found = []
    for path in evdev.list_devices(str(dev_root / "input")):
        try:
            dev = evdev.InputDevice(path)
        except OSError as exc:
            log.debug("doctor: cannot open %s: %s", path, exc)
            continue
        try:
            found += input_devices([dev], dev_root)
        finally:
            dev.close()
    return found


def unreadable_input_nodes(dev_root: Path) -> list[str]:
    """The event nodes this user cannot open (evdev does not list them): the service user needs a udev rule."""
    folder = dev_root / "input"
    nodes = sorted(folder.glob("event*")) if folder.is_dir() else []
    return [str(p) for p in nodes if not os.access(p, os.R_OK | os.W_OK)]


def input_devices(devices: Iterable[Any], dev_root: Path) -> list[InputInfo]:
    """Describe evdev devices (evdev.InputDevice or the simulator's): name, ids, by-id link, kind."""
    from evdev import ecodes  # noqa: PLC0415 - see classify

    links = _by_id_links(dev_root / "input" / "by-id")
    out = []
    for dev in devices:
        keys = set(dev.capabilities().get(ecodes.EV_KEY, []))
        kind, why = classify(dev.name, dev.info.vendor, keys)
        path = str(dev.path)
        writable = os.access(path, os.R_OK | os.W_OK) if path.startswith("/") else True
        by_id = links.get(os.path.realpath(path), "") if path.startswith("/") else ""
        out.append(InputInfo(path, dev.name, dev.info.vendor, dev.info.product, by_id, kind, why, writable))
    return out


def _by_id_links(folder: Path) -> dict[str, str]:
    """real path -> the by-id link naming it (the event-kbd one when there are several)."""
    links: dict[str, str] = {}
    if folder.is_dir():
        for link in sorted(folder.iterdir()):
            target = os.path.realpath(link)
            if target not in links or link.name.endswith("event-kbd"):
                links[target] = str(link)
    return links


@dataclass(frozen=True)
class UsbDevice:
    """One USB device as sysfs shows it."""

    sysname: str  # e.g. "1-1.3"
    vendor: int
    product: int
    bus: int
    address: int
    manufacturer: str
    name: str
    interface_classes: tuple[int, ...]

    @property
    def usb_id(self) -> str:
        return f"{self.vendor:04x}:{self.product:04x}"

    @property
    def devnode(self) -> str:
        """The libusb node: /dev/bus/usb/BBB/DDD."""
        return f"/dev/bus/usb/{self.bus:03d}/{self.address:03d}"

    def describe(self) -> str:
        label = " ".join(p for p in (self.manufacturer, self.name) if p) or "(no name)"
        return f"usb {self.usb_id} {label!r} at bus {self.bus} device {self.address}"


def usb_devices(sys_root: Path) -> list[UsbDevice]:
    """The USB devices in sysfs (/sys/bus/usb/devices), hubs' root ports left out."""
    folder = sys_root / "bus" / "usb" / "devices"
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        if ":" in entry.name or not (entry / "idVendor").exists():
            continue  # an interface, not a device
        try:
            vendor, product = int(_read(entry / "idVendor"), 16), int(_read(entry / "idProduct"), 16)
            bus, address = int(_read(entry / "busnum")), int(_read(entry / "devnum"))
        except ValueError:
            continue
        classes = []
        for interface in sorted(folder.glob(f"{entry.name}:*")):
            try:
                classes.append(int(_read(interface / "bInterfaceClass"), 16))
            except ValueError:
                continue
        if _read(entry / "bDeviceClass") == "09":
            continue  # a hub
        found.append(
            UsbDevice(
                entry.name,
                vendor,
                product,
                bus,
                address,
                _read(entry / "manufacturer"),
                _read(entry / "product"),
                tuple(classes),
            )
        )
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def nfc_usb_readers(devices: list[UsbDevice]) -> list[tuple[UsbDevice, str]]:
    """The USB devices nfcpy has a driver for, with the driver's name."""
    from nfc.clf.device import usb_device_map  # noqa: PLC0415 - nfcpy is heavy: only when asked

    return [(d, usb_device_map[(d.vendor, d.product)]) for d in devices if (d.vendor, d.product) in usb_device_map]


@dataclass(frozen=True)
class SerialPort:
    """A serial port: its node, what it is, and whether this user may open it."""

    path: str
    what: str
    writable: bool

    @property
    def nfcpy_path(self) -> str:
        """nfcpy's name for a PN532 on this port: /dev/ttyAMA0 -> tty:AMA0:pn532."""
        return f"tty:{Path(self.path).name.removeprefix('tty')}:pn532"


def serial_ports(dev_root: Path, sys_root: Path) -> list[SerialPort]:
    """The UARTs a reader or printer could hang on: the Pi's (ttyAMA*, the mini UART ttyS0 when it has a port),
    USB-serial adapters (ttyUSB*, ttyACM*, named by their /dev/serial/by-id link)."""
    names = {os.path.realpath(p): p.name for p in _listing(dev_root / "serial" / "by-id")}
    ports = []
    for pattern in ("ttyAMA*", "ttyS*", "ttyUSB*", "ttyACM*"):
        for node in sorted(dev_root.glob(pattern)):
            if pattern == "ttyS*" and _read(sys_root / "class" / "tty" / node.name / "type") in ("", "0"):
                continue  # a legacy port number with no UART behind it
            what = names.get(os.path.realpath(node), "")
            if not what:
                what = "the board's UART" if node.name.startswith(("ttyAMA", "ttyS")) else "USB serial"
            ports.append(SerialPort(str(node), what, os.access(node, os.R_OK | os.W_OK)))
    return ports


def _listing(folder: Path) -> list[Path]:
    return sorted(folder.iterdir()) if folder.is_dir() else []


def usb_printers(devices: list[UsbDevice]) -> list[UsbDevice]:
    """USB devices with a printer-class interface (ESC/POS receipt printers are, as a rule)."""
    return [d for d in devices if USB_PRINTER_CLASS in d.interface_classes]


def printer_nodes(dev_root: Path) -> list[str]:
    """The kernel's usblp nodes (/dev/usb/lpN): python-escpos's "file" backend writes to them."""
    return [str(p) for p in sorted((dev_root / "usb").glob("lp*"))] if (dev_root / "usb").is_dir() else []


def pcsc_readers() -> tuple[list[str], str]:
    """(reader names, problem): pyscard imported only here, and only if it is installed."""
    try:
        from smartcard.System import readers  # noqa: PLC0415 - optional: the chip reader's library
    except ImportError:
        return [], "pyscard not installed"
    try:
        return [str(r) for r in readers()], ""
    except Exception as exc:  # noqa: BLE001 - pyscard raises its own types when pcscd is not there
        return [], f"cannot reach pcscd: {exc}"


@dataclass(frozen=True)
class DisplayInfo:
    """The screens the board has: framebuffers (name, size) and connected DRM outputs."""

    framebuffers: tuple[tuple[str, str, str], ...]  # (node, driver name, "WxH")
    outputs: tuple[str, ...]  # e.g. "HDMI-A-1"


def display_info(sys_root: Path) -> DisplayInfo:
    """Framebuffers from /sys/class/graphics and connected outputs from /sys/class/drm."""
    fbs = []
    for fb in _listing(sys_root / "class" / "graphics"):
        if fb.name.startswith("fb"):
            size = _read(fb / "virtual_size").replace(",", "x")
            fbs.append((f"/dev/{fb.name}", _read(fb / "name"), size))
    outputs = [
        d.name.split("-", 1)[1]
        for d in _listing(sys_root / "class" / "drm")
        if "-" in d.name and _read(d / "status") == "connected"
    ]
    return DisplayInfo(tuple(fbs), tuple(outputs))
