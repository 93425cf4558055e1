"""The interactive simulator console, driven through its input stream as a person would type."""

from __future__ import annotations

import io

from conftest import sim_config
from hwsim.console import interactive


def test_a_person_sells_swipes_taps_and_asks_for_help(tmp_path):
    typed = io.StringIO(
        "\n".join(
            [
                "help",
                "cards",
                "1250",
                "enter",
                "swipe visa-approve",
                "pin 1234",
                "",
                "5000",
                "",
                "tap mc-tap-approve",
                "remove",
                "",
                "swipe no-such-card",
                "journal",
                "quit",
                "",
            ]
        )
    )
    out = io.StringIO()
    assert interactive(sim_config(), tmp_path / "data", inp=typed, out=out) == 0
    text = out.getvalue()
    assert text.count("APPROVED") >= 2 and "receipt" in text
    assert "visa-tap-approve" in text and "mastercard" in text  # the card lists
    assert "?? " in text and "no test card 'no-such-card'" in text  # a typo gets a message, not a crash
    assert "424242******4242" in text and "approved" in text  # the journal listing


def test_devices_can_be_pulled_out_from_the_console(tmp_path):
    typed = io.StringIO(
        "\n".join(
            [
                "unplug printer",
                "paper out",
                "paper in",
                "plug printer",
                "unplug keypad",
                "plug keypad",
                "unplug toaster",
                "quit",
                "",
            ]
        )
    )
    out = io.StringIO()
    assert interactive(sim_config(), tmp_path / "data", inp=typed, out=out) == 0
    text = out.getvalue()
    assert text.count("?? ") == 1  # only the toaster is not a device


def test_sign_needs_a_touch_screen_and_takes_strokes_as_points(tmp_path):
    typed = io.StringIO("\n".join(["sign", "quit", ""]))
    out = io.StringIO()
    assert interactive(sim_config(), tmp_path / "plain", inp=typed, out=out) == 0
    assert "?? this simulator has no touch screen" in out.getvalue()
    typed = io.StringIO("\n".join(["sign 10,10 20,20 / 30,30", "sign", "sign 1,2,3", "quit", ""]))
    out = io.StringIO()
    assert interactive(sim_config(), tmp_path / "touch", inp=typed, out=out, touch=True) == 0
    assert out.getvalue().count("?? ") == 1  # only the point with three numbers
