"""The item catalogue (PLU code, name, price, tax rate) and baskets: pure parsing and arithmetic.

Prices are integer minor units; tax rates are basis points (13% = 1300). A catalogue comes from a CSV
file with the header `plu,name,price,tax_rate` (price in major units, "12.50"; tax rate in percent,
"13" or "6.5"). The rules `parse_catalog` applies, each refusal naming the line:

- Encoding: UTF-8 (with or without the BOM spreadsheets write), UTF-16 with its BOM (what "Unicode text"
  saves), or GB18030/GBK (what Excel on a Chinese Windows saves) whose characters are all in GB2312, the
  common simplified set. A file that is none of these (Latin-1, UTF-16 without a BOM, UTF-32) is refused.
  So is a file without a BOM that reads both as UTF-8 with accented or non-Chinese letters and as GB2312
  Chinese: the bytes cannot tell which was meant, so the user re-saves it as "CSV UTF-8" (with the BOM).
- plu: 1 to 8 ASCII digits, each PLU once (a repeat names both lines).
- name: 1 to 40 characters, no control characters (ESC, GS, ANSI sequences, bidi overrides): a name goes
  to the printer and the display. A name may start with = + - @ (stored as it is; CSV exports escape it).
- price: ASCII digits with at most the currency's decimals, above zero and at most MAX_PRICE minor units.
- tax_rate: percent, 0 to 100 with at most two decimals; empty is 0.
- At most MAX_ERRORS bad lines are listed, then how many more there are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass

from firmware.core.money import Currency, format_minor
from firmware.core.text import problem as unsafe_text

MAX_PLU = 8  # digits of a PLU code (keyed on the keypad)
MAX_QTY = 999
MAX_NAME = 40  # characters of an item name
MAX_PRICE = 10**10 - 1  # minor units: ten digits (99,999,999.99 CNY), far above any till's max_amount
MAX_ERRORS = 100  # bad lines listed by one import; the rest are counted

_PLU = re.compile(rf"[0-9]{{1,{MAX_PLU}}}")
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]+))?")
_PERCENT = re.compile(r"([0-9]{1,3})(?:\.([0-9]{1,8}))?%?")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")


@dataclass(frozen=True, slots=True)
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


class _Refused(Exception):
    """The whole file is refused (its encoding); the message names the line."""


def _line_of(raw: bytes | str, offset: int) -> int:
    """The line number of character `offset` (lines end with LF, CRLF or CR, as _decoded_lines splits them)."""
    if isinstance(raw, str):
        return raw.count("\n", 0, offset) + raw.count("\r", 0, offset) - raw.count("\r\n", 0, offset) + 1
    return raw.count(b"\n", 0, offset) + raw.count(b"\r", 0, offset) - raw.count(b"\r\n", 0, offset) + 1


def _encoding(raw: bytes) -> str:
    """The codec that reads the file by the rules in the module docstring; _Refused when none may."""
    if raw.startswith(_UTF32_BOMS):
        raise _Refused("line 1: the file is UTF-32; save it as CSV UTF-8")
    if raw.startswith(b"\xef\xbb\xbf") or raw.startswith(_UTF16_BOMS):
        codec = "utf-8-sig" if raw.startswith(b"\xef") else "utf-16"
        try:
            raw.decode(codec)
        except UnicodeDecodeError as exc:
            before = raw[: exc.start].decode(codec, errors="replace")
            line = _line_of(before, len(before))
            raise _Refused(
                f"line {line}: the file starts as {codec.removesuffix('-sig').upper()} but is not "
                f"(bytes {raw[exc.start : exc.start + 4].hex(' ')}); save it as CSV UTF-8"
            ) from None
        return codec
    nul = raw.find(b"\x00")
    if nul >= 0 and raw.count(b"\x00") * 8 > len(raw):
        # ASCII text in UTF-16 is one NUL byte in two; a stray NUL is a control character, refused in its field.
        raise _Refused(
            f"line {_line_of(raw, nul)}: NUL bytes: the file looks like UTF-16 without "
            "a byte-order mark; save it as CSV UTF-8"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_utf8 = exc.start
    else:
        if not text.isascii() and any("\u0080" <= ch <= "\u07ff" for ch in set(text)) and _reads_as_gb2312(raw):
            raise _Refused(_ambiguous(raw, text))
        return "utf-8"
    try:
        raw.decode("gb2312")  # GB18030 limited to the common simplified set: see above
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.start + 2]
        line = _line_of(raw, min(bad_utf8, exc.start))
        raise _Refused(
            f"line {line}: the file is neither UTF-8 nor GB18030 Chinese (bytes {bad.hex(' ')} at line "
            f"{_line_of(raw, exc.start)}; Latin-1 or another encoding?); save it as CSV UTF-8"
        ) from None
    return "gb18030"  # GB18030's mapping, which GBK and Windows use


def _reads_as_gb2312(raw: bytes) -> bool:
    try:
        raw.decode("gb2312")
    except UnicodeDecodeError:
        return False
    return True


def _ambiguous(raw: bytes, text: str) -> str:
    """The refusal for a file that reads both as UTF-8 and as GB18030, quoting the first line that differs."""
    as_gb = raw.decode("gb18030")
    for number, (u, g) in enumerate(zip(_LINE.findall(text), _LINE.findall(as_gb), strict=False), start=1):
        if u != g:
            return (
                f"line {number}: the file reads both as UTF-8 ({u.strip()[:40]!r}) and as GB18030 "
                f"({g.strip()[:40]!r}); save it as CSV UTF-8 (with the BOM) so the import knows which"
            )
    return "line 1: the file reads both as UTF-8 and as GB18030; save it as CSV UTF-8 (with the BOM)"


_LINE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+\Z")
_RAW_LINE = re.compile(rb"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+\Z")


def _decoded_lines(raw: bytes) -> Iterator[str]:
    """The file's lines, decoded (_encoding's rules) one at a time, each with its end (LF, CRLF, or the CR of
    old Mac spreadsheets). One line at a time keeps a million-line file from being held twice, as bytes
    and as text; UTF-8 and GB18030 never use the bytes of CR and LF inside a character, so lines can be
    split before decoding. (str.splitlines would also split at U+2028 and friends.)"""
    codec = _encoding(raw)
    if codec == "utf-16":
        return (m.group() for m in _LINE.finditer(raw.decode("utf-16")))
    start = 3 if codec == "utf-8-sig" else 0
    codec = "utf-8" if codec == "utf-8-sig" else codec
    return (m.group().decode(codec) for m in _RAW_LINE.finditer(raw, start))


def _price(text: str, currency: Currency, max_price: int) -> int:
    m = _AMOUNT.fullmatch(text)
    if m is None:
        if text.startswith("-") and _AMOUNT.fullmatch(text[1:]):
            raise ValueError("price must be above zero")
        raise ValueError(f"price: not an amount in {currency.alpha}: {text[:24]!r} (write digits, e.g. 12.50)")
    whole, frac = m.group(1), m.group(2) or ""
    if len(frac) > currency.exponent:
        raise ValueError(
            f"price: not an amount in {currency.alpha}: {text[:24]!r} (at most {currency.exponent} decimals)"
        )
    # The digit count first: int() of a 100,000-digit price would take a while, then be refused by Python.
    fits = len(whole.lstrip("0")) <= len(str(max_price))
    price = int(whole) * 10**currency.exponent + int(frac.ljust(currency.exponent, "0") or "0") if fits else 0
    if not fits or price > max_price:
        raise ValueError(f"price {text[:24]} is above the most an item may cost, {format_minor(max_price, currency)}")
    if price <= 0:
        raise ValueError("price must be above zero")
    return price


def _tax_bp(text: str) -> int:
    if not text:
        return 0
    m = _PERCENT.fullmatch(text)
    if m is None:
        raise ValueError("tax_rate is not a number")
    whole, frac = m.group(1), (m.group(2) or "").rstrip("0")
    bp = int(whole) * 100 + int(frac.ljust(2, "0")) if len(frac) <= 2 else -1
    if not 0 <= bp <= 10000:
        raise ValueError("tax_rate must be a percentage from 0 to 100 with at most two decimals")
    return bp


def _item(row: list[str], columns: tuple[int, int, int, int], width: int, currency: Currency, max_price: int) -> Item:
    """One data row as an Item; ValueError says what is wrong. `columns` are the plu, name, price and
    tax_rate columns (-1: no tax_rate column)."""
    size = len(row)
    if size > width and any(f.strip() for f in row[width:]):
        raise ValueError(
            f"{size} fields but the header has {width} (a comma in a name or price? "
            "put the name in double quotes; write prices without thousands separators)"
        )
    at_plu, at_name, at_price, at_tax = columns
    plu = row[at_plu].strip() if at_plu < size else ""
    name = row[at_name].strip() if at_name < size else ""
    if not _PLU.fullmatch(plu):
        raise ValueError(f"plu must be 1 to {MAX_PLU} digits")
    if not name:
        raise ValueError("name is empty")
    bad = unsafe_text(name)
    if bad:
        raise ValueError(f"name {bad}")
    if len(name) > MAX_NAME:
        raise ValueError(f"name is longer than {MAX_NAME} characters")
    price = _price(row[at_price].strip() if at_price < size else "", currency, max_price)
    return Item(plu, name, price, _tax_bp(row[at_tax].strip() if 0 <= at_tax < size else ""))


def parse_catalog(raw: bytes, currency: Currency, max_price: int = MAX_PRICE) -> tuple[list[Item], list[str]]:
    """Items from a CSV file, and one message per bad line (line number, column, problem); see the module
    docstring for the rules. Pass the terminal's max_amount as `max_price` to refuse what it could never sell."""
    try:
        lines = _decoded_lines(raw)
    except _Refused as exc:
        return [], [str(exc)]
    reader = csv.reader(lines)
    items: list[Item] = []
    first_line: dict[str, int] = {}
    errors: list[str] = []
    more = 0
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        if len(header) == 1 and "\t" in header[0]:
            return [], ['line 1: the file is separated by tabs, not commas ("Unicode text"?); save it as CSV UTF-8']
        missing = [h for h in ("plu", "name", "price") if h not in header]
        if missing:
            return [], [f"line 1: the header lacks {', '.join(missing)} (expected plu,name,price,tax_rate)"]
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:
            return [], [f"line 1: the header names {twice[0]} twice"]
        columns = (
            header.index("plu"),
            header.index("name"),
            header.index("price"),
            header.index("tax_rate") if "tax_rate" in header else -1,
        )
        last = reader.line_num
        for row in reader:
            number, last = last + 1, reader.line_num  # a quoted field may span lines: name the first
            try:
                item = _item(row, columns, len(header), currency, max_price)
                if item.plu in first_line:
                    raise ValueError(f"plu {item.plu} appears twice (first on line {first_line[item.plu]})")
            except ValueError as exc:
                if not any(f.strip() for f in row):
                    continue  # a blank line, or ",,," from a spreadsheet
                if len(errors) < MAX_ERRORS:
                    errors.append(f"line {number}: {exc}")
                else:
                    more += 1
                continue
            first_line[item.plu] = number
            items.append(item)
    except csv.Error as exc:  # an unclosed quote swallowing the file, and such
        errors.append(f"line {reader.line_num}: not readable as CSV ({exc}; an unclosed double quote?)")
    if more:
        errors.append(f"... and {more} more bad lines")
    return items, errors


def describe(item: Item, currency: Currency) -> str:
    """'PLU name price' for a screen."""
    return f"{item.plu} {item.name} {format_minor(item.price, currency)}"
