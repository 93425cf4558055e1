"""EMV contactless entry point and kernel (pure): APDUs out, card answers in, an online request or a refusal out.

The kernel is a generator: it yields each command APDU and is sent the card's response (data + SW1 SW2);
it returns a ChipCard (go online) or raises CardError (a short screen text). It never touches a reader.
BER-TLV decoding is pyemv's; the DOL handling and the decisions are here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Generator

import pyemv.tlv

from firmware.core.pan import luhn_valid, mask
from firmware.errors import TerminalError

PPSE = b"2PAY.SYS.DDF01"
SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"

# Tags sent to the issuer in field 55 when the card or terminal has them.
ICC_TAGS = ("5F2A", "5F34", "82", "84", "95", "9A", "9B", "9C", "9F02", "9F03", "9F09", "9F10", "9F1A", "9F26",
            "9F27", "9F33", "9F34", "9F35", "9F36", "9F37", "9F6E")
# Cryptogram information data (9F27), top two bits.
CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80


class CardError(TerminalError):
    """The card session ended without usable data; `screen` says what the customer should do."""

    screen = "CARD ERROR, TRY ANOTHER CARD"


class CardNotSupported(CardError):
    """Not a payment card this terminal accepts (no PPSE, no supported application)."""

    screen = "CARD NOT SUPPORTED"


class CardRemoved(CardError):
    """The card left the field before the kernel was done."""

    screen = "PLEASE TAP AGAIN"


@dataclass(frozen=True)
class KernelParams:
    """What the terminal brings to a contactless transaction (from config and the flow)."""

    amount: int                      # minor units
    currency_numeric: str            # "156"
    country_numeric: str             # "156"
    today: date
    unpredictable: bytes             # 4 random bytes from the shell
    supported_aids: tuple[str, ...]  # hex prefixes, e.g. "A0000000031010"
    cvm_limit: int                   # above this, a CVM is required
    floor_limit: int = 0             # online-only terminal: everything goes online
    ttq: str = "36004000"            # 9F66: online-capable qVSDC/EMV mode, online PIN, CDCVM supported
    terminal_type: str = "22"        # 9F35: attended, online only, merchant
    capabilities: str = "E04000"     # 9F33: keypad; enciphered PIN online; no signature
    transaction_type: str = "00"     # 9C: goods and services
    tac_denial: str = "0010000000"   # terminal action codes (5 bytes hex, TVR bit masks)
    tac_online: str = "DC4004F800"
    tac_default: str = "DC4000A800"


@dataclass(frozen=True)
class ChipCard:
    """What an online contactless authorization needs; card data stays out of repr."""

    pan: str = field(repr=False)
    track2: str = field(repr=False)        # ISO format ("PAN=YYMM..."), for ISO 8583 field 35
    psn: str
    aid: str
    label: str
    cvm: str                               # "none" | "online_pin" | "cdcvm"
    cid: int
    cryptogram: str                        # 9F26, hex
    icc: dict[str, str] = field(repr=False)   # tag -> hex value, for field 55
    kernel: str = ""                       # "visa" (GPO cryptogram) | "mastercard" (GENERATE AC)
    apdus: int = 0                         # commands the kernel sent

    @property
    def masked_pan(self) -> str:
        """First 6 / last 4."""
        return mask(self.pan)


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
    if len(rapdu) < 2:
        raise CardError("response shorter than a status word")
    return rapdu[:-2], rapdu[-2:]


def tlv(data: bytes) -> dict[str, object]:
    """BER-TLV decode (pyemv), flattened into tag -> value; CardError on malformed data."""
    try:
        return pyemv.tlv.decode(bytes(data), flatten=True)
    except (pyemv.tlv.DecodeError, ValueError, IndexError, TypeError) as exc:
        raise CardError(f"malformed TLV from the card: {exc}") from None


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
    numeric = {"9F02", "9F03", "9F1A", "5F2A", "9A", "9C", "9F21"}
    out = b""
    for tag, length in dol:
        v = values.get(tag, b"")
        if len(v) == length:
            out += v
        elif tag in numeric:
            out += v[-length:].rjust(length, b"\x00")
        else:
            out += v[:length].ljust(length, b"\x00")
    return out


def bcd(number: int | str, length: int) -> bytes:
    """Packed BCD, right-justified in `length` bytes."""
    return bytes.fromhex(str(number).rjust(length * 2, "0")[-length * 2:])


def track2_from_57(value: bytes) -> str:
    """Track 2 equivalent data (tag 57, 'D' separator, 'F' pad) in ISO form with '='."""
    text = value.hex().upper().rstrip("F")
    pan, sep, rest = text.partition("D")
    if not sep or not pan.isdigit() or not rest[:7].isdigit() or len(rest) < 7:
        raise CardError("track 2 equivalent data is malformed")
    return f"{pan}={rest}"


def _want(tags: dict[str, object], *names: str) -> None:
    missing = [t for t in names if not tags.get(t)]
    if missing:
        raise CardError(f"card data lacks mandatory tag(s) {', '.join(missing)}")


def _check(sw: bytes, what: str) -> None:
    if sw != SW_OK:
        raise CardError(f"{what}: status {sw.hex().upper()}")


def kernel(p: KernelParams) -> Generator[bytes, bytes, ChipCard]:
    """Entry point + kernel for one tap. Yield command APDUs; receive responses; return the card data."""
    sent = 0

    def exchange(apdu: bytes) -> Generator[bytes, bytes, tuple[bytes, bytes]]:
        nonlocal sent
        sent += 1
        return split_response((yield apdu))

    # 1. PPSE: the directory of payment applications.
    data, sw = yield from exchange(command(0x00, 0xA4, 0x04, 0x00, PPSE))
    if sw == SW_NOT_FOUND:
        raise CardNotSupported("no payment system environment (not a payment card)")
    _check(sw, "SELECT PPSE")
    candidates = _directory(data)
    chosen = _choose(candidates, p.supported_aids)

    # 2. The application itself.
    data, sw = yield from exchange(command(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(chosen[0])))
    _check(sw, "SELECT AID")
    fci = tlv(data)
    raw_label = fci.get("50") or chosen[1] or b""
    label = raw_label.decode("ascii", "replace") if isinstance(raw_label, bytes) else ""
    pdol = parse_dol(fci["9F38"]) if isinstance(fci.get("9F38"), bytes) else []

    # 3. GET PROCESSING OPTIONS with the PDOL filled from terminal data.
    tvr = bytearray(5)
    if p.amount > p.floor_limit:
        tvr[3] |= 0x80                                   # transaction exceeds floor limit
    terminal = {
        "9F66": bytes.fromhex(p.ttq), "9F02": bcd(p.amount, 6), "9F03": bcd(0, 6),
        "9F1A": bcd(p.country_numeric, 2), "95": bytes(tvr), "5F2A": bcd(p.currency_numeric, 2),
        "9A": bcd(p.today.strftime("%y%m%d"), 3), "9C": bytes.fromhex(p.transaction_type),
        "9F37": p.unpredictable, "9F35": bytes.fromhex(p.terminal_type), "9F33": bytes.fromhex(p.capabilities),
    }
    pdol_data = build_dol(pdol, terminal)
    if len(pdol_data) > 253:                              # 83 L data must fit the command's 255 bytes
        raise CardError(f"the card's PDOL asks for {len(pdol_data)} bytes; a GPO command carries 253")
    data, sw = yield from exchange(command(0x80, 0xA8, 0x00, 0x00, b"\x83" + bytes([len(pdol_data)]) + pdol_data))
    if sw == b"\x69\x84" or sw == b"\x69\x85":
        raise CardError("card refused the transaction conditions (try another interface)")
    _check(sw, "GET PROCESSING OPTIONS")
    card: dict[str, object] = {}
    gpo = tlv(data)
    if "80" in gpo and isinstance(gpo["80"], bytes):     # format 1: AIP and AFL only
        raw = gpo["80"]
        if len(raw) < 2 or (len(raw) - 2) % 4:
            raise CardError("format-1 GPO answer has a bad length")
        card.update({"82": raw[:2], "94": raw[2:]})
    else:
        card.update({k: v for k, v in gpo.items() if isinstance(v, bytes)})
    _want(card, "82")

    # 4. READ RECORD for each record the AFL names.
    afl = card.get("94", b"")
    assert isinstance(afl, bytes)
    if len(afl) % 4:
        raise CardError("AFL length is not a multiple of 4")
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        if not 1 <= sfi <= 30 or first == 0 or last < first:
            raise CardError("AFL entry is malformed")
        for record in range(first, last + 1):
            data, sw = yield from exchange(command(0x00, 0xB2, record, (sfi << 3) | 4))
            _check(sw, f"READ RECORD {sfi}/{record}")
            rec = tlv(data)
            card.update({k: v for k, v in rec.items() if isinstance(v, bytes) and k not in card})

    # 5. Mastercard style: the cryptogram comes from GENERATE AC with CDOL1.
    kernel_kind = "visa"
    if "9F26" not in card:
        kernel_kind = "mastercard"
        cdol1 = card.get("8C")
        if not isinstance(cdol1, bytes):
            raise CardError("no cryptogram after GPO and no CDOL1 to ask for one")
        values = {**terminal, **{k: v for k, v in card.items() if isinstance(v, bytes)}}
        data, sw = yield from exchange(command(0x80, 0xAE, CID_ARQC, 0x00, build_dol(parse_dol(cdol1), values)))
        _check(sw, "GENERATE AC")
        gac = tlv(data)
        if "80" in gac and isinstance(gac["80"], bytes):  # format 1: CID, ATC, AC, IAD
            raw = gac["80"]
            if len(raw) < 11:
                raise CardError("format-1 GENERATE AC answer is too short")
            gac = {"9F27": raw[:1], "9F36": raw[1:3], "9F26": raw[3:11], "9F10": raw[11:]}
        card.update({k: v for k, v in gac.items() if isinstance(v, bytes)})

    _want(card, "57", "9F26", "9F27", "9F36", "9F10")
    track2 = track2_from_57(card["57"])  # type: ignore[arg-type]
    pan = track2.partition("=")[0]
    if not luhn_valid(pan):
        raise CardError("card number fails the Luhn check")
    cid = card["9F27"][0]  # type: ignore[index]
    if cid & 0xC0 == CID_AAC:
        raise CardError("the card declined (AAC)", screen="DECLINED BY CARD")
    # An online-only terminal asks for ARQC; a TC from the card still goes online for authorization.

    # 6. Terminal risk management and action analysis. The TVR sent to the issuer (95) stays as the card
    #    hashed it; this one, with what the terminal found since, decides whether to decline offline.
    risk = bytearray(tvr)
    today = p.today.strftime("%y%m%d")
    expiry, effective = card.get("5F24"), card.get("5F25")
    if isinstance(expiry, bytes) and len(expiry) == 3 and expiry.hex() < today:
        risk[1] |= 0x40                                  # expired application
    if isinstance(effective, bytes) and len(effective) == 3 and effective.hex() > today:
        risk[1] |= 0x20                                  # application not yet effective
    iac_denial = card.get("9F0E") if isinstance(card.get("9F0E"), bytes) else bytes(5)
    denial = int.from_bytes(bytes.fromhex(p.tac_denial), "big") | int.from_bytes(iac_denial, "big")  # type: ignore[arg-type]
    if int.from_bytes(risk, "big") & denial:
        raise CardError(f"terminal action analysis: TVR {risk.hex().upper()} meets the denial codes",
                        screen="DECLINED BY TERMINAL")
    tsi = bytearray(2)
    tsi[0] |= 0x08                                       # terminal risk management was performed

    # 7. CVM selection.
    ctq = card.get("9F6C", b"\x00\x00")
    cdcvm = isinstance(ctq, bytes) and len(ctq) >= 2 and bool(ctq[1] & 0x80)
    if p.amount <= p.cvm_limit:
        cvm = "none"
    elif cdcvm:
        cvm = "cdcvm"
    else:
        cvm = "online_pin"
    # The CVM result goes in 9F34; the TVR stays as the card hashed it, or the issuer could not verify the ARQC.
    terminal["9F34"] = {"none": b"\x1f\x00\x02", "cdcvm": b"\x01\x00\x02", "online_pin": b"\x02\x00\x00"}[cvm]
    if cvm != "none":
        tsi[0] |= 0x40                                   # cardholder verification was performed
    terminal["9B"] = bytes(tsi)

    icc = {**{k: v for k, v in terminal.items()}, **{k: v for k, v in card.items() if isinstance(v, bytes)}}
    icc["84"] = bytes.fromhex(chosen[0])
    field55 = {t: icc[t].hex().upper() for t in ICC_TAGS if t in icc}
    psn = card.get("5F34", b"\x00")
    return ChipCard(pan=pan, track2=track2, psn=psn.hex() if isinstance(psn, bytes) else "00", aid=chosen[0],
                    label=label.strip(), cvm=cvm, cid=cid, cryptogram=card["9F26"].hex().upper(),  # type: ignore[union-attr]
                    icc=field55, kernel=kernel_kind, apdus=sent)


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
    of repeated tags, and a PPSE directory repeats tag 61 once per application)."""
    out, i = [], 0
    while i < len(data):
        end = _tag_end(data, i)
        tag = data[i:end].hex().upper()
        if end >= len(data):
            raise CardError("TLV ends before its length")
        length, i = data[end], end + 1
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 2 or i + n > len(data):
                raise CardError("TLV length field is malformed")
            length, i = int.from_bytes(data[i:i + n], "big"), i + n
        if i + length > len(data):
            raise CardError("TLV value runs past the end of the data")
        out.append((tag, data[i:i + length]))
        i += length
    return out


def _directory(fci: bytes) -> list[tuple[str, bytes | None, int]]:
    """(AID hex, label, priority) for each application in a PPSE answer."""
    tree = tlv_items(bytes(fci))
    try:
        fci_body = dict(tlv_items(dict(tree)["6F"]))
        directory = dict(tlv_items(fci_body["A5"]))["BF0C"]
    except KeyError:
        raise CardNotSupported("PPSE answer has no directory") from None
    out = []
    for tag, entry in tlv_items(directory):
        if tag != "61":
            continue
        fields = dict(tlv_items(entry))
        if fields.get("4F"):
            prio = fields.get("87", b"")
            out.append((fields["4F"].hex().upper(), fields.get("50"), prio[0] & 0x0F if prio else 0))
    return out


def _choose(candidates: list[tuple[str, bytes | None, int]], supported: tuple[str, ...]) -> tuple[str, bytes | None]:
    """The supported application with the highest priority (lowest number; 0 means none given)."""
    ok = [c for c in candidates if any(c[0].startswith(s.upper()) for s in supported)]
    if not ok:
        raise CardNotSupported("no application this terminal supports")
    aid, label, _ = min(ok, key=lambda c: (c[2] or 15, candidates.index(c)))
    return aid, label
