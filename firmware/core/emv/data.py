"""EMV data handling shared by both kernels: errors, command APDUs and the exchange (T=0 included), BER-TLV, DOLs.

A phase that talks to the card is a generator: it yields each command APDU and is sent the card's response
(data + SW1 SW2). BER-TLV decoding is pyemv's; one level with repeats kept, and the DOLs, are here.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import date
from typing import Any, TypeAlias, TypeVar

from firmware.errors import TerminalError

SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"

_T = TypeVar("_T")
# A phase that talks to the card: yields command APDUs, is sent each response (data + SW1 SW2), returns _T.
Exchanges: TypeAlias = Generator[bytes, bytes, _T]
# A phase that may also ask the cardholder or the host (the contact kernel's requests; see contact.py).
Steps: TypeAlias = Generator[Any, Any, _T]


class CardError(TerminalError):
    """The card session ended without usable data; `screen` says what the customer should do."""

    screen = "CARD ERROR, TRY ANOTHER CARD"


class CardNotSupported(CardError):
    """Not a payment card this terminal accepts (no PPSE, no supported application)."""

    screen = "CARD NOT SUPPORTED"


class CardRemoved(CardError):
    """The card left the field (or the slot) before the kernel was done."""

    screen = "PLEASE TAP AGAIN"


class SeePhone(CardError):
    """A phone asked its holder to act on it (GPO status 6986): show it, then wait for the tap again."""

    screen = "SEE PHONE"


class Cancelled(CardError):
    """The cardholder or the cashier cancelled at a prompt the kernel asked for."""

    screen = "CANCELLED"


# --- APDUs ---------------------------------------------------------------------------------------------------


def command(cla: int, ins: int, p1: int, p2: int, data: bytes = b"", le: bool = True) -> bytes:
    """A short command APDU; CardError when the data would not fit one (a card's DOL can ask for that much)."""
    if len(data) > 255:
        raise CardError(f"the card asks for {len(data)} bytes of data in one command; a short APDU carries 255")
    apdu = bytes([cla, ins, p1, p2])
    if data:
        apdu += bytes([len(data)]) + data
    return apdu + (b"\x00" if le else b"")


def split_response(rapdu: bytes) -> tuple[bytes, bytes]:
    """(data, SW1SW2); CardError when there is not even a status word."""
    if not isinstance(rapdu, (bytes, bytearray)) or len(rapdu) < 2:
        raise CardError("response shorter than a status word")
    return bytes(rapdu[:-2]), bytes(rapdu[-2:])


def exchange(apdu: bytes) -> Exchanges[tuple[bytes, bytes]]:
    """Send one command; its response as (data, SW1SW2). The T=0 procedure is here, once for every command
    (ISO 7816-3 / EMV Book 1 9.3): '61xx' fetches the rest with GET RESPONSE (Le = xx), again while the card
    says more waits; '6Cxx' sends the same command again with Le = xx. Under T=1 and contactless the card
    never answers these, so nothing changes there."""
    data, sw = split_response((yield apdu))
    if sw[0] == 0x6C:  # wrong Le: once, with the length the card named
        data, sw = split_response((yield apdu[:-1] + sw[1:] if len(apdu) > 4 else apdu + sw[1:]))
    collected, rounds = data, 0
    while sw[0] == 0x61:
        rounds += 1
        if rounds > 16:
            raise CardError("the card keeps answering 61xx")
        more, sw = split_response((yield bytes([0x00, 0xC0, 0x00, 0x00, sw[1]])))
        collected += more
    return collected, sw


def check(sw: bytes, what: str) -> None:
    """CardError naming the command when the status word is not 9000."""
    if sw != SW_OK:
        raise CardError(f"{what}: status {sw.hex().upper()}")


# --- BER-TLV -------------------------------------------------------------------------------------------------


def tlv(data: bytes) -> dict[str, bytes]:
    """BER-TLV decode (pyemv), flattened into tag -> value; CardError on malformed data."""
    import pyemv.tlv  # here, not at the top: the pyemv package imports all its cryptogram modules (~17 ms of boot)

    try:
        return pyemv.tlv.decode(bytes(data), flatten=True)
    except (pyemv.tlv.DecodeError, ValueError, IndexError, TypeError, RecursionError) as exc:
        raise CardError(f"malformed TLV from the card: {exc}") from None


def _tag_end(data: bytes, start: int) -> int:
    """Index just past the BER tag starting at `start` (one byte, or several when the low bits are 11111)."""
    i = start + 1
    if data[start] & 0x1F == 0x1F:
        while i < len(data) and data[i] & 0x80:
            i += 1
        i += 1
    if i > len(data):
        raise CardError("data ends inside a tag")
    return i


def tlv_items(data: bytes) -> list[tuple[str, bytes]]:
    """One level of BER-TLV as (tag, value) pairs in order, repeats kept (pyemv's dict keeps only the last
    of repeated tags, and a PPSE directory repeats tag 61 once per application). Padding bytes 00 and FF
    between objects (EMV Book 3 Annex B) are skipped."""
    out, i = [], 0
    while i < len(data):
        if data[i] in (0x00, 0xFF):
            i += 1
            continue
        end = _tag_end(data, i)
        tag = data[i:end].hex().upper()
        if end >= len(data):
            raise CardError("TLV ends before its length")
        length, i = data[end], end + 1
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 2 or i + n > len(data):
                raise CardError("TLV length field is malformed")
            length, i = int.from_bytes(data[i : i + n], "big"), i + n
        if i + length > len(data):
            raise CardError("TLV value runs past the end of the data")
        out.append((tag, data[i : i + length]))
        i += length
    return out


def encode_tlv(tag: str, value: bytes) -> bytes:
    """One data object, BER length form as needed."""
    n = len(value)
    length = bytes([n]) if n < 128 else (b"\x81" + bytes([n]) if n < 256 else b"\x82" + n.to_bytes(2, "big"))
    return bytes.fromhex(tag) + length + value


# --- Data object lists (Book 3 5.4) ---------------------------------------------------------------------------

NUMERIC = frozenset({"9F02", "9F03", "9F1A", "5F2A", "9A", "9C", "9F21", "9F41", "5F36", "9F15"})


def parse_dol(dol: bytes) -> list[tuple[str, int]]:
    """A data object list: (tag, length) pairs."""
    out, i = [], 0
    while i < len(dol):
        end = _tag_end(dol, i)
        if end >= len(dol):
            raise CardError("DOL ends inside an entry")
        out.append((dol[i:end].hex().upper(), dol[end]))
        i = end + 1
    return out


def build_dol(dol: list[tuple[str, int]], values: dict[str, bytes]) -> bytes:
    """Concatenate the values a DOL asks for, each fitted to its length (EMV Book 3, 5.4):
    numeric (n) data is left-padded, other data truncated or right-padded with zeros; unknown tags are zeros."""
    out = b""
    for tag, length in dol:
        v = values.get(tag, b"")
        if len(v) == length:
            out += v
        elif tag in NUMERIC:
            out += v[-length:].rjust(length, b"\x00") if length else b""
        else:
            out += v[:length].ljust(length, b"\x00")
    return out


def dol_tags(dol: bytes | None) -> set[str]:
    """The tags a DOL names (empty for none or a malformed one)."""
    try:
        return {tag for tag, _ in parse_dol(dol or b"")}
    except CardError:
        return set()


# --- Values ----------------------------------------------------------------------------------------------------


def bcd(number: int | str, length: int) -> bytes:
    """Packed BCD, right-justified in `length` bytes."""
    return bytes.fromhex(str(number).rjust(length * 2, "0")[-length * 2 :])


def track2_from_57(value: bytes) -> str:
    """Track 2 equivalent data (tag 57, 'D' separator, 'F' pad) in ISO form with '='."""
    text = value.hex().upper().rstrip("F")
    pan, sep, rest = text.partition("D")
    if not sep or not pan.isdigit() or not rest[:7].isdigit() or len(rest) < 7:
        raise CardError("track 2 equivalent data is malformed")
    return f"{pan}={rest}"


def pan_from_5a(value: bytes) -> str:
    """The PAN (5A, BCD 'F'-padded); CardError when it is not digits."""
    text = value.hex().upper().rstrip("F")
    if not text.isdigit() or not 12 <= len(text) <= 19:
        raise CardError("the card's PAN (5A) is malformed")
    return text


def emv_date(value: bytes | None) -> date | None:
    """A YYMMDD date (n 6, as 5F24/5F25/9A) or None when absent or not a date; YY 50-99 is 19YY (Book 3 5.4)."""
    if value is None or len(value) != 3:
        return None
    text = value.hex()
    if not text.isdigit():
        return None
    yy, mm, dd = int(text[:2]), int(text[2:4]), int(text[4:])
    try:
        return date((1900 if yy >= 50 else 2000) + yy, mm, dd)
    except ValueError:
        return None


def want(tags: dict[str, bytes], *names: str) -> None:
    """CardError naming the mandatory tags the card did not give."""
    missing = [t for t in names if not tags.get(t)]
    if missing:
        raise CardError(f"card data lacks mandatory tag(s) {', '.join(missing)}")


def with_bits(flags: bytes, byte: int, mask: int) -> bytes:
    """`flags` (TVR, TSI...) with `mask` set in byte number `byte` (1-based, as the EMV books count)."""
    out = bytearray(flags)
    out[byte - 1] |= mask
    return bytes(out)
