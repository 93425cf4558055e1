"""Card-data hygiene: PAN masking, Luhn check, and a logging filter that redacts card numbers."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware.security.keystore import KeyStore

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
    if not (pan.isascii() and pan.isdigit()):          # str.isdigit() is true for "４" and "²" too
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


class RedactingFilter(logging.Filter):
    """Logging filter that rewrites every record's message with card numbers masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


TOKEN_KEY = "card-token"


def card_token(key: bytes, pan: str) -> str:
    """A keyed token of a card number (HMAC-SHA256, 32 hex digits): the same card gives the same token on
    this terminal, and nobody without the key can tell which card it is."""
    return hmac.new(key, pan.encode("ascii"), hashlib.sha256).hexdigest()[:32]


def load_token_key(store: "KeyStore", legacy: Path | None = None) -> bytes:
    """The terminal's card-token key, sealed in the key store; made (32 random bytes) on first use. A key
    left in the clear by an older version (`legacy`) is sealed and its file removed."""
    key = store.get(TOKEN_KEY)
    if key is not None:
        return bytes(key)
    if legacy is not None and legacy.exists() and len(legacy.read_bytes()) == 32:
        fresh = legacy.read_bytes()
    else:
        fresh = secrets.token_bytes(32)
    store.put(TOKEN_KEY, fresh, "hmac")
    if legacy is not None and legacy.exists():
        legacy.unlink()
    return fresh