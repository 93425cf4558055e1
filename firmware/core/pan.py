"""Card numbers in the clear go no further: PAN masking (first 6 / last 4), the Luhn check, redaction of text."""

from __future__ import annotations

import re

# 13-19 digits, optionally inside track-like text; used to scrub log lines.
_PAN_LIKE = re.compile(r"(?<!\d)(\d{6})\d{3,9}(\d{4})(?!\d)")
# Track 2 equivalent after the PAN: '=YYMM...' or 'DYYMM...' discretionary data.
_TRACK_TAIL = re.compile(r"(?<=[\d*])([=^D])\d{4,}")


def mask(pan: str) -> str:
    """First 6 and last 4 digits, the rest as '*': the most of a PAN that may leave the transaction."""
    if len(pan) < 13:
        return "*" * len(pan)
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def luhn_valid(pan: str) -> bool:
    """True when `pan` is all digits and passes the ISO/IEC 7812 Luhn check."""
    if not (pan.isascii() and pan.isdigit()):  # str.isdigit() is true for "４" and "²" too
        return False
    total = 0
    for i, ch in enumerate(reversed(pan)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact(text: str) -> str:
    """Mask PAN-shaped digit runs and drop track discretionary data from free text."""
    text = _PAN_LIKE.sub(lambda m: m.group(1) + "*" * (len(m.group(0)) - 10) + m.group(2), text)
    return _TRACK_TAIL.sub(lambda m: m.group(1) + "…", text)


class ShownPan:
    """What of a card's `pan` may be shown: `masked_pan` and `last4` (mixed into the card types)."""

    pan: str

    @property
    def masked_pan(self) -> str:
        """First 6 / last 4 of the PAN."""
        return mask(self.pan)

    @property
    def last4(self) -> str:
        """Last four digits of the PAN."""
        return self.pan[-4:]
