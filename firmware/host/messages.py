"""Mapping between typed authorization requests/responses and ISO 8583 message dicts (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from firmware.core.events import AuthResponse
from firmware.core.pan import mask
from firmware.core.reports import BatchTotals
from firmware.errors import AnswerMismatch, CodecError, PartialApproval, StaleAnswer

POS_ENTRY_MAGSTRIPE_PIN = "021"  # 02 = magnetic stripe read, 1 = terminal can accept PINs
POS_ENTRY_CONTACTLESS = "071"  # 07 = contactless chip (EMV), 1 = terminal can accept PINs
POS_ENTRY_CHIP = "051"  # 05 = integrated circuit card (EMV contact), 1 = terminal can accept PINs
POS_ENTRY_FALLBACK = "801"  # 80 = magnetic stripe as fallback after a failed chip read, 1 = PIN capable
POS_ENTRY_CODE = "031"  # 03 = bar code reader (ISO 8583:1987): a customer's scanned payment code, 1 = PIN capable
# Field 22 of a sale by the journal's entry mode.
ENTRY_CODES = {
    "swipe": POS_ENTRY_MAGSTRIPE_PIN,
    "fallback": POS_ENTRY_FALLBACK,
    "chip": POS_ENTRY_CHIP,
    "contactless": POS_ENTRY_CONTACTLESS,
    "code": POS_ENTRY_CODE,
}


@dataclass(frozen=True)
class SaleRequest:
    """What the terminal asks the acquirer: one 0200 financial request, with a card's track 2 (field 35) or, for
    a payment code taken in place of a card, the code as the PAN (field 2) and no track."""

    stan: int
    amount: int  # minor units
    currency_numeric: str  # ISO 4217 numeric, e.g. "156"
    pin_block: str = field(repr=False)  # "" when no PIN was entered (contactless under the CVM limit)
    ksn: str
    terminal_id: str
    merchant_id: str
    local_time: datetime  # terminal's wall clock, for fields 12/13
    utc_time: datetime  # for field 7
    track2: str = field(default="", repr=False)
    pan: str = field(default="", repr=False)  # field 2: only for a payment code (a card's PAN is in its track)
    entry_mode: str = POS_ENTRY_MAGSTRIPE_PIN
    processing_code: str = "000000"
    icc_data: str = ""  # field 55: BER-TLV of the chip data, as hex


def _header(
    stan: int, local: datetime, utc: datetime, terminal_id: str, merchant_id: str, currency_numeric: str
) -> dict[str, str]:
    """The fields every request carries: times (7, 12, 13), trace (11), terminal and merchant (41, 42),
    currency (49)."""
    return {
        "7": utc.strftime("%m%d%H%M%S"),
        "11": f"{stan:06d}",
        "12": local.strftime("%H%M%S"),
        "13": local.strftime("%m%d"),
        "41": terminal_id.ljust(8)[:8],
        "42": merchant_id.ljust(15)[:15],
        "49": currency_numeric,
    }


FIELD_55_MAX = 255  # bytes of chip data field 55 holds (LLLVAR)


def fits_field_55(icc_hex_data: str) -> bool:
    """True when BER-TLV hex fits ISO 8583 field 55."""
    return len(icc_hex_data) // 2 <= FIELD_55_MAX


def icc_hex(icc: dict[str, str]) -> str:
    """Field 55: the chip data objects as BER-TLV, in hex."""
    out = ""
    for tag, value in icc.items():
        n = len(value) // 2
        length = f"{n:02X}" if n < 0x80 else f"81{n:02X}" if n < 0x100 else f"82{n:04X}"  # BER: 1, 2 or 3 bytes
        out += tag + length + value
    return out


def sale_to_iso(req: SaleRequest) -> dict[str, str]:
    """The 0200 message dict for a sale request."""
    if not 0 < req.amount < 10**12:
        raise CodecError(f"amount {req.amount} does not fit field 4")
    if bool(req.track2) == bool(req.pan):
        raise CodecError("a sale carries a card's track 2 or a payment code as its PAN, one of them")
    return {
        "t": "0200",
        **({"2": req.pan} if req.pan else {}),
        "3": req.processing_code,
        "4": f"{req.amount:012d}",
        **_header(req.stan, req.local_time, req.utc_time, req.terminal_id, req.merchant_id, req.currency_numeric),
        "22": req.entry_mode,
        **({"35": req.track2} if req.track2 else {}),
        **({"52": req.pin_block} if req.pin_block else {}),
        **({"53": req.ksn} if req.pin_block and req.ksn else {}),  # no KSN: the session PIN key
        **({"55": req.icc_data} if req.icc_data else {}),
    }


def _checked(doc: dict[str, str], mti: str) -> tuple[int, str]:
    """STAN and response code of an answer with the expected MTI; CodecError on anything off."""
    if doc.get("t") != mti:
        raise CodecError(f"expected a {mti} response, got MTI {doc.get('t')!r}")
    for f in ("11", "39"):
        if f not in doc:
            raise CodecError(f"response lacks field {f}")
    rc = doc["39"]
    if len(rc) != 2 or not rc.isalnum():
        raise CodecError(f"response code {rc!r} is not two alphanumerics")
    if not doc["11"].isdigit():
        raise CodecError("response field 11 is not numeric")
    return int(doc["11"]), rc


# The answer MTI of each request MTI, and the fields an answer must carry back unchanged.
ANSWER_MTI = {"0200": "0210", "0400": "0410", "0401": "0410", "0500": "0510", "0800": "0810"}
ECHOED = {
    "0200": ("2", "3", "4", "41", "42", "49"),  # 2: a payment code sent as the PAN comes back as sent
    "0400": ("3", "4", "41", "42", "49"),
    "0401": ("3", "4", "41", "42", "49"),
    "0500": ("3", "41", "42", "49", "60"),
    "0800": ("41", "42", "70"),
}
PARTIAL_APPROVAL = "10"
APPROVED = ("00", "11")  # what AuthResponse.approved counts as an approval


def _shown(field: str, value: str, other: str) -> str:
    """A field's value as an error message may say it: a PAN (field 2) masked, first 6 / last 4 — with its
    length, and a note when the masks of two different numbers read the same."""
    if field != "2":
        return value
    hidden = " (differs in the hidden digits)" if value != other and mask(value) == mask(other) else ""
    return f"{mask(value)}, {len(value)} digits{hidden}"


def bind(request: dict[str, str], answer: dict[str, str]) -> dict[str, str]:
    """`answer` when it answers `request`: the request's answer MTI, its STAN, and its amount, currency,
    processing code, terminal and merchant ids (and a payment code's PAN) echoed unchanged (a missing field is a
    changed one).

    StaleAnswer when the MTI or STAN is another's (a late or replayed answer: discard it and keep waiting);
    AnswerMismatch when the STAN is ours but the content is not (never an approval: the outcome is unknown);
    PartialApproval for response code 10 (approved for less than asked).
    """
    mti = request.get("t", "")
    expected = ANSWER_MTI.get(mti)
    if expected is None:
        raise CodecError(f"no answer is defined for a {mti!r} request")
    if answer.get("t") != expected or answer.get("11") != request.get("11"):
        raise StaleAnswer(
            f"a {answer.get('t')!r} answer for stan {answer.get('11')!r} does not answer the "
            f"{mti} stan {request.get('11')}"
        )
    if mti == "0200" and answer.get("39") == PARTIAL_APPROVAL:
        raise PartialApproval(
            f"stan {request['11']}: partial approval of {answer.get('4', '?')} for "
            f"{request.get('4')} asked (response 10)"
        )
    changed = [f for f in ECHOED[mti] if f in request and answer.get(f) != request[f]]
    if changed:
        detail = ", ".join(
            f"field {f} {_shown(f, answer[f], request[f]) if f in answer else 'missing'!r}"
            f" for {_shown(f, request[f], answer.get(f, ''))!r}"
            for f in changed
        )
        raise AnswerMismatch(f"{expected} for stan {request['11']} does not match the request: {detail}")
    return answer


def _text(doc: dict[str, str], field: str) -> str:
    """An answer's text field as the terminal keeps it: padding (spaces, NULs) off; CodecError for a control
    character inside, which no alphanumeric field holds (and no receipt, journal or back office should get)."""
    value = doc.get(field, "").strip(" \x00")
    if not value.isprintable():
        raise CodecError(f"field {field} of the answer holds control characters")
    return value


def iso_to_response(doc: dict[str, str]) -> AuthResponse:
    """Validate a decoded 0210 and turn it into an AuthResponse; CodecError on anything off."""
    stan, rc = _checked(doc, "0210")
    auth_code, rrn = _text(doc, "38"), _text(doc, "37")
    if rc in APPROVED and not auth_code:
        raise CodecError("approval without an authorization code (field 38)")
    icc = doc.get("55", "").strip()
    if icc and (len(icc) % 2 or any(c not in "0123456789abcdefABCDEF" for c in icc)):
        raise CodecError("field 55 of the answer is not hex-encoded BER-TLV")
    return AuthResponse(
        stan=stan,
        response_code=rc,
        auth_code=auth_code,
        rrn=rrn,
        terminal_id=doc.get("41", "").strip(),
        icc=icc,
    )


@dataclass(frozen=True)
class ReversalRequest:
    """A 0400 (0401 when repeated) cancelling a sale whose outcome the terminal does not know."""

    stan: int
    amount: int
    currency_numeric: str
    terminal_id: str
    merchant_id: str
    original_stan: int
    original_transmitted_at: str  # field 7 of the original request, MMDDhhmmss
    local_time: datetime
    utc_time: datetime
    repeat: bool = False
    processing_code: str = "000000"
    icc_data: str = ""  # field 55 of a chip sale's reversal: what the card said (TVR, IAD, ATC...), BER-TLV hex


def original_data_elements(mti: str, stan: int, transmitted_at: str) -> str:
    """Field 90: original MTI, STAN, transmission date/time, then acquirer and forwarder ids (zeros)."""
    return f"{mti}{stan:06d}{(transmitted_at or '0' * 10):0>10}" + "0" * 22


def reversal_to_iso(req: ReversalRequest) -> dict[str, str]:
    """The 0400/0401 message dict for a reversal."""
    return {
        "t": "0401" if req.repeat else "0400",
        "3": req.processing_code,
        "4": f"{req.amount:012d}",
        **_header(req.stan, req.local_time, req.utc_time, req.terminal_id, req.merchant_id, req.currency_numeric),
        **({"55": req.icc_data} if req.icc_data else {}),
        "90": original_data_elements("0200", req.original_stan, req.original_transmitted_at),
    }


def iso_to_reversal_ack(doc: dict[str, str]) -> tuple[int, str]:
    """STAN and response code of a 0410 (core/drain.py says which codes end the retries)."""
    return _checked(doc, "0410")


FOLLOW_UP_PROCESSING = {"void": "020000", "refund": "200000"}
POS_ENTRY_NO_CARD = "010"  # 01 = manual/no card present, 0 = no PIN


@dataclass(frozen=True)
class FollowUpRequest:
    """A void (processing code 02) or refund (20) of an earlier sale, as a 0200 without card data.

    The host finds the account from the original's RRN and authorization code; field 48 carries the
    idempotency key, so a retry after a lost answer cannot void or refund twice.
    """

    kind: str
    stan: int
    amount: int
    currency_numeric: str
    terminal_id: str
    merchant_id: str
    original_stan: int
    original_transmitted_at: str
    original_rrn: str
    original_auth_code: str
    idem_key: str
    local_time: datetime
    utc_time: datetime


def follow_up_to_iso(req: FollowUpRequest) -> dict[str, str]:
    """The 0200 message dict for a void or refund."""
    if req.kind not in FOLLOW_UP_PROCESSING:
        raise CodecError(f"not a follow-up kind: {req.kind!r}")
    if not 0 < req.amount < 10**12:
        raise CodecError(f"amount {req.amount} does not fit field 4")
    return {
        "t": "0200",
        "3": FOLLOW_UP_PROCESSING[req.kind],
        "4": f"{req.amount:012d}",
        **_header(req.stan, req.local_time, req.utc_time, req.terminal_id, req.merchant_id, req.currency_numeric),
        "22": POS_ENTRY_NO_CARD,
        "37": req.original_rrn.rjust(12, "0")[:12],
        "38": req.original_auth_code.rjust(6, "0")[:6],
        "48": req.idem_key,
        "90": original_data_elements("0200", req.original_stan, req.original_transmitted_at),
    }


@dataclass(frozen=True)
class SettlementRequest:
    """A 0500 reconciliation request closing batch `batch` with the terminal's totals."""

    stan: int
    batch: int
    totals: BatchTotals
    currency_numeric: str
    terminal_id: str
    merchant_id: str
    local_time: datetime
    utc_time: datetime


def settlement_to_iso(req: SettlementRequest) -> dict[str, str]:
    """The 0500 message dict (fields 74/76 counts, 86/88 amounts, 97 net with its C/D sign, 60 batch)."""
    t = req.totals
    return {
        "t": "0500",
        "3": "920000",
        **_header(req.stan, req.local_time, req.utc_time, req.terminal_id, req.merchant_id, req.currency_numeric),
        "60": f"{req.batch:06d}",
        "74": f"{t.credits:010d}",
        "76": f"{t.debits:010d}",
        "86": f"{t.credit_amount:016d}",
        "88": f"{t.debit_amount:016d}",
        "97": ("D" if t.net >= 0 else "C") + f"{abs(t.net):016d}",
    }


def iso_to_settlement(doc: dict[str, str]) -> tuple[int, str, BatchTotals | None]:
    """(STAN, response code, the host's totals when it sent them) from a 0510."""
    stan, rc = _checked(doc, "0510")
    try:
        host = BatchTotals(int(doc["76"]), int(doc["88"]), int(doc["74"]), int(doc["86"])) if "88" in doc else None
    except (KeyError, ValueError):
        raise CodecError("0510 totals are not numeric") from None
    return stan, rc, host


NMI_SIGN_ON = "001"


def signon_to_iso(stan: int, terminal_id: str, merchant_id: str, local: datetime, utc: datetime) -> dict[str, str]:
    """0800 sign-on (network management code 001 in field 70): asks the host for fresh working keys."""
    doc = {k: v for k, v in _header(stan, local, utc, terminal_id, merchant_id, "").items() if k != "49"}
    doc.update({"t": "0800", "70": NMI_SIGN_ON})
    return doc


def iso_to_signon(doc: dict[str, str]) -> tuple[int, str, str]:
    """STAN, response code and key block (field 62) of an 0810; CodecError on anything off."""
    stan, rc = _checked(doc, "0810")
    if rc == "00" and not doc.get("62"):
        raise CodecError("sign-on approved without working keys (field 62)")
    return stan, rc, doc.get("62", "")
