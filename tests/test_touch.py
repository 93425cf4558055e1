"""The touch driver: recorded evdev event sequences (multitouch protocol B with two slots, a finger lifted by
tracking id -1, a single-touch panel) decoded into strokes in display pixels; and the real read loop through
evdev's own reading code on the simulated panel."""

from __future__ import annotations

import asyncio

import pytest
from evdev import InputEvent, ecodes

from drivers.touch import Axis, TouchDecoder, decoder_for, read_touch
from firmware.core.events import Touched
from firmware.errors import DeviceError
from hwsim.inputs import TOUCH_RANGE, SimInputDevice, SimTouchDevice

A, K, S = ecodes.EV_ABS, ecodes.EV_KEY, ecodes.EV_SYN
SYN = (S, ecodes.SYN_REPORT, 0)


def feed(decoder: TouchDecoder, recorded: list[tuple[int, int, int]]) -> list[Touched]:
    out = []
    for n, (t, c, v) in enumerate(recorded):
        got = decoder.feed(InputEvent(1700000000, n, t, c, v))
        if got is not None:
            out.append(got)
    return out


def mt(x: int, y: int) -> list[tuple[int, int, int]]:
    return [(A, ecodes.ABS_MT_POSITION_X, x), (A, ecodes.ABS_MT_POSITION_Y, y)]


def test_protocol_b_two_slots_each_finger_a_stroke_and_minus_one_lifts_it():
    # A panel of 0..1000 on both axes over a 501 x 251 screen: pixel = value / 2 and value / 4.
    decoder = TouchDecoder(Axis(0, 1000), Axis(0, 1000), 501, 251, multitouch=True)
    recorded = [
        (A, ecodes.ABS_MT_SLOT, 0),
        (A, ecodes.ABS_MT_TRACKING_ID, 45),
        *mt(100, 200),
        (K, ecodes.BTN_TOUCH, 1),
        (A, ecodes.ABS_X, 100),  # the kernel's single-touch emulation: ignored on a multitouch panel
        SYN,
        (A, ecodes.ABS_MT_SLOT, 1),  # a second finger
        (A, ecodes.ABS_MT_TRACKING_ID, 46),
        *mt(800, 400),
        SYN,
        (A, ecodes.ABS_MT_SLOT, 0),
        (A, ecodes.ABS_MT_POSITION_X, 120),  # only X changed: Y stays
        (A, ecodes.ABS_MT_SLOT, 1),
        (A, ecodes.ABS_MT_POSITION_Y, 440),
        SYN,
        (A, ecodes.ABS_MT_SLOT, 0),
        (A, ecodes.ABS_MT_TRACKING_ID, -1),  # finger 0 lifted
        SYN,
        (A, ecodes.ABS_MT_SLOT, 1),
        *mt(820, 460),
        SYN,
        (A, ecodes.ABS_MT_SLOT, 0),
        (A, ecodes.ABS_MT_TRACKING_ID, 47),  # put down again: a new stroke
        *mt(300, 300),
        SYN,
        (A, ecodes.ABS_MT_SLOT, 1),
        (A, ecodes.ABS_MT_TRACKING_ID, -1),
        (A, ecodes.ABS_MT_SLOT, 0),
        (A, ecodes.ABS_MT_TRACKING_ID, -1),
        SYN,  # nothing moved: no report
    ]
    assert [t.points for t in feed(decoder, recorded)] == [
        ((1, 50, 50),),
        ((2, 400, 100),),
        ((1, 60, 50), (2, 400, 110)),
        ((2, 410, 115),),
        ((3, 150, 75),),
    ]


def test_a_lifted_slot_reports_nothing_until_a_new_tracking_id():
    decoder = TouchDecoder(Axis(0, 100), Axis(0, 100), 101, 101, multitouch=True)
    recorded = [(A, ecodes.ABS_MT_TRACKING_ID, 1), *mt(10, 10), SYN, (A, ecodes.ABS_MT_TRACKING_ID, -1), SYN]
    recorded += [*mt(50, 50), SYN]  # a stray position with no finger down (hover on some panels)
    assert [t.points for t in feed(decoder, recorded)] == [((1, 10, 10),)]


def test_single_touch_panel_btn_touch_and_abs_x_y_scaled_from_an_offset_range():
    decoder = TouchDecoder(Axis(200, 3900), Axis(300, 3800), 320, 240, multitouch=False)
    recorded = [
        (A, ecodes.ABS_X, 200),
        (A, ecodes.ABS_Y, 3800),
        (K, ecodes.BTN_TOUCH, 1),
        SYN,
        (A, ecodes.ABS_X, 3900),
        SYN,
        (A, ecodes.ABS_X, 9999),  # beyond the declared range: held at the edge
        SYN,
        (K, ecodes.BTN_TOUCH, 0),
        SYN,
        (A, ecodes.ABS_X, 2050),
        (A, ecodes.ABS_Y, 2050),
        (K, ecodes.BTN_TOUCH, 1),
        SYN,
    ]
    assert [t.points for t in feed(decoder, recorded)] == [
        ((1, 0, 239),),
        ((1, 319, 239),),
        ((1, 319, 239),),
        ((2, 160, 120),),
    ]


def test_the_decoder_reads_the_axes_from_absinfo_and_refuses_a_device_without_them():
    panel = SimTouchDevice("panel", width=480, height=320)
    decoder = decoder_for(panel, 480, 320)
    got = feed(decoder, [(A, ecodes.ABS_MT_TRACKING_ID, 9), *mt(TOUCH_RANGE, TOUCH_RANGE // 2), SYN])
    assert got[0].points == ((1, 479, 159),)  # 2047 of 0..4095 on 320 rows: 159.46
    with pytest.raises(DeviceError):
        decoder_for(SimInputDevice("keyboard"), 480, 320)
    panel.destroy()


def test_read_touch_reads_the_simulated_panel_through_evdevs_own_loop():
    panel = SimTouchDevice("panel", width=480, height=320)
    got: list[Touched] = []

    async def main() -> None:
        reader = asyncio.ensure_future(read_touch(panel, 480, 320, got.append))
        panel.draw([[(10, 10), (20, 15), (30, 30)], [(200, 100)]])
        while sum(len(t.points) for t in got) < 4:
            await asyncio.sleep(0.01)
        reader.cancel()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert panel.grabbed
    assert [p for t in got for p in t.points] == [(1, 10, 10), (1, 20, 15), (1, 30, 30), (2, 200, 100)]
    panel.destroy()


def test_touch_config_names_the_panel_and_refuses_typos():
    import tomllib

    from conftest import SIM_TOML
    from firmware.config import TouchConfig, loads
    from firmware.errors import ConfigError

    base = SIM_TOML.read_text(encoding="utf-8")
    assert loads(base.encode(), "sim.toml").touch is None  # no section: no touch screen
    cfg = loads((base + '\n[touch]\nname = "ft5x06"\nheight = 272\ntimeout = 45\n').encode(), "t.toml")
    assert cfg.touch == TouchConfig(cfg.touch.device, 480, 272, 45.0) and cfg.touch.device.name == "ft5x06"
    for bad, word in (
        ('name = "x"\nwidht = 1', "widht"),
        ("width = 480", "path"),
        ('name = "x"\ntimeout = 1', "timeout"),
    ):
        with pytest.raises(ConfigError, match=word):
            loads((base + f"\n[touch]\n{bad}\n").encode(), "t.toml")
    assert "touch" not in tomllib.loads(base)
