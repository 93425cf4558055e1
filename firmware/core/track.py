"""ISO/IEC 7813 magnetic stripe parsing: tracks 1 and 2 from a swipe's characters into a MagCard."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from firmware.core.pan import ShownPan, luhn_valid
from firmware.errors import CardReadError

# One track: a start sentinel, anything but sentinels, an end sentinel.
_SEGMENT = re.compile(r"[%;][^%;?]*\?")
# ASCII only: in a str pattern \d also matches "４" and "٣", which int() and the Luhn check would take.
# Track 1's name and discretionary data are printable ASCII (ISO/IEC 7811's 6-bit alphabet, read leniently).
_TRACK1 = re.compile(
    r"%B([0-9]{12,19})\^([\x20-\x3e\x40-\x5d\x5f-\x7e]{2,26})\^([0-9]{4})([0-9]{3})"
    r"([\x20-\x3e\x40-\x7e]*)\?"
)
_TRACK2 = re.compile(r";([0-9]{12,19})=([0-9]{4})([0-9]{3})([0-9]*)\?")


@dataclass(frozen=True)
class MagCard(ShownPan):
    """A good swipe: card data stays out of repr; only `masked_pan` may be shown or stored."""

    pan: str = field(repr=False)
    expiry: str = field(repr=False)  # YYMM
    service_code: str
    track2: str = field(repr=False)  # track 2 data between the sentinels, for ISO 8583 field 35
    name: str = field(default="", repr=False)


def _valid_expiry(yymm: str) -> bool:
    return 1 <= int(yymm[2:]) <= 12


def parse_swipe(text: str) -> MagCard:
    """Parse the characters a keyboard-wedge reader typed for one swipe.

    Track 2 is required (it is what the host authorizes); track 1 is optional but,
    when read, must agree with track 2. Raises CardReadError with the reason.
    """
    text = text.strip()
    if not text:
        raise CardReadError("empty swipe")
    segments = _SEGMENT.findall(text)
    leftover = _SEGMENT.sub("", text).strip()
    if leftover:
        raise CardReadError(f"unexpected characters outside the tracks ({len(leftover)} chars)")
    t1 = next((s for s in segments if s.startswith("%")), None)
    t2 = next((s for s in segments if s.startswith(";")), None)
    if t2 is None:
        raise CardReadError("track 2 missing")
    m2 = _TRACK2.fullmatch(t2)
    if m2 is None:
        raise CardReadError("track 2 malformed")
    pan, expiry, service_code, _ = m2.groups()
    if not luhn_valid(pan):
        raise CardReadError("card number fails the Luhn check")
    if not _valid_expiry(expiry):
        raise CardReadError("track 2 expiry month out of range")
    name = ""
    if t1 is not None and t1 != "%E?":  # '%E?' is how readers report an unreadable track 1
        m1 = _TRACK1.fullmatch(t1)
        if m1 is None:
            raise CardReadError("track 1 malformed")
        if m1.group(1) != pan or m1.group(3) != expiry:
            raise CardReadError("track 1 and track 2 disagree")
        name = m1.group(2).strip()
    return MagCard(pan=pan, expiry=expiry, service_code=service_code, track2=t2[1:-1], name=name)
