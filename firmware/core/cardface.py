"""What the customer's screen may show of a card once it is read: its masked number, its holder's name, and
the application's label. For the screen only: nothing here is logged or journaled beyond the masked number."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class CardFace:
    """The card as the screen shows it: masked PAN (first 6 / last 4), the holder's name as the card carries
    it (track 1's name field or EMV 5F20, "SURNAME/GIVEN", trimmed; "" when it has none), the application's
    label (EMV 50 or 9F12; "" for a stripe). The name stays out of repr, so out of logs that print states."""

    masked_pan: str
    name: str = field(default="", repr=False)
    label: str = ""


class _ReadCard(Protocol):
    """A card that was read (a MagCard or a ChipCard)."""

    @property
    def masked_pan(self) -> str: ...

    @property
    def name(self) -> str: ...


def face_of(card: _ReadCard) -> CardFace:
    """What the screen may show of a card that was read (a stripe has no label)."""
    return CardFace(card.masked_pan, card.name.strip(), getattr(card, "label", "").strip())


def holder_name(raw: str, language: str) -> str:
    """The name a card carries ("SURNAME/GIVEN MIDDLE.TITLE", ISO/IEC 7813 and EMV 5F20) the way people read
    it: "JOHN Q SMITH" in English, surname first in Chinese ("ZHANG SAN"); a title after the given names (.MR)
    is left out; a card whose name is blank or a lone "/" has none ("")."""
    surname, slash, given = raw.partition("/")
    if slash:
        given = given.split(".", 1)[0]
    parts = (surname, given) if language == "zh-CN" else (given, surname)
    return " ".join(" ".join(parts).split())
