"""The item catalogue: CSV import (UTF-8, GB18030, bad lines), keying a basket by PLU, the basket stored
with the sale and printed, and best sellers counted from sales that stand."""

from __future__ import annotations

import codecs
import dataclasses
import io
import sys
from datetime import datetime

import pytest

from conftest import ROOT, SIM_TOML, assert_ledger_agrees, print_todays_report, sales
from firmware.core import events, flow
from firmware.core.effects import Authorize, CheckCatalogue, LookupItem, StartQrOrder
from firmware.core.events import EncryptedPin
from firmware.core.flow import states
from firmware.core.items import MAX_ERRORS, BasketLine, Item, line_for, parse_catalog, total
from firmware.core.money import Currency
from firmware.core.track import parse_swipe
from firmware.records.journal import Journal, NewSale
from firmware.shell import cli

CNY = Currency.of("CNY")
SAMPLE = ROOT / "config" / "items-sample.csv"


def test_parse_utf8_with_bom_and_gb18030():
    text = "plu,name,price,tax_rate\n1001,矿泉水 WATER,2.00,13\n2001,苹果,12,6.5%\n4001,报纸,1.5,\n"
    for raw in (b"\xef\xbb\xbf" + text.encode("utf-8"), text.encode("gb18030")):
        items, errors = parse_catalog(raw, CNY)
        assert errors == []
        assert items == [
            Item("1001", "矿泉水 WATER", 200, 1300),
            Item("2001", "苹果", 1200, 650),
            Item("4001", "报纸", 150, 0),
        ]


def test_bad_lines_are_each_named():
    raw = (
        b"plu,name,price,tax_rate\n1001,Water,2.00,13\nABC,Bad code,1.00,0\n1002,,1.00,0\n1003,Cheap,0.00,0\n"
        b"1004,Odd,1.234,0\n1005,Taxed,1.00,13.333\n1001,Again,2.00,13\n"
    )
    items, errors = parse_catalog(raw, CNY)
    assert [i.plu for i in items] == ["1001"]
    assert errors == [
        "line 3: plu must be 1 to 8 digits",
        "line 4: name is empty",
        "line 5: price must be above zero",
        "line 6: price: not an amount in CNY: '1.234' (at most 2 decimals)",
        "line 7: tax_rate must be a percentage from 0 to 100 with at most two decimals",
        "line 8: plu 1001 appears twice (first on line 2)",
    ]
    assert parse_catalog(b"code,title\n1,x\n", CNY)[1] == [
        "line 1: the header lacks plu, name, price (expected plu,name,price,tax_rate)"
    ]


HEAD = "plu,name,price,tax_rate\n"


def _errors(body: str | bytes, **kw) -> list[str]:
    raw = body if isinstance(body, bytes) else (HEAD + body).encode("utf-8-sig")
    return parse_catalog(raw, CNY, **kw)[1]


@pytest.mark.parametrize(
    "name, shown",
    [
        ("DRAWER\x1bp\x00\x19\x19", "U+001B (ESC)"),  # ESC p: kick the cash drawer
        ("CUT\x1dV\x00", "U+001D (GS)"),  # GS V: cut the paper
        ("CLS\x1b[2J", "U+001B (ESC)"),  # ANSI: clear the console
        ("CSI\x9b2J", "U+009B"),  # the one-byte CSI of C1
        ("ABC\u202eDEF", "U+202E (RIGHT-TO-LEFT OVERRIDE)"),  # bidi override
        ("ZW\u200bSP", "U+200B (ZERO WIDTH SPACE)"),
        ('"TAB\tNAME"', "U+0009 (TAB)"),
        ('"TWO\nLINES"', "U+000A (LINE FEED)"),
    ],
)
def test_control_characters_in_a_name_are_refused_with_the_line(name, shown):
    errors = _errors(f"1001,Water,2.00,13\n1002,{name},1.00,0\n")
    assert len(errors) == 1 and errors[0].startswith("line 3: name contains ") and shown in errors[0], errors


def test_a_formula_like_name_is_stored_as_it_is():
    items, errors = parse_catalog(
        (HEAD + "1,=cmd|' /C calc'!A0,1.00,0\n2,+SUM(A1),1.00,0\n3,@x,1,0\n4,-2+3,1,0\n").encode(), CNY
    )
    assert errors == [] and [i.name for i in items] == ["=cmd|' /C calc'!A0", "+SUM(A1)", "@x", "-2+3"]


@pytest.mark.parametrize(
    "price, message",
    [
        ("1e23", "price: not an amount in CNY: '1e23' (write digits, e.g. 12.50)"),
        ("100000000000000000000000", "price 100000000000000000000000 is above the most an item may cost, 99999999.99"),
        ("100000000.00", "is above the most an item may cost"),
        ("-1.00", "price must be above zero"),
        ("0", "price must be above zero"),
        ("0.00", "price must be above zero"),
        ("\uff11\uff12", "price: not an amount"),  # full-width digits
        ("\u00b2", "price: not an amount"),  # a superscript: str.isdigit() says yes
        ("NaN", "price: not an amount"),
        ("", "price: not an amount"),
    ],
)
def test_prices_out_of_bounds_are_refused(price, message):
    errors = _errors(f"1001,Water,{price},13\n")
    assert len(errors) == 1 and errors[0].startswith("line 2: ") and message in errors[0], errors


def test_price_bounds_and_the_tills_max_amount():
    assert parse_catalog((HEAD + "1,Gold,99999999.99,0\n").encode(), CNY)[0][0].price == 10**10 - 1
    assert _errors("1,Gold,50.01,0\n", max_price=5000) == [
        "line 2: price 50.01 is above the most an item may cost, 50.00"
    ]


@pytest.mark.parametrize("tax", ["1e999999", "sNaN", "Infinity", "\u00b9\u00b3", "13,5", "101", "-1"])
def test_odd_tax_rates_are_refused(tax):
    errors = _errors(f'1001,Water,2.00,"{tax}"\n')
    assert len(errors) == 1 and "tax_rate" in errors[0], errors


def test_plu_codes_are_ascii_digits():
    errors = _errors("\uff11\uff12,Full width,1.00,0\n\u00b9\u00b2,Superscript,1.00,0\n123456789,Long,1,0\n")
    assert errors == [
        "line 2: plu must be 1 to 8 digits",
        "line 3: plu must be 1 to 8 digits",
        "line 4: plu must be 1 to 8 digits",
    ]


def test_duplicates_extra_fields_and_blank_lines_name_the_right_lines():
    errors = _errors(
        "1001,Water,2.00,13\n\n,,,\n2001,Apple,12.00,9\n1001,Water again,2.00,13\n"
        "3001,Rice,1,234.00\n3002,Oil,1,234.00,13\n3003,Salt,1.00,0,,\n"
    )
    assert errors == [
        "line 6: plu 1001 appears twice (first on line 2)",
        "line 7: tax_rate must be a percentage from 0 to 100 with at most two decimals",
        "line 8: 5 fields but the header has 4 (a comma in a name or price? put the name in double "
        "quotes; write prices without thousands separators)",
    ]


def test_header_problems():
    assert parse_catalog(b"plu,name,name,price\n", CNY)[1] == ["line 1: the header names name twice"]
    assert parse_catalog(b"", CNY)[1] == [
        "line 1: the header lacks plu, name, price (expected plu,name,price,tax_rate)"
    ]
    tabbed = "plu\tname\tprice\n1\tWater\t2.00\n"
    assert parse_catalog(codecs.BOM_UTF16_LE + tabbed.encode("utf-16-le"), CNY)[1] == [
        'line 1: the file is separated by tabs, not commas ("Unicode text"?); save it as CSV UTF-8'
    ]


def test_line_endings_of_every_spreadsheet_and_no_others():
    for end in ("\n", "\r\n", "\r"):  # Unix, Windows, old Mac Excel
        raw = (end.join(["plu,name,price", "1,Water,2.00", "2,Apple,3.00", "x,Bad,1"]) + end).encode("utf-8-sig")
        items, errors = parse_catalog(raw, CNY)
        assert [i.plu for i in items] == ["1", "2"] and errors == ["line 4: plu must be 1 to 8 digits"], repr(end)
    items, errors = parse_catalog((HEAD + "1,A\u20282,B,1.00\n").encode("utf-8-sig"), CNY)
    assert items == [] and errors[0].startswith("line 2: name contains U+2028 (LINE SEPARATOR)")


def test_an_unclosed_quote_is_a_line_numbered_error():
    errors = _errors('1,"Water,2.00,13\n' + "2,Apple,1.00,0\n" * 20000)
    assert len(errors) == 1 and errors[0].startswith("line ") and "not readable as CSV" in errors[0], errors


def test_many_bad_lines_are_counted_not_all_listed():
    errors = _errors("".join(f"{n},,1.00,0\n" for n in range(1, MAX_ERRORS + 151)))
    assert len(errors) == MAX_ERRORS + 1 and errors[0] == "line 2: name is empty"
    assert errors[-1] == "... and 150 more bad lines"


TEXT = HEAD + "1001,矿泉水 WATER,2.00,13\n4001,报纸,1.5,\n"
WANT = [Item("1001", "矿泉水 WATER", 200, 1300), Item("4001", "报纸", 150, 0)]


@pytest.mark.parametrize(
    "raw",
    [
        codecs.BOM_UTF16_LE + TEXT.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + TEXT.encode("utf-16-be"),
        TEXT.encode("utf-16"),  # Python writes the BOM of this machine's order
    ],
    ids=["utf-16-le", "utf-16-be", "utf-16-native"],
)
def test_utf16_with_its_bom_is_read(raw):
    assert parse_catalog(raw, CNY) == (WANT, [])


@pytest.mark.parametrize(
    "raw, message",
    [
        (TEXT.encode("utf-16-le"), "line 1: NUL bytes: the file looks like UTF-16 without a byte-order mark"),
        (TEXT.encode("utf-32"), "line 1: the file is UTF-32"),
        ((HEAD + "1,Crème brûlée,2.00,0\n").encode("latin-1"), "line 2: the file is neither UTF-8 nor GB18030 Chinese"),
        ((HEAD + "1,Café,2.00,0\n").encode("latin-1"), "line 2: the file is neither UTF-8 nor GB18030 Chinese"),
        ((HEAD + "1,Water,2.00,0\n2,Cafe\xa0latte,2.00,0\n").encode("cp1252"), "line 3: the file is neither"),
        (b"plu,name,price\r1,Water,2.00\r2,Caf\xe9,1.00\r", "line 3: the file is neither"),  # old Mac line ends
        (
            b"\xef\xbb\xbf" + (HEAD + "1,Caf\xe9,2.00,0\n").encode("latin-1"),
            "line 2: the file starts as UTF-8 but is not",
        ),
        (codecs.BOM_UTF16_LE + b"p\x00l\x00\x00\xdc", "line 1: the file starts as UTF-16 but is not"),
    ],
)
def test_other_encodings_are_refused_with_a_line(raw, message):
    items, errors = parse_catalog(raw, CNY)
    assert items == [] and len(errors) == 1 and errors[0].startswith(message), errors
    assert "CSV UTF-8" in errors[0]


def test_gb18030_that_also_reads_as_utf8_is_refused_not_imported_as_mojibake():
    raw = (HEAD + "1,Water,2.00,13\n2,茅台,1499.00,13\n").encode("gb18030")
    assert raw.decode("utf-8")  # 茅台 in GB18030 is valid UTF-8: "ę́"
    items, errors = parse_catalog(raw, CNY)
    misread = raw.decode("utf-8").split("\n")[2]
    assert items == [] and errors == [
        f"line 3: the file reads both as UTF-8 ({misread!r}) and as GB18030 ('2,茅台,1499.00,13'); "
        "save it as CSV UTF-8 (with the BOM) so the import knows which"
    ]
    saved_right = b"\xef\xbb\xbf" + (HEAD + "2,茅台,1499.00,13\n").encode("utf-8")
    assert parse_catalog(saved_right, CNY) == ([Item("2", "茅台", 149900, 1300)], [])
    # The same rule refuses UTF-8 without a BOM whose only non-ASCII letters also read as GB2312 Chinese
    # ("Café" is also "Caf茅"); with the BOM, or with any Chinese text in UTF-8, it is read as UTF-8.
    assert "reads both as UTF-8" in parse_catalog((HEAD + "1,Café,2.00,0\n").encode(), CNY)[1][0]
    assert parse_catalog(b"\xef\xbb\xbf" + (HEAD + "1,Café,2.00,0\n").encode(), CNY)[0][0].name == "Café"
    assert parse_catalog((HEAD + "1,Café 咖啡,2.00,0\n").encode(), CNY)[0][0].name == "Café 咖啡"


def test_gbk_outside_gb2312_is_refused_as_possibly_another_encoding():
    raw = (HEAD + "1,喆,2.00,0\n").encode("gb18030")  # in GBK, not in GB2312
    assert parse_catalog(raw, CNY)[1][0].startswith("line 2: the file is neither UTF-8 nor GB18030 Chinese")
    assert parse_catalog(b"\xef\xbb\xbf" + (HEAD + "1,喆,2.00,0\n").encode(), CNY)[0][0].name == "喆"


def test_line_arithmetic_is_integer():
    line = BasketLine("1", "x", 3, 377, 1300)  # 11.31 with 13% inside
    assert line.amount == 1131 and line.tax == 130  # 1131 * 13 / 113 = 130.1 -> 130
    assert BasketLine("1", "x", 1, 113, 1300).tax == 13
    assert total([line, line_for(Item("2", "y", 50), 2)]) == 1231


CATALOG = {"1001": Item("1001", "WATER", 200, 1300), "2001": Item("2001", "APPLE", 1200, 900)}
CFG = flow.FlowConfig(CNY, max_amount=5000)


def keys(state, names, cfg=CFG, catalog=CATALOG):
    """Press keys; CheckCatalogue and LookupItem are answered from `catalog`, as the shell answers them from
    the journal."""
    effects = []
    for name in names:
        state, effects = flow.step(state, events.Key(name), cfg)
        for eff in effects:
            if isinstance(eff, CheckCatalogue):
                state, effects = flow.step(state, events.CatalogueChecked(bool(catalog)), cfg)
            elif isinstance(eff, LookupItem):
                state, effects = flow.step(state, events.ItemFound(eff.code, catalog.get(eff.code)), cfg)
    return state, effects


def test_the_lookup_is_the_shells_and_answers_only_its_code():
    state, effects = flow.step(states.ItemCode(code="1001"), events.Key("ENTER"), CFG)
    assert effects == [LookupItem("1001")] and state.looking
    same, effects = flow.step(state, events.Key("5"), CFG)  # keys wait for the answer
    assert same == state and effects == []
    stale, _ = flow.step(state, events.ItemFound("2001", CATALOG["2001"]), CFG)
    assert stale == state
    found, _ = flow.step(state, events.ItemFound("1001", CATALOG["1001"]), CFG)
    assert found == states.ItemQty((), CATALOG["1001"])


def test_keying_a_basket():
    state, _ = keys(flow.IDLE, ["F3", "1", "0", "0", "1", "ENTER", "3", "ENTER"])
    assert state == states.Amount(600, basket=(BasketLine("1001", "WATER", 3, 200, 1300),))
    assert "TOTAL CNY 6.00" in flow.render(state, CFG)
    state, _ = keys(state, ["F3", "2", "0", "0", "1", "ENTER", "ENTER"])  # ENTER alone: one
    assert state.value == 1800 and len(state.basket) == 2
    basket = state.basket
    state, _ = keys(state, ["ENTER"])
    assert state == states.AwaitCard(1800, basket=basket) and [ln.plu for ln in basket] == ["1001", "2001"]
    # the lines travel with the payment to the effect that journals the sale, whichever way it is paid
    with_wallet = dataclasses.replace(CFG, wallets=("alipay",))
    assert keys(state, ["F1"], with_wallet)[1][0] == StartQrOrder(1800, basket, provider="alipay")
    state, effects = keys(state, ["CLEAR"])  # back to the basket, lines and all
    assert state == states.Amount(1800, basket=basket)
    paying, _ = keys(state, ["ENTER"])
    card = parse_swipe(";4242424242424242=30121010000000000000?")
    pin = EncryptedPin(block="1B9C1845EB993A7A", ksn="FFFF9876543210E00001")
    for event in (events.Swiped(card), events.PinEntered(pin)):
        paying, effects = flow.step(paying, event, CFG)
    assert Authorize(1800, card, pin, basket) in effects


def test_basket_corrections_and_refusals():
    state, _ = keys(flow.IDLE, ["F3", "9", "9", "ENTER"])
    assert isinstance(state, states.ItemCode) and state.notice == "NO ITEM 99"
    state, _ = keys(state, ["1", "0", "0", "1", "ENTER", "CLEAR", "CLEAR"])  # back to the code, then out
    assert isinstance(state, states.ItemCode) and state.code == "100"
    state, _ = keys(state, ["1", "ENTER", "2", "ENTER", "F3", "2", "0", "0", "1", "ENTER", "ENTER"])
    assert state.value == 1600
    state, _ = keys(state, ["CLEAR"])  # drops the last line
    assert state.value == 400 and len(state.basket) == 1
    state, _ = keys(state, ["7"])
    assert state.notice == "F3 ADDS AN ITEM" and state.value == 400
    state, _ = keys(state, ["F3", "2", "0", "0", "1", "ENTER", "5", "ENTER"])  # 60.00 > max 50.00
    assert isinstance(state, states.ItemQty) and state.notice == "AMOUNT TOO HIGH"
    state, _ = keys(state, ["CANCEL"])
    assert state.value == 400  # the basket survives
    state, _ = keys(flow.IDLE, ["5", "F3"])
    assert state.notice == "CLEAR AMOUNT FIRST"  # no mixing a typed amount
    plain, effects = keys(flow.IDLE, ["5", "0", "0", "ENTER"])
    assert plain == states.AwaitCard(500) and plain.basket == ()  # a plain amount has no lines
    no_catalog, effects = keys(flow.IDLE, ["F3"], catalog={})
    assert no_catalog == flow.IDLE and effects == []  # F3 means nothing without a catalogue
    asked, effects = flow.step(flow.IDLE, events.Key("F3"), CFG)  # asked every time: an import counts at once
    assert asked == flow.IDLE and effects == [CheckCatalogue()]


def test_basket_sale_end_to_end(tmp_path):
    from hwsim import Simulator

    with Simulator(tmp_path / "data", SIM_TOML, items=SAMPLE) as sim:
        sim.keys("{F3}1001{ENTER}2{ENTER}")  # two waters
        sim.keys("{F3}2001{ENTER}{ENTER}")  # one kilo of apples
        sim.wait_for("TOTAL CNY 16.00")
        sim.keys("{ENTER}")
        sim.wait_for("SWIPE")
        sim.swipe("visa-approve")
        sim.wait_for("ENTER PIN")
        sim.pin("1234")
        sim.wait_for("APPROVED")
        merchant, customer = sim.wait_for_receipts(2)
        journal = Journal(sim.data_dir / "journal.sqlite3")
        try:
            [row] = sales(sim)
            assert row["amount"] == 1600
            assert [(ln.plu, ln.quantity, ln.amount) for ln in journal.lines_of(row["id"])] == [
                ("1001", 2, 400),
                ("2001", 1, 1200),
            ]
        finally:
            journal.close()
        for receipt in (merchant, customer):
            assert "矿泉水 WATER 550ML" in receipt and "苹果 APPLE (1KG)" in receipt
            assert "2 x 2.00" in receipt and "12.00" in receipt
        assert_ledger_agrees(sim)


def test_best_sellers_count_only_sales_that_stand(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    now = datetime(2026, 11, 26, 10, 0)
    water, apple, bread = Item("1001", "WATER", 200), Item("2001", "APPLE", 1200), Item("3001", "BREAD", 500)

    def sale(lines, status):
        row, _ = j.begin_sale(NewSale("card", "swipe", total(lines), "CNY", "", "T1", "M1", lines=tuple(lines)), now)
        j.finish(row, status, now, response_code="00" if status == "approved" else "05")

    sale([line_for(water, 5), line_for(apple, 1)], "approved")
    sale([line_for(water, 1), line_for(bread, 2)], "approved")
    sale([line_for(bread, 9)], "declined")  # never sold
    best = j.best_sellers("2026-11-26", "2026-11-26")
    assert best["by_quantity"] == [("1001", "WATER", 6, 1200), ("3001", "BREAD", 2, 1000), ("2001", "APPLE", 1, 1200)]
    assert best["by_revenue"] == [("1001", "WATER", 6, 1200), ("2001", "APPLE", 1, 1200), ("3001", "BREAD", 2, 1000)]
    assert j.best_sellers("2026-11-27", "2026-11-27") == {"by_quantity": [], "by_revenue": []}
    j.close()


def _cli(monkeypatch, capsys, lines, *argv):
    monkeypatch.setattr(sys, "stdin", io.StringIO("".join(x + "\n" for x in lines)))
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_items_import_command(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    bad = tmp_path / "bad.csv"
    bad.write_text("plu,name,price\n1,ok,1.00\n2,,1.00\n", encoding="utf-8")
    code, out = _cli(
        monkeypatch, capsys, ["8888"], "items", "import", str(bad), "--config", str(SIM_TOML), "--data-dir", str(data)
    )
    assert code == 2 and "line 3: name is empty" in out and "nothing imported" in out
    code, out = _cli(
        monkeypatch,
        capsys,
        ["1111"],
        "items",
        "import",
        str(SAMPLE),
        "--config",
        str(SIM_TOML),
        "--data-dir",
        str(data),
    )
    assert code == 1 and "needs the manager PIN" in out  # a cashier may not
    code, out = _cli(
        monkeypatch,
        capsys,
        ["8888"],
        "items",
        "import",
        str(SAMPLE),
        "--config",
        str(SIM_TOML),
        "--data-dir",
        str(data),
    )
    assert code == 0 and "8 items imported" in out
    code, out = _cli(monkeypatch, capsys, [], "items", "list", "--config", str(SIM_TOML), "--data-dir", str(data))
    assert code == 0 and "矿泉水 WATER 550ML" in out and "13.90" in out
    smaller = tmp_path / "smaller.csv"
    smaller.write_text("plu,name,price,tax_rate\n1001,水,2.50,13\n", encoding="utf-8")
    code, out = _cli(
        monkeypatch,
        capsys,
        ["8888"],
        "items",
        "import",
        str(smaller),
        "--replace",
        "--config",
        str(SIM_TOML),
        "--data-dir",
        str(data),
    )
    assert code == 0 and "1 items imported, 7 removed" in out
    j = Journal(data / "journal.sqlite3")
    assert j.catalog() == {"1001": Item("1001", "水", 250, 1300)}
    j.close()


def test_cashier_sign_in_and_the_80mm_report(tmp_path):
    import dataclasses

    from conftest import sim_config
    from hwsim import Simulator

    cfg = sim_config()
    cfg = dataclasses.replace(cfg, printer=dataclasses.replace(cfg.printer, width=48))  # 80 mm paper
    with Simulator(tmp_path / "data", cfg, items=SAMPLE) as sim:
        sim.keys("{F4}")
        sim.wait_for("CASHIER SIGN-IN PIN")
        sim.keys("1234{ENTER}")
        sim.wait_for("WRONG OPERATOR PIN")
        sim.keys("{ENTER}{F4}")
        sim.wait_for("CASHIER SIGN-IN PIN")
        sim.keys("3333{ENTER}")
        sim.wait_for("CASHIER 02")
        sim.keys("{ENTER}{F3}3002{ENTER}3{ENTER}{ENTER}")  # three milks, 41.70
        sim.wait_for("SWIPE")
        sim.swipe("visa-approve")
        sim.pin("1234")
        sim.wait_for("APPROVED")
        sim.wait_for_receipts(2)
        report = print_todays_report(sim, 2)
        [row] = sales(sim)
    assert row["operator"] == "cashier 02"
    assert "牛奶 MILK 1L" in report and "x3" in report and "cashier 02 (1)" in report and "CNY 41.70" in report
    assert "示例小店" in report
