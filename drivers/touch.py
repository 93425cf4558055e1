"""Touch panel on evdev: multitouch protocol B (slots and tracking ids) or a single-touch panel (ABS_X/ABS_Y with
BTN_TOUCH), scaled from the panel's own range (its absinfo) to the display's pixels, as Touched events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evdev import ecodes

from drivers.hid import input_events
from firmware.core.events import Event, Touched
from firmware.errors import DeviceError

log = logging.getLogger(__name__)

LIFTED = -1  # ABS_MT_TRACKING_ID of a slot whose finger left the panel


@dataclass(frozen=True)
class Axis:
    """One axis of the panel: the range its absinfo declares."""

    low: int
    high: int

    def scale(self, value: int, size: int) -> int:
        """`value` in the panel's range as a pixel 0..size-1 (a value out of range is held at the edge)."""
        span = max(1, self.high - self.low)
        pixel = round((value - self.low) * (size - 1) / span)
        return min(size - 1, max(0, pixel))


@dataclass
class _Contact:
    """What a slot holds: its stroke number (None: no finger), where it is, whether it moved since the report."""

    stroke: int | None = None
    x: int | None = None
    y: int | None = None
    moved: bool = False


class TouchDecoder:
    """Turns the panel's events into Touched: on each SYN_REPORT, a point for every finger that is down and moved
    (its stroke number new each time a finger is put down). Multitouch (protocol B) when the panel has
    ABS_MT_POSITION_X, else single-touch."""

    def __init__(self, x: Axis, y: Axis, width: int, height: int, multitouch: bool) -> None:
        self._x, self._y, self._w, self._h, self._mt = x, y, width, height, multitouch
        self._slots: dict[int, _Contact] = {}
        self._slot = 0
        self._strokes = 0  # stroke numbers handed out

    def _contact(self) -> _Contact:
        return self._slots.setdefault(self._slot, _Contact())

    def _begin(self) -> None:
        self._strokes += 1
        contact = self._contact()
        contact.stroke, contact.moved = self._strokes, True

    def feed(self, event: Any) -> Touched | None:
        """Take one input event; a Touched at a SYN_REPORT that has moved fingers to report, else None."""
        t, code, value = event.type, event.code, event.value
        if t == ecodes.EV_SYN:
            return self._report() if code == ecodes.SYN_REPORT else None
        if self._mt and t == ecodes.EV_ABS:
            if code == ecodes.ABS_MT_SLOT:
                self._slot = value
            elif code == ecodes.ABS_MT_TRACKING_ID:
                if value == LIFTED:
                    self._contact().stroke = None
                else:
                    self._begin()
            elif code == ecodes.ABS_MT_POSITION_X:
                self._contact().x, self._contact().moved = value, True
            elif code == ecodes.ABS_MT_POSITION_Y:
                self._contact().y, self._contact().moved = value, True
        elif not self._mt and t == ecodes.EV_ABS and code in (ecodes.ABS_X, ecodes.ABS_Y):
            contact = self._contact()
            if code == ecodes.ABS_X:
                contact.x = value
            else:
                contact.y = value
            contact.moved = True
        elif not self._mt and t == ecodes.EV_KEY and code == ecodes.BTN_TOUCH:
            if value:
                self._begin()
            else:
                self._contact().stroke = None
        return None

    def _report(self) -> Touched | None:
        points = []
        for _, contact in sorted(self._slots.items()):
            if contact.moved and contact.stroke is not None and contact.x is not None and contact.y is not None:
                points.append((contact.stroke, self._x.scale(contact.x, self._w), self._y.scale(contact.y, self._h)))
            contact.moved = False
        return Touched(tuple(points)) if points else None


def decoder_for(device: Any, width: int, height: int) -> TouchDecoder:
    """A decoder for this panel, from the axes it declares (capabilities with absinfo); DeviceError when it
    has no position axes (not a touch panel)."""
    axes = {code: info for code, info in device.capabilities(absinfo=True).get(ecodes.EV_ABS, [])}
    multitouch = ecodes.ABS_MT_POSITION_X in axes and ecodes.ABS_MT_POSITION_Y in axes
    cx, cy = (ecodes.ABS_MT_POSITION_X, ecodes.ABS_MT_POSITION_Y) if multitouch else (ecodes.ABS_X, ecodes.ABS_Y)
    if cx not in axes or cy not in axes:
        raise DeviceError(f"{device.name}: no touch position axes (is it a touch panel?)", screen="TOUCH SCREEN ERROR")
    x, y = (Axis(axes[c].min, axes[c].max) for c in (cx, cy))
    kind = "multitouch" if multitouch else "single touch"
    log.info("touch: %s, %s, x %d..%d, y %d..%d", device.name, kind, x.low, x.high, y.low, y.high)
    return TouchDecoder(x, y, width, height, multitouch)


async def read_touch(device: Any, width: int, height: int, emit: Callable[[Event], None]) -> None:
    """Read the panel until it goes away (OSError propagates): each report with moved fingers is emitted at
    once from the loop's reader (it never blocks the loop)."""
    decoder = decoder_for(device, width, height)
    device.grab()  # the desktop, if any, does not also take the signature as pointer moves
    async for event in input_events(device):
        touched = decoder.feed(event)
        if touched is not None:
            emit(touched)
