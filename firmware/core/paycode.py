"""Which wallet a scanned payment code (付款码) belongs to, from its digits alone."""

from __future__ import annotations


def classify_code(code: str) -> str:
    """Which wallet a scanned payment code belongs to: "alipay", "wechat", or "" (not a payment code)."""
    if code.isascii() and code.isdigit():  # str.isdigit() is true for "²", which int() refuses
        if 25 <= int(code[:2] or 0) <= 30 and 16 <= len(code) <= 24:
            return "alipay"
        if 10 <= int(code[:2] or 0) <= 15 and len(code) == 18:
            return "wechat"
    return ""
