"""EMV application selection: the PPSE (contactless, Book B), the PSE directory and the list of AIDs (contact, Book 1
section 12), the terminal's choice by priority, and the final SELECT."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from firmware.core.emv.data import (
    SW_NOT_FOUND,
    SW_OK,
    CardError,
    CardNotSupported,
    Exchanges,
    check,
    command,
    exchange,
    parse_dol,
    tlv,
    tlv_items,
)

PPSE = b"2PAY.SYS.DDF01"
PSE = b"1PAY.SYS.DDF01"
SW_BLOCKED = b"\x62\x83"  # selected file (application) invalidated
SW_CARD_BLOCKED = b"\x6a\x81"  # function not supported: on SELECT PSE, the card is blocked (Book 1 12.3.2)


class Candidate(NamedTuple):
    """One application of a directory (PPSE or PSE) or found by SELECT, as the card lists it."""

    aid: str  # hex, upper case
    label: bytes | None  # application label (50), if the directory gives one
    priority: int  # application priority indicator (87), low nibble: 1 highest, 0 none given
    confirm: bool = False  # 87 bit 8: "cannot be selected without confirmation of the cardholder"
    kernel_id: bytes = b""  # kernel identifier (9F2A), contactless directories only
    preferred_name: bytes | None = None  # application preferred name (9F12)


@dataclass(frozen=True)
class Application:
    """The selected application: what its FCI says that the later phases need."""

    aid: str  # hex, upper case (the DF name the card answered with)
    label: str  # from the FCI, else the directory; "" when neither has one
    pdol: list[tuple[str, int]]  # (tag, length) pairs; empty when the card asks for none
    fci: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)
    kernel_id: bytes = field(default=b"", compare=False)  # from the directory entry (9F2A)


def _entry(fields: dict[str, bytes]) -> Candidate | None:
    if not fields.get("4F"):
        return None
    prio = fields.get("87", b"")
    return Candidate(
        fields["4F"].hex().upper(),
        fields.get("50"),
        prio[0] & 0x0F if prio else 0,
        bool(prio and prio[0] & 0x80),
        fields.get("9F2A", b""),
        fields.get("9F12"),
    )


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
        if tag == "61":
            found = _entry(dict(tlv_items(entry)))
            if found:
                out.append(found)
    return out


def supported_only(candidates: list[Candidate], supported: tuple[str, ...]) -> list[Candidate]:
    """The candidates whose AID starts with one the terminal supports (partial selection), the card's order."""
    return [c for c in candidates if any(c.aid.startswith(s.upper()) for s in supported)]


def by_priority(candidates: list[Candidate]) -> list[Candidate]:
    """Highest priority first (1 highest; 0, none given, counts as lowest), the card's order among equals."""
    return sorted(candidates, key=lambda c: (c.priority or 15, candidates.index(c)))


def choose_application(candidates: list[Candidate], supported: tuple[str, ...]) -> Candidate:
    """The supported application with the highest priority (lowest number; 0 means none given), the card's
    first among equals; CardNotSupported when the terminal supports none of them."""
    ok = supported_only(candidates, supported)
    if not ok:
        raise CardNotSupported("no application this terminal supports")
    return by_priority(ok)[0]


def needs_cardholder(candidates: list[Candidate]) -> bool:
    """Whether the cardholder must choose or confirm (Book 1 12.4): several mutually supported applications
    of which the card marks one as needing confirmation, or a single one so marked."""
    return any(c.confirm for c in candidates)


def display_name(c: Candidate) -> str:
    """What the cardholder sees for an application: its label, else its AID."""
    raw = c.label or b""
    text = raw.decode("ascii", "replace").strip()
    return text or c.aid


def application_from_fci(chosen: Candidate, fci: dict[str, bytes]) -> Application:
    """The selected application from its FCI (decoded): label (the FCI's, else the directory's) and PDOL."""
    raw_label = fci.get("50") or chosen.label or b""
    pdol = parse_dol(fci["9F38"]) if "9F38" in fci else []
    name = fci.get("84")
    aid = name.hex().upper() if name and 5 <= len(name) <= 16 else chosen.aid
    return Application(aid, raw_label.decode("ascii", "replace").strip(), pdol, fci, chosen.kernel_id)


def select_ppse() -> Exchanges[list[Candidate]]:
    """SELECT the proximity payment system environment: the directory of payment applications."""
    data, sw = yield from exchange(command(0x00, 0xA4, 0x04, 0x00, PPSE))
    if sw == SW_NOT_FOUND:
        raise CardNotSupported("no payment system environment (not a payment card)")
    check(sw, "SELECT PPSE")
    return ppse_candidates(data)


def final_select(chosen: Candidate) -> Exchanges[Application]:
    """SELECT the chosen application by its AID."""
    data, sw = yield from exchange(command(0x00, 0xA4, 0x04, 0x00, bytes.fromhex(chosen.aid)))
    check(sw, "SELECT AID")
    return application_from_fci(chosen, tlv(data))


def select_application(supported: tuple[str, ...]) -> Exchanges[Application]:
    """Application selection over the PPSE: the directory, the terminal's choice, the final SELECT."""
    candidates = yield from select_ppse()
    return (yield from final_select(choose_application(candidates, supported)))


# --- Contact: the PSE directory, else the terminal's list of AIDs (Book 1 12.3) ------------------------------


def pse_sfi(fci: bytes) -> int:
    """The directory's short file identifier (88) from a PSE answer; CardError when it has none."""
    try:
        body = dict(tlv_items(dict(tlv_items(fci))["6F"]))
        sfi = dict(tlv_items(body["A5"]))["88"]
    except KeyError:
        raise CardError("PSE answer has no directory SFI") from None
    if len(sfi) != 1 or not 1 <= sfi[0] <= 30:
        raise CardError("PSE directory SFI is malformed")
    return sfi[0]


def directory_record_candidates(record: bytes) -> list[Candidate]:
    """The ADF entries (61 with 4F) of one PSE directory record (70); DDF entries (9D) are not followed."""
    items = dict(tlv_items(record))
    if "70" not in items:
        raise CardError("PSE directory record is not a 70 template")
    out = []
    for tag, entry in tlv_items(items["70"]):
        if tag == "61":
            found = _entry(dict(tlv_items(entry)))
            if found:
                out.append(found)
    return out


def pse_candidates() -> Exchanges[list[Candidate] | None]:
    """The applications the PSE directory lists, or None when the card has no usable PSE (then the terminal
    tries its own list of AIDs); CardNotSupported when SELECT PSE says the card is blocked."""
    data, sw = yield from exchange(command(0x00, 0xA4, 0x04, 0x00, PSE))
    if sw == SW_CARD_BLOCKED:
        raise CardNotSupported("the card is blocked (SELECT PSE answered 6A81)")
    if sw != SW_OK:
        return None
    try:
        sfi = pse_sfi(data)
    except CardError:
        return None
    out: list[Candidate] = []
    for record in range(1, 17):
        body, sw = yield from exchange(command(0x00, 0xB2, record, (sfi << 3) | 4))
        if sw == b"\x6a\x83":  # record not found: the end of the directory
            break
        if sw != SW_OK:
            return None
        try:
            out += directory_record_candidates(body)
        except CardError:
            return None
    return out


def aid_list_candidates(supported: tuple[str, ...]) -> Exchanges[list[Candidate]]:
    """Book 1 12.3.3: SELECT each of the terminal's AIDs; a card with several applications under one AID
    (partial name match) is asked for the next occurrence (P2 = 02) until it has none. A blocked application
    (6283) is not a candidate."""
    out: list[Candidate] = []
    for aid in supported:
        p2 = 0x00
        for _ in range(8):
            data, sw = yield from exchange(command(0x00, 0xA4, 0x04, p2, bytes.fromhex(aid)))
            if sw not in (SW_OK, SW_BLOCKED):
                break
            fci = tlv(data)
            name = fci.get("84", b"").hex().upper()
            if sw == SW_OK and name.startswith(aid.upper()) and len(name) >= 10:
                prio = fci.get("87", b"")
                label = fci.get("50")
                out.append(Candidate(name, label, prio[0] & 0x0F if prio else 0, bool(prio and prio[0] & 0x80)))
            if name == aid.upper():
                break  # an exact match has no next occurrence
            p2 = 0x02
    return out
