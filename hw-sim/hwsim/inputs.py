"""Simulated HID input devices: real evdev InputEvents through a pipe, read by evdev's own EventIO code."""

from __future__ import annotations

import errno
import os
import re
import struct
import threading
import time
from dataclasses import dataclass

from evdev import AbsInfo, ecodes
from evdev.eventio_async import EventIO

_EVENT = struct.Struct("llHHi")  # struct input_event on 64-bit Linux: timeval, type, code, value
_KEY_TOKEN = re.compile(r"\{([A-Z0-9]+)\}|(\d)|(\s)|(.)")


@dataclass(frozen=True)
class DeviceInfo:
    """Like evdev's DeviceInfo: bus, vendor, product, version."""

    bustype: int
    vendor: int
    product: int
    version: int


class SimInputDevice(EventIO):
    """An evdev device whose kernel side is a pipe: read_one/read_loop/async_read_loop run unchanged."""

    def __init__(
        self,
        name: str,
        vendor: int = 0x1209,
        product: int = 0x0001,
        fds: tuple[int, int] | None = None,
        keys: list[int] | None = None,
    ) -> None:
        self._rfd, self._wfd = fds if fds is not None else os.pipe()
        self.fd = self._rfd
        self.path = f"sim:{name}"
        self.name = name
        self.phys = "hwsim"
        self.info = DeviceInfo(ecodes.BUS_USB, vendor, product, 1)
        self.grabbed = False
        self._wlock = threading.Lock()
        self.gone = False  # unplugged: reads fail with ENODEV, as the kernel's do
        # The key codes it declares (EVIOCGBIT): every key unless told, e.g. only a numeric keypad's.
        self._keys = sorted(keys) if keys is not None else sorted(c for c in ecodes.KEY if isinstance(c, int))

    @classmethod
    def adopt(cls, name: str, fd: int, vendor: int = 0x1209, product: int = 0x0001) -> SimInputDevice:
        """The reading side of a device whose pipe was made by another process (which types on it):
        `fd` is the inherited read end; this side cannot type."""
        return cls(name, vendor, product, fds=(fd, -1))

    def hand_over_reader(self) -> int:
        """Close this process's copy of the read end after a child inherited it (so only the child
        reads what is typed); returns the fd number the child got."""
        fd, self._rfd = self._rfd, -1
        os.close(fd)
        return fd

    def fileno(self) -> int:
        return self._rfd

    def grab(self) -> None:
        """Exclusive access (EVIOCGRAB on a real device); recorded so tests can check the driver asks for it."""
        self.grabbed = True

    def ungrab(self) -> None:
        self.grabbed = False

    def capabilities(self, verbose: bool = False, absinfo: bool = True) -> dict[int, list[int]]:
        return {ecodes.EV_KEY: list(self._keys)}

    def close(self) -> None:
        super().close()  # drops the loop reader

    def read(self):  # noqa: ANN201 - evdev's own signature: a generator of InputEvents
        """evdev's read, except that an unplugged device fails as a real one does (OSError ENODEV)."""
        if self.gone:
            raise OSError(errno.ENODEV, "No such device", self.path)
        return super().read()

    def read_one(self):  # noqa: ANN201
        """evdev's read_one, except on an unplugged device (OSError ENODEV)."""
        if self.gone:
            raise OSError(errno.ENODEV, "No such device", self.path)
        return super().read_one()

    def unplug(self) -> None:
        """Pull the USB cable: the reader's next read fails with ENODEV (the kernel wakes it: the fd turns
        readable), and nothing can be typed any more."""
        self.gone = True
        with self._wlock:
            wfd, self._wfd = self._wfd, -1
        if wfd >= 0:
            os.close(wfd)

    def destroy(self) -> None:
        """Close both pipe ends (the simulated device is unplugged for good)."""
        for fd in (self._rfd, self._wfd):
            if fd < 0:
                continue
            try:
                os.close(fd)
            except OSError:
                pass
        self._rfd = self._wfd = -1

    def emit(self, events: list[tuple[int, int, int]]) -> None:
        """Write (type, code, value) events as the kernel would, stamped with the current time."""
        now = time.time()
        sec, usec = int(now), int((now % 1) * 1_000_000)
        data = b"".join(_EVENT.pack(sec, usec, t, c, v) for t, c, v in events)
        with self._wlock:
            if self._wfd < 0:
                raise OSError(f"{self.name}: this side of the device cannot type")
            os.write(self._wfd, data)

    def press(self, code: int, shift: bool = False) -> None:
        """One key stroke (down, up), with a shift press around it when asked, each followed by SYN_REPORT."""
        syn = (ecodes.EV_SYN, ecodes.SYN_REPORT, 0)
        events = []
        if shift:
            events += [(ecodes.EV_KEY, ecodes.KEY_LEFTSHIFT, 1), syn]
        events += [(ecodes.EV_KEY, code, 1), syn, (ecodes.EV_KEY, code, 0), syn]
        if shift:
            events += [(ecodes.EV_KEY, ecodes.KEY_LEFTSHIFT, 0), syn]
        self.emit(events)


# How a US-layout HID keyboard-wedge reader types each character: (key name, shift).
_UNSHIFTED_ROW = "`1234567890-=[]\\;',./ "
_SHIFTED_ROW = '~!@#$%^&*()_+{}|:"<>? '
_ROW_KEYS = (
    "GRAVE 1 2 3 4 5 6 7 8 9 0 MINUS EQUAL LEFTBRACE RIGHTBRACE BACKSLASH SEMICOLON APOSTROPHE COMMA DOT SLASH SPACE"
).split()


def keystroke(ch: str) -> tuple[int, bool]:
    """The key code and shift state a US HID keyboard uses to type `ch`."""
    if ch.isalpha() and ch.isascii():
        return ecodes.ecodes["KEY_" + ch.upper()], ch.isupper()
    if ch in _UNSHIFTED_ROW:
        return ecodes.ecodes["KEY_" + _ROW_KEYS[_UNSHIFTED_ROW.index(ch)]], False
    if ch in _SHIFTED_ROW:
        return ecodes.ecodes["KEY_" + _ROW_KEYS[_SHIFTED_ROW.index(ch)]], True
    if ch == "\n":
        return ecodes.KEY_ENTER, False
    raise ValueError(f"a HID keyboard cannot type {ch!r}")


def type_text(device: SimInputDevice, text: str) -> None:
    """Type `text` on `device` key by key, as a keyboard-wedge card reader does."""
    for ch in text:
        code, shift = keystroke(ch)
        device.press(code, shift)


def type_keys(device: SimInputDevice, keymap: dict[str, str], text: str) -> None:
    """Press keypad keys on `device`: digits (numpad codes) and named keys in braces ({ENTER} {CANCEL}
    ...), each named key mapped to its evdev key name by `keymap` (the config's [keypad.keys])."""
    for m in _KEY_TOKEN.finditer(text):
        named, digit, space, other = m.groups()
        if space:
            continue
        if other:
            raise ValueError(f"the keypad has no key {other!r}; use digits and {{NAMES}}")
        if digit:
            code = ecodes.ecodes[f"KEY_KP{digit}"]
        elif named in keymap:
            code = ecodes.ecodes[keymap[named]]
        else:
            raise ValueError(f"the keypad has no key {named!r}; it has {', '.join(keymap)}")
        device.press(code)


TOUCH_RANGE = 4095  # the simulated panel's axes: 0..4095, as many resistive and capacitive controllers report


class SimTouchDevice(SimInputDevice):
    """A touch panel (multitouch protocol B, two slots): declares its axes with absinfo as the kernel does, and
    draws strokes as a finger would."""

    def __init__(self, name: str, vendor: int = 0x1209, product: int = 0x0004, width: int = 480, height: int = 320):
        super().__init__(name, vendor, product, keys=[ecodes.BTN_TOUCH])
        self.width, self.height = width, height
        self._tracking = 0

    def capabilities(self, verbose: bool = False, absinfo: bool = True) -> dict[int, list]:  # type: ignore[override]
        axis = AbsInfo(value=0, min=0, max=TOUCH_RANGE, fuzz=0, flat=0, resolution=0)
        axes = [ecodes.ABS_X, ecodes.ABS_Y, ecodes.ABS_MT_POSITION_X, ecodes.ABS_MT_POSITION_Y]
        abs_caps: list = [(code, axis) if absinfo else code for code in axes]
        slot = AbsInfo(value=0, min=0, max=1, fuzz=0, flat=0, resolution=0)
        track = AbsInfo(value=0, min=0, max=65535, fuzz=0, flat=0, resolution=0)
        abs_caps += (
            [(ecodes.ABS_MT_SLOT, slot), (ecodes.ABS_MT_TRACKING_ID, track)]
            if absinfo
            else [
                ecodes.ABS_MT_SLOT,
                ecodes.ABS_MT_TRACKING_ID,
            ]
        )
        return {ecodes.EV_KEY: [ecodes.BTN_TOUCH], ecodes.EV_ABS: abs_caps}

    def _units(self, x: int, y: int) -> tuple[int, int]:
        """Display pixels -> the panel's own units."""
        return round(x * TOUCH_RANGE / (self.width - 1)), round(y * TOUCH_RANGE / (self.height - 1))

    def draw(self, strokes: list[list[tuple[int, int]]]) -> None:
        """Each stroke as one finger put down at its first point, moved through the rest and lifted, in slot 0
        (with the single-touch axes and BTN_TOUCH a kernel driver also reports), one SYN_REPORT per point."""
        syn = (ecodes.EV_SYN, ecodes.SYN_REPORT, 0)
        for stroke in strokes:
            if not stroke:
                continue
            self._tracking += 1
            events: list[tuple[int, int, int]] = [
                (ecodes.EV_ABS, ecodes.ABS_MT_SLOT, 0),
                (ecodes.EV_ABS, ecodes.ABS_MT_TRACKING_ID, self._tracking),
            ]
            for n, (px, py) in enumerate(stroke):
                x, y = self._units(px, py)
                events += [(ecodes.EV_ABS, ecodes.ABS_MT_POSITION_X, x), (ecodes.EV_ABS, ecodes.ABS_MT_POSITION_Y, y)]
                if n == 0:
                    events.append((ecodes.EV_KEY, ecodes.BTN_TOUCH, 1))
                events += [(ecodes.EV_ABS, ecodes.ABS_X, x), (ecodes.EV_ABS, ecodes.ABS_Y, y), syn]
            events += [
                (ecodes.EV_ABS, ecodes.ABS_MT_TRACKING_ID, -1),
                (ecodes.EV_KEY, ecodes.BTN_TOUCH, 0),
                syn,
            ]
            self.emit(events)
