"""evdev drivers: key events through evdev's own reading code (pipe-backed device) into keys and swipes."""

from __future__ import annotations

import asyncio

import pytest
from evdev import InputEvent, ecodes
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import hid
from drivers.hid import KeyDecoder, Keypad, SwipeAssembler, read_keypad, read_magstripe
from firmware.config import InputDeviceConfig
from firmware.core.events import BadRead, Key, Swiped
from firmware.errors import DeviceError
from hwsim.inputs import SimInputDevice, keystroke, type_text

KEYS = {"ENTER": "KEY_KPENTER", "CANCEL": "KEY_ESC", "CLEAR": "KEY_BACKSPACE", "F1": "KEY_F1"}
TRACKS = "%B4242424242424242^TEST/CARD^30121010000000000000000?;4242424242424242=30121010000000000000?"


def _events(device: SimInputDevice) -> list[InputEvent]:
    out = []
    while (ev := device.read_one()) is not None:  # evdev's own read path over the pipe
        out.append(ev)
    return out


def _nonblocking(device: SimInputDevice) -> SimInputDevice:
    import os

    os.set_blocking(device.fileno(), False)
    return device


def test_device_events_are_real_input_events():
    dev = _nonblocking(SimInputDevice("t"))
    dev.press(ecodes.KEY_A, shift=True)
    evs = _events(dev)
    assert all(isinstance(e, InputEvent) for e in evs)
    keyish = [(e.code, e.value) for e in evs if e.type == ecodes.EV_KEY]
    assert keyish == [(ecodes.KEY_LEFTSHIFT, 1), (ecodes.KEY_A, 1), (ecodes.KEY_A, 0), (ecodes.KEY_LEFTSHIFT, 0)]
    dev.destroy()


def test_key_decoder_handles_shift_and_ignores_release_and_repeat():
    dec = KeyDecoder()
    mk = lambda code, value: InputEvent(0, 0, ecodes.EV_KEY, code, value)  # noqa: E731
    assert dec.feed(mk(ecodes.KEY_5, 1)) == "5"
    assert dec.feed(mk(ecodes.KEY_RIGHTSHIFT, 1)) is None
    assert dec.feed(mk(ecodes.KEY_5, 1)) == "%"
    assert dec.feed(mk(ecodes.KEY_5, 2)) is None
    assert dec.feed(mk(ecodes.KEY_RIGHTSHIFT, 0)) is None
    assert dec.feed(mk(ecodes.KEY_SLASH, 1)) == "/"
    assert dec.feed(mk(ecodes.KEY_KPENTER, 1)) == "\n"
    assert dec.feed(InputEvent(0, 0, ecodes.EV_MSC, 4, 458792)) is None


def test_keypad_mapping():
    pad = Keypad(KEYS)
    mk = lambda code: InputEvent(0, 0, ecodes.EV_KEY, code, 1)  # noqa: E731
    assert pad.decode(mk(ecodes.KEY_KP7)) == Key("7")
    assert pad.decode(mk(ecodes.KEY_3)) == Key("3")
    assert pad.decode(mk(ecodes.KEY_ESC)) == Key("CANCEL")
    assert pad.decode(mk(ecodes.KEY_KPENTER)) == Key("ENTER")
    assert pad.decode(mk(ecodes.KEY_Q)) is None
    assert pad.decode(InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_KP7, 0)) is None
    with pytest.raises(DeviceError):
        Keypad({"ENTER": "KEY_NOPE"})


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="%;?^=/ ABCXYZabc0123456789!@#.,-", max_size=60))
def test_typed_text_decodes_back(text):
    dev = _nonblocking(SimInputDevice("t"))
    try:
        type_text(dev, text)
        dec = KeyDecoder()
        got = "".join(c for e in _events(dev) if (c := dec.feed(e)))
        assert got == text
    finally:
        dev.destroy()


def test_keystroke_rejects_untypable():
    assert keystroke("?") == (ecodes.KEY_SLASH, True)
    with pytest.raises(ValueError):
        keystroke("é")


def _assemble(text: str):
    dev = _nonblocking(SimInputDevice("t"))
    type_text(dev, text)
    asm = SwipeAssembler()
    results = [r for e in _events(dev) if (r := asm.feed(e)) is not None]
    dev.destroy()
    return results, asm


def test_swipe_assembler_good_and_bad():
    results, _ = _assemble(TRACKS + "\n")
    assert len(results) == 1 and isinstance(results[0], Swiped)
    assert results[0].card.masked_pan == "424242******4242"
    results, _ = _assemble(TRACKS[:40] + "\n")
    assert isinstance(results[0], BadRead)
    assert "4242424242424242" not in results[0].reason
    results, asm = _assemble(TRACKS)  # no terminator yet: held until Enter or a pause
    assert results == [] and asm.pending
    assert isinstance(asm.finish(), Swiped)


def test_runaway_swipe_is_dropped():
    asm = SwipeAssembler()
    ev = InputEvent(0, 0, ecodes.EV_KEY, ecodes.KEY_1, 1)
    results = [r for _ in range(SwipeAssembler.MAX_CHARS + 1) if (r := asm.feed(ev))]
    assert results == [BadRead("swipe too long, no terminator")] and not asm.pending


def test_async_readers_grab_and_deliver():
    async def main():
        pad, reader = SimInputDevice("pad"), SimInputDevice("reader")
        got: list = []
        tasks = [
            asyncio.ensure_future(read_keypad(pad, KEYS, got.append)),
            asyncio.ensure_future(read_magstripe(reader, got.append, pause=0.05)),
        ]
        await asyncio.sleep(0.01)
        pad.press(ecodes.KEY_KP4)
        pad.press(ecodes.KEY_ESC)
        type_text(reader, TRACKS + "\n")
        type_text(reader, ";4242")  # a half swipe with no terminator: the pause ends it
        await asyncio.sleep(0.3)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert pad.grabbed and reader.grabbed
        pad.destroy()
        reader.destroy()
        return got

    got = asyncio.run(main())
    assert got[:2] == [Key("4"), Key("CANCEL")]
    assert isinstance(got[2], Swiped) and isinstance(got[3], BadRead)


def test_open_input_device_reports_what_it_looked_for(monkeypatch):
    monkeypatch.setattr(hid.evdev, "list_devices", lambda: [])
    with pytest.raises(DeviceError, match="usb 0801:0001"):
        hid.open_input_device(InputDeviceConfig(usb="0801:0001"))
    with pytest.raises(DeviceError, match="cannot open /nonexistent"):
        hid.open_input_device(InputDeviceConfig(path="/nonexistent/event9"))
