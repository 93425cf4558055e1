"""Text safe for devices: find or remove the characters a printer or a terminal would take as commands.

A receipt printer acts on C0 control bytes (ESC p kicks the cash drawer, GS V cuts the paper); a text
console acts on ANSI sequences (ESC [ 2 J clears it; U+009B is CSI on its own); bidirectional overrides
(U+202E and friends) make a line read differently from what it holds. None of them belongs in an item
name, a shop name or anything else the terminal shows or prints, so:

- `problem(text)` names the first such character (for refusing input with a clear message), and
- `clean(text)` removes them (for the device adapters, which must be safe whatever text they get).

Unsafe means the Unicode categories Cc (C0, DEL, C1), Cf (format: bidi marks and overrides, zero-width
characters, the BOM), Cs (lone surrogates) and Zl/Zp (line and paragraph separators).
"""

from __future__ import annotations

import unicodedata

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Whitespace-like controls become one space when cleaned, so "A\tB" does not print as "AB".
_AS_SPACE = frozenset("\t\n\v\f\r\x85\u2028\u2029")


def is_unsafe(ch: str) -> bool:
    """True for a character a device could act on or that hides what a line says."""
    return unicodedata.category(ch) in UNSAFE_CATEGORIES


def problem(text: str) -> str | None:
    """None when `text` is safe, else what is wrong with it, naming the first unsafe character."""
    if text.isprintable():  # no Cc, Cf, Cs, Zl, Zp (nor Co, Cn, Zs): safe, at C speed
        return None
    for position, ch in enumerate(text, 1):
        if is_unsafe(ch):
            name = unicodedata.name(ch, "") or _C0_NAMES.get(ord(ch), "a control character")
            return f"contains U+{ord(ch):04X} ({name}) at character {position}; control characters are not allowed"
    return None


def clean(text: str) -> str:
    """`text` without unsafe characters (whitespace-like controls become a space)."""
    if text.isprintable():  # the common case, without a walk
        return text
    return "".join(" " if ch in _AS_SPACE else ch for ch in text if ch in _AS_SPACE or not is_unsafe(ch))


_C0_NAMES = {
    0x00: "NUL",
    0x07: "BEL",
    0x08: "BACKSPACE",
    0x09: "TAB",
    0x0A: "LINE FEED",
    0x0C: "FORM FEED",
    0x0D: "CARRIAGE RETURN",
    0x10: "DLE",
    0x1B: "ESC",
    0x1C: "FS",
    0x1D: "GS",
    0x7F: "DELETE",
    0x9B: "CSI",
}
