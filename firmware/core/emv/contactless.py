"""The EMV contactless kernel (pure): APDUs out, card answers in, an online request or a refusal out.

The kernel is a generator: it yields each command APDU and is sent the card's response (data + SW1 SW2);
it returns a ChipCard (go online) or raises CardError (a short screen text). It never touches a reader.
The phases run in this order: application selection over the PPSE (Book B; GPO 6985 selects the next
application), GPO with the PDOL (the TTQ built from what the terminal supports), the AFL's records, then the
terminal's checks of what the card said: processing restrictions (dates), cardholder verification (Visa and
UnionPay from the card's CTQ 9F6C; Mastercard from the AIP's on-device CVM bit and the CVM list 8E), terminal
action analysis; and for a Mastercard-style kernel the first GENERATE AC last, so that its CDOL1 carries the
TVR and CVM results that field 55 carries too. The kernel style comes from the kernel identifier (9F2A) in the
directory, else from the RID. This terminal is online-only: it performs no ODA (TVR 'ODA not performed').
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from datetime import time as clock_time

from firmware.core.emv.cvm import NAMES, ONLINE_PIN, SIGNATURE, CvmContext, first_applicable, parse_cvm_list
from firmware.core.emv.data import (
    CardError,
    CardNotSupported,
    Exchanges,
    bcd,
    build_dol,
    parse_dol,
    track2_from_57,
    want,
)
from firmware.core.emv.phases import (
    CID_AAC,
    CID_ARQC,
    ODA_NOT_PERFORMED,
    ConditionsNotSatisfied,
    flag,
    floor_limit_check,
    generate_ac,
    icc_fields,
    initiate_application_processing,
    processing_restrictions,
    read_application_data,
    terminal_action_analysis,
)
from firmware.core.emv.select import Application, Candidate, by_priority, final_select, select_ppse, supported_only
from firmware.core.pan import luhn_valid, mask

# Tags sent to the issuer in field 55 when the card or terminal has them; 9F66 (the TTQ) for the
# Visa-style kernels (qVSDC and UnionPay qPBOC ask for it), 9F6E (Mastercard's third-party data) when the card
# gave it.
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
    "9F21",
    "9F26",
    "9F27",
    "9F33",
    "9F34",
    "9F35",
    "9F36",
    "9F37",
    "9F6E",
)

# Kernel identifiers (9F2A, EMV Book B table 3-5) and RIDs, to the two styles this kernel runs.
KERNEL_IDS = {0x02: "mastercard", 0x03: "visa", 0x07: "visa"}  # C-2, C-3, C-7 (UnionPay qPBOC: qVSDC-like)
RIDS = {"A000000004": "mastercard", "A000000003": "visa", "A000000333": "visa"}

# CVM results (9F34) for each choice (EMV Book 3 Annex C3): method, condition, result.
CVM_RESULTS: dict[str, bytes] = {
    "none": b"\x1f\x00\x02",
    "cdcvm": b"\x01\x00\x02",
    "online_pin": b"\x02\x00\x00",
    "signature": b"\x1e\x00\x00",
}


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
    transaction_type: str = "00"  # 9C: goods and services
    tac_denial: str = "0010000000"  # terminal action codes (5 bytes hex, TVR bit masks)
    tac_online: str = "DC4004F800"
    tac_default: str = "DC4000A800"
    time_of_day: clock_time | None = None  # 9F21, when the shell gives it
    online_only: bool = True  # 9F35 21 and TTQ 'online cryptogram required'; False: 22
    online_pin: bool = True  # the terminal has a PIN pad and can send an online PIN
    signature: bool = False  # the terminal can collect a signature
    contact_chip: bool = False  # a contact chip reader too (TTQ 'EMV contact chip supported')
    cdcvm: bool = True  # accepts the consumer device's own verification


@dataclass(frozen=True)
class ChipCard:
    """What an online chip authorization needs; card data stays out of repr."""

    pan: str = field(repr=False)
    track2: str = field(repr=False)  # ISO format ("PAN=YYMM..."), for ISO 8583 field 35
    psn: str
    aid: str
    label: str
    cvm: str  # "none" | "online_pin" | "cdcvm" | "signature" (contact: see cvm.NAMES)
    cid: int
    cryptogram: str  # 9F26, hex
    icc: dict[str, str] = field(repr=False)  # tag -> hex value, for field 55
    kernel: str = ""  # "visa" (GPO cryptogram) | "mastercard" (GENERATE AC) | "contact"
    apdus: int = 0  # commands the kernel sent
    name: str = field(default="", repr=False)  # cardholder name (5F20), for the screen only

    @property
    def masked_pan(self) -> str:
        """First 6 / last 4."""
        return mask(self.pan)


# --- The terminal's data: TTQ, capabilities and type telling one story ----------------------------------------


def ttq(p: KernelParams) -> bytes:
    """Terminal transaction qualifiers (9F66, Book C-3 / C-7): qVSDC; contact chip, online PIN and signature as
    the terminal has them; 'online cryptogram required' on an online-only terminal; 'CVM required' above the
    CVM limit; consumer device CVM supported."""
    b1 = 0x20 | (0x10 if p.contact_chip else 0) | (0x04 if p.online_pin else 0) | (0x02 if p.signature else 0)
    b2 = (0x80 if p.online_only else 0) | (0x40 if p.amount > p.cvm_limit else 0)
    b3 = 0x40 if p.cdcvm else 0
    return bytes([b1, b2, b3, 0])


def capabilities(p: KernelParams) -> bytes:
    """Terminal capabilities (9F33, Book 4 Annex A2): card input (IC with contacts when there is a chip
    reader; manual entry and magstripe), the CVMs of the TTQ (online PIN, signature, no CVM), no offline ODA."""
    b1 = 0xC0 | (0x20 if p.contact_chip else 0)
    b2 = (0x40 if p.online_pin else 0) | (0x20 if p.signature else 0) | 0x08
    return bytes([b1, b2, 0x00])


def terminal_type(online_only: bool) -> bytes:
    """9F35: attended, operated by the merchant; online only (21) or offline with online capability (22)."""
    return b"\x21" if online_only else b"\x22"


def terminal_data(p: KernelParams, tvr: bytes) -> dict[str, bytes]:
    """The terminal's data objects that a PDOL or CDOL may ask for, by tag."""
    out = {
        "9F66": ttq(p),
        "9F02": bcd(p.amount, 6),
        "9F03": bcd(0, 6),
        "9F1A": bcd(p.country_numeric, 2),
        "95": tvr,
        "5F2A": bcd(p.currency_numeric, 2),
        "9A": bcd(p.today.strftime("%y%m%d"), 3),
        "9C": bytes.fromhex(p.transaction_type),
        "9F37": p.unpredictable,
        "9F35": terminal_type(p.online_only),
        "9F33": capabilities(p),
    }
    if p.time_of_day is not None:
        out["9F21"] = bcd(p.time_of_day.strftime("%H%M%S"), 3)
    return out


def kernel_style(app: Application) -> str:
    """'visa' (qVSDC-like: the cryptogram comes with GPO and the records) or 'mastercard' (GENERATE AC), from
    the kernel identifier 9F2A (its first byte) or else the RID; CardNotSupported for any other kernel."""
    if app.kernel_id:
        style = KERNEL_IDS.get(app.kernel_id[0])
        if style is None:
            raise CardNotSupported(f"kernel {app.kernel_id.hex().upper()} is not supported")
        return style
    style = RIDS.get(app.aid[:10])
    if style is None:
        raise CardNotSupported(f"no contactless kernel for {app.aid[:10]}")
    return style


# --- What the card returned ----------------------------------------------------------------------------------


def card_result(card: dict[str, bytes]) -> tuple[str, str, int]:
    """(track 2, PAN, CID) once the card has given its cryptogram; CardError when mandatory data is missing
    or wrong, or the card declined offline (AAC). A TC still goes online: the terminal is online-only."""
    want(card, "57", "9F26", "9F27", "9F36", "9F10")
    track2 = track2_from_57(card["57"])
    pan = track2.partition("=")[0]
    if not luhn_valid(pan):
        raise CardError("card number fails the Luhn check")
    cid = card["9F27"][0]
    if cid & 0xC0 == CID_AAC:
        raise CardError("the card declined (AAC)", screen="DECLINED BY CARD")
    return track2, pan, cid


# --- Cardholder verification, as the contactless kernels choose it --------------------------------------------


def select_cvm(amount: int, cvm_limit: int, ctq: bytes, online_pin: bool = True, signature: bool = False) -> str:
    """Visa / UnionPay (C-3, C-7): the card's CTQ (9F6C) decides: 'online PIN required' (byte 1 bit 8) with a
    PIN pad, else the consumer device's CVM (byte 2 bit 8), else 'signature required' (byte 1 bit 7) where a
    signature can be taken. Without a usable CTQ: no CVM up to the CVM limit; above it online PIN (or a
    signature where there is no PIN pad)."""
    if len(ctq) >= 2:
        if ctq[0] & 0x80 and online_pin:
            return "online_pin"
        if ctq[1] & 0x80:
            return "cdcvm"
        if ctq[0] & 0x40 and signature:
            return "signature"
    if amount <= cvm_limit:
        return "none"
    if online_pin:
        return "online_pin"
    if signature:
        return "signature"
    raise CardError("the card needs a CVM this terminal cannot perform", screen="INSERT CARD")


def select_cvm_mastercard(p: KernelParams, card: dict[str, bytes]) -> tuple[str, bytes]:
    """Mastercard (C-2): no CVM up to the CVM limit; above it the consumer device's CVM when the AIP says the
    card supports on-device verification (82 byte 1 bit 2), else the card's CVM list (8E) with the methods a
    contactless reader performs (online PIN, signature; no offline PIN). 9F6C is not looked at: on
    Mastercard it is the magstripe application version. (method, CVM results 9F34)."""
    if p.amount <= p.cvm_limit:
        return "none", CVM_RESULTS["none"]
    aip = card.get("82", b"\x00\x00")
    if aip[0] & 0x02 and p.cdcvm:
        return "cdcvm", CVM_RESULTS["cdcvm"]
    supported = frozenset(m for m, ok in ((ONLINE_PIN, p.online_pin), (SIGNATURE, p.signature)) if ok)
    if "8E" in card:
        ctx = CvmContext(p.amount, p.currency_numeric, card.get("9F42"), p.transaction_type, supported)
        rule, _ = first_applicable(parse_cvm_list(card["8E"]), ctx)
        if rule is not None and rule.method in (ONLINE_PIN, SIGNATURE):
            return NAMES[rule.method], rule.code + b"\x00"
        raise CardError("no CVM of the card's list can be performed here", screen="INSERT CARD")
    name = "online_pin" if p.online_pin else "signature"
    return name, CVM_RESULTS[name]


def tsi(cvm: str) -> bytes:
    """Transaction status information (9B): risk management performed, and cardholder verification if any."""
    first = 0x08  # terminal risk management was performed
    if cvm != "none":
        first |= 0x40  # cardholder verification was performed
    return bytes([first, 0])


def icc_data(
    terminal: dict[str, bytes], card: dict[str, bytes], aid: str, extra: tuple[str, ...] = ()
) -> dict[str, str]:
    """Field 55: the ICC_TAGS (and `extra`) the card or the terminal has (the card's value where both do),
    hex; 84 is the selected AID."""
    icc = {**card, **terminal, "84": bytes.fromhex(aid)}  # a tag the terminal owns is never the card's to say
    return icc_fields(icc, ICC_TAGS + extra)


# --- The kernel ----------------------------------------------------------------------------------------------


def _select(p: KernelParams, tried: set[str]) -> Exchanges[Application]:
    candidates = yield from select_ppse()
    ok = [c for c in by_priority(supported_only(candidates, p.supported_aids)) if c.aid not in tried]
    if not ok:
        if tried:
            raise CardError("no application of the card accepts this transaction (GPO 6985)")
        raise CardNotSupported("no application this terminal supports")
    chosen: Candidate = ok[0]
    tried.add(chosen.aid)
    return (yield from final_select(chosen))


def contactless_transaction(p: KernelParams) -> Exchanges[ChipCard]:
    """The phases of one tap in the order this kernel runs them; the ChipCard's `apdus` is left to `kernel`."""
    tvr = flag(floor_limit_check(p.amount, p.floor_limit), ODA_NOT_PERFORMED)
    terminal = terminal_data(p, tvr)
    tried: set[str] = set()
    while True:
        app = yield from _select(p, tried)
        style = kernel_style(app)
        try:
            card = yield from initiate_application_processing(app.pdol, terminal)
            break
        except ConditionsNotSatisfied:
            continue  # Book B 3.3.3: the next application of the candidate list
    card = yield from read_application_data(card)
    tvr = processing_restrictions(tvr, card, p.today)
    if style == "visa":
        track2, pan, cid = card_result(card)
        cvm = select_cvm(p.amount, p.cvm_limit, card.get("9F6C", b""), p.online_pin, p.signature)
        # The TVR and the other terminal data went to the card in GPO and the ARQC covers them: field 55
        # carries what the card hashed; what the terminal found since decides here.
        terminal_action_analysis(tvr, p.tac_denial, card.get("9F0E", bytes(5)))
        extra: tuple[str, ...] = ("9F66",)
    else:
        cvm, cvm_results = select_cvm_mastercard(p, card)
        terminal_action_analysis(tvr, p.tac_denial, card.get("9F0E", bytes(5)))
        terminal = {**terminal, "95": tvr, "9F34": cvm_results, "9B": tsi(cvm)}
        cdol1 = card.get("8C")
        if cdol1 is None:
            raise CardError("no cryptogram after GPO and no CDOL1 to ask for one")
        got, _ = yield from generate_ac(CID_ARQC, build_dol(parse_dol(cdol1), {**card, **terminal}))
        card = {**card, **got}
        track2, pan, cid = card_result(card)
        extra = ()
    terminal = {"9F34": CVM_RESULTS[cvm], **terminal, "9B": tsi(cvm)}
    return ChipCard(
        pan=pan,
        track2=track2,
        psn=card.get("5F34", b"\x00").hex(),
        aid=app.aid,
        label=app.label,
        cvm=cvm,
        cid=cid,
        cryptogram=card["9F26"].hex().upper(),
        icc=icc_data(terminal, card, app.aid, extra),
        kernel=style,
        name=card.get("5F20", b"").decode("ascii", "replace").strip(),
    )


def first_generate_ac(card: dict[str, bytes], terminal: dict[str, bytes]) -> Exchanges[dict[str, bytes]]:
    """GENERATE AC asking for an ARQC, CDOL1 filled from the card's data and the terminal's (the card's where
    both have a tag); the card's data with what the answer says, which overrides what it said before."""
    cdol1 = card.get("8C")
    if cdol1 is None:
        raise CardError("no cryptogram after GPO and no CDOL1 to ask for one")
    got, _ = yield from generate_ac(CID_ARQC, build_dol(parse_dol(cdol1), {**card, **terminal}))
    return {**card, **got}


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
