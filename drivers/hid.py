"""evdev HID input: the keypad and the keyboard-wedge magstripe reader, decoded into terminal events."""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
from collections.abc import Callable
from typing import Any, Protocol

import evdev
from evdev import ecodes

from firmware.config import InputDeviceConfig
from firmware.core.events import BadRead, Event, Key, Scanned, Swiped
from firmware.core.track import parse_swipe
from firmware.errors import CardReadError, DeviceError

log = logging.getLogger(__name__)

KEY_UP, KEY_DOWN, KEY_HOLD = 0, 1, 2
_SHIFTS = {ecodes.KEY_LEFTSHIFT, ecodes.KEY_RIGHTSHIFT}
_ENTERS = {ecodes.KEY_ENTER, ecodes.KEY_KPENTER}


def _us_layout() -> dict[int, tuple[str, str]]:
    """evdev key code -> (character, shifted character) for a US keyboard layout."""
    table: dict[int, tuple[str, str]] = {}
    rows = {
        "KEY_1 KEY_2 KEY_3 KEY_4 KEY_5 KEY_6 KEY_7 KEY_8 KEY_9 KEY_0": ("1234567890", "!@#$%^&*()"),
        "KEY_MINUS KEY_EQUAL KEY_LEFTBRACE KEY_RIGHTBRACE KEY_SEMICOLON KEY_APOSTROPHE KEY_GRAVE"
        " KEY_BACKSLASH KEY_COMMA KEY_DOT KEY_SLASH KEY_SPACE": ("-=[];'`\\,./ ", '_+{}:"~|<>? '),
    }
    for names, (plain, shifted) in rows.items():
        for name, a, b in zip(names.split(), plain, shifted, strict=True):
            table[ecodes.ecodes[name]] = (a, b)
    for letter in "abcdefghijklmnopqrstuvwxyz":
        table[ecodes.ecodes[f"KEY_{letter.upper()}"]] = (letter, letter.upper())
    for digit in "0123456789":
        table[ecodes.ecodes[f"KEY_KP{digit}"]] = (digit, digit)
    for name, ch in (
        ("KEY_KPMINUS", "-"),
        ("KEY_KPPLUS", "+"),
        ("KEY_KPDOT", "."),
        ("KEY_KPSLASH", "/"),
        ("KEY_KPASTERISK", "*"),
    ):
        table[ecodes.ecodes[name]] = (ch, ch)
    return table


US_LAYOUT = _us_layout()


class InputDevice(Protocol):
    """The part of evdev.InputDevice the drivers use."""

    name: str

    def grab(self) -> None: ...
    def fileno(self) -> int: ...
    def read(self) -> Any: ...
    def close(self) -> None: ...


def input_events(device: InputDevice) -> InputEvents:
    """The device's events as they come, until it goes away (OSError, e.g. ENODEV, propagates)."""
    return InputEvents(device)


class InputEvents:
    """An input device's events as an async iterator (see input_events).

    evdev's own async_read_loop sets its result on a future its reader callback holds; when the task reading
    it is cancelled (the terminal shutting down) just as the device turns readable, that callback meets a
    cancelled future and asyncio logs InvalidStateError. Here the reader is removed whenever the wait ends.
    (An iterator object, not an async generator: a crash leaves no generator for the loop to finalize.)"""

    def __init__(self, device: InputDevice) -> None:
        self._device, self._batch = device, collections.deque[Any]()

    def __aiter__(self) -> InputEvents:
        return self

    async def __anext__(self) -> Any:
        while not self._batch:
            await self._readable()
            try:
                self._batch.extend(self._device.read())
            except BlockingIOError:  # woken with nothing to read
                continue
            if not self._batch:  # readable and nothing in it: end of file, the device is gone (never spin on it)
                raise OSError(errno.ENODEV, "input device gone (end of file)")
        return self._batch.popleft()

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        fd = self._device.fileno()
        readable: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(fd, wake)
        try:
            await readable
        finally:
            loop.remove_reader(fd)


def open_input_device(cfg: InputDeviceConfig) -> evdev.InputDevice:
    """Open the evdev device named in config: by path, else by USB vendor:product, else by name."""
    if cfg.path:
        try:
            return evdev.InputDevice(cfg.path)
        except OSError as exc:
            raise DeviceError(f"cannot open {cfg.path}: {exc.strerror}") from None
    vendor = product = None
    if cfg.usb:
        vendor, product = (int(x, 16) for x in cfg.usb.split(":"))
    for path in evdev.list_devices():
        try:
            dev = evdev.InputDevice(path)
        except OSError:
            continue
        if (cfg.usb and (dev.info.vendor, dev.info.product) == (vendor, product)) or (
            not cfg.usb and dev.name == cfg.name
        ):
            if ecodes.EV_KEY in dev.capabilities():
                return dev
        dev.close()
    raise DeviceError(f"no input device with {cfg.describe()} (is it plugged in? permission on /dev/input?)")


class KeyDecoder:
    """Tracks shift state and turns key-down events into characters (US layout)."""

    def __init__(self) -> None:
        self._shift: set[int] = set()

    def feed(self, event: Any) -> str | None:
        """The character a key event types, '\\n' for Enter, or None."""
        if event.type != ecodes.EV_KEY:
            return None
        if event.code in _SHIFTS:
            (self._shift.add if event.value != KEY_UP else self._shift.discard)(event.code)
            return None
        if event.value != KEY_DOWN:
            return None
        if event.code in _ENTERS:
            return "\n"
        chars = US_LAYOUT.get(event.code)
        if chars is None:
            return None
        return chars[1] if self._shift else chars[0]


class Keypad:
    """Keypad on evdev: digits from the number row or numpad, named keys from the configured map."""

    def __init__(self, keys: dict[str, str]) -> None:
        self._map: dict[int, str] = {}
        for d in "0123456789":
            self._map[ecodes.ecodes[f"KEY_{d}"]] = d
            self._map[ecodes.ecodes[f"KEY_KP{d}"]] = d
        for logical, evname in keys.items():
            code = ecodes.ecodes.get(evname)
            if not isinstance(code, int):
                raise DeviceError(f"keypad map: {logical} = {evname!r} is not an evdev key name")
            self._map[code] = logical

    def decode(self, event: Any) -> Key | None:
        """A Key for a key press that means something, else None (never logs which digit)."""
        if event.type == ecodes.EV_KEY and event.value == KEY_DOWN:
            name = self._map.get(event.code)
            if name is not None:
                return Key(name)
        return None


class SwipeAssembler:
    """Collects the characters of one swipe until Enter (or a pause), then parses the tracks."""

    MAX_CHARS = 512

    def __init__(self) -> None:
        self._decoder = KeyDecoder()
        self._buf: list[str] = []

    @property
    def pending(self) -> bool:
        """True while characters of an unfinished swipe are held."""
        return bool(self._buf)

    def feed(self, event: Any) -> Event | None:
        """Swiped/BadRead when a swipe ends with this event, else None."""
        ch = self._decoder.feed(event)
        if ch is None:
            return None
        if ch == "\n":
            return self.finish()
        self._buf.append(ch)
        if len(self._buf) > self.MAX_CHARS:
            self._buf.clear()
            return BadRead("swipe too long, no terminator")
        return None

    def finish(self) -> Event | None:
        """End the current swipe (terminator or pause) and parse it."""
        text = "".join(self._buf)
        self._buf.clear()
        if not text:
            return None
        try:
            return Swiped(parse_swipe(text))
        except CardReadError as exc:
            return BadRead(str(exc))


async def read_keypad(device: InputDevice, keys: dict[str, str], emit: Callable[[Event], None]) -> None:
    """Read key events from the keypad until the device goes away (OSError propagates)."""
    keypad = Keypad(keys)
    device.grab()
    async for event in input_events(device):
        key = keypad.decode(event)
        if key is not None:
            emit(key)


async def read_magstripe(device: InputDevice, emit: Callable[[Event], None], pause: float = 0.5) -> None:
    """Read swipes from a keyboard-wedge reader; a swipe ends at Enter or after `pause` s of silence."""
    loop = asyncio.get_running_loop()
    swipe = SwipeAssembler()
    timer: asyncio.TimerHandle | None = None

    def flush() -> None:
        result = swipe.finish()
        if result is not None:
            emit(result)

    device.grab()
    try:
        async for event in input_events(device):
            result = swipe.feed(event)
            if timer is not None:
                timer.cancel()
                timer = None
            if result is not None:
                emit(result)
            elif swipe.pending:
                timer = loop.call_later(pause, flush)
    finally:
        if timer is not None:
            timer.cancel()


async def read_scanner(device: InputDevice, emit: Callable[[Event], None], max_chars: int = 512) -> None:
    """Read codes from a 2D scanner in keyboard mode: each code is the characters typed before Enter."""
    decoder = KeyDecoder()
    buf: list[str] = []
    device.grab()
    async for event in input_events(device):
        ch = decoder.feed(event)
        if ch is None:
            continue
        if ch == "\n":
            if buf:
                emit(Scanned("".join(buf)))
            buf.clear()
        elif len(buf) < max_chars:
            buf.append(ch)
