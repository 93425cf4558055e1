"""The item catalogue (PLU code, name, price, tax rate) and baskets: pure parsing and arithmetic.

Prices are integer minor units; tax rates are basis points (13% = 1300). A catalogue comes from a CSV
file with the header `plu,name,price,tax_rate` (price in major units, "12.50"; tax rate in percent,
"13" or "6.5"), in UTF-8 (with or without the BOM spreadsheets write) or GB18030 (what Excel on a
Chinese Windows saves).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from .money import Currency, format_minor, parse_major

MAX_PLU = 8                 # digits of a PLU code (keyed on the keypad)
MAX_QTY = 999


@dataclass(frozen=True)
class Item:
    """One catalogue entry."""

    plu: str
    name: str
    price: int
    tax_rate_bp: int = 0


@dataclass(frozen=True)
class BasketLine:
    """One line of a basket: an item and how many."""

    plu: str
    name: str
    quantity: int
    unit_price: int
    tax_rate_bp: int = 0

    @property
    def amount(self) -> int:
        """Quantity times unit price (minor units)."""
        return self.quantity * self.unit_price

    @property
    def tax(self) -> int:
        """The tax inside this line's amount (prices include tax), rounded half up to the minor unit."""
        return (self.amount * self.tax_rate_bp * 2 + (10000 + self.tax_rate_bp)) // (2 * (10000 + self.tax_rate_bp))


def line_for(item: Item, quantity: int) -> BasketLine:
    """A basket line of `quantity` of `item`."""
    return BasketLine(item.plu, item.name, quantity, item.price, item.tax_rate_bp)


def total(lines: tuple[BasketLine, ...] | list[BasketLine]) -> int:
    """The amount to pay for a basket."""
    return sum(line.amount for line in lines)


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("gb18030")            # GBK/GB2312 files decode too: GB18030 contains them


def _tax_bp(text: str) -> int:
    value = Decimal(text.strip().rstrip("%") or "0")
    bp = value * 100
    if bp != bp.to_integral_value() or not 0 <= bp <= 10000:
        raise ValueError("tax_rate must be a percentage from 0 to 100 with at most two decimals")
    return int(bp)


def parse_catalog(raw: bytes, currency: Currency) -> tuple[list[Item], list[str]]:
    """Items from a CSV file, and one message per bad line (line number, column, problem)."""
    text = _decode(raw)
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [h for h in ("plu", "name", "price") if h not in header]
    if missing:
        return [], [f"line 1: the header lacks {', '.join(missing)} (expected plu,name,price,tax_rate)"]
    items: dict[str, Item] = {}
    errors: list[str] = []
    for number, row in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items() if k is not None}
        plu, name = row.get("plu", ""), row.get("name", "")
        try:
            if not (plu.isdigit() and 1 <= len(plu) <= MAX_PLU):
                raise ValueError(f"plu must be 1 to {MAX_PLU} digits")
            if not name:
                raise ValueError("name is empty")
            if len(name) > 40:
                raise ValueError("name is longer than 40 characters")
            try:
                price = parse_major(row.get("price", ""), currency)
            except (ValueError, ArithmeticError) as exc:
                raise ValueError(f"price: {exc}") from None
            if price <= 0:
                raise ValueError("price must be above zero")
            try:
                tax = _tax_bp(row.get("tax_rate", ""))
            except InvalidOperation:
                raise ValueError("tax_rate is not a number") from None
            if plu in items:
                raise ValueError(f"plu {plu} appears twice")
            items[plu] = Item(plu, name, price, tax)
        except ValueError as exc:
            errors.append(f"line {number}: {exc}")
    return list(items.values()), errors


def describe(item: Item, currency: Currency) -> str:
    """'PLU name price' for a screen."""
    return f"{item.plu} {item.name} {format_minor(item.price, currency)}"
