"""atheris target: magnetic stripe swipes (firmware.core.track.parse_swipe) on arbitrary text.

Invariant: a MagCard with an ASCII, Luhn-valid PAN, or CardReadError."""

from __future__ import annotations

import _harness  # noqa: F401 - sys.path first
import atheris

with atheris.instrument_imports(include=["firmware"]):
    from firmware.core.pan import luhn_valid
    from firmware.core.track import parse_swipe
    from firmware.errors import CardReadError


def test_one_input(data: bytes) -> None:
    text = atheris.FuzzedDataProvider(data).ConsumeUnicodeNoSurrogates(len(data))
    try:
        card = parse_swipe(text)
    except CardReadError:
        return
    assert card.pan.isascii() and card.expiry.isascii() and luhn_valid(card.pan)


if __name__ == "__main__":
    _harness.run(test_one_input)
