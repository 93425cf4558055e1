"""EMV phases shared by the contact and contactless kernels (Book 3 section 10): GPO, READ RECORD, GENERATE AC,
processing restrictions, terminal risk management and terminal action analysis, as data in and data out."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import NamedTuple

from firmware.core.emv.data import (
    CardError,
    Exchanges,
    SeePhone,
    build_dol,
    check,
    command,
    emv_date,
    exchange,
    tlv,
    tlv_items,
    want,
    with_bits,
)

# Cryptogram information data (9F27), top two bits.
CID_AAC, CID_TC, CID_ARQC = 0x00, 0x40, 0x80
CID_NAMES = {CID_AAC: "AAC", CID_TC: "TC", CID_ARQC: "ARQC"}

# Terminal verification results (95), Book 3 Annex C5: (byte, bit).
ODA_NOT_PERFORMED, SDA_FAILED, ICC_DATA_MISSING, DDA_FAILED, CDA_FAILED, SDA_SELECTED = (
    (1, 0x80),
    (1, 0x40),
    (1, 0x20),
    (1, 0x08),
    (1, 0x04),
    (1, 0x02),
)
VERSIONS_DIFFER, EXPIRED, NOT_EFFECTIVE, SERVICE_NOT_ALLOWED, NEW_CARD = (
    (2, 0x80),
    (2, 0x40),
    (2, 0x20),
    (2, 0x10),
    (2, 0x08),
)
CVM_FAILED, UNRECOGNISED_CVM, PIN_TRY_LIMIT, NO_PINPAD, PIN_NOT_ENTERED, ONLINE_PIN_ENTERED = (
    (3, 0x80),
    (3, 0x40),
    (3, 0x20),
    (3, 0x10),
    (3, 0x08),
    (3, 0x04),
)
OVER_FLOOR, LOWER_OFFLINE, UPPER_OFFLINE, RANDOM_ONLINE, MERCHANT_FORCED = (
    (4, 0x80),
    (4, 0x40),
    (4, 0x20),
    (4, 0x10),
    (4, 0x08),
)
ISSUER_AUTH_FAILED, SCRIPT_FAILED_BEFORE, SCRIPT_FAILED_AFTER = (5, 0x40), (5, 0x20), (5, 0x10)
# Transaction status information (9B), Annex C6.
TSI_ODA, TSI_CVM, TSI_CARD_RISK, TSI_ISSUER_AUTH, TSI_TERMINAL_RISK, TSI_SCRIPTS = (
    (1, 0x80),
    (1, 0x40),
    (1, 0x20),
    (1, 0x10),
    (1, 0x08),
    (1, 0x04),
)


def flag(flags: bytes, bit: tuple[int, int]) -> bytes:
    """`flags` (TVR or TSI) with one of the bits above set."""
    return with_bits(flags, *bit)


def has(flags: bytes, bit: tuple[int, int]) -> bool:
    """Whether one of the bits above is set in `flags`."""
    return len(flags) >= bit[0] and bool(flags[bit[0] - 1] & bit[1])


class AflEntry(NamedTuple):
    """One entry of the application file locator (94): records `first` to `last` of file `sfi`."""

    sfi: int
    first: int
    last: int
    oda_records: int  # how many records from `first` on take part in offline data authentication


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
    want(card, "82")
    return card


class ConditionsNotSatisfied(CardError):
    """GPO answered 6985: this application will not do this transaction; the kernel selects the next one."""


def initiate_application_processing(
    pdol: list[tuple[str, int]], terminal: dict[str, bytes]
) -> Exchanges[dict[str, bytes]]:
    """GET PROCESSING OPTIONS with the PDOL filled from terminal data; the card's data it answers with.
    6985 raises ConditionsNotSatisfied (select the next application), 6986 SeePhone (Book A/B: the phone
    asks its holder to act, then to tap again), 6984 the card's refusal."""
    filled = pdol_data(pdol, terminal)
    data, sw = yield from exchange(command(0x80, 0xA8, 0x00, 0x00, b"\x83" + bytes([len(filled)]) + filled))
    if sw == b"\x69\x85":
        raise ConditionsNotSatisfied("GPO: conditions of use not satisfied (6985); trying the next application")
    if sw == b"\x69\x86":
        raise SeePhone("GPO: the phone asks its holder to look at it (6986)")
    if sw == b"\x69\x84":
        raise CardError("card refused the transaction conditions (try another interface)")
    check(sw, "GET PROCESSING OPTIONS")
    return gpo_card_data(data)


# --- Read application data (Book 3 10.2): READ RECORD for each record the AFL names --------------------------


def afl_entries(afl: bytes) -> Iterator[AflEntry]:
    """The AFL's entries, checked one at a time as they are reached: a malformed entry ends the reading after
    the records of the entries before it (a length that is not a multiple of 4 ends it before any)."""
    if len(afl) % 4:
        raise CardError("AFL length is not a multiple of 4")
    for i in range(0, len(afl), 4):
        sfi, first, last, oda = afl[i] >> 3, afl[i + 1], afl[i + 2], afl[i + 3]
        if not 1 <= sfi <= 30 or first == 0 or last < first or oda > last - first + 1:
            raise CardError("AFL entry is malformed")
        yield AflEntry(sfi, first, last, oda)


def read_record(sfi: int, record: int) -> bytes:
    """READ RECORD `record` of short file `sfi`."""
    return command(0x00, 0xB2, record, (sfi << 3) | 4)


def oda_record_data(sfi: int, record: bytes) -> bytes:
    """What a record adds to the static data to be authenticated (Book 3 10.3): for files 1 to 10 the value
    of its 70 template, for 11 to 30 the whole record; CardError (ODA fails) when a 1-10 record is not a 70."""
    if sfi > 10:
        return record
    items = tlv_items(record)
    if len(items) != 1 or items[0][0] != "70":
        raise CardError("a record for offline data authentication is not a 70 template")
    return items[0][1]


def read_records(card: dict[str, bytes]) -> Exchanges[tuple[dict[str, bytes], bytes | None]]:
    """Every record the AFL (94) names, read and added to the card's data (a tag the card already gave, in
    GPO or an earlier record, keeps its first value); with the static data to be authenticated, or None when
    a record meant for it was not well formed (then ODA fails, the transaction goes on)."""
    out = dict(card)
    static: bytes | None = b""
    for entry in afl_entries(card.get("94", b"")):
        for record in range(entry.first, entry.last + 1):
            data, sw = yield from exchange(read_record(entry.sfi, record))
            check(sw, f"READ RECORD {entry.sfi}/{record}")
            if entry.sfi <= 10 and not data.startswith(b"\x70"):
                raise CardError(f"READ RECORD {entry.sfi}/{record}: not a 70 template")
            out.update({k: v for k, v in tlv(data).items() if k not in out})
            if static is not None and record < entry.first + entry.oda_records:
                try:
                    static += oda_record_data(entry.sfi, data)
                except CardError:
                    static = None
    return out, static


def read_application_data(card: dict[str, bytes]) -> Exchanges[dict[str, bytes]]:
    """The records of `read_records` without the static data (the contactless kernel does no ODA)."""
    out, _ = yield from read_records(card)
    return out


# --- GENERATE AC (Book 3 6.5.5) -------------------------------------------------------------------------------


def generate_ac_card_data(data: bytes) -> dict[str, bytes]:
    """The card's data from a GENERATE AC answer: format 1 (80: CID, ATC, AC, IAD) or format 2 (77)."""
    gac = tlv(data)
    if "80" in gac:  # format 1: CID, ATC, AC, IAD
        raw = gac["80"]
        if len(raw) < 11:
            raise CardError("format-1 GENERATE AC answer is too short")
        return {"9F27": raw[:1], "9F36": raw[1:3], "9F26": raw[3:11], "9F10": raw[11:]}
    return gac


def generate_ac(p1: int, data: bytes) -> Exchanges[tuple[dict[str, bytes], bytes]]:
    """One GENERATE AC: (the card's data from the answer, the answer's TLV body for CDA's hash)."""
    answer, sw = yield from exchange(command(0x80, 0xAE, p1, 0x00, data))
    check(sw, "GENERATE AC")
    got = generate_ac_card_data(answer)
    want(got, "9F27", "9F36")
    return got, answer


def cid_type(cid: int) -> int:
    """The cryptogram type of a CID: CID_AAC, CID_TC, CID_ARQC; CardError for the reserved value 11."""
    kind = cid & 0xC0
    if kind == 0xC0:
        raise CardError("the card answered a reserved cryptogram type (CID 11xxxxxx)")
    return kind


# --- Processing restrictions (Book 3 10.4) ---------------------------------------------------------------------


def processing_restrictions(
    tvr: bytes,
    card: dict[str, bytes],
    today: date,
    *,
    terminal_version: bytes = b"",
    country: str = "",
    transaction_type: str = "00",
    atm: bool = False,
) -> bytes:
    """The TVR after the application's version (9F08 vs the terminal's 9F09), its usage control (9F07 with
    the issuer country 5F28 against the terminal's: domestic or international, cash, goods or services,
    ATM or not) and its dates (5F25 effective, 5F24 expiry) are checked."""
    out = tvr
    version = card.get("9F08")
    if version and terminal_version and version != terminal_version:
        out = flag(out, VERSIONS_DIFFER)
    auc, issuer_country = card.get("9F07"), card.get("5F28")
    if auc and len(auc) >= 2 and not usage_allowed(auc, issuer_country, country, transaction_type, atm):
        out = flag(out, SERVICE_NOT_ALLOWED)
    expiry, effective = emv_date(card.get("5F24")), emv_date(card.get("5F25"))
    if expiry is not None and expiry < today:
        out = flag(out, EXPIRED)
    if effective is not None and effective > today:
        out = flag(out, NOT_EFFECTIVE)
    return out


def usage_allowed(auc: bytes, issuer_country: bytes | None, country: str, transaction_type: str, atm: bool) -> bool:
    """Application usage control (9F07, Annex C2) for this transaction. Without the issuer country code only
    the ATM / other terminal bits are checked."""
    if not (auc[0] & (0x02 if atm else 0x01)):
        return False
    if issuer_country is None or not country:
        return True
    domestic = issuer_country.hex().lstrip("0") == country.lstrip("0")
    if transaction_type in ("01", "17"):  # cash, cash disbursement
        return bool(auc[0] & (0x80 if domestic else 0x40))
    if transaction_type == "09":  # purchase with cashback
        return bool(auc[1] & (0x80 if domestic else 0x40)) and bool(auc[0] & (0x20 if domestic else 0x10))
    if transaction_type in ("00", "20"):  # goods (and services), refund: goods or services
        return bool(auc[0] & ((0x20 | 0x08) if domestic else (0x10 | 0x04)))
    return True


# --- Terminal risk management (Book 3 10.6) --------------------------------------------------------------------


def floor_limit_check(amount: int, floor_limit: int) -> bytes:
    """The TVR (95) after the floor-limit check (10.6.1: the amount equal to or greater than the floor limit)."""
    tvr = bytes(5)
    if amount >= floor_limit:
        tvr = flag(tvr, OVER_FLOOR)
    return tvr


def randomly_selected(amount: int, floor_limit: int, threshold: int, target: int, max_target: int, rand: int) -> bool:
    """Random transaction selection (10.6.2), the random number 1..99 given as data: below the threshold the
    target percentage, between threshold and floor limit a percentage rising linearly to the maximum;
    at or above the floor limit not applied (the floor limit already sends it online)."""
    if amount >= floor_limit or not 1 <= rand <= 99:
        return False
    if amount < threshold:
        return rand <= target
    percent = target + (max_target - target) * (amount - threshold) / max(floor_limit - threshold, 1)
    return rand <= percent


def velocity(tvr: bytes, lower: int, upper: int, atc: bytes | None, last_online: bytes | None) -> bytes:
    """Velocity checking (10.6.3) from the card's lower and upper consecutive offline limits (9F14, 9F23) and
    what GET DATA gave for the ATC (9F36) and the last online ATC register (9F13): both 'exceeded' bits
    when either is missing or the ATC is not above the register; 'new card' when the register is zero."""
    if atc is None or last_online is None or len(atc) != 2 or len(last_online) != 2:
        return flag(flag(tvr, LOWER_OFFLINE), UPPER_OFFLINE)
    count, register = int.from_bytes(atc, "big"), int.from_bytes(last_online, "big")
    out = tvr
    if count <= register or count - register > lower:
        out = flag(out, LOWER_OFFLINE)
    if count <= register or count - register > upper:
        out = flag(out, UPPER_OFFLINE)
    if register == 0:
        out = flag(out, NEW_CARD)
    return out


def get_data(tag: str) -> Exchanges[bytes | None]:
    """GET DATA for one of the card's data objects (9F17, 9F36, 9F13...): its value, or None."""
    t = bytes.fromhex(tag)
    data, sw = yield from exchange(command(0x80, 0xCA, t[0], t[1]))
    if sw != b"\x90\x00":
        return None
    try:
        return tlv(data).get(tag)
    except CardError:
        return None


# --- Terminal action analysis (Book 3 10.7) --------------------------------------------------------------------


def _bits(hex_or_bytes: str | bytes) -> int:
    raw = bytes.fromhex(hex_or_bytes) if isinstance(hex_or_bytes, str) else hex_or_bytes
    return int.from_bytes(raw, "big")


def terminal_action_analysis(tvr: bytes, tac_denial: str, iac_denial: bytes) -> None:
    """Decline offline (CardError, DECLINED BY TERMINAL) when the TVR meets the terminal's or the issuer's
    denial codes (the contactless kernel's use: it always goes online otherwise)."""
    if _bits(tvr) & (_bits(tac_denial) | _bits(iac_denial)):
        raise CardError(
            f"terminal action analysis: TVR {tvr.hex().upper()} meets the denial codes", screen="DECLINED BY TERMINAL"
        )


def action_codes(card: dict[str, bytes]) -> tuple[bytes, bytes, bytes]:
    """The issuer action codes (denial 9F0E, online 9F0F, default 9F0D); absent: denial zeros, the others all
    ones (Book 3 10.7)."""
    ones = b"\xff" * 5
    return card.get("9F0E", bytes(5)), card.get("9F0F", ones), card.get("9F0D", ones)


def requested_cryptogram(
    tvr: bytes, tacs: tuple[str, str, str], iacs: tuple[bytes, bytes, bytes], online_capable: bool, online_only: bool
) -> int:
    """The cryptogram the first GENERATE AC asks for: AAC when the TVR meets a denial code; an online-capable
    terminal asks for an ARQC when it meets an online code (an online-only one always does), else TC;
    an offline-only one applies the default codes. `tacs` and `iacs` are (denial, online, default)."""
    tvr_bits = _bits(tvr)
    if tvr_bits & (_bits(tacs[0]) | _bits(iacs[0])):
        return CID_AAC
    if online_only:
        return CID_ARQC
    if online_capable:
        return CID_ARQC if tvr_bits & (_bits(tacs[1]) | _bits(iacs[1])) else CID_TC
    return CID_AAC if tvr_bits & (_bits(tacs[2]) | _bits(iacs[2])) else CID_TC


def default_action(tvr: bytes, tac_default: str, iac_default: bytes) -> int:
    """When the terminal could not go online (10.7): AAC when the TVR meets a default code, else TC."""
    return CID_AAC if _bits(tvr) & (_bits(tac_default) | _bits(iac_default)) else CID_TC


# --- Field 55 --------------------------------------------------------------------------------------------------

# The authorization request's ICC data as EMV acquirers and UnionPay (PBOC field 55) ask for it.
ONLINE_TAGS = (
    "9F26",
    "9F27",
    "9F10",
    "9F37",
    "9F36",
    "95",
    "9A",
    "9C",
    "9F02",
    "5F2A",
    "82",
    "9F1A",
    "9F03",
    "9F33",
    "9F34",
    "9F35",
    "9F1E",
    "84",
    "9F09",
    "9F41",
    "9F21",
    "5F34",
    "9F53",
    "9F63",
)
# A reversal after the card declined an approved authorization, and the advice of the final cryptogram and the
# script results (UnionPay names the script results DF31; EMV 9F5B).
REVERSAL_TAGS = ("95", "9F1E", "9F10", "9F36", "DF31", "9F5B")
ADVICE_TAGS = ("9F26", "9F27", "9F10", "9F37", "9F36", "95", "9B", "9A", "82", "9F1A", "9F33", "9F1E", "DF31", "9F5B")


def reversal_fields(icc: dict[str, str]) -> dict[str, str]:
    """What of a chip sale's field 55 (tag -> hex) its reversal carries: REVERSAL_TAGS, in that order."""
    return {t: icc[t] for t in REVERSAL_TAGS if t in icc}


def icc_fields(data: dict[str, bytes], tags: tuple[str, ...]) -> dict[str, str]:
    """The `tags` that `data` has, hex, in the order given."""
    return {t: data[t].hex().upper() for t in tags if t in data}
