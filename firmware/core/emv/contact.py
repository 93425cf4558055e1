"""The EMV contact kernel (pure, Book 3 section 10): a generator that yields C-APDUs and the requests below, and returns
the transaction's outcome.

The shell drives it as it drives the contactless kernel, with four more kinds of thing it may yield:
  bytes                 a command APDU; send the card's response (data + SW1 SW2, bytes)
  ChooseApplication     the cardholder picks one of `options` (keypad digit); send 1..n, or None to cancel
  OfflinePin            the cardholder enters the PIN the card checks; send the digits, "" to bypass
                        (ENTER on an empty prompt), None to cancel
  OnlinePin             the cardholder enters a PIN for the issuer; the flow keeps the PIN block itself and
                        sends True (entered), False (bypassed), None (cancelled)
  GoOnline              authorize `card` (a ChipCard: PAN, track 2, field 55); send an OnlineAnswer with the
                        host's response code and field 55 (91, 71, 72), or None when the host was not reached
It returns a ChipOutcome (approved or not, the final cryptogram, TVR, TSI, CVM, script results, the field 55
for an advice or a reversal) or raises CardError when the card could not be used (nothing to journal but the
failure). Time, randomness, PINs and CA keys come in as data.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from datetime import time as clock_time

from firmware.core.cardface import CardFace
from firmware.core.emv import cvm as cv
from firmware.core.emv.contactless import ChipCard
from firmware.core.emv.data import (
    Cancelled,
    CardError,
    CardNotSupported,
    Steps,
    bcd,
    build_dol,
    command,
    dol_tags,
    exchange,
    pan_from_5a,
    parse_dol,
    tlv_items,
    track2_from_57,
    want,
)
from firmware.core.emv.oda import (
    CaKey,
    OdaError,
    PublicKey,
    cda_hashed_answer,
    ddol_data,
    encipher_pin,
    find_ca_key,
    internal_authenticate_sdad,
    recover_icc_key,
    recover_issuer_key,
    static_data,
    verify_cda,
    verify_dda,
    verify_sda,
)
from firmware.core.emv.phases import (
    ADVICE_TAGS,
    CDA_FAILED,
    CID_AAC,
    CID_ARQC,
    CID_NAMES,
    CID_TC,
    CVM_FAILED,
    DDA_FAILED,
    ICC_DATA_MISSING,
    ISSUER_AUTH_FAILED,
    NO_PINPAD,
    ODA_NOT_PERFORMED,
    ONLINE_PIN_ENTERED,
    ONLINE_TAGS,
    PIN_NOT_ENTERED,
    PIN_TRY_LIMIT,
    RANDOM_ONLINE,
    REVERSAL_TAGS,
    SCRIPT_FAILED_AFTER,
    SCRIPT_FAILED_BEFORE,
    SDA_FAILED,
    SDA_SELECTED,
    TSI_CARD_RISK,
    TSI_CVM,
    TSI_ISSUER_AUTH,
    TSI_ODA,
    TSI_SCRIPTS,
    TSI_TERMINAL_RISK,
    UNRECOGNISED_CVM,
    ConditionsNotSatisfied,
    action_codes,
    cid_type,
    default_action,
    flag,
    floor_limit_check,
    generate_ac,
    get_data,
    icc_fields,
    initiate_application_processing,
    pdol_data,
    processing_restrictions,
    randomly_selected,
    read_records,
    requested_cryptogram,
    velocity,
)
from firmware.core.emv.select import (
    Candidate,
    aid_list_candidates,
    by_priority,
    display_name,
    final_select,
    needs_cardholder,
    pse_candidates,
    supported_only,
)
from firmware.core.pan import luhn_valid, mask

APPROVAL_CODES = ("00", "10", "11")  # approved, partial (refused later by the flow), approved (VIP)
AC_ANSWER_TAGS = frozenset({"9F27", "9F36", "9F26", "9F10", "9F4B"})  # what a GENERATE AC answer may set
UNIONPAY_RID = "A000000333"


# --- What the kernel asks of the flow, and what it returns -----------------------------------------------------


@dataclass(frozen=True)
class ChooseApplication:
    """The cardholder chooses (or, with one option, confirms) an application: answer 1..n or None."""

    options: tuple[str, ...]


@dataclass(frozen=True)
class OfflinePin:
    """The card will check a PIN: answer its digits, "" to bypass, None to cancel."""

    enciphered: bool
    tries_left: int | None  # from the PIN try counter (9F17), when the card gives it
    retry: bool = False  # the PIN before was wrong
    face: CardFace | None = None  # what the PIN screen shows of the card


@dataclass(frozen=True)
class OnlinePin:
    """The issuer will check a PIN: the flow takes it (and its PIN block, bound to `pan`); answer True, False
    (bypass) or None."""

    pan: str = field(default="", repr=False)
    face: CardFace | None = None  # what the PIN screen shows of the card


@dataclass(frozen=True)
class GoOnline:
    """Authorize `card` online (field 55 in card.icc); answer an OnlineAnswer, or None when the host was not
    reached."""

    card: ChipCard


@dataclass(frozen=True)
class OnlineAnswer:
    """The host's answer as the kernel needs it: the response code (field 39) and the ICC data (field 55)."""

    response_code: str
    icc: bytes = b""


@dataclass(frozen=True)
class ChipOutcome:
    """The end of a contact transaction, for the journal, the receipt and any advice or reversal."""

    approved: bool
    cryptogram_type: str  # "TC" | "AAC": what the card's last GENERATE AC gave (or the terminal decided)
    cryptogram: str  # hex
    arc: str  # 8A: the host's response code, or Y1/Z1 (offline), Y3/Z3 (host not reached)
    online: bool  # an authorization was sent (GoOnline answered)
    reversal: bool  # the host approved but the card declined: reverse the authorization
    card: ChipCard  # as sent online (or as it would have been)
    tvr: str
    tsi: str
    cvm: str  # cvm.NAMES value of the method performed
    cvm_results: str  # 9F34 hex
    signature: bool  # the receipt needs the cardholder's signature
    oda: str  # "sda" | "dda" | "cda" | "none"
    scripts: tuple[str, ...]  # issuer script results, 5 bytes hex each (9F5B / DF31)
    icc: dict[str, str] = field(repr=False)  # field 55 of an advice or a reversal
    reason: str = ""
    apdus: int = 0


@dataclass(frozen=True)
class ContactParams:
    """What the terminal brings to a contact transaction (from config and the flow); randomness and time too."""

    amount: int  # minor units
    currency_numeric: str
    country_numeric: str
    today: date
    unpredictable: bytes  # 4 random bytes
    supported_aids: tuple[str, ...]
    ca_keys: tuple[CaKey, ...] = ()
    random_number: int = 99  # 1..99, for random transaction selection
    pin_padding: bytes = field(default=b"", repr=False)  # random bytes (>= 248) for enciphered PIN
    time_of_day: clock_time | None = None
    transaction_type: str = "00"
    floor_limit: int = 0
    random_threshold: int = 0
    random_target: int = 0  # percent
    random_max_target: int = 0
    tac_denial: str = "0010000000"
    tac_online: str = "DC4004F800"
    tac_default: str = "DC4000A800"
    online_only: bool = True
    offline_pin: bool = True
    online_pin: bool = True
    signature: bool = True
    no_cvm: bool = True
    oda_methods: tuple[str, ...] = ("sda", "dda", "cda")
    app_versions: tuple[tuple[str, str], ...] = ()  # (AID prefix, terminal application version 9F09 hex)
    ifd_serial: str = ""  # 9F1E, 8 characters
    sequence: int = 0  # transaction sequence counter 9F41


def capabilities(p: ContactParams) -> bytes:
    """Terminal capabilities (9F33, Book 4 Annex A2) from what the terminal is configured to do."""
    b2 = (
        (0x80 if p.offline_pin else 0)
        | (0x40 if p.online_pin else 0)
        | (0x20 if p.signature else 0)
        | (0x10 if p.offline_pin else 0)
        | (0x08 if p.no_cvm else 0)
    )
    b3 = (0x80 if "sda" in p.oda_methods else 0) | (0x40 if "dda" in p.oda_methods else 0)
    b3 |= 0x08 if "cda" in p.oda_methods else 0
    return bytes([0xE0, b2, b3])


def supported_cvms(p: ContactParams) -> frozenset[int]:
    """The CVM method codes this terminal performs."""
    pairs = (
        (cv.PLAIN_PIN, p.offline_pin),
        (cv.ENC_PIN, p.offline_pin),
        (cv.ONLINE_PIN, p.online_pin),
        (cv.SIGNATURE, p.signature),
        (cv.NO_CVM, p.no_cvm),
    )
    return frozenset(m for m, ok in pairs if ok)


def terminal_version(p: ContactParams, aid: str) -> bytes:
    """The terminal's application version number (9F09) for an AID, when configured."""
    for prefix, version in p.app_versions:
        if aid.startswith(prefix.upper()):
            return bytes.fromhex(version)
    return b""


def terminal_data(p: ContactParams, aid: str) -> dict[str, bytes]:
    """The terminal's data objects a PDOL, CDOL or DDOL may ask for (TVR, TSI and 9F34 are added as they are
    known)."""
    out = {
        "9F02": bcd(p.amount, 6),
        "9F03": bcd(0, 6),
        "9F1A": bcd(p.country_numeric, 2),
        "5F2A": bcd(p.currency_numeric, 2),
        "9A": bcd(p.today.strftime("%y%m%d"), 3),
        "9C": bytes.fromhex(p.transaction_type),
        "9F37": p.unpredictable,
        "9F35": b"\x21" if p.online_only else b"\x22",
        "9F33": capabilities(p),
        "9F40": bytes.fromhex("6000F0A001"),  # additional capabilities: goods, services; keys; printer, display
        "95": bytes(5),
        "9B": bytes(2),
        "9F34": bytes([cv.NO_CVM_PERFORMED, 0, 0]),
        "9F41": bcd(p.sequence, 4),
    }
    if p.time_of_day is not None:
        out["9F21"] = bcd(p.time_of_day.strftime("%H%M%S"), 3)
    if p.ifd_serial:
        out["9F1E"] = p.ifd_serial.encode("ascii", "replace")[:8].ljust(8)
    version = terminal_version(p, aid)
    if version:
        out["9F09"] = version
    return out


@dataclass
class _Run:
    """The transaction's working data while the kernel runs (local to one run, never shared)."""

    p: ContactParams
    aid: str
    label: str
    terminal: dict[str, bytes]
    card: dict[str, bytes]
    pan: str = ""
    static: bytes | None = b""
    oda: str = "none"
    issuer_key: PublicKey | None = None
    icc_key: PublicKey | None = None
    cda: bool = False  # CDA is to be asked for in GENERATE AC
    hashed: bytes = b""  # PDOL + CDOL data so far, for CDA's transaction data hash code
    cvm: str = "not_performed"
    signature: bool = False

    @property
    def tvr(self) -> bytes:
        return self.terminal["95"]

    def set(self, bit: tuple[int, int]) -> None:
        """Set a TVR bit."""
        self.terminal["95"] = flag(self.terminal["95"], bit)

    def status(self, bit: tuple[int, int]) -> None:
        """Set a TSI bit."""
        self.terminal["9B"] = flag(self.terminal["9B"], bit)

    def dol(self, tag: str) -> bytes:
        """A card DOL (8C, 8D) filled from the terminal's data and the card's."""
        return build_dol(parse_dol(self.card.get(tag, b"")), {**self.card, **self.terminal})


# --- Application selection (Book 1 12) --------------------------------------------------------------------------


def _choose(candidates: list[Candidate]) -> Steps[Candidate]:
    """The terminal's choice by priority, or the cardholder's when the card asks for it."""
    if not needs_cardholder(candidates):
        return candidates[0]
    options = tuple(display_name(c) for c in candidates)
    while True:
        answer = yield ChooseApplication(options)
        if answer is None:
            raise Cancelled("the cardholder cancelled the application choice")
        if isinstance(answer, int) and 1 <= answer <= len(candidates):
            return candidates[answer - 1]


def _select_and_start(p: ContactParams) -> Steps[_Run]:
    """Candidate list (PSE, else the terminal's AIDs), choice, final SELECT and GPO; an application that
    refuses (SELECT fails, GPO 6985) is taken off the list and the choice made again (Book 3 10.1)."""
    listed = yield from pse_candidates()
    candidates = supported_only(listed or [], p.supported_aids)
    if not candidates:
        candidates = yield from aid_list_candidates(p.supported_aids)
    candidates = by_priority(supported_only(candidates, p.supported_aids))
    while candidates:
        chosen = yield from _choose(candidates)
        candidates = [c for c in candidates if c is not chosen]
        try:
            app = yield from final_select(chosen)
        except CardError:
            continue
        terminal = terminal_data(p, app.aid)
        try:
            card = yield from initiate_application_processing(app.pdol, terminal)
        except ConditionsNotSatisfied:
            continue
        run = _Run(p, app.aid, app.label, terminal, card)
        run.hashed = pdol_data(app.pdol, terminal)
        return run
    raise CardNotSupported("no application of the card can be used here")


# --- Offline data authentication (Book 3 10.3, Book 2) -----------------------------------------------------------


def _oda_method(run: _Run) -> str:
    aip, methods = run.card["82"][0], run.p.oda_methods
    if aip & 0x01 and "cda" in methods:
        return "cda"
    if aip & 0x20 and "dda" in methods:
        return "dda"
    if aip & 0x40 and "sda" in methods:
        return "sda"
    return "none"


def _offline_data_authentication(run: _Run) -> Steps[None]:
    """SDA or DDA now; for CDA the keys now and the signature with GENERATE AC. A failure sets its TVR bit."""
    run.oda = _oda_method(run)
    if run.oda == "none":
        run.set(ODA_NOT_PERFORMED)
        return
    failed = {"sda": SDA_FAILED, "dda": DDA_FAILED, "cda": CDA_FAILED}[run.oda]
    if run.oda == "sda":
        run.set(SDA_SELECTED)
    try:
        ca = find_ca_key(run.p.ca_keys, run.aid, run.card.get("8F"), run.p.today)
        run.issuer_key = recover_issuer_key(run.card, ca, run.pan, run.p.today)
        static = static_data(run.static, run.card)
        if run.oda == "sda":
            run.card["9F45"] = verify_sda(run.card, run.issuer_key, static)
        else:
            c = run.card
            run.icc_key = recover_icc_key(
                c.get("9F46"), c.get("9F47"), c.get("9F48", b""), run.issuer_key, run.pan, run.p.today, static
            )
            if run.oda == "dda":
                ddol = ddol_data(run.card, run.terminal)
                answer, sw = yield from exchange(command(0x00, 0x88, 0x00, 0x00, ddol))
                if sw != b"\x90\x00":
                    raise OdaError(f"INTERNAL AUTHENTICATE: status {sw.hex().upper()}")
                run.card["9F4C"] = verify_dda(internal_authenticate_sdad(answer), run.icc_key, ddol)
            else:
                run.cda = True
                return  # TSI 'ODA performed' when the signature is checked
    except OdaError:
        run.set(failed)
    run.status(TSI_ODA)


# --- Cardholder verification (Book 3 10.5) -----------------------------------------------------------------------


def _pin_key(run: _Run) -> PublicKey | None:
    """The key for enciphered offline PIN: the ICC PIN encipherment key (9F2D), else the ICC key (9F46)."""
    c = run.card
    try:
        if run.issuer_key is None:
            ca = find_ca_key(run.p.ca_keys, run.aid, c.get("8F"), run.p.today)
            run.issuer_key = recover_issuer_key(c, ca, run.pan, run.p.today)
        if c.get("9F2D"):
            return recover_icc_key(
                c["9F2D"], c.get("9F2E"), c.get("9F2F", b""), run.issuer_key, run.pan, run.p.today, b""
            )
        if run.icc_key is None:
            static = static_data(run.static, c)
            run.icc_key = recover_icc_key(
                c.get("9F46"), c.get("9F47"), c.get("9F48", b""), run.issuer_key, run.pan, run.p.today, static
            )
        return run.icc_key
    except OdaError:
        return None


def pin_block(pin: str) -> bytes:
    """The plaintext PIN block of VERIFY (Book 3 6.5.12): 2, length, the digits, 'F' padding, 8 bytes."""
    return bytes.fromhex(f"2{len(pin):X}{pin}".ljust(16, "F"))


def _offline_pin(run: _Run, enciphered: bool) -> Steps[bool]:
    """One offline PIN method: the try counter, the prompt, GET CHALLENGE and VERIFY until right, bypassed,
    blocked or out of tries. True when the card said the PIN is right."""
    key = _pin_key(run) if enciphered else None
    if enciphered and (key is None or len(run.p.pin_padding) < key.size - 17):
        run.set(NO_PINPAD)  # the terminal cannot encipher for this card
        return False
    counter = yield from get_data("9F17")
    tries = counter[0] if counter else None
    if tries == 0:
        run.set(PIN_TRY_LIMIT)
        return False
    retry = False
    while True:
        pin = yield OfflinePin(enciphered, tries, retry, _face(run))
        if pin is None:
            raise Cancelled("the cardholder cancelled the PIN entry")
        if pin == "":
            run.set(PIN_NOT_ENTERED)
            return False
        if not (isinstance(pin, str) and pin.isdigit() and pin.isascii() and 4 <= len(pin) <= 12):
            continue
        block = pin_block(pin)
        if enciphered and key is not None:
            challenge, sw = yield from exchange(command(0x00, 0x84, 0x00, 0x00))
            if sw != b"\x90\x00" or len(challenge) != 8:
                return False
            data, p2 = encipher_pin(block, challenge, key, run.p.pin_padding), 0x88
        else:
            data, p2 = block, 0x80
        _, sw = yield from exchange(command(0x00, 0x20, 0x00, p2, data, le=False))
        if sw == b"\x90\x00":
            return True
        if sw[0] == 0x63 and sw[1] & 0xF0 == 0xC0:
            tries, retry = sw[1] & 0x0F, True
            if tries == 0:
                run.set(PIN_TRY_LIMIT)
                return False
            continue
        if sw in (b"\x69\x83", b"\x69\x84"):
            run.set(PIN_TRY_LIMIT)
        return False


def _face(run: _Run) -> CardFace:
    """The card as the PIN screen shows it: masked PAN, holder name (5F20), the application's label."""
    return CardFace(mask(run.pan), run.card.get("5F20", b"").decode("ascii", "replace").strip(), run.label)


def _perform(run: _Run, method: int) -> Steps[bool]:
    """Perform one method the terminal supports; whether it succeeded."""
    if method in (cv.PLAIN_PIN, cv.PLAIN_PIN_SIGN, cv.ENC_PIN, cv.ENC_PIN_SIGN):
        return (yield from _offline_pin(run, method in (cv.ENC_PIN, cv.ENC_PIN_SIGN)))
    if method == cv.ONLINE_PIN:
        entered = yield OnlinePin(run.pan, _face(run))
        if entered is None:
            raise Cancelled("the cardholder cancelled the PIN entry")
        run.set(ONLINE_PIN_ENTERED if entered else PIN_NOT_ENTERED)
        return bool(entered)
    return method in (cv.SIGNATURE, cv.NO_CVM)


def _cardholder_verification(run: _Run) -> Steps[None]:
    """The CVM list, rule by rule: the first whose condition holds is performed; a failure moves on only where
    the rule says so. Sets 9F34, the TVR bits and TSI, and what the receipt needs (method, signature)."""
    if not run.card["82"][0] & 0x10:  # the card does not support cardholder verification
        run.terminal["9F34"] = bytes([cv.NO_CVM_PERFORMED, 0, 0])
        return
    raw = run.card.get("8E", b"")
    try:
        cvm_list = cv.parse_cvm_list(raw) if raw else None
    except CardError:
        cvm_list = None
    run.status(TSI_CVM)
    if cvm_list is None or not cvm_list.rules:
        run.set(ICC_DATA_MISSING)
        run.set(CVM_FAILED)
        run.terminal["9F34"] = bytes([cv.NO_CVM_PERFORMED, 0, cv.RESULT_FAILED])
        return
    supported = supported_cvms(run.p)
    ctx = cv.CvmContext(run.p.amount, run.p.currency_numeric, run.card.get("9F42"), run.p.transaction_type, supported)
    last: cv.CvmRule | None = None
    for rule in cvm_list.rules:
        if not cv.condition_met(rule.condition, rule.method, cvm_list, ctx):
            continue
        last = rule
        if rule.method not in cv.KNOWN:
            run.set(UNRECOGNISED_CVM)
            ok = False
        elif rule.method == cv.FAIL:
            ok = False
        elif not cv.terminal_supports(rule.method, supported):
            if rule.method in cv.OFFLINE_PIN or rule.method == cv.ONLINE_PIN:
                run.set(NO_PINPAD)
            ok = False
        else:
            ok = yield from _perform(run, rule.method)
        if ok:
            run.terminal["9F34"] = cv.results(rule, cv.outcome_of_success(rule.method))
            run.cvm = cv.NAMES[rule.method]
            run.signature = rule.method in cv.WITH_SIGNATURE
            return
        if not rule.next_if_failed or rule.method == cv.FAIL:
            break
    run.set(CVM_FAILED)
    run.terminal["9F34"] = cv.results(last, cv.RESULT_FAILED)
    run.cvm = "failed"


# --- Terminal risk management (Book 3 10.6) ------------------------------------------------------------------------


def _risk_management(run: _Run) -> Steps[None]:
    p = run.p
    run.terminal["95"] = bytes(a | b for a, b in zip(run.tvr, floor_limit_check(p.amount, p.floor_limit), strict=True))
    if randomly_selected(
        p.amount, p.floor_limit, p.random_threshold, p.random_target, p.random_max_target, p.random_number
    ):
        run.set(RANDOM_ONLINE)
    lower, upper = run.card.get("9F14"), run.card.get("9F23")
    if lower and upper and len(lower) == 1 and len(upper) == 1:
        atc = yield from get_data("9F36")
        last_online = yield from get_data("9F13")
        run.terminal["95"] = velocity(run.tvr, lower[0], upper[0], atc, last_online)
    run.status(TSI_TERMINAL_RISK)


# --- Card action analysis, online processing, completion (Book 3 10.8 - 10.11) ---------------------------------


def _generate_ac(run: _Run, kind: int, dol_tag: str) -> Steps[tuple[int, bool]]:
    """GENERATE AC for `kind` over CDOL1 or CDOL2, with CDA when the card and terminal chose it; the card's
    cryptogram type and whether CDA (when asked) verified. The card's data is updated with the answer."""
    data = run.dol(dol_tag)
    cda = run.cda and kind != CID_AAC and run.icc_key is not None
    got, answer = yield from generate_ac(kind | (0x10 if cda else 0), data)
    run.hashed += data
    got_kind = cid_type(got["9F27"][0])
    if got_kind > kind:
        raise CardError(f"the card answered {CID_NAMES[got_kind]} to a request for {CID_NAMES[kind]}")
    # Only what GENERATE AC answers with may change: the card's records (AIP, PAN, ...) read before stay.
    run.card.update({tag: value for tag, value in got.items() if tag in AC_ANSWER_TAGS})
    if not cda or got_kind == CID_AAC:
        want(run.card, "9F26")
        return got_kind, True
    run.status(TSI_ODA)
    try:
        if run.icc_key is None or "9F4B" not in got:
            raise OdaError("no signed dynamic application data in the answer")
        hashed = run.hashed + cda_hashed_answer(answer)
        number, cryptogram = verify_cda(got["9F4B"], run.icc_key, run.p.unpredictable, got["9F27"], hashed)
        run.card["9F4C"], run.card["9F26"] = number, cryptogram
        return got_kind, True
    except OdaError:
        run.set(CDA_FAILED)
        run.card.setdefault("9F26", bytes(8))
        return got_kind, False


def _script_results(run: _Run, templates: list[bytes]) -> Steps[list[bytes]]:
    """Run issuer scripts (71 or 72 values): each command (86) in turn; a status other than 90xx, 62xx, 63xx
    ends that script (Book 3 10.10). One result per script: 5 bytes, result and failing command number, then
    the script identifier (9F18) or zeros."""
    out = []
    for template in templates:
        try:
            items = tlv_items(template)
        except CardError:
            out.append(bytes([0x10]) + bytes(4))
            continue
        ident = next((v for t, v in items if t == "9F18" and len(v) == 4), bytes(4))
        result, n = 0x20, 0
        for tag, cmd in items:
            if tag != "86":
                continue
            n += 1
            _, sw = yield from exchange(cmd)
            if sw[0] not in (0x90, 0x62, 0x63):
                result = 0x10 | min(n, 15)
                break
        out.append(bytes([result]) + ident)
        run.status(TSI_SCRIPTS)
    return out


def _outcome(
    run: _Run, approved: bool, arc: str, online: bool, reversal: bool, scripts: list[bytes], reason: str = ""
) -> ChipOutcome:
    # The terminal's own data objects last: a tag it owns (95 TVR, 9F1E IFD serial...) that a card's record also
    # carries goes out as the terminal says, never as the card does.
    items = {**run.card, **run.terminal, "84": bytes.fromhex(run.aid), "8A": arc.encode("ascii")[:2]}
    if scripts:
        items["9F5B" if not run.aid.startswith(UNIONPAY_RID) else "DF31"] = b"".join(scripts)
    tags = REVERSAL_TAGS if reversal else ADVICE_TAGS
    kind = cid_type(run.card.get("9F27", b"\x00")[0])
    return ChipOutcome(
        approved=approved,
        cryptogram_type="TC" if approved and kind == CID_TC else "AAC",
        cryptogram=run.card.get("9F26", b"").hex().upper(),
        arc=arc,
        online=online,
        reversal=reversal,
        card=_chip_card(run),
        tvr=run.tvr.hex().upper(),
        tsi=run.terminal["9B"].hex().upper(),
        cvm=run.cvm,
        cvm_results=run.terminal["9F34"].hex().upper(),
        signature=run.signature,
        oda=run.oda,
        scripts=tuple(s.hex().upper() for s in scripts),
        icc=icc_fields(items, tags),
        reason=reason,
    )


def _chip_card(run: _Run) -> ChipCard:
    c = run.card
    track2 = track2_from_57(c["57"]) if c.get("57") else f"{run.pan}={c['5F24'].hex()[:4]}"
    items = {**c, **run.terminal, "84": bytes.fromhex(run.aid)}  # the terminal's own tags are its own
    return ChipCard(
        pan=run.pan,
        track2=track2,
        psn=c.get("5F34", b"\x00").hex(),
        aid=run.aid,
        label=run.label,
        cvm=run.cvm,
        cid=c.get("9F27", b"\x00")[0],
        cryptogram=c.get("9F26", b"").hex().upper(),
        icc=icc_fields(items, ONLINE_TAGS),
        kernel="contact",
        name=c.get("5F20", b"").decode("ascii", "replace").strip(),
    )


def _issuer_data(answer: OnlineAnswer) -> tuple[bytes | None, list[bytes], list[bytes]]:
    """(91, the 71 templates, the 72 templates) from the host's field 55; nothing from data that is not TLV."""
    try:
        items = tlv_items(answer.icc)
    except CardError:
        return None, [], []
    arpc = next((v for t, v in items if t == "91"), None)
    return arpc, [v for t, v in items if t == "71"], [v for t, v in items if t == "72"]


def contact_transaction(p: ContactParams) -> Steps[ChipOutcome]:
    """The phases of one chip transaction in the order of EMV Book 3 section 10."""
    run = yield from _select_and_start(p)
    run.card, run.static = yield from read_records(run.card)
    want(run.card, "5A", "5F24", "8C", "8D")
    run.pan = pan_from_5a(run.card["5A"])
    if not luhn_valid(run.pan):
        raise CardError("card number fails the Luhn check")
    yield from _offline_data_authentication(run)
    run.terminal["95"] = processing_restrictions(
        run.tvr,
        run.card,
        p.today,
        terminal_version=terminal_version(p, run.aid),
        country=p.country_numeric,
        transaction_type=p.transaction_type,
    )
    yield from _cardholder_verification(run)
    yield from _risk_management(run)
    tacs = (p.tac_denial, p.tac_online, p.tac_default)
    iacs = action_codes(run.card)
    kind = requested_cryptogram(run.tvr, tacs, iacs, online_capable=True, online_only=p.online_only)
    run.status(TSI_CARD_RISK)
    got, cda_ok = yield from _generate_ac(run, kind, "8C")
    if got == CID_AAC or not cda_ok:
        if got == CID_ARQC:  # CDA failed on an ARQC: close the card with an AAC
            yield from _generate_ac(run, CID_AAC, "8D")
        reason = "the card declined offline" if cda_ok else "combined data authentication failed"
        return _outcome(run, False, "Z1", False, False, [], reason)
    if got == CID_TC:
        return _outcome(run, True, "Y1", False, False, [])
    answer = yield GoOnline(_chip_card(run))
    scripts: list[bytes] = []
    if answer is None:  # unable to go online: the default action codes decide (10.7)
        second = default_action(run.tvr, p.tac_default, iacs[2])
        arc = "Y3" if second == CID_TC else "Z3"
        run.terminal["8A"] = arc.encode("ascii")
        got2, cda_ok = yield from _generate_ac(run, second, "8D")
        approved = got2 == CID_TC and second == CID_TC and cda_ok
        return _outcome(run, approved, arc, False, False, [], "" if approved else "declined offline (host not reached)")
    rc = answer.response_code
    arpc, before, after = _issuer_data(answer)
    run.terminal["8A"] = rc.encode("ascii", "replace")[:2].ljust(2)
    if arpc is not None and run.card["82"][0] & 0x04:
        run.status(TSI_ISSUER_AUTH)
        if "91" in dol_tags(run.card.get("8D")):
            run.terminal["91"] = arpc
        else:
            _, sw = yield from exchange(command(0x00, 0x82, 0x00, 0x00, arpc, le=False))
            if sw != b"\x90\x00":
                run.set(ISSUER_AUTH_FAILED)
    results = yield from _script_results(run, before)
    if any(r[0] >> 4 != 2 for r in results):
        run.set(SCRIPT_FAILED_BEFORE)
    scripts += results
    host_ok = rc in APPROVAL_CODES
    got2, cda_ok = yield from _generate_ac(run, CID_TC if host_ok else CID_AAC, "8D")
    results = yield from _script_results(run, after)
    if any(r[0] >> 4 != 2 for r in results):
        run.set(SCRIPT_FAILED_AFTER)
    scripts += results
    approved = host_ok and got2 == CID_TC and cda_ok
    reason = "" if approved else ("the card declined after the approval" if host_ok else f"declined online ({rc})")
    return _outcome(run, approved, rc, True, host_ok and not approved, scripts, reason)


def contact_kernel(p: ContactParams) -> Steps[ChipOutcome]:
    """The contact kernel as the shell drives it: contact_transaction with its APDUs counted."""
    steps = contact_transaction(p)
    sent = 0
    try:
        request = next(steps)
        while True:
            if isinstance(request, bytes):
                sent += 1
            request = steps.send((yield request))
    except StopIteration as done:
        outcome: ChipOutcome = done.value
        return replace(outcome, apdus=sent, card=replace(outcome.card, apdus=sent))
    finally:
        steps.close()
