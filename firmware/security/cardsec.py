"""Card-data hygiene at the shell: a logging filter that redacts card numbers, and card tokens under a sealed key."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from firmware.core.pan import redact

if TYPE_CHECKING:
    from firmware.security.keystore import KeyStore


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


def load_token_key(store: KeyStore, legacy: Path | None = None) -> bytes:
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
