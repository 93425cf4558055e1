"""Reports: every figure against hand-computed totals on a known journal, and the command-line tools."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

from firmware.core import reports
from firmware.core.money import Currency
from firmware.core.receipt import text_width
from firmware.records.journal import Journal, NewSale

CN = timezone(timedelta(hours=8))
DAY = "2026-11-26"


def at(hour: int, minute: int = 0, day: int = 26) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=CN)


def sale(j, amount, status, when, method="card", entry="swipe", pan="424242******4242"):
    row, stan = j.begin_sale(NewSale(method, entry, amount, "CNY", pan, "SIM00001", "102030405060708"), when)
    if status != "pending":
        j.finish(row, status, when, response_code="00" if status == "approved" else "51")
    return row


def known_journal(path) -> Journal:
    j = Journal(path)
    s1 = sale(j, 1250, "approved", at(9, 15))  # swipe
    sale(j, 990, "approved", at(9, 40), entry="contactless")  # tap
    sale(j, 5000, "approved", at(14, 5), method="wallet", entry="qr", pan="")
    sale(j, 300, "declined", at(14, 30))
    s5 = sale(j, 2000, "approved", at(18, 0))  # voided below
    sale(j, 777, "approved", at(10, 0, day=25))  # the day before: not in the day report
    f = j.begin_follow_up("refund", s1, 250, "card", "k1", "", at(19, 0))
    j.finish(f.id, "approved", at(19, 0))
    f = j.begin_follow_up("refund", s1, 100, "cash", "k2", "", at(19, 5))
    j.finish(f.id, "approved", at(19, 5))
    v = j.begin_follow_up("void", s5, 2000, "card", "k3", "", at(18, 10))
    j.finish(v.id, "approved", at(18, 10))
    return j


def test_day_report_figures(tmp_path):
    j = known_journal(tmp_path / "j.sqlite3")
    r = reports.build(j.figures(DAY, DAY), date(2026, 11, 26), date(2026, 11, 26), "CNY")
    # Sales that stand: 12.50 + 9.90 + 50.00 (the 20.00 sale was voided, the 3.00 one declined).
    assert (r.sales_count, r.sales_amount) == (3, 7240)
    assert (r.refund_count, r.refund_amount) == (2, 350)
    assert (r.void_count, r.void_amount) == (1, 2000)
    assert r.declined_count == 1 and r.net_amount == 6890
    split = {m.method: (m.count, m.amount, m.share_permille) for m in r.methods}
    assert split == {
        "card swipe": (1, 1250, 173),
        "card contactless": (1, 990, 137),
        "wallet (code shown)": (1, 5000, 691),
    }  # 1250/7240 = 17.3 %, ...
    assert r.by_hour == {9: (2, 2240), 14: (1, 5000)}
    text = "\n".join(reports.as_text(r, Currency.of("CNY")))
    assert "SALES (3)" in text and "CNY 72.40" in text and "NET" in text and "CNY 68.90" in text
    assert all(len(line) <= 32 for line in reports.as_text(r, Currency.of("CNY")) if line.isascii())


def test_each_wallet_is_counted_apart_in_the_method_split(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    for amount, provider, entry in ((1000, "alipay", "qr"), (3000, "wechat", "code"), (500, "wechat", "code")):
        sale_row, _ = j.begin_sale(
            NewSale("wallet", entry, amount, "CNY", "", "SIM00001", "102030405060708", provider=provider), at(11)
        )
        j.finish(sale_row, "approved", at(11))
    r = reports.build(j.figures(DAY, DAY), date(2026, 11, 26), date(2026, 11, 26), "CNY")
    split = {m.method: (m.count, m.amount) for m in r.methods}
    assert split == {"alipay (code shown)": (1, 1000), "wechat pay (code scanned)": (2, 3500)}
    assert all(len(line) <= 32 for line in reports.as_text(r, Currency.of("CNY")) if line.isascii())


def test_range_report_includes_the_day_before(tmp_path):
    j = known_journal(tmp_path / "j.sqlite3")
    r = reports.build(j.figures("2026-11-25", DAY), date(2026, 11, 25), date(2026, 11, 26), "CNY")
    assert (r.sales_count, r.sales_amount) == (4, 8017)


def test_command_line_report_and_export(tmp_path):
    known_journal(tmp_path / "j.sqlite3").close()
    (tmp_path / "j.sqlite3").rename(tmp_path / "journal.sqlite3")

    def run(*a):
        return subprocess.run(
            [sys.executable, "-m", "firmware.shell.cli", *a, "--data-dir", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = run("report", "--from", DAY, "--format", "json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["sales_amount"] == 7240 and data["net_amount"] == 6890 and data["by_hour"]["09"]["count"] == 2
    exported = run("export", "--from", "2026-11-25", "--to", DAY)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 9 and rows[0]["amount"] == "12.50" and rows[0]["currency"] == "CNY"
    assert rows[0]["masked_pan"] == "424242******4242" and rows[0]["reference"].startswith("SIM00001")
    assert run("report", "--from", "26/11/2026").returncode == 2
    text = run("report", "--from", DAY)
    assert "SALES REPORT" in text.stdout and "CNY 72.40" in text.stdout


def test_report_printed_from_the_terminal(tmp_path):
    from conftest import print_todays_report, sim_config
    from hwsim import Simulator

    with Simulator(tmp_path / "data", sim_config()) as sim:
        sim.keys("1250{ENTER}")
        sim.swipe("visa-approve")
        sim.pin("1234")
        sim.wait_for("APPROVED")
        sim.wait_for_receipts(2)
        report = print_todays_report(sim, 2)
    assert "销售报表" in report and "SALES (1)" in report and "CNY 12.50" in report and "示例小店" in report


RULES = reports.AnomalyRules(
    refund_share_percent=20, declines_per_card=3, opening=(8, 22), limits=(10000,), just_under_count=3
)
CNY = Currency.of("CNY")


def rows_of(j):
    return j.anomaly_rows("2026-11-01", "2026-11-30")


def sale_with_token(j, amount, status, when, token="t1"):
    row, _ = j.begin_sale(
        NewSale("card", "swipe", amount, "CNY", "424242******4242", "SIM00001", "1", card_token=token), when
    )
    j.finish(row, status, when)
    return row


def test_anomaly_rules_quiet_day(tmp_path):
    j = known_journal(tmp_path / "j.sqlite3")  # refunds 3.50 of 72.40: 4.8 %
    found = reports.anomalies(rows_of(j), RULES, CNY)
    # Only the 1.00 paid out in cash for a card sale stands out (the 2.50 went back to the card).
    assert [(a.rule, len(a.ids)) for a in found] == [("refund not to the paying card", 1)]


def test_cash_refund_of_a_card_sale_rule(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    s1 = sale(j, 20000, "approved", at(10))  # refunds stay under the 20 % share
    f = j.begin_follow_up("refund", s1, 1000, "card", "k1", "", at(11))
    j.finish(f.id, "approved", at(11))
    assert reports.anomalies(rows_of(j), RULES, CNY) == []  # back to the card: nothing to see
    f = j.begin_follow_up("refund", s1, 500, "cash", "k2", "", at(12))
    j.finish(f.id, "approved", at(12))
    [found] = reports.anomalies(rows_of(j), RULES, CNY)
    assert found.rule == "refund not to the paying card" and found.ids == (f.id,)


def test_refund_share_rule(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    s1 = sale(j, 1000, "approved", at(10))
    f = j.begin_follow_up("refund", s1, 300, "card", "k", "", at(11))
    j.finish(f.id, "approved", at(11))
    [a] = reports.anomalies(rows_of(j), RULES, CNY)
    assert a.rule == "refund share" and "30%" in a.detail and a.ids == (f.id,)
    loose = reports.AnomalyRules(refund_share_percent=40, limits=())
    assert reports.anomalies(rows_of(j), loose, CNY) == []


def test_declines_on_one_card_rule(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    ids = [sale_with_token(j, 500, "declined", at(10, m), "cardA") for m in range(3)]
    sale_with_token(j, 500, "declined", at(11), "cardB")  # another card: not counted with A
    sale_with_token(j, 500, "declined", at(11, 5), "cardB")
    [a] = reports.anomalies(rows_of(j), RULES, CNY)
    assert a.rule == "declines on one card" and a.ids == tuple(ids) and "424242******4242" in a.detail


def test_outside_hours_rule(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    sale(j, 500, "approved", at(12))
    late = sale(j, 500, "approved", at(23, 30))
    [a] = reports.anomalies(rows_of(j), RULES, CNY)
    assert a.rule == "outside opening hours" and a.ids == (late,)


def test_just_under_the_limit_rule(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    near = [sale(j, amount, "approved", at(12, i)) for i, amount in enumerate((9999, 9600, 9500))]
    sale(j, 10000, "approved", at(13))  # at the limit: not "under"
    sale(j, 9000, "approved", at(13, 5))  # well under: not suspicious
    [a] = reports.anomalies(rows_of(j), RULES, CNY)
    assert a.rule == "just under a limit" and a.ids == tuple(near)
    two = Journal(tmp_path / "k.sqlite3")
    for i in range(2):
        sale(two, 9990, "approved", at(12, i))
    assert reports.anomalies(rows_of(two), RULES, CNY) == []


def items_and_operators_journal(path) -> Journal:
    from firmware.core.items import Item, line_for

    j = Journal(path)
    water, apple = Item("1001", "矿泉水 WATER", 200, 1300), Item("2001", "苹果 APPLE", 1200, 900)
    for lines, status, who, hour in (
        ([line_for(water, 3)], "approved", "cashier 01", 9),
        ([line_for(water, 1), line_for(apple, 2)], "approved", "cashier 02", 10),
        ([line_for(apple, 5)], "declined", "cashier 02", 11),
        ([line_for(apple, 1)], "approved", "cashier 01", 12),
    ):
        total = sum(x.amount for x in lines)
        row, _ = j.begin_sale(
            NewSale(
                "card", "swipe", total, "CNY", "424242******4242", "SIM00001", "1", lines=tuple(lines), operator=who
            ),
            at(hour),
        )
        j.finish(row, status, at(hour), response_code="00" if status == "approved" else "51")
    f = j.begin_follow_up("refund", 1, 200, "card", "k1", "", at(13), operator="manager")
    j.finish(f.id, "approved", at(13))
    return j


def test_items_and_operators_in_the_report(tmp_path):
    j = items_and_operators_journal(tmp_path / "j.sqlite3")
    r = reports.build(j.figures(DAY, DAY), date(2026, 11, 26), date(2026, 11, 26), "CNY")
    # Water: 3 + 1 = 4 sold, 8.00; apples: 2 + 1 = 3 sold (the declined 5 never left), 36.00.
    assert [(i.plu, i.quantity, i.amount) for i in r.items_by_quantity] == [("1001", 4, 800), ("2001", 3, 3600)]
    assert [(i.plu, i.quantity, i.amount) for i in r.items_by_revenue] == [("2001", 3, 3600), ("1001", 4, 800)]
    ops = {o.operator: (o.sales_count, o.sales_amount, o.refund_count, o.refund_amount) for o in r.operators}
    assert ops == {"cashier 01": (2, 1800, 0, 0), "cashier 02": (1, 2600, 0, 0), "manager": (0, 0, 1, 200)}
    for width in (32, 48):  # 58 mm and 80 mm paper
        lines = reports.as_text(r, CNY, width)
        assert all(text_width(x) <= width for x in lines), width
        text = "\n".join(lines)
        assert "BEST SELLERS BY QUANTITY" in text and "苹果 APPLE" in text and "x4" in text
        assert "BY OPERATOR" in text and "cashier 02 (1)" in text and "-CNY 2.00" in text
    data = json.loads(reports.as_json(r))
    assert (
        data["items_by_revenue"][0]["name"] == "苹果 APPLE" and data["operators"]["cashier 01"]["sales_amount"] == 1800
    )
    rows = list(csv.reader(io.StringIO(reports.report_csv(r, CNY))))
    assert ["item 2001 苹果 APPLE", "3", "36.00", "CNY"] in rows
    assert ["operator manager: refunds", "1", "2.00", "CNY"] in rows


def test_charts(tmp_path):
    from PIL import Image

    j = known_journal(tmp_path / "j.sqlite3")
    r = reports.build(j.figures(DAY, DAY), date(2026, 11, 26), date(2026, 11, 26), "CNY")
    pngs = reports.charts(r, CNY)
    assert set(pngs) == {"sales-by-hour.png", "method-split.png"}
    hours = Image.open(io.BytesIO(pngs["sales-by-hour.png"])).convert("RGB")
    slot, left, base = (720 - 60 - 20) // 24, 60, 360 - 40 - 1

    def bar_height(hour):
        x = left + hour * slot + slot // 2
        return sum(1 for y in range(0, base + 1) if hours.getpixel((x, y)) == reports.CHART_BAR)

    # 09:00 sold 22.40 and 14:00 sold 50.00: the 14:00 bar is the full height, 09:00 is 22.40/50.00 of it.
    assert bar_height(14) == 360 - 40 - 40 and bar_height(9) == 2240 * 280 // 5000
    assert bar_height(3) == 0
    split = Image.open(io.BytesIO(pngs["method-split.png"])).convert("RGB")
    colours = [split.getpixel((x, 48)) for x in range(20, 700)]
    widths = [colours.count(c) for c in reports.METHOD_COLOURS[:3]]
    assert abs(widths[2] - 680 * 691 // 1000) <= 3  # wallet 69.1 % of the bar


def test_report_command_writes_charts_and_80mm(tmp_path):
    j = known_journal(tmp_path / "journal.sqlite3")
    j.close()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "firmware.shell.cli",
            "report",
            "--from",
            DAY,
            "--data-dir",
            str(tmp_path),
            "--width",
            "48",
            "--charts",
            str(tmp_path / "charts"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert max(len(x) for x in out.splitlines()) <= 48 and "SALES REPORT" in out
    assert (tmp_path / "charts" / "sales-by-hour.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fallback_swipes_rule(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")

    def swipe(token, chip, hour):
        row, _ = j.begin_sale(
            NewSale(
                "card", "swipe", 800, "CNY", "476173******0010", "SIM00001", "1", card_token=token, chip_swiped=chip
            ),
            at(hour),
        )
        j.finish(row, "approved", at(hour))
        return row

    swipe("cardA", True, 10)
    swipe("cardB", True, 11)  # another chip card, once: fine
    swipe("cardA", False, 12)  # a stripe-only swipe: not fallback
    assert reports.anomalies(rows_of(j), RULES, CNY) == []
    third = swipe("cardA", True, 13)
    [a] = reports.anomalies(rows_of(j), RULES, CNY)
    assert a.rule == "fallback swipes of a chip card" and a.ids == (1, third) and "476173" in a.detail


def test_a_swiped_chip_card_is_journaled_as_fallback(tmp_path):
    from conftest import sim_config
    from hwsim import Simulator
    from hwsim.cards import card

    c = card("visa-approve")
    with Simulator(tmp_path / "data", sim_config()) as sim:
        for n in range(2):
            sim.keys(f"{n + 1}00{{ENTER}}")
            sim.wait_for("SWIPE")
            sim.swipe(track2=f";{c.pan}={c.expiry}201{c.discretionary}?")  # service code 2xx: the card has a chip
            sim.pin("1234")
            sim.wait_for("APPROVED")
            sim.keys("{ENTER}")
        rows = [dict(r) for r in sim.journal() if r["kind"] == "sale"]
        assert [r["chip_swiped"] for r in rows] == [1, 1]
        journal = Journal(sim.data_dir / "journal.sqlite3")
        all_day = reports.AnomalyRules(opening=(0, 24), limits=())  # whatever the hour the test runs
        found = reports.anomalies(journal.anomaly_rows("2000-01-01", "2100-01-01"), all_day, CNY)
        journal.close()
    assert [a.rule for a in found] == ["fallback swipes of a chip card"]


def test_csv_exports_escape_cells_a_spreadsheet_would_run():
    """Text that came from a host, a wallet or an item name is exported as text: a cell that starts like a
    formula gets a leading quote (OWASP); numbers and amounts stay numbers."""
    hostile = {
        "=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0",
        "+SUM(1,2)": "'+SUM(1,2)",
        "-2+3": "'-2+3",
        "@SUM(A1)": "'@SUM(A1)",
        "\t=1": "'\t=1",
        "\r=1": "'\r=1",
        "\uff1d1+1": "'\uff1d1+1",
        "-12.50": "-12.50",
        "42": "42",
        "a=b": "a=b",
        "": "",
    }
    for cell, want in hostile.items():
        assert reports.spreadsheet_safe(cell) == want, cell
    row = {c: None for c in reports.EXPORT_COLUMNS}
    row.update(
        id=1,
        created_at="2026-11-26T10:00:00+08:00",
        kind="sale",
        method="wallet",
        entry_mode="qr",
        status="approved",
        amount=1250,
        currency="CNY",
        stan=7,
        order_no='=HYPERLINK("http://x")',
        masked_pan="@buyer",
        auth_code="+654321",
        rrn="=cmd|' /C calc'!A0",
        provider="alipay",
        wallet_trade_no="-1+1",
        response_code="00",
    )
    [header, line] = list(csv.reader(io.StringIO(reports.as_csv([row]))))
    got = dict(zip(header, line, strict=True))
    assert got["reference"] == '\'=HYPERLINK("http://x")' and got["masked_pan"] == "'@buyer"
    assert got["auth_code"] == "'+654321" and got["rrn"] == "'=cmd|' /C calc'!A0"
    assert got["wallet_trade_no"] == "'-1+1" and got["amount"] == "12.50" and got["stan"] == "7"


def test_report_csv_keeps_hostile_item_names_as_text(tmp_path):
    from firmware.core.items import Item, line_for

    j = Journal(tmp_path / "j.sqlite3")
    item = Item("1", "=cmd|' /C calc'!A0", 100)
    row, _ = j.begin_sale(
        NewSale(
            "card",
            "swipe",
            100,
            "CNY",
            "424242******4242",
            "SIM00001",
            "1",
            lines=(line_for(item, 1),),
            operator="=1+1",
        ),
        at(10),
    )
    j.finish(row, "approved", at(10), response_code="00")
    r = reports.build(j.figures(DAY, DAY), date(2026, 11, 26), date(2026, 11, 26), "CNY")
    j.close()
    cells = [c for line in csv.reader(io.StringIO(reports.report_csv(r, CNY))) for c in line]
    assert "item 1 =cmd|' /C calc'!A0" in cells and "operator =1+1: sales" in cells
    assert all(reports.spreadsheet_safe(c) == c for c in cells)  # nothing left that starts a formula
