"""Offline data authentication (EMV Book 2): CA keys, issuer and ICC public key recovery, SDA, DDA and CDA checks.

RSA recovery is the public-key operation on the certificate (`pow`, Book 2 Annex A2.1) and its hash is SHA-1;
everything else is the certificate formats, checked field by field. Each check raises OdaError with what
failed; the kernel turns that into the TVR bit, never into an ended transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from firmware.core.emv.data import CardError, build_dol, encode_tlv, parse_dol, tlv, tlv_items

HEADER, TRAILER, PAD = 0x6A, 0xBC, 0xBB
FORMAT_ISSUER, FORMAT_SSAD, FORMAT_ICC, FORMAT_SDAD = 0x02, 0x03, 0x04, 0x05
SHA1 = 0x01
DEFAULT_DDOL = bytes.fromhex("9F3704")


class OdaError(CardError):
    """Offline data authentication failed; the message says which check."""


@dataclass(frozen=True)
class PublicKey:
    """An RSA public key as EMV carries it: modulus and exponent, big-endian bytes."""

    modulus: bytes = field(repr=False)
    exponent: bytes

    @property
    def size(self) -> int:
        """The modulus length in bytes (N in Book 2)."""
        return len(self.modulus)


@dataclass(frozen=True)
class CaKey:
    """A certification authority public key the terminal holds, by RID and index (Book 2 11.2)."""

    rid: str  # 10 hex digits, e.g. "A000000003"
    index: int  # 8F
    key: PublicKey
    expiry: date | None = None


def ca_key_checksum(rid: str, index: int, key: PublicKey) -> bytes:
    """The CA public key check sum (Book 2 11.2.2): SHA-1 of RID, index, modulus and exponent."""
    return hashlib.sha1(bytes.fromhex(rid) + bytes([index]) + key.modulus + key.exponent).digest()


def ca_keys_from_doc(doc: Mapping[str, Any]) -> tuple[CaKey, ...]:
    """CA keys from a parsed TOML document: `[[key]]` tables with rid, index, modulus and exponent (hex),
    optional expiry ("YYYY-MM-DD") and checksum (hex SHA-1, checked when given). ValueError names the key."""
    out = []
    for n, entry in enumerate(doc.get("key", []), 1):
        try:
            rid, index = str(entry["rid"]).upper(), int(str(entry["index"]), 16)
            key = PublicKey(bytes.fromhex(entry["modulus"]), bytes.fromhex(entry["exponent"]))
            expiry = date.fromisoformat(entry["expiry"]) if entry.get("expiry") else None
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"CA key {n}: {exc}") from None
        if len(rid) != 10 or not 0 <= index <= 255 or not 64 <= key.size <= 248:
            raise ValueError(f"CA key {n}: rid must be 10 hex digits, index one byte, modulus 64 to 248 bytes")
        if entry.get("checksum") and bytes.fromhex(entry["checksum"]) != ca_key_checksum(rid, index, key):
            raise ValueError(f"CA key {n} ({rid} {index:02X}): its checksum does not match")
        out.append(CaKey(rid, index, key, expiry))
    return tuple(out)


def find_ca_key(keys: tuple[CaKey, ...], aid: str, index: bytes | None, today: date) -> PublicKey:
    """The CA key for the application's RID and the card's index (8F); OdaError when the terminal has none
    or it has expired."""
    if not index or len(index) != 1:
        raise OdaError("the card gives no CA public key index (8F)")
    for k in keys:
        if k.rid == aid[:10].upper() and k.index == index[0]:
            if k.expiry is not None and k.expiry < today:
                raise OdaError(f"CA key {k.rid} {k.index:02X} expired on {k.expiry}")
            return k.key
    raise OdaError(f"no CA public key {aid[:10]} {index.hex().upper()}")


def recover(data: bytes, key: PublicKey, fmt: int) -> bytes:
    """RSA recovery (Book 2 Annex A2.1) of a certificate or signature of the key's length; OdaError unless it
    has the header 6A, the format `fmt` and the trailer BC."""
    if len(data) != key.size:
        raise OdaError(f"signed data of {len(data)} bytes for a {key.size}-byte key")
    value = int.from_bytes(data, "big")
    modulus = int.from_bytes(key.modulus, "big")
    if value >= modulus:
        raise OdaError("signed data is not below the modulus")
    out = pow(value, int.from_bytes(key.exponent, "big"), modulus).to_bytes(key.size, "big")
    if out[0] != HEADER or out[-1] != TRAILER:
        raise OdaError("recovered data lacks the header 6A or the trailer BC")
    if out[1] != fmt:
        raise OdaError(f"recovered data has format {out[1]:02X}, expected {fmt:02X}")
    return out


def _hash_ok(recovered: bytes, extra: bytes) -> None:
    """The hash in the last 21 bytes (before the trailer) against SHA-1 of format..pad plus `extra`."""
    if hashlib.sha1(recovered[1:-21] + extra).digest() != recovered[-21:-1]:
        raise OdaError("hash result does not match")


def _expiry_ok(mmyy: bytes, today: date, what: str) -> None:
    """A certificate expiration date (MMYY) is valid through the last day of that month (Book 2 5.3 step 8)."""
    text = mmyy.hex()
    if not text.isdigit() or not 1 <= int(text[:2]) <= 12:
        raise OdaError(f"{what} expiration date is malformed")
    year = 2000 + int(text[2:]) if int(text[2:]) < 50 else 1900 + int(text[2:])
    if (year, int(text[:2])) < (today.year, today.month):
        raise OdaError(f"{what} expired (MMYY {text})")


def _digits_match(cert_digits: bytes, pan: str) -> bool:
    """A certificate's identifier (BCD, 'F'-padded on the right) against the PAN's leading digits."""
    text = cert_digits.hex().upper().rstrip("F")
    return bool(text) and text.isdigit() and pan.startswith(text)


def _modulus(recovered: bytes, header_len: int, length: int, remainder: bytes, what: str) -> bytes:
    """The public key modulus: the certificate's leftmost digits, plus the remainder when they do not hold it."""
    room = len(recovered) - header_len - 21
    digits = recovered[header_len : header_len + room]
    if length <= room:
        if any(b != PAD for b in digits[length:]):
            raise OdaError(f"{what} certificate padding is not BB")
        return digits[:length]
    if len(remainder) != length - room:
        raise OdaError(f"{what} public key remainder has {len(remainder)} bytes, expected {length - room}")
    return digits + remainder


def recover_issuer_key(card: dict[str, bytes], ca: PublicKey, pan: str, today: date) -> PublicKey:
    """The issuer public key from its certificate (90), remainder (92) and exponent (9F32), Book 2 5.3 / 6.3."""
    cert, exponent = card.get("90"), card.get("9F32")
    if not cert or not exponent:
        raise OdaError("the card lacks the issuer public key certificate or exponent")
    r = recover(cert, ca, FORMAT_ISSUER)
    remainder = card.get("92", b"")
    _hash_ok(r, remainder + exponent)
    if not _digits_match(r[2:6], pan):
        raise OdaError("issuer identifier does not match the PAN")
    _expiry_ok(r[6:8], today, "issuer certificate")
    if r[11] != SHA1 or r[12] != 0x01:
        raise OdaError("issuer certificate names an unknown hash or key algorithm")
    if r[14] != len(exponent):
        raise OdaError("issuer public key exponent length differs from the certificate's")
    return PublicKey(_modulus(r, 15, r[13], remainder, "issuer"), exponent)


def recover_icc_key(
    cert: bytes | None,
    exponent: bytes | None,
    remainder: bytes,
    issuer: PublicKey,
    pan: str,
    today: date,
    static_data: bytes,
) -> PublicKey:
    """An ICC public key (9F46/9F47/9F48, with the static data to be authenticated in its hash) or the ICC PIN
    encipherment key (9F2D/9F2E/9F2F, static data b""), Book 2 6.4 and 7.1."""
    if not cert or not exponent:
        raise OdaError("the card lacks the ICC public key certificate or exponent")
    r = recover(cert, issuer, FORMAT_ICC)
    _hash_ok(r, remainder + exponent + static_data)
    cert_pan = r[2:12].hex().upper().rstrip("F")
    if cert_pan != pan:
        raise OdaError("ICC certificate's PAN does not match the card's")
    _expiry_ok(r[12:14], today, "ICC certificate")
    if r[17] != SHA1 or r[18] != 0x01:
        raise OdaError("ICC certificate names an unknown hash or key algorithm")
    if r[20] != len(exponent):
        raise OdaError("ICC public key exponent length differs from the certificate's")
    return PublicKey(_modulus(r, 21, r[19], remainder, "ICC"), exponent)


def static_data(records: bytes | None, card: dict[str, bytes]) -> bytes:
    """The static data to be authenticated: the ODA records, then the values the SDA tag list (9F4A) names,
    which may only be the AIP (Book 3 10.3)."""
    if records is None:
        raise OdaError("a record for offline data authentication was not well formed")
    tags = card.get("9F4A")
    if tags is None:
        return records
    if tags != b"\x82":
        raise OdaError("the static data authentication tag list names something other than the AIP")
    return records + card.get("82", b"")


def verify_sda(card: dict[str, bytes], issuer: PublicKey, static: bytes) -> bytes:
    """Static data authentication (Book 2 5.4): the signed static application data (93); the data
    authentication code (9F45) it carries."""
    ssad = card.get("93")
    if not ssad:
        raise OdaError("the card lacks the signed static application data (93)")
    r = recover(ssad, issuer, FORMAT_SSAD)
    if r[2] != SHA1:
        raise OdaError("signed static data names an unknown hash algorithm")
    if any(b != PAD for b in r[5:-21]):
        raise OdaError("signed static data padding is not BB")
    _hash_ok(r, static)
    return r[3:5]


def dynamic_data(r: bytes) -> bytes:
    """The ICC dynamic data of a recovered SDAD (format 05): its length is byte 4."""
    n = r[3]
    if 4 + n > len(r) - 21:
        raise OdaError("ICC dynamic data runs past the hash")
    return r[4 : 4 + n]


def ddol_data(card: dict[str, bytes], terminal: dict[str, bytes]) -> bytes:
    """The data INTERNAL AUTHENTICATE carries: the card's DDOL (9F49), else the default DDOL (9F37, 4),
    which must name the unpredictable number (Book 2 6.5.1)."""
    dol = card.get("9F49") or DEFAULT_DDOL
    entries = parse_dol(dol)
    if "9F37" not in {t for t, _ in entries}:
        raise OdaError("the DDOL does not ask for the unpredictable number")
    return build_dol(entries, terminal)


def verify_dda(sdad: bytes, icc: PublicKey, ddol: bytes) -> bytes:
    """Dynamic data authentication (Book 2 6.5.2): the signed dynamic application data from INTERNAL
    AUTHENTICATE over the DDOL data; the ICC dynamic number (9F4C) it carries."""
    r = recover(sdad, icc, FORMAT_SDAD)
    if r[2] != SHA1:
        raise OdaError("signed dynamic data names an unknown hash algorithm")
    _hash_ok(r, ddol)
    icc_dynamic = dynamic_data(r)
    if not icc_dynamic or icc_dynamic[0] + 1 > len(icc_dynamic) or not 2 <= icc_dynamic[0] <= 8:
        raise OdaError("ICC dynamic number is malformed")
    return icc_dynamic[1 : 1 + icc_dynamic[0]]


def internal_authenticate_sdad(answer: bytes) -> bytes:
    """The signed dynamic application data from an INTERNAL AUTHENTICATE answer: format 1 (80) or 2 (77/9F4B)."""
    items = tlv(answer)
    sdad = items.get("80") if "80" in items else items.get("9F4B")
    if not sdad:
        raise OdaError("INTERNAL AUTHENTICATE answered no signed dynamic data")
    return sdad


def verify_cda(
    sdad: bytes, icc: PublicKey, unpredictable: bytes, cid: bytes, hashed_data: bytes
) -> tuple[bytes, bytes]:
    """Combined DDA / application cryptogram generation (Book 2 6.6.2): the SDAD (9F4B) of a GENERATE AC
    answer, its hash over the terminal's unpredictable number, the CID it signed against the one in the
    clear, and the transaction data hash code over `hashed_data` (PDOL data, CDOL data, the answer's data
    objects but 9F4B). (ICC dynamic number, the application cryptogram)."""
    r = recover(sdad, icc, FORMAT_SDAD)
    if r[2] != SHA1:
        raise OdaError("signed dynamic data names an unknown hash algorithm")
    _hash_ok(r, unpredictable)
    dyn = dynamic_data(r)
    n = dyn[0] if dyn else 0
    if not 2 <= n <= 8 or len(dyn) < 1 + n + 1 + 8 + 20:
        raise OdaError("CDA dynamic data is too short")
    number, signed_cid, cryptogram, tdhc = dyn[1 : 1 + n], dyn[1 + n : 2 + n], dyn[2 + n : 10 + n], dyn[10 + n : 30 + n]
    if signed_cid != cid:
        raise OdaError("the CID signed differs from the CID in the clear")
    if hashlib.sha1(hashed_data).digest() != tdhc:
        raise OdaError("transaction data hash code does not match")
    return number, cryptogram


def cda_hashed_answer(answer: bytes) -> bytes:
    """The GENERATE AC answer's data objects, in order, without the SDAD (9F4B): what the transaction data
    hash code covers after the PDOL and CDOL data."""
    items = tlv_items(answer)
    if len(items) != 1 or items[0][0] != "77":
        raise OdaError("a CDA answer must be format 2 (77)")
    out = b""
    for tag, value in tlv_items(items[0][1]):
        if tag != "9F4B":
            out += encode_tlv(tag, value)
    return out


def encipher_pin(block: bytes, challenge: bytes, key: PublicKey, padding: bytes) -> bytes:
    """The data of VERIFY P2=88 (Book 2 7.2): 7F, the PIN block, the card's challenge and random padding to
    the key's length, enciphered with the ICC (PIN encipherment) public key. `padding` is random data from
    outside, at least the key length."""
    fill = key.size - 17
    if len(padding) < fill:
        raise ValueError("not enough random padding for PIN encipherment")
    clear = b"\x7f" + block + challenge + padding[:fill]
    value = pow(int.from_bytes(clear, "big"), int.from_bytes(key.exponent, "big"), int.from_bytes(key.modulus, "big"))
    return value.to_bytes(key.size, "big")
