"""ISO 8583:1987 dialects: pyiso8583 specs plus the codec around them, chosen per host profile.

The default is pyiso8583's default_ascii with field 53 widened to 20 for the TDES DUKPT KSN; the
"aes-dukpt" dialect also widens field 52 to 32 hex digits (a 16-byte ISO 9564 format-4 block) and
field 53 to 24 (the AES DUKPT KSN). Another acquirer's dialect is one more spec here.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import iso8583
import iso8583.specs

from firmware.errors import CodecError, MacError
from firmware.security import keys


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
        return {k: v for k, v in doc.items() if k not in ("p", "1")}  # bitmaps are the codec's business


DEFAULT = Dialect("default", _spec(16, 20))
AES_DUKPT = Dialect("aes-dukpt", _spec(32, 24))
DIALECTS = {d.name: d for d in (DEFAULT, AES_DUKPT)}

# The default dialect's codec under the module's own names.
SPEC = DEFAULT.spec
encode = DEFAULT.encode
decode = DEFAULT.decode


UNMACED = ("0800", "0810")  # sign-on travels before there is a MAC key


class MacCodec:
    """A dialect whose messages carry a MAC under the session MAC key: field 64, or 128 when the message
    has a secondary bitmap. The MAC covers every byte before it (MTI, bitmaps, fields); it is the last
    field, 16 hex digits of the 8-byte MAC. An answer without a MAC that verifies raises MacError."""

    def __init__(
        self,
        dialect: Dialect,
        scheme: str,
        mac_key: Callable[[], bytes | None],
        on_mac_refused: Callable[[], None] | None = None,
    ) -> None:
        self.name, self._dialect, self._scheme, self._key = dialect.name, dialect, scheme, mac_key
        self._on_mac_refused = on_mac_refused  # the host answered A0: it could not check our MAC

    def _mac(self, data: bytes) -> bytes:
        key = self._key()
        if not key:
            raise MacError("no MAC key: the terminal has not signed on")
        return keys.mac(self._scheme, key, data).hex().upper().encode()

    def encode(self, doc: dict[str, str]) -> bytes:
        """Encode and MAC a message (sign-on messages go without)."""
        if doc.get("t") in UNMACED:
            return self._dialect.encode(doc)
        doc = dict(doc)
        field = "128" if any(k.isdigit() and int(k) > 64 for k in doc) else "64"
        doc[field] = "0" * 16
        raw = self._dialect.encode(doc)[:-16]
        return raw + self._mac(raw)

    def decode(self, raw: bytes) -> dict[str, str]:
        """Decode a message and verify its MAC; MacError when it is missing or wrong."""
        doc = self._dialect.decode(raw)
        if doc.get("t") in UNMACED:
            return doc
        field = "128" if "128" in doc else "64"
        if field not in doc or max(int(k) for k in doc if k.isdigit()) != int(field):
            if doc.get("39") == "A0" and self._on_mac_refused is not None:
                self._on_mac_refused()  # unauthenticated, so it only makes us sign on again
            raise MacError(f"{doc.get('t')} answer carries no MAC (response {doc.get('39', '?')})")
        if not hmac.compare_digest(self._mac(raw[:-16]), raw[-16:].upper()):
            raise MacError(f"{doc.get('t')} answer has a bad MAC")
        return doc
