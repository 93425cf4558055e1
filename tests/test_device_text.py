"""Text that reaches devices: the display adapters strip control characters whatever text they are given."""

from __future__ import annotations

import io

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.display import ConsoleDisplay, Display
from firmware.core.text import clean, is_unsafe, problem

HOSTILE = "WATER\x1bp\x00\x19\x19\x1dV\x00\x1b[2J\x9b2J\u202eRETAW\x07"
CONTROLS = ("\x1b", "\x9b", "\x07", "\x00", "\x1d", "\u202e", "\u2066")


def test_the_display_model_and_the_console_never_carry_controls():
    out = io.StringIO()
    display = ConsoleDisplay(out, width=20)
    display.show((HOSTILE, "TOTAL\tCNY 1.00", "\u2067RTL\u2069 ok"))
    assert display.lines == ("WATERpV[2J2JRETAW", "TOTAL CNY 1.00", "RTL ok")
    written = out.getvalue()
    assert not any(c in written for c in CONTROLS) and "WATERpV[2J2JRETAW" in written
    plain = Display(20)
    plain.show(("\x1b[31mRED\x1b[0m",))
    assert plain.text == "[31mRED[0m"


def test_problem_names_the_character_and_its_place():
    assert problem("矿泉水 WATER 550ML") is None
    assert problem("AB\x1bp") == "contains U+001B (ESC) at character 3; control characters are not allowed"
    assert problem("x\u202e") == (
        "contains U+202E (RIGHT-TO-LEFT OVERRIDE) at character 2; control characters are not allowed"
    )


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(max_size=60))
def test_clean_leaves_nothing_a_device_acts_on(text):
    cleaned = clean(text)
    assert problem(cleaned) is None and not any(is_unsafe(c) for c in cleaned)
    assert clean(cleaned) == cleaned
    if problem(text) is None:
        assert cleaned == text
