"""EMVCo merchant-presented QR payloads (pure): building with the CRC, parsing with its check.

Each data object is a 2-digit ID, a 2-digit length counted in characters (not bytes), and the value;
tag 63 closes the payload with CRC-16/CCITT-FALSE over everything up to and including "6304".
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware.errors import CodecError


def crc16_ccitt_false(data: bytes) -> int:
    """CRC-16/CCITT-FALSE: polynomial 0x1021, initial 0xFFFF, no reflection, no final XOR."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def tlv(tag: str, value: str) -> str:
    """One data object; CodecError when the value is longer than 99 characters."""
    if len(value) > 99:
        raise CodecError(f"QR data object {tag} is {len(value)} characters; at most 99")
    return f"{tag}{len(value):02d}{value}"


@dataclass(frozen=True)
class MerchantQR:
    """What a dynamic merchant-presented code says."""

    account_gui: str  # globally unique id of the payment network (tag 26, sub-tag 00)
    merchant_account: str  # the merchant's id in that network (tag 26, sub-tag 01)
    mcc: str  # merchant category code, 4 digits
    currency_numeric: str  # ISO 4217 numeric
    amount: str  # decimal, e.g. "12.50"
    country: str  # ISO 3166 alpha-2
    merchant_name: str  # ASCII; the Chinese name goes in the language template
    city: str
    reference: str  # the terminal's transaction reference (tag 62, sub-tag 05)
    terminal_id: str = ""  # tag 62, sub-tag 07
    name_zh: str = ""  # tag 64: language "ZH", alternate name
    city_zh: str = ""


def build(qr: MerchantQR) -> str:
    """The payload string, CRC included."""
    account = tlv("00", qr.account_gui) + tlv("01", qr.merchant_account)
    extra = tlv("05", qr.reference) + (tlv("07", qr.terminal_id) if qr.terminal_id else "")
    body = (
        tlv("00", "01")
        + tlv("01", "12")
        + tlv("26", account)
        + tlv("52", qr.mcc)
        + tlv("53", qr.currency_numeric)
        + tlv("54", qr.amount)
        + tlv("58", qr.country)
        + tlv("59", qr.merchant_name[:25])
        + tlv("60", qr.city[:15])
        + tlv("62", extra)
    )
    if qr.name_zh:
        body += tlv(
            "64", tlv("00", "ZH") + tlv("01", qr.name_zh[:25]) + (tlv("02", qr.city_zh[:15]) if qr.city_zh else "")
        )
    body += "6304"
    return body + f"{crc16_ccitt_false(body.encode('utf-8')):04X}"


def parse(payload: str) -> dict[str, str]:
    """Top-level data objects of a payload (ID -> value); CodecError on a bad structure or CRC."""
    out, i = {}, 0
    while i < len(payload):
        tag, length = payload[i : i + 2], payload[i + 2 : i + 4]
        if len(tag) < 2 or not tag.isdigit() or not length.isdigit():
            raise CodecError(f"QR payload malformed at character {i}")
        value = payload[i + 4 : i + 4 + int(length)]
        if len(value) != int(length):
            raise CodecError(f"QR data object {tag} runs past the end")
        out[tag] = value
        i += 4 + int(length)
    if "63" not in out or not payload.endswith("6304" + out["63"]):
        raise CodecError("QR payload has no CRC at its end")
    expected = f"{crc16_ccitt_false(payload[:-4].encode('utf-8')):04X}"
    if out["63"].upper() != expected:
        raise CodecError(f"QR payload CRC {out['63']} does not match {expected}")
    return out


def sub_objects(value: str) -> dict[str, str]:
    """The data objects inside a template value (26-51, 62, 64)."""
    out, i = {}, 0
    while i + 4 <= len(value):
        length = int(value[i + 2 : i + 4])
        out[value[i : i + 2]] = value[i + 4 : i + 4 + length]
        i += 4 + length
    return out
