"""Money as integer minor units with an ISO 4217 currency; formatting without floats."""

from __future__ import annotations

from dataclasses import dataclass

from firmware.errors import ConfigError

# alpha code -> (numeric code, minor-unit exponent), ISO 4217.
_CURRENCIES: dict[str, tuple[str, int]] = {
    "AUD": ("036", 2),
    "CAD": ("124", 2),
    "CHF": ("756", 2),
    "CNY": ("156", 2),
    "EUR": ("978", 2),
    "GBP": ("826", 2),
    "HKD": ("344", 2),
    "JPY": ("392", 0),
    "KRW": ("410", 0),
    "MOP": ("446", 2),
    "MYR": ("458", 2),
    "NZD": ("554", 2),
    "SGD": ("702", 2),
    "THB": ("764", 2),
    "TWD": ("901", 2),
    "USD": ("840", 2),
}


@dataclass(frozen=True)
class Currency:
    """An ISO 4217 currency: alphabetic code, numeric code (wire), minor-unit exponent."""

    alpha: str
    numeric: str
    exponent: int

    @classmethod
    def of(cls, code: str) -> Currency:
        """Look a currency up by alphabetic or numeric code."""
        code = code.strip().upper()
        for alpha, (numeric, exp) in _CURRENCIES.items():
            if code in (alpha, numeric):
                return cls(alpha, numeric, exp)
        raise ConfigError(f"unknown currency {code!r}; known: {', '.join(sorted(_CURRENCIES))}")


def format_minor(amount: int, currency: Currency) -> str:
    """Format minor units as a decimal string, e.g. 1250 CNY -> '12.50'."""
    if not isinstance(amount, int):
        raise TypeError("amounts are integer minor units")
    sign = "-" if amount < 0 else ""
    amount = abs(amount)
    if currency.exponent == 0:
        return f"{sign}{amount}"
    scale = 10**currency.exponent
    return f"{sign}{amount // scale}.{amount % scale:0{currency.exponent}d}"


# The sign a language writes before an amount instead of the ISO code: Chinese writes yuan as ¥12.50
# (U+00A5, one column); any other currency, and any currency in English, reads CNY 12.50 / USD 12.50.
_SYMBOLS: dict[str, dict[str, str]] = {"zh-CN": {"CNY": "\u00a5"}}


def format_amount(amount: int, currency: Currency, language: str = "en") -> str:
    """An amount as the screen shows it in `language`: 'CNY 12.50' in English, '¥12.50' in Chinese (a
    negative one '-¥12.50' / 'CNY -12.50'); the one place amounts become screen text."""
    symbol = _SYMBOLS.get(language, {}).get(currency.alpha)
    digits = format_minor(amount, currency)
    if symbol is None:
        return f"{currency.alpha} {digits}"
    return f"-{symbol}{digits[1:]}" if digits.startswith("-") else f"{symbol}{digits}"


def parse_major(text: str, currency: Currency) -> int:
    """Parse a decimal amount like '500.00' into minor units, exactly (no floats)."""
    s = text.strip()
    if not s.isascii():  # int() reads "１２" as 12
        raise ValueError(f"not an amount in {currency.alpha}: {text!r}")
    whole, _, frac = s.partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()) or len(frac) > currency.exponent:
        raise ValueError(f"not an amount in {currency.alpha}: {text!r}")
    scale: int = 10**currency.exponent
    return int(whole) * scale + int(frac.ljust(currency.exponent, "0") or "0")
