"""Which wallet a scanned payment code (付款码) belongs to, from its digits alone."""

from __future__ import annotations

from dataclasses import dataclass, field

from firmware.core.pan import ShownPan


def classify_code(code: str) -> str:
    """Which wallet a scanned payment code belongs to: "alipay", "wechat", "unionpay", or "" (not a payment code).
    UnionPay's C2B payment codes are 19 digits starting 62 (UnionPay QR specification; 云闪付 shows them)."""
    if code.isascii() and code.isdigit():  # str.isdigit() is true for "²", which int() refuses
        if 25 <= int(code[:2] or 0) <= 30 and 16 <= len(code) <= 24:
            return "alipay"
        if 10 <= int(code[:2] or 0) <= 15 and len(code) == 18:
            return "wechat"
        if code.startswith("62") and len(code) == 19:
            return "unionpay"
    return ""


def route_code(code: str, wallets: tuple[str, ...]) -> tuple[str, str]:
    """(provider to charge, wallet the code belongs to) for a scanned code: the wallet's own provider when the
    shop takes it directly, else an aggregator ("aggregator") that takes every wallet's code; provider "" when
    nobody configured can take it (wallet "" when it is no payment code at all)."""
    kind = classify_code(code)
    if not kind:
        return "", ""
    if kind in wallets:
        return kind, kind
    return ("aggregator", kind) if "aggregator" in wallets else ("", kind)


@dataclass(frozen=True)
class CodeCard(ShownPan):
    """A customer's payment code carried over the acquirer's ISO 8583 link in place of a card (UnionPay's C2B code:
    a one-time 19-digit token starting 62, sent as the PAN, field 2). The code is what a PAN is there: the PIN
    block's encryption factor comes from it; only `masked_pan` may be shown or stored."""

    pan: str = field(repr=False)
    wallet: str  # whose code: "unionpay"
    name: str = ""  # a code carries no holder's name
