"""ISO 8583:1987 dialects: pyiso8583 specs plus the codec around them, chosen per host profile.

The default is pyiso8583's default_ascii with field 53 widened to 20 for the TDES DUKPT KSN; the
"aes-dukpt" dialect also widens field 52 to 32 hex digits (a 16-byte ISO 9564 format-4 block) and
field 53 to 24 (the AES DUKPT KSN). Another acquirer's dialect is one more spec here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import iso8583
import iso8583.specs

from .errors import CodecError


def _spec(pin_block_len: int, ksn_len: int) -> dict[str, dict[str, Any]]:
    spec = copy.deepcopy(iso8583.specs.default_ascii)
    spec["52"]["max_len"] = pin_block_len
    spec["53"]["max_len"] = ksn_len
    spec["53"]["desc"] = "Security-Related Control Information (DUKPT KSN)"
    return spec


@dataclass(frozen=True)
class Dialect:
    """A named spec and its codec."""

    name: str
    spec: dict[str, dict[str, Any]]

    def encode(self, doc: dict[str, str]) -> bytes:
        """Encode a message dict (field number -> str) to bytes; the caller's dict is left untouched."""
        try:
            raw, _ = iso8583.encode(dict(doc), self.spec)
        except iso8583.EncodeError as exc:
            raise CodecError(f"cannot encode message: field {exc.field}: {exc.msg}") from None
        return bytes(raw)

    def decode(self, raw: bytes) -> dict[str, str]:
        """Decode message bytes into a dict of field number -> str; errors name the field and position."""
        try:
            doc, _ = iso8583.decode(raw, self.spec)
        except iso8583.DecodeError as exc:
            raise CodecError(f"cannot decode message: field {exc.field} at byte {exc.pos}: {exc.msg}") from None
        return {k: v for k, v in doc.items() if k not in ("p", "1")}      # bitmaps are the codec's business


DEFAULT = Dialect("default", _spec(16, 20))
AES_DUKPT = Dialect("aes-dukpt", _spec(32, 24))
DIALECTS = {d.name: d for d in (DEFAULT, AES_DUKPT)}

# The default dialect's codec under the module's own names.
SPEC = DEFAULT.spec
encode = DEFAULT.encode
decode = DEFAULT.decode
