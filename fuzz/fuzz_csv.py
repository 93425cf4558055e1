"""atheris target: the item catalogue CSV import (firmware.core.items.parse_catalog) on arbitrary bytes.

Invariant: only (items, errors) comes back; every error names a line; every item is sane (ASCII PLU,
unique, a name with no control character, a price in range)."""

from __future__ import annotations

import re

import _harness  # noqa: F401 - sys.path first
import atheris

with atheris.instrument_imports(include=["firmware"]):
    from firmware.core.items import MAX_ERRORS, MAX_PRICE, parse_catalog
    from firmware.core.money import Currency
    from firmware.core.text import problem

CURRENCIES = (Currency.of("CNY"), Currency.of("JPY"))
ERROR = re.compile(r"line [0-9]+: .+|\.\.\. and [0-9]+ more bad lines", re.DOTALL)


def test_one_input(data: bytes) -> None:
    items, errors = parse_catalog(data, CURRENCIES[len(data) % 2])
    assert len(errors) <= MAX_ERRORS + 1
    assert all(ERROR.fullmatch(e) for e in errors), errors
    assert len({i.plu for i in items}) == len(items)
    for item in items:
        assert re.fullmatch(r"[0-9]{1,8}", item.plu) and item.name and problem(item.name) is None, item
        assert 0 < item.price <= MAX_PRICE and 0 <= item.tax_rate_bp <= 10000, item


if __name__ == "__main__":
    _harness.run(test_one_input)
