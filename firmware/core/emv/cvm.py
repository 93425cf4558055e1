"""Cardholder verification (EMV Book 3 10.5, Annex C3): the CVM list (8E), its conditions, and CVM results (9F34).

Pure: the rules and whether each applies; performing a PIN method (prompts, VERIFY) is the contact kernel's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from firmware.core.emv.data import CardError

FAIL, PLAIN_PIN, ONLINE_PIN, PLAIN_PIN_SIGN, ENC_PIN, ENC_PIN_SIGN, SIGNATURE, NO_CVM = (
    0x00,
    0x01,
    0x02,
    0x03,
    0x04,
    0x05,
    0x1E,
    0x1F,
)
NO_CVM_PERFORMED = 0x3F
KNOWN = frozenset({FAIL, PLAIN_PIN, ONLINE_PIN, PLAIN_PIN_SIGN, ENC_PIN, ENC_PIN_SIGN, SIGNATURE, NO_CVM})
OFFLINE_PIN = frozenset({PLAIN_PIN, PLAIN_PIN_SIGN, ENC_PIN, ENC_PIN_SIGN})
WITH_SIGNATURE = frozenset({PLAIN_PIN_SIGN, ENC_PIN_SIGN, SIGNATURE})
RESULT_UNKNOWN, RESULT_FAILED, RESULT_OK = 0x00, 0x01, 0x02

# What the receipt and the flow call each method.
NAMES = {
    FAIL: "fail",
    PLAIN_PIN: "offline_pin",
    ONLINE_PIN: "online_pin",
    PLAIN_PIN_SIGN: "offline_pin_signature",
    ENC_PIN: "offline_enciphered_pin",
    ENC_PIN_SIGN: "offline_enciphered_pin_signature",
    SIGNATURE: "signature",
    NO_CVM: "none",
    NO_CVM_PERFORMED: "not_performed",
}


class CvmRule(NamedTuple):
    """One CV rule: the method (6 bits), its condition, and whether a failure moves on to the next rule."""

    method: int
    condition: int
    next_if_failed: bool

    @property
    def code(self) -> bytes:
        """The two bytes of the rule as the card wrote them (9F34 bytes 1-2)."""
        return bytes([self.method | (0x40 if self.next_if_failed else 0), self.condition])


@dataclass(frozen=True)
class CvmList:
    """The CVM list (8E): amounts X and Y (in the application currency's minor units) and the rules."""

    x: int
    y: int
    rules: tuple[CvmRule, ...]


@dataclass(frozen=True)
class CvmContext:
    """What the conditions look at: the transaction and what the terminal supports (method codes)."""

    amount: int
    currency: str  # transaction currency, ISO 4217 numeric ("156")
    app_currency: bytes | None  # 9F42
    transaction_type: str  # 9C
    supported: frozenset[int]
    unattended: bool = False
    manual_cash: bool = False


def parse_cvm_list(raw: bytes) -> CvmList:
    """The CVM list; CardError when it is not 8 bytes of amounts and whole 2-byte rules."""
    if len(raw) < 8 or (len(raw) - 8) % 2:
        raise CardError("CVM list (8E) is malformed")
    rules = tuple(CvmRule(raw[i] & 0x3F, raw[i + 1], bool(raw[i] & 0x40)) for i in range(8, len(raw), 2))
    return CvmList(int.from_bytes(raw[:4], "big"), int.from_bytes(raw[4:8], "big"), rules)


def condition_met(condition: int, method: int, cvm: CvmList, ctx: CvmContext) -> bool:
    """Whether a rule's condition code holds (Annex C3 table C-2); a code the terminal does not understand
    (RFU, proprietary) does not hold."""
    cash = ctx.transaction_type in ("01", "17")
    cashback = ctx.transaction_type == "09"
    in_app_currency = ctx.app_currency is not None and ctx.app_currency.hex().lstrip("0") == ctx.currency.lstrip("0")
    if condition == 0x00:
        return True
    if condition == 0x01:
        return ctx.unattended and cash
    if condition == 0x02:
        return not (ctx.unattended and cash) and not ctx.manual_cash and not cashback
    if condition == 0x03:
        return terminal_supports(method, ctx.supported)
    if condition == 0x04:
        return ctx.manual_cash
    if condition == 0x05:
        return cashback
    if condition in (0x06, 0x07, 0x08, 0x09):
        if not in_app_currency:
            return False
        limit = cvm.x if condition in (0x06, 0x07) else cvm.y
        return ctx.amount < limit if condition in (0x06, 0x08) else ctx.amount > limit
    return False


def terminal_supports(method: int, supported: frozenset[int]) -> bool:
    """Whether the terminal can perform a method: a combined PIN-and-signature method needs both parts;
    'fail CVM processing' is always understood."""
    if method == FAIL:
        return True
    if method == PLAIN_PIN_SIGN:
        return PLAIN_PIN in supported and SIGNATURE in supported
    if method == ENC_PIN_SIGN:
        return ENC_PIN in supported and SIGNATURE in supported
    return method in supported


def results(rule: CvmRule | None, outcome: int) -> bytes:
    """CVM results (9F34): the rule's two bytes and the outcome; 3F 00 when no rule was performed."""
    return (rule.code if rule is not None else bytes([NO_CVM_PERFORMED, 0])) + bytes([outcome])


def outcome_of_success(method: int) -> int:
    """9F34 byte 3 for a method that went through: 'unknown' for online PIN and anything with a signature
    (the issuer or the cashier decides later), 'successful' otherwise."""
    if method == ONLINE_PIN or method in WITH_SIGNATURE:
        return RESULT_UNKNOWN
    return RESULT_OK


def first_applicable(cvm: CvmList, ctx: CvmContext) -> tuple[CvmRule | None, bool]:
    """For a kernel that performs no method itself (contactless): the first rule whose condition holds and
    which the terminal can perform, moving past unsupported ones only where the card allows;
    (rule or None, whether an unrecognised method was met)."""
    unrecognised = False
    for rule in cvm.rules:
        if not condition_met(rule.condition, rule.method, cvm, ctx):
            continue
        if rule.method not in KNOWN:
            unrecognised = True
        elif rule.method == FAIL:
            return rule, unrecognised
        elif terminal_supports(rule.method, ctx.supported) and rule.method not in OFFLINE_PIN:
            return rule, unrecognised
        if not rule.next_if_failed:
            return None, unrecognised
    return None, unrecognised
