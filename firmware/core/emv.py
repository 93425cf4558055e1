"""EMV contactless entry point and kernel (pure): APDUs out, card answers in, an online request or a refusal out.

The kernel is a generator: it yields each command APDU and is sent the card's response (data + SW1 SW2);
it returns a ChipCard (go online) or raises CardError (a short screen text). It never touches a reader.
BER-TLV decoding is pyemv's; the DOL handling and the decisions are here.

The kernel is written as the EMV phases, in the order it runs them, so that a contact kernel can reuse them:
application selection (Book B's PPSE and final selection), initiate application processing (GPO with the PDOL,
Book 3 10.1), read application data (the AFL's records, 10.2), card action analysis (the first GENERATE AC over
CDOL1, 10.8 — only when the card did not return a cryptogram in GPO), then the terminal's checks of what the card
returned: processing restrictions (the dates, 10.4), terminal action analysis (the denial codes, 10.7) and
cardholder verification (the CVM choice, 10.5). Terminal risk management (10.6) is the floor-limit check, made
before GPO because a PDOL may ask for the TVR. A phase that talks to the card is a generator like the kernel;
the rest are plain functions, each testable alone.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Literal, NamedTuple, TypeAlias, TypeVar

import pyemv.tlv

from firmware.core.pan import luhn_valid, mask
from firmware.errors import TerminalError

PPSE = b"2PAY.SYS.DDF01"
SW_OK = b"\x90\x00"
SW_NOT_FOUND = b"\x6a\x82"

# Tags sent to the issuer in field 55 when the card or terminal has them.
ICC_TAGS = (
    "5F2A",
    "5F34",
    "82",
    "84",
    "95",
    "9A",
    "9B",
    "9C",
    "9F02",
    "9F03",
    "9F09",
    "9F10",
    "9F1A",
    "9F26",
    "9F27",
    "9F33",
    "9F34",
    "9F35",
    "9F36",
    "9F37",
    "9F6E",
)
# Cryptogram information data (9F27), top two bits.
CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80

_T = TypeVar("_T")
# A phase that talks to the card: yields command APDUs, is sent each response (data + SW1 SW2), returns _T.
Exchanges: TypeAlias = Generator[bytes, bytes, _T]

Cvm = Literal["none", "online_pin", "cdcvm"]
# CVM results (9F34) for each choice: method, condition, result (EMV Book 3 Annex C3).
CVM_RESULTS: dict[str, bytes] = {"none": b"\x1f\x00\x02", "cdcvm": b"\x01\x00\x02", "online_pin": b"\x02\x00\x00"}


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

    amount: int  # minor units
    currency_numeric: str  # "156"
    country_numeric: str  # "156"
    today: date
    unpredictable: bytes  # 4 random bytes from the shell
    supported_aids: tuple[str, ...]  # hex prefixes, e.g. "A0000000031010"
    cvm_limit: int  # above this, a CVM is required
    floor_limit: int = 0  # online-only terminal: everything goes online
    ttq: str = "36004000"  # 9F66: online-capable qVSDC/EMV mode, online PIN, CDCVM supported
    terminal_type: str = "22"  # 9F35: attended, online only, merchant
    capabilities: str = "E04000"  # 9F33: keypad; enciphered PIN online; no signature
    transaction_type: str = "00"  # 9C: goods and services
    tac_denial: str = "0010000000"  # terminal action codes (5 bytes hex, TVR bit masks)
    tac_online: str = "DC4004F800"
    tac_default: str = "DC4000A800"


@dataclass(frozen=True)
class ChipCard:
    """What an online contactless authorization needs; card data stays out of repr."""

    pan: str = field(repr=False)
    track2: str = field(repr=False)  # ISO format ("PAN=YYMM..."), for ISO 8583 field 35
    psn: str
    aid: str
    label: str
    cvm: str  # "none" | "online_pin" | "cdcvm"
    cid: int
    cryptogram: str  # 9F26, hex
    icc: dict[str, str] = field(repr=False)  # tag -> hex value, for field 55
    kernel: str = ""  # "visa" (GPO cryptogram) | "mastercard" (GENERATE AC)
    apdus: int = 0  # commands the kernel sent

    @property
    def masked_pan(self) -> str:
        """First 6 / last 4."""
        return mask(self.pan)


class Candidate(NamedTuple):
    """One application of a directory (PPSE), as the card lists it."""

    aid: str  # hex, upper case
    label: bytes | None  # application label (50), if the directory gives one
    priority: int  # application priority indicator (87), low nibble: 1 highest, 0 none given


@dataclass(frozen=True)
class Application:
    """The selected application: what its FCI says that the later phases need."""

    aid: str  # hex, upper case
    label: str  # from the FCI, else the directory; "" when neither has one
    pdol: list[tuple[str, int]]  # (tag, length) pairs; empty when the card asks for none


class AflEntry(NamedTuple):
    """One entry of the application file locator (94): records `first` to `last` of file `sfi`."""

    sfi: int
    first: int
    last: int
    oda_records: int  # how many records from `first` on take part in offline data authentication


# --- APDUs, TLV and DOLs -------------------------------------------------------------------------------------


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


def exchange(apdu: bytes) -> Exchanges[tuple[bytes, bytes]]:
    """Send one command; its response as (data, SW1SW2)."""
    return split_response((yield apdu))


def tlv(data: bytes) -> dict[str, bytes]:
    """BER-TLV decode (pyemv), flattened into tag -> value; CardError on malformed data."""
    try:
        return pyemv.tlv.decode(bytes(data), flatten=True)
    except (pyemv.tlv.DecodeError, ValueError, IndexError, TypeError) as exc:
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
            length, i = int.from_bytes(data[i : i + n], "big"), i + n
        if i + length > len(data):
            raise CardError("TLV value runs past the end of the data")
        out.append((tag, data[i : i + length]))
        i += length
    return out


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
    return bytes.fromhex(str(number).rjust(length * 2, "0")[-length * 2 :])


def track2_from_57(value: bytes) -> str:
    """Track 2 equivalent data (tag 57, 'D' separator, 'F' pad) in ISO form with '='."""
    text = value.hex().upper().rstrip("F")
    pan, sep, rest = text.partition("D")
    if not sep or not pan.isdigit() or not rest[:7].isdigit() or len(rest) < 7:
        raise CardError("track 2 equivalent data is malformed")
    return f"{pan}={rest}"


def _want(tags: dict[str, bytes], *names: str) -> None:
    missing = [t for t in names if not tags.get(t)]
    if missing:
        raise CardError(f"card data lacks mandatory tag(s) {', '.join(missing)}")


def _check(sw: bytes, what: str) -> None:
    if sw != SW_OK:
        raise CardError(f"{what}: status {sw.hex().upper()}")


# --- Application selection (Book B: PPSE, combination and final selection) -----------------------------------


def ppse_candidates(fci: bytes) -> list[Candidate]:
    """The applications a PPSE answer lists, in the card's order."""
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
            out.append(Candidate(fields["4F"].hex().upper(), fields.get("50"), prio[0] & 0x0F if prio else 0))
    return out


def choose_application(candidates: list[Candidate], supported: tuple[str, ...]) -> Candidate:
    """The supported application with the highest priority (lowest number; 0 means none given), the card's
    first among equals; CardNotSupported when the terminal supports none of them."""
    ok = [c for c in candidates if any(c.aid.startswith(s.upper()) for s in supported)]
    if not ok:
        raise CardNotSupported("no application this terminal supports")
    return min(ok, key=lambda c: (c.priority or 15, candidates.index(c)))


def application_from_fci(chosen: Candidate, fci: dict[str, bytes]) -> Application:
    """The selected application from its FCI (decoded): label (the FCI's, else the directory's) and PDOL."""
    raw_label = fci.get("50") or chosen.label or b""
    pdol = parse_dol(fci["9F38"]) if "9F38" in fci else []
    return Application(chosen.aid, raw_label.decode("ascii", "replace").strip(), pdol)


def select_ppse() -> Exchanges[list[Candidate]]:
    """SELECT the proximity payment system environment: the directory of payment applications."""
    data, sw = yield from exchange(command(0x00, 0xA4, 0x04, 0x00, PPSE))
    if sw == SW_NOT_FOUND:
        raise CardNotSupported("no payment system environment (not a payment card)")
    _check(sw, "SELECT PPSE")
    return ppse_candidates(data)


def final_select(chosen: Candidate) -> Exchanges[Application]:
    """SELECT the chosen application by its AID."""
    data, sw = yield from exchange(command(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(chosen.aid)))
    _check(sw, "SELECT AID")
    return application_from_fci(chosen, tlv(data))


def select_application(supported: tuple[str, ...]) -> Exchanges[Application]:
    """Application selection over the PPSE: the directory, the terminal's choice, the final SELECT."""
    candidates = yield from select_ppse()
    return (yield from final_select(choose_application(candidates, supported)))


# --- Terminal risk management, floor limit (Book 3 10.6.1), and the terminal's data ---------------------------


def floor_limit_check(amount: int, floor_limit: int) -> bytes:
    """The TVR (95) after the floor-limit check: made before GPO, because a PDOL may ask for the TVR."""
    tvr = bytearray(5)
    if amount > floor_limit:
        tvr[3] |= 0x80  # transaction exceeds floor limit
    return bytes(tvr)


def terminal_data(p: KernelParams, tvr: bytes) -> dict[str, bytes]:
    """The terminal's data objects that a PDOL or CDOL may ask for, by tag."""
    return {
        "9F66": bytes.fromhex(p.ttq),
        "9F02": bcd(p.amount, 6),
        "9F03": bcd(0, 6),
        "9F1A": bcd(p.country_numeric, 2),
        "95": tvr,
        "5F2A": bcd(p.currency_numeric, 2),
        "9A": bcd(p.today.strftime("%y%m%d"), 3),
        "9C": bytes.fromhex(p.transaction_type),
        "9F37": p.unpredictable,
        "9F35": bytes.fromhex(p.terminal_type),
        "9F33": bytes.fromhex(p.capabilities),
    }


# --- Initiate application processing (Book 3 10.1): GET PROCESSING OPTIONS -----------------------------------


def pdol_data(pdol: list[tuple[str, int]], terminal: dict[str, bytes]) -> bytes:
    """The PDOL filled from the terminal's data; CardError when it would not fit one GPO command."""
    data = build_dol(pdol, terminal)
    if len(data) > 253:  # 83 L data must fit the command's 255 bytes
        raise CardError(f"the card's PDOL asks for {len(data)} bytes; a GPO command carries 253")
    return data


def gpo_card_data(data: bytes) -> dict[str, bytes]:
    """The card's data from a GPO answer: format 1 (80: AIP and AFL) or format 2 (77: any tags); the AIP
    (82) is mandatory."""
    gpo = tlv(data)
    if "80" in gpo:  # format 1: AIP and AFL only
        raw = gpo["80"]
        if len(raw) < 2 or (len(raw) - 2) % 4:
            raise CardError("format-1 GPO answer has a bad length")
        card = {"82": raw[:2], "94": raw[2:]}
    else:
        card = dict(gpo)
    _want(card, "82")
    return card


def initiate_application_processing(
    pdol: list[tuple[str, int]], terminal: dict[str, bytes]
) -> Exchanges[dict[str, bytes]]:
    """GET PROCESSING OPTIONS with the PDOL filled from terminal data; the card's data it answers with."""
    filled = pdol_data(pdol, terminal)
    data, sw = yield from exchange(command(0x80, 0xA8, 0x00, 0x00, b"\x83" + bytes([len(filled)]) + filled))
    if sw == b"\x69\x84" or sw == b"\x69\x85":
        raise CardError("card refused the transaction conditions (try another interface)")
    _check(sw, "GET PROCESSING OPTIONS")
    return gpo_card_data(data)


# --- Read application data (Book 3 10.2): READ RECORD for each record the AFL names --------------------------


def afl_entries(afl: bytes) -> Iterator[AflEntry]:
    """The AFL's entries, checked one at a time as they are reached: a malformed entry ends the reading after
    the records of the entries before it (a length that is not a multiple of 4 ends it before any)."""
    if len(afl) % 4:
        raise CardError("AFL length is not a multiple of 4")
    for i in range(0, len(afl), 4):
        sfi, first, last = afl[i] >> 3, afl[i + 1], afl[i + 2]
        if not 1 <= sfi <= 30 or first == 0 or last < first:
            raise CardError("AFL entry is malformed")
        yield AflEntry(sfi, first, last, afl[i + 3])


def read_record(sfi: int, record: int) -> bytes:
    """READ RECORD `record` of short file `sfi`."""
    return command(0x00, 0xB2, record, (sfi << 3) | 4)


def read_application_data(card: dict[str, bytes]) -> Exchanges[dict[str, bytes]]:
    """Every record the AFL (94) names, read and added to the card's data; a tag the card already gave (in
    GPO or an earlier record) keeps its first value."""
    out = dict(card)
    for entry in afl_entries(card.get("94", b"")):
        for record in range(entry.first, entry.last + 1):
            data, sw = yield from exchange(read_record(entry.sfi, record))
            _check(sw, f"READ RECORD {entry.sfi}/{record}")
            out.update({k: v for k, v in tlv(data).items() if k not in out})
    return out


# --- Card action analysis (Book 3 10.8, Book C-2): the first GENERATE AC ------------------------------------


def generate_ac_card_data(data: bytes) -> dict[str, bytes]:
    """The card's data from a GENERATE AC answer: format 1 (80: CID, ATC, AC, IAD) or format 2 (77)."""
    gac = tlv(data)
    if "80" in gac:  # format 1: CID, ATC, AC, IAD
        raw = gac["80"]
        if len(raw) < 11:
            raise CardError("format-1 GENERATE AC answer is too short")
        return {"9F27": raw[:1], "9F36": raw[1:3], "9F26": raw[3:11], "9F10": raw[11:]}
    return gac


def first_generate_ac(card: dict[str, bytes], terminal: dict[str, bytes]) -> Exchanges[dict[str, bytes]]:
    """GENERATE AC asking for an ARQC, CDOL1 filled from the card's data and the terminal's (the card's where
    both have a tag); the card's data with what the answer says, which overrides what it said before."""
    cdol1 = card.get("8C")
    if cdol1 is None:
        raise CardError("no cryptogram after GPO and no CDOL1 to ask for one")
    data, sw = yield from exchange(
        command(0x80, 0xAE, CID_ARQC, 0x00, build_dol(parse_dol(cdol1), {**terminal, **card}))
    )
    _check(sw, "GENERATE AC")
    return {**card, **generate_ac_card_data(data)}


# --- What the card returned: card data and cryptogram --------------------------------------------------------


def card_result(card: dict[str, bytes]) -> tuple[str, str, int]:
    """(track 2, PAN, CID) once the card has given its cryptogram; CardError when mandatory data is missing
    or wrong, or the card declined offline (AAC). A TC still goes online: the terminal is online-only."""
    _want(card, "57", "9F26", "9F27", "9F36", "9F10")
    track2 = track2_from_57(card["57"])
    pan = track2.partition("=")[0]
    if not luhn_valid(pan):
        raise CardError("card number fails the Luhn check")
    cid = card["9F27"][0]
    if cid & 0xC0 == CID_AAC:
        raise CardError("the card declined (AAC)", screen="DECLINED BY CARD")
    return track2, pan, cid


# --- Processing restrictions (Book 3 10.4) and terminal action analysis (10.7) --------------------------------


def processing_restrictions(tvr: bytes, card: dict[str, bytes], today: date) -> bytes:
    """The TVR with the application's dates checked: expired (5F24), not yet effective (5F25)."""
    out = bytearray(tvr)
    day = today.strftime("%y%m%d")
    expiry, effective = card.get("5F24"), card.get("5F25")
    if expiry is not None and len(expiry) == 3 and expiry.hex() < day:
        out[1] |= 0x40  # expired application
    if effective is not None and len(effective) == 3 and effective.hex() > day:
        out[1] |= 0x20  # application not yet effective
    return bytes(out)


def terminal_action_analysis(tvr: bytes, tac_denial: str, iac_denial: bytes) -> None:
    """Decline offline (CardError, DECLINED BY TERMINAL) when the TVR meets the terminal's or the issuer's
    denial codes. The TVR sent to the issuer (95) stays as the card hashed it; this one is what the terminal
    found since."""
    denial = int.from_bytes(bytes.fromhex(tac_denial), "big") | int.from_bytes(iac_denial, "big")
    if int.from_bytes(tvr, "big") & denial:
        raise CardError(
            f"terminal action analysis: TVR {tvr.hex().upper()} meets the denial codes", screen="DECLINED BY TERMINAL"
        )


# --- Cardholder verification (Book 3 10.5), as the contactless kernels choose it -----------------------------


def select_cvm(amount: int, cvm_limit: int, ctq: bytes) -> Cvm:
    """No CVM up to the CVM limit; above it the card's own verification when its CTQ (9F6C) says the consumer
    device verified the cardholder, else online PIN."""
    if amount <= cvm_limit:
        return "none"
    if len(ctq) >= 2 and ctq[1] & 0x80:
        return "cdcvm"
    return "online_pin"


def tsi(cvm: str) -> bytes:
    """Transaction status information (9B): risk management performed, and cardholder verification if any."""
    first = 0x08  # terminal risk management was performed
    if cvm != "none":
        first |= 0x40  # cardholder verification was performed
    return bytes([first, 0])


# --- The online request --------------------------------------------------------------------------------------


def icc_data(terminal: dict[str, bytes], card: dict[str, bytes], aid: str) -> dict[str, str]:
    """Field 55: the ICC_TAGS the card or the terminal has (the card's value where both do), hex; 84 is the
    selected AID."""
    icc = {**terminal, **card, "84": bytes.fromhex(aid)}
    return {t: icc[t].hex().upper() for t in ICC_TAGS if t in icc}


# --- The kernel ----------------------------------------------------------------------------------------------


def contactless_transaction(p: KernelParams) -> Exchanges[ChipCard]:
    """The phases of one tap in the order this kernel runs them; the ChipCard's `apdus` is left to `kernel`."""
    app = yield from select_application(p.supported_aids)
    tvr = floor_limit_check(p.amount, p.floor_limit)
    terminal = terminal_data(p, tvr)
    card = yield from initiate_application_processing(app.pdol, terminal)
    card = yield from read_application_data(card)
    kind = "visa" if "9F26" in card else "mastercard"  # Mastercard style: the cryptogram comes from GENERATE AC
    if kind == "mastercard":
        card = yield from first_generate_ac(card, terminal)
    track2, pan, cid = card_result(card)
    terminal_action_analysis(processing_restrictions(tvr, card, p.today), p.tac_denial, card.get("9F0E", bytes(5)))
    cvm = select_cvm(p.amount, p.cvm_limit, card.get("9F6C", b"\x00\x00"))
    # The CVM result goes in 9F34; the TVR stays as the card hashed it, or the issuer could not verify the ARQC.
    terminal = {**terminal, "9F34": CVM_RESULTS[cvm], "9B": tsi(cvm)}
    return ChipCard(
        pan=pan,
        track2=track2,
        psn=card.get("5F34", b"\x00").hex(),
        aid=app.aid,
        label=app.label,
        cvm=cvm,
        cid=cid,
        cryptogram=card["9F26"].hex().upper(),
        icc=icc_data(terminal, card, app.aid),
        kernel=kind,
    )


def kernel(p: KernelParams) -> Exchanges[ChipCard]:
    """Entry point + kernel for one tap. Yield command APDUs; receive responses; return the card data."""
    steps = contactless_transaction(p)
    sent = 0
    try:
        apdu = next(steps)
        while True:
            sent += 1
            apdu = steps.send((yield apdu))
    except StopIteration as done:
        card: ChipCard = done.value
        return replace(card, apdus=sent)
    finally:
        steps.close()
