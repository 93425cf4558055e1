"""`countertop print-test` and `countertop read-test`, one device at a time through the terminal's own drivers,
against the simulator's devices: its virtual printer on a pty, its HID devices typing real evdev events, its RF
field behind nfcpy's UDP driver. Card data never shows beyond a masked PAN."""

from __future__ import annotations

import importlib.util

import pytest
from evdev import ecodes

import drivers.hid
from conftest import SIM_TOML
from firmware.config import load
from firmware.shell import cli
from firmware.shell.devicetest import CHINESE_SAMPLE
from hwsim.cards import card
from hwsim.emvcard import CardApplet, contactless_catalog
from hwsim.inputs import SimInputDevice, type_keys, type_text
from hwsim.nfcfield import RfField
from hwsim.printer import VirtualPrinter

KEYMAP = load(SIM_TOML).keypad.keys


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def printer():
    p = VirtualPrinter()
    try:
        yield p
    finally:
        p.close()


def test_print_test_prints_the_ruler_the_chinese_line_and_the_code(printer, capsys):
    code, out, err = run(
        capsys, "print-test", "--serial", printer.devfile, "--width", "48", "--chinese", "--config", str(SIM_TOML)
    )
    assert (code, err) == (0, "")
    assert out == (
        f"printed a test ticket on serial {printer.devfile} at 115200 baud; "
        "check the ruler, the Chinese line and the QR code\n"
    )
    [ticket] = printer.wait_for_receipts(1, 10)
    assert "PRINT TEST" in ticket and "width = 48: the digits fill one line" in ticket
    assert "123456789012345678901234567890123456789012345678" in ticket.splitlines()
    assert CHINESE_SAMPLE in ticket  # sent as GB18030 inside FS & ... FS .
    assert b"COUNTERTOP PRINT TEST" in bytes(printer.raw)  # the QR symbol's data (GS ( k)


def test_print_test_without_chinese_and_on_an_empty_roll(printer, capsys):
    code, _, _ = run(capsys, "print-test", "--serial", printer.devfile, "--no-chinese", "--config", str(SIM_TOML))
    assert code == 0
    [ticket] = printer.wait_for_receipts(1, 10)
    assert "chinese = false: no Chinese line" in ticket and "中文" not in ticket
    assert "12345678901234567890123456789012" in ticket.splitlines()  # the config's 32 columns
    printer.paper = False
    code, out, err = run(capsys, "print-test", "--serial", printer.devfile, "--config", str(SIM_TOML))
    assert (code, out, err) == (1, "", "countertop: printer: out of paper\n")


@pytest.mark.parametrize(
    "argv, code, message",
    [
        (["--usb", "04x6:5011"], 2, "--usb '04x6:5011': must be VVVV:PPPP in hex"),
        (["--network", "printer.local:99999"], 2, "--network 'printer.local:99999': the port must be a number"),
    ],
)
def test_print_test_refuses_a_wrong_printer_address(capsys, argv, code, message):
    got, out, err = run(capsys, "print-test", *argv, "--config", str(SIM_TOML))
    assert (got, out) == (code, "") and err.startswith(f"countertop: {message}")


@pytest.fixture
def device(monkeypatch):
    """The simulator's HID device standing where evdev's would be opened (drivers.hid.open_input_device)."""
    made: list[SimInputDevice] = []
    asked = []

    def make(name: str, **kw) -> SimInputDevice:
        dev = SimInputDevice(name, **kw)
        made.append(dev)
        return dev

    def opener(dev_cfg):
        asked.append(dev_cfg)
        return made[-1]

    monkeypatch.setattr(drivers.hid, "open_input_device", opener)
    make.asked = asked  # type: ignore[attr-defined]
    yield make
    for dev in made:
        dev.destroy()


def test_read_test_keypad_shows_each_key_until_cancel(device, capsys):
    keys = [ecodes.ecodes[f"KEY_KP{d}"] for d in range(10)] + [ecodes.ecodes[k] for k in KEYMAP.values()]
    keypad = device("hwsim keypad", keys=keys)
    type_keys(keypad, KEYMAP, "12{ENTER}{CANCEL}9")  # typed before the test opens it: the pipe keeps it
    code, out, _ = run(capsys, "read-test", "keypad", "--config", str(SIM_TOML), "--seconds", "10")
    assert code == 0
    assert out.splitlines() == [
        "keypad: sim:hwsim keypad 'hwsim keypad'; waiting 10 s",
        "key 1",
        "key 2",
        "key ENTER",
        "key CANCEL",
    ]
    assert keypad.grabbed is True  # opened as the terminal opens it
    assert device.asked[0].name == "hwsim keypad"  # found as [keypad] says


def test_read_test_magstripe_shows_a_masked_pan_only(device, capsys):
    reader = device("hwsim magstripe")
    visa = card("visa-approve")
    type_text(reader, visa.track1 + visa.track2 + "\n")
    code, out, _ = run(capsys, "read-test", "magstripe", "--config", str(SIM_TOML), "--seconds", "10")
    assert code == 0
    assert out.splitlines()[1] == "swipe: 424242******4242, service code 101, track 2 read"
    assert visa.pan not in out and visa.name not in out and visa.expiry not in out


def test_read_test_scanner_tells_a_payment_code_from_a_barcode(device, capsys):
    scanner = device("USB Scanner", vendor=0x0C2E, product=0x0B61)
    type_text(scanner, "286123456789012345\n6901234567892\n")
    code, out, _ = run(capsys, "read-test", "scanner", "--usb", "0c2e:0b61", "--count", "2", "--seconds", "10")
    assert code == 0
    assert out.splitlines()[1:] == [
        "scan: alipay payment code, 18 digits (28…45)",
        "scan: '6901234567892' (13 characters)",
    ]
    assert device.asked[0].usb == "0c2e:0b61"


def test_read_test_says_so_when_nothing_is_read(device, capsys):
    device("hwsim magstripe")
    code, out, _ = run(capsys, "read-test", "magstripe", "--config", str(SIM_TOML), "--seconds", "0.2")
    assert code == 1 and out.splitlines()[-1] == "nothing read in 0.2 s"


def test_read_test_needs_a_device_to_read(capsys, tmp_path):
    no_scanner = tmp_path / "no-scanner.toml"
    no_scanner.write_text(SIM_TOML.read_text().split("[scanner]")[0])
    code, out, err = run(capsys, "read-test", "scanner", "--config", str(no_scanner))
    assert (code, out, err) == (2, "", "countertop: read-test scanner needs [scanner] or --path/--usb/--name\n")
    code, out, err = run(capsys, "read-test", "keypad", "--usb", "nope", "--config", str(SIM_TOML))
    assert (code, err) == (2, "countertop: --usb 'nope': must be VVVV:PPPP in hex\n")


@pytest.fixture
def field():
    f = RfField()
    try:
        yield f
    finally:
        f.close()


def test_read_test_nfc_lists_the_cards_payment_applications(field, capsys):
    field.present(CardApplet(contactless_catalog()["visa-tap-approve"]), "A")
    path = f"udp:127.0.0.1:{field.port}"
    code, out, _ = run(capsys, "read-test", "nfc", "--nfc-device", path, "--config", str(SIM_TOML), "--seconds", "20")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"contactless: {path}; hold a card to the reader (20 s)"
    assert lines[1] == "card in the field (ISO-DEP); its PPSE lists 1 application(s):"
    assert lines[2].startswith("  A0000000031010 'VISA") and lines[2].endswith(": supported")
    pan = contactless_catalog()["visa-tap-approve"].pan
    assert pan not in out


def test_read_test_nfc_on_a_card_without_payment_applications(field, capsys):
    field.present(CardApplet(contactless_catalog()["transit-card"]), "A")
    code, out, _ = run(
        capsys, "read-test", "nfc", "--nfc-device", f"udp:127.0.0.1:{field.port}", "--config", str(SIM_TOML)
    )
    assert code == 0
    assert out.splitlines()[1] == (
        "card in the field (ISO-DEP), but: no payment system environment (not a payment card)"
    )


@pytest.mark.skipif(importlib.util.find_spec("smartcard") is not None, reason="pyscard is installed here")
def test_read_test_chip_without_pyscard(capsys):
    code, out, err = run(capsys, "read-test", "chip", "--config", str(SIM_TOML), "--seconds", "1")
    assert (code, out, err) == (1, "", "countertop: chip reader: pyscard not installed\n")
