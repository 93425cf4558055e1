"""The default ISO 8583:1987 dialect: pyiso8583 default_ascii with field 53 widened for the DUKPT KSN.

Another acquirer's dialect is another module with the same three names: SPEC, encode, decode.
"""

from __future__ import annotations

import copy
from typing import Any

import iso8583
import iso8583.specs

from .errors import CodecError

SPEC: dict[str, dict[str, Any]] = copy.deepcopy(iso8583.specs.default_ascii)
SPEC["53"]["max_len"] = 20          # 20 hex digits of DUKPT key serial number
SPEC["53"]["desc"] = "Security-Related Control Information (DUKPT KSN)"


def encode(doc: dict[str, str]) -> bytes:
    """Encode a message dict (field number -> str) to bytes; the caller's dict is left untouched."""
    try:
        raw, _ = iso8583.encode(dict(doc), SPEC)
    except iso8583.EncodeError as exc:
        raise CodecError(f"cannot encode message: field {exc.field}: {exc.msg}") from None
    return bytes(raw)


def decode(raw: bytes) -> dict[str, str]:
    """Decode message bytes into a dict of field number -> str; errors name the field and position."""
    try:
        doc, _ = iso8583.decode(raw, SPEC)
    except iso8583.DecodeError as exc:
        raise CodecError(f"cannot decode message: field {exc.field} at byte {exc.pos}: {exc.msg}") from None
    return {k: v for k, v in doc.items() if k not in ("p", "1")}      # bitmaps are the codec's business
