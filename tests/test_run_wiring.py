"""`countertop run` wires every device its config names: keypad, magstripe reader, 2D scanner, printer,
contactless reader and wallet provider all reach the terminal it builds (`firmware.shell.cli.build_terminal`)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

import drivers.hid
from conftest import sim_config, wait_until
from drivers.display import Display
from firmware.shell import cli
from hwsim.cards import card
from hwsim.emvcard import CardApplet, contactless_catalog
from hwsim.inputs import SimInputDevice, type_keys, type_text
from hwsim.nfcfield import RfField
from hwsim.printer import VirtualPrinter
from hwsim.rig import Hosts, apply_overrides


class Screen:
    """Waits on a Display's changes."""

    def __init__(self, display: Display) -> None:
        self.display = display
        self._cond = threading.Condition()
        display.listen(lambda lines: self._notify())

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, text: str, timeout: float = 20) -> str:
        with self._cond:
            if not self._cond.wait_for(lambda: text in self.display.text, timeout):
                raise TimeoutError(f"{text!r} not on screen; screen:\n{self.display.text}")
            return self.display.text


@pytest.fixture
def board(tmp_path, monkeypatch):
    """The terminal `countertop run` builds, on a config whose devices are the simulator's seams."""
    base = sim_config(host=2.0)
    base = dataclasses.replace(base, wallet=dataclasses.replace(base.wallet, poll_interval=0.1))
    hosts = Hosts(base, tmp_path / "keys")
    printer, field = VirtualPrinter(), RfField()
    cfg = apply_overrides(base, hosts.overrides(tmp_path / "data", printer.devfile, field.port))
    asked, opened = [], {}

    def evdev_stand_in(dev_cfg):
        """What evdev would open for a config section: a simulated device of that name."""
        asked.append(dev_cfg)
        opened[dev_cfg.name] = SimInputDevice(dev_cfg.name)
        return opened[dev_cfg.name]

    monkeypatch.setattr(drivers.hid, "open_input_device", evdev_stand_in)
    display = Display(cfg.display.width)
    screen = Screen(display)
    terminal = cli.build_terminal(cfg, display)  # exactly what _run does, with evdev's opener
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(terminal.run(),), daemon=True)
    thread.start()
    try:
        screen.wait_for("ENTER AMOUNT")
        wait_until(lambda: len(opened) >= 2, what="keypad and magstripe reader opened")
        yield cfg, hosts, printer, field, screen, asked, opened
    finally:
        loop.call_soon_threadsafe(terminal.stop)
        thread.join(15)
        loop.close()
        for dev in opened.values():
            dev.destroy()
        printer.close()
        field.close()
        hosts.close()


def test_every_configured_device_reaches_the_terminal(board):
    cfg, hosts, printer, field, screen, asked, opened = board
    # The keypad, magstripe reader and scanner sections were each opened (and grabbed) as configured.
    wait_until(lambda: [a for a in asked if a is cfg.scanner], timeout=5, what="the configured 2D scanner opened")
    assert [a for a in asked if a is cfg.keypad] and [a for a in asked if a is cfg.magstripe]
    assert [a for a in asked if a is cfg.scanner], "the configured 2D scanner was never opened"
    assert all(dev.grabbed for dev in opened.values())
    keypad, reader, scanner = (opened[c.name] for c in (cfg.keypad, cfg.magstripe, cfg.scanner))

    def keys(text):
        type_keys(keypad, cfg.keypad.keys, text)

    # keypad + magstripe reader + printer
    keys("1250{ENTER}")
    screen.wait_for("SWIPE CARD")
    c = card("visa-approve")
    type_text(reader, c.track1 + c.track2 + "\n")
    screen.wait_for("ENTER PIN")
    keys("1234{ENTER}")
    screen.wait_for("APPROVED")
    merchant, customer = printer.wait_for_receipts(2, 15)
    assert "交易成功 APPROVED" in merchant and "CUSTOMER COPY" in customer
    keys("{ENTER}")
    screen.wait_for("ENTER AMOUNT")

    # contactless reader (nfcpy's udp: driver)
    keys("990{ENTER}")
    screen.wait_for("TAP OR SWIPE CARD")
    profile = contactless_catalog()["visa-tap-approve"]
    field.present(CardApplet(profile), profile.technology)
    screen.wait_for("APPROVED")
    field.remove()
    keys("{ENTER}")
    screen.wait_for("ENTER AMOUNT")

    # wallet provider: the code on screen
    keys("500{ENTER}")
    screen.wait_for("SWIPE CARD")
    keys("{F1}")
    screen.wait_for("SCAN TO PAY")
    hosts.wallet.pay(screen.display.qr)
    screen.wait_for("PAID")
    keys("{ENTER}")
    screen.wait_for("ENTER AMOUNT")

    # 2D scanner: the customer's payment code
    keys("700{ENTER}")
    screen.wait_for("SWIPE CARD")
    type_text(scanner, "286123456789012345\n")
    screen.wait_for("PAID")

    approvals = [e for e in hosts.acquirer.ledger if e["response_code"] == "00"]
    assert sorted(e["amount"] for e in approvals) == [990, 1250]
    methods = [m for m, _ in hosts.wallet.requests]
    assert "alipay.trade.precreate" in methods and "alipay.trade.pay" in methods
    assert len(printer.wait_for_receipts(8, 15)) == 8  # both copies of each of the four sales
