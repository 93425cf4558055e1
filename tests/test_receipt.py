"""Receipt layout and the ESC/POS printer driver: exact bytes through python-escpos's File backend."""

from __future__ import annotations

from datetime import datetime

import pytest

from conftest import ROOT
from drivers.printer import FS_CHINESE_OFF, FS_CHINESE_ON, ReceiptPrinter
from firmware.config import PrinterConfig
from firmware.core.events import AuthResponse
from firmware.core.money import Currency
from firmware.core.receipt import Header, Line, Receipt, ReceiptFacts, receipt_facts, sale_receipt, text_width
from firmware.errors import DeviceError
from hwsim.printer import EscposDecoder

WHEN = datetime(2026, 11, 26, 21, 5, 9)
APPROVED = AuthResponse(stan=7, response_code="00", auth_code="654321", rrn="263300000007", terminal_id="SIM00001")
SALE = ReceiptFacts(amount=1250, masked_pan="424242******4242", entry_mode="SWIPE", response=APPROVED, stan=7)


def header(language="en", name="CORNER SHOP"):
    return Header(name, "1 Main St", "SIM00001", "102030405060708", Currency.of("CNY"), language, 32)


def test_english_receipt_has_every_required_field():
    text = "\n".join(line.text for line in sale_receipt(SALE, header(), "CUSTOMER COPY", WHEN).lines)
    for needle in (
        "CORNER SHOP",
        "1 Main St",
        "CUSTOMER COPY",
        "102030405060708",
        "SIM00001",
        "424242******4242",
        "SWIPE",
        "2026-11-26 21:05:09",
        "000007",
        "263300000007",
        "654321",
        "CNY 12.50",
        "APPROVED",
    ):
        assert needle in text, needle


def test_lines_fit_the_paper_in_both_languages():
    for lang in ("en", "zh"):
        for line in sale_receipt(SALE, header(lang, "示例小店"), "MERCHANT COPY", WHEN).lines:
            assert text_width(line.text) <= 32, line


def test_declined_receipt_states_reason():
    declined = ReceiptFacts(1250, "424242******4242", "SWIPE", AuthResponse(7, "51", "", "263300000007", "SIM00001"), 7)
    text = "\n".join(line.text for line in sale_receipt(declined, header("zh"), "MERCHANT COPY", WHEN).lines)
    assert "交易失败 DECLINED" in text and "51 INSUFFICIENT FUNDS" in text and "AUTH CODE" not in text


def _print(tmp_path, chinese: bool, receipt: Receipt) -> bytes:
    out = tmp_path / "printer.bin"
    printer = ReceiptPrinter(PrinterConfig(backend="file", devfile=str(out), chinese=chinese))
    printer.print_receipts([receipt])
    printer.close()
    return out.read_bytes()


def test_golden_bytes_ascii(tmp_path):
    raw = _print(tmp_path, False, Receipt((Line("HELLO", align="center", bold=True), Line("TOTAL 1.00"))))
    normal = b"\x1b!\x00" * 3  # python-escpos resets the text size thrice
    assert raw == (
        b"\x1b@"  # ESC @ initialise
        + normal
        + b"\x1bE\x01\x1ba\x01"
        + b"\x1bt\x00HELLO\n"  # bold, centred, code page 0
        + normal
        + b"\x1bE\x00\x1ba\x00TOTAL 1.00\n"  # bold off, left
        + normal
        + b"\x1b{\x00\x1db\x00\x1bE\x00\x1b-\x00\x1bM\x00\x1ba\x00\x1dB\x00"  # set_with_default
        + b"\x1bd\x06\x1dV\x00"
    )  # feed 6, GS V 0 full cut
    assert FS_CHINESE_ON not in raw


def test_chinese_goes_out_as_gb18030_in_chinese_mode(tmp_path):
    raw = _print(tmp_path, True, Receipt((Line("示例小店 DEMO"), Line("TOTAL"))))
    assert FS_CHINESE_ON + "示例小店 DEMO".encode("gb18030") + FS_CHINESE_OFF + b"\n" in raw
    dec = EscposDecoder()
    assert dec.feed(raw) == 1
    assert dec.receipts == ["示例小店 DEMO\nTOTAL"]
    assert dec.unknown == []


def test_full_receipt_decodes_back_to_its_lines(tmp_path):
    receipt = sale_receipt(SALE, header("zh", "示例小店"), "MERCHANT COPY", WHEN)
    dec = EscposDecoder()
    dec.feed(_print(tmp_path, True, receipt))
    assert dec.receipts[0].split("\n") == [line.text for line in receipt.lines]
    assert dec.unknown == []


def test_decoder_waits_for_split_commands():
    dec = EscposDecoder()
    data = b"\x1b@AB\n\x1b!\x00CD\n\x1dV\x41\x03"
    for i in range(len(data)):
        dec.feed(data[i : i + 1])  # one byte at a time, as a slow serial line delivers it
    assert dec.receipts == ["AB\nCD"]


def test_missing_printer_is_a_device_error(tmp_path):
    printer = ReceiptPrinter(PrinterConfig(backend="file", devfile=str(tmp_path / "no" / "such" / "lp0")))
    with pytest.raises(DeviceError) as err:
        printer.print_receipts([Receipt((Line("x"),))])
    assert err.value.screen == "PRINTER OFFLINE"


def test_backend_none_prints_nothing():
    ReceiptPrinter(PrinterConfig(backend="none")).print_receipts([Receipt((Line("x"),))])


HOSTILE = (
    "WATER\x1bp\x00\x19\x19\x1dV\x00\x1b[2J\x9b2J\u202eRETAW\x07"  # drawer kick, cut, ANSI clear, C1 CSI, bidi, bell
)
CLEANED = "WATERpV[2J2JRETAW"


@pytest.mark.parametrize("chinese", [False, True])
def test_an_item_name_cannot_drive_the_printer(tmp_path, chinese):
    """Whatever a basket line's name holds, the printer gets the bytes the layout emits for the cleaned name:
    no drawer kick, one cut (the receipt's own), no escape sequence."""
    from firmware.core.items import BasketLine

    def printed(name: str, out: str) -> bytes:
        basket = (BasketLine("1001", name, 1, 1250, 1300),)
        receipt = sale_receipt(
            SALE, header("zh" if chinese else "en", "SHOP\x1bp\x00\x19\x19"), "CUSTOMER COPY", WHEN, basket
        )
        (tmp_path / out).mkdir()
        return _print(tmp_path / out, chinese, receipt)

    hostile, clean = printed(HOSTILE + " 矿泉水", "a"), printed(CLEANED + " 矿泉水", "b")
    assert hostile == clean
    assert b"\x1bp" not in hostile and b"\x1b[" not in hostile and b"\x07" not in hostile
    assert hostile.count(b"\x1dV") == 1 and hostile.endswith(b"\x1dV\x00")
    assert "\u202e".encode("gb18030") not in hostile and "\u202e".encode("utf-8") not in hostile
    name = CLEANED.encode() + " 矿泉水".encode("gb18030")
    assert (FS_CHINESE_ON + name + FS_CHINESE_OFF + b"\n" if chinese else CLEANED.encode() + b" ") in hostile
    dec = EscposDecoder()
    assert dec.feed(hostile) == 1 and dec.unknown == []


def test_golden_bytes_of_a_hostile_line(tmp_path):
    raw = _print(tmp_path, False, Receipt((Line(HOSTILE),), qr="ORDER\x1bp\x00\x19\x19-1"))
    normal = b"\x1b!\x00" * 3
    default = normal + b"\x1b{\x00\x1db\x00\x1bE\x00\x1b-\x00\x1bM\x00\x1ba\x00\x1dB\x00"  # set_with_default
    assert raw == (
        b"\x1b@"
        + normal
        + b"\x1bE\x00\x1ba\x00"
        + b"\x1bt\x00"
        + CLEANED.encode()
        + b"\n"
        + default
        + b"\x1ba\x01"  # centre the code
        + b"\x1d(k\x04\x001A2\x00\x1d(k\x03\x001C\x05\x1d(k\x03\x001E0"  # model 2, size 5, level M
        + b"\x1d(k\x0b\x001P0ORDERp-1"
        + b"\x1d(k\x03\x001Q0"  # store 8 bytes, print
        + default
        + b"\x1bd\x06\x1dV\x00"
    )


ROW = {
    "kind": "sale",
    "method": "card",
    "status": "approved",
    "response_code": "00",
    "stan": 9,
    "auth_code": "123456",
    "rrn": "1",
    "terminal_id": "SIM00001",
    "amount": 1250,
    "payer": "",
    "masked_pan": "476173******0010",
    "entry_mode": "contactless",
    "original_stan": None,
    "cvm": "none",
    "aid": "A0000000031010",
    "app_label": "VISA CREDIT",
    "cryptogram": "1A2B3C4D5E6F7081",
    "provider": "",
    "order_no": "REF9",
    "wallet_trade_no": "",
}


def test_a_receipt_states_what_the_journal_row_says():
    tap = receipt_facts(ROW)
    assert (tap.entry_mode, tap.cvm, tap.aid, tap.label, tap.cryptogram, tap.order_no, tap.masked_pan) == (
        "CONTACTLESS",
        "none",
        "A0000000031010",
        "VISA CREDIT",
        "1A2B3C4D5E6F7081",
        "REF9",
        "476173******0010",
    )
    wallet = receipt_facts(
        {
            **ROW,
            "method": "wallet",
            "entry_mode": "qr",
            "masked_pan": "",
            "payer": "buy***@x.com",
            "provider": "alipay",
            "order_no": "ORDER1",
            "wallet_trade_no": "2026120222001",
            "cvm": "",
            "aid": "",
            "app_label": "",
            "cryptogram": "",
        }
    )
    assert (wallet.masked_pan, wallet.wallet, wallet.trade_no, wallet.cvm, wallet.entry_mode, wallet.order_no) == (
        "buy***@x.com",
        "ALIPAY 支付宝",
        "2026120222001",
        "wallet",
        "QR",
        "ORDER1",
    )
    for method, route in (("wallet", "WALLET"), ("card", "CARD"), ("cash", "CASH")):
        refund = receipt_facts({**ROW, "kind": "refund", "method": method, "original_stan": 7, "order_no": "R"})
        assert (refund.kind, refund.route, refund.original_stan, refund.order_no) == ("REFUND", route, 7, "")
    void = receipt_facts({**ROW, "kind": "void", "original_stan": 7})
    assert (void.kind, void.route, void.entry_mode) == ("VOID", "", "SWIPE")
    declined = receipt_facts({**ROW, "status": "declined", "response_code": ""})
    assert declined.response.response_code == "05" and not declined.response.approved


def test_a_half_written_printer_database_cache_does_not_stop_printing(tmp_path):
    """python-escpos caches its printer database as a pickle written in place; a process killed mid-write left
    an empty file, and every later import failed (EOFError): no receipt printed again. In a fresh process (the
    import happens once per process), with the cache damaged, a receipt still prints and the cache is mended."""
    import os
    import platform
    import subprocess
    import sys

    script = (
        "import os, platform, sys\n"
        "from drivers import printer\n"
        "cache = printer._escpos_cache()\n"
        "os.makedirs(cache, mode=0o700, exist_ok=True)\n"
        "name = os.path.join(cache, platform.python_version() + '.capabilities.pickle')\n"
        "open(name, 'wb').close()\n"  # what a kill during python-escpos's own write leaves
        "from firmware.config import PrinterConfig\n"
        "from firmware.core.receipt import Line, Receipt\n"
        "out = sys.argv[1]\n"
        "printer.ReceiptPrinter(PrinterConfig(backend='file', devfile=out)).print_receipts([Receipt((Line('OK'),))])\n"
        "print(os.path.getsize(name))\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # a cache of its own
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "out.bin")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert b"OK" in (tmp_path / "out.bin").read_bytes()
    assert int(done.stdout.split()[-1]) > 1000  # the cache was rebuilt whole
    # nothing else is left in the temp folder (python-escpos makes a temp folder at every import), and the
    # cache folder holds the cache alone, readable by this user only
    [cache] = [p for p in tmp_path.iterdir() if p.name != "out.bin"]
    assert [p.name for p in cache.iterdir()] == [f"{platform.python_version()}.capabilities.pickle"]
    assert cache.stat().st_mode & 0o077 == 0 and next(cache.iterdir()).stat().st_mode & 0o077 == 0
