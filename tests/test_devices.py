"""Devices that come and go: a printer without paper or unplugged does not hold up a sale — the receipt waits and
prints when the printer is back; receipts are reprinted (重打印) from the journal, the last one or by trace."""

from __future__ import annotations

import time

from conftest import assert_ledger_agrees, sales, wait_until
from test_e2e import sale
from test_refunds import manager


def test_out_of_paper_the_sale_completes_and_the_receipt_waits(sim):
    sim.printer.paper = False
    sale(sim, "visa-approve")
    screen = sim.wait_for("PRINTER: NO PAPER")  # said under the result, which stays true
    assert "APPROVED" in screen
    assert sales(sim)[0]["status"] == "approved" and sales(sim)[0]["receipt"] == 0  # due, not printed
    time.sleep(0.5)
    assert sim.receipts == []
    sim.printer.paper = True  # a new roll
    merchant, customer = sim.wait_for_receipts(2)
    assert "MERCHANT COPY" in merchant and "CUSTOMER COPY" in customer and "CNY 12.50" in customer
    wait_until(lambda: sales(sim)[0]["receipt"] == 1, what="receipt marked printed")
    sim.wait_while("NO PAPER")
    assert_ledger_agrees(sim)


def test_paper_runs_out_in_the_customer_copy(sim):
    sim.printer.paper_for(1)  # room for the merchant copy, not the next
    sale(sim, "visa-approve")
    sim.wait_for("NO PAPER")
    [merchant] = sim.receipts
    assert "MERCHANT COPY" in merchant and sim.printer.decoder.lost == 1
    sim.printer.paper = True
    merchant, customer = sim.wait_for_receipts(2)  # the cut-off copy again, the merchant's not twice
    assert "CUSTOMER COPY" in customer and "CNY 12.50" in customer
    time.sleep(0.3)
    assert len(sim.receipts) == 2


def test_unplugged_printer_comes_back_without_a_restart(sim):
    sim.printer.unplug()
    sale(sim, "visa-approve")
    screen = sim.wait_for("PRINTER OFFLINE")
    assert "APPROVED" in screen
    sim.keys("{ENTER}")
    sale(sim, "mc-approve", amount="990")  # selling goes on meanwhile
    sim.wait_for("APPROVED")
    sim.printer.plug()  # the same device name, a new connection
    receipts = sim.wait_for_receipts(4)
    assert "CNY 12.50" in receipts[0] and "CNY 9.90" in receipts[3]
    wait_until(lambda: all(r["receipt"] == 1 for r in sales(sim)), what="all marked printed")
    assert_ledger_agrees(sim)


def test_a_printer_switched_off_with_its_cable_in_holds_the_receipts(sim):
    """A serial printer that is off still takes writes but never answers: a printer that always answered its
    status asks and now does not is offline, and the receipts wait for it (they were counted as printed)."""
    sale(sim, "visa-approve")
    sim.wait_for_receipts(2)  # it answered the paper asks
    sim.keys("{ENTER}")
    sim.printer.powered = False
    sale(sim, "mc-approve", amount="990")
    screen = sim.wait_for("PRINTER OFFLINE")
    assert "APPROVED" in screen and sales(sim)[1]["receipt"] == 0
    sim.printer.powered = True
    receipts = sim.wait_for_receipts(4)
    assert "CNY 9.90" in receipts[2] and "CNY 9.90" in receipts[3]
    wait_until(lambda: all(r["receipt"] == 1 for r in sales(sim)), what="all marked printed")
    sim.wait_while("PRINTER OFFLINE")


def test_a_receipt_cut_off_by_a_power_cut_prints_at_boot(sim):
    sim.printer.paper = False
    sale(sim, "visa-approve")
    sim.wait_for("NO PAPER")
    sim.restart(crash=True)
    sim.printer.paper = True
    merchant, customer = sim.wait_for_receipts(2)
    assert "CNY 12.50" in merchant and "REPRINT" not in merchant
    wait_until(lambda: sales(sim)[0]["receipt"] == 1, what="marked printed")


def test_reprint_the_last_receipt_with_f2(sim):
    sale(sim, "visa-approve")
    sim.wait_for("APPROVED")
    first = sim.wait_for_receipts(2)
    sim.keys("{ENTER}{F2}")
    sim.wait_for("PRINTING")
    again = sim.wait_for_receipts(4)[2:]
    assert "重打印 REPRINT" in again[0] and "重打印 REPRINT" not in first[0]
    assert again[0].replace("重打印 REPRINT\n", "") == first[0]  # the same receipt, said to be a copy
    actions = [r for r in sim.journal() if r["kind"] == "sale"]
    assert len(actions) == 1  # a reprint is no transaction


def test_reprint_by_trace_number_from_the_menu(sim):
    sale(sim, "visa-approve")
    sim.wait_for("APPROVED")
    sim.keys("{ENTER}")
    sale(sim, "mc-approve", amount="990")
    sim.wait_for("APPROVED")
    sim.wait_for_receipts(4)
    sim.keys("{ENTER}")
    manager(sim)
    sim.wait_for("5 REPRINT")
    sim.keys("5")
    sim.wait_for("TRACE NO.")
    sim.keys("1{ENTER}")
    sim.wait_for("TRACE 000001 PRINTING")
    copy = sim.wait_for_receipts(6)[4]
    assert "重打印 REPRINT" in copy and "CNY 12.50" in copy and "000001" in copy
    sim.keys("{ENTER}")
    manager(sim)
    sim.wait_for("5 REPRINT")
    sim.keys("5")
    sim.wait_for("TRACE NO.")
    sim.keys("77{ENTER}")
    sim.wait_for("NO RECEIPT FOR 000077")


def test_reprint_with_nothing_printed_yet(sim):
    sim.keys("{F2}")
    sim.wait_for("NO RECEIPT YET")


def test_card_reader_unplugged_and_back_without_a_restart(sim):
    sim.unplug("magstripe")
    sim.wait_for("CARD READER DISCONNECTED")  # said at once, under whatever else is shown
    sim.keys("1250{ENTER}")
    screen = sim.wait_for("SWIPE CARD")
    assert "CARD READER DISCONNECTED" in screen
    sim.plug("magstripe")  # the terminal looks again every 2 s
    sim.wait_while("CARD READER DISCONNECTED", timeout=10)
    sim.swipe("visa-approve")
    sim.pin("1234")
    sim.wait_for("APPROVED")
    assert_ledger_agrees(sim)


def test_keypad_unplugged_and_back(sim):
    sim.keys("12")
    sim.unplug("keypad")
    sim.wait_for("KEYPAD DISCONNECTED")
    sim.plug("keypad")
    sim.wait_while("KEYPAD DISCONNECTED", timeout=10)
    sim.keys("50{ENTER}")  # the amount typed before is still there
    sim.wait_for("CNY 12.50")
    sim.swipe("visa-approve")
    sim.pin("1234")
    sim.wait_for("APPROVED")


def test_scanner_unplugged_and_back(tmp_path):
    from conftest import sim_config
    from hwsim import Simulator

    with Simulator(tmp_path / "data", sim_config(host=2.0)) as s:
        s.unplug("scanner")
        s.wait_for("SCANNER DISCONNECTED")
        s.plug("scanner")
        s.wait_while("SCANNER DISCONNECTED", timeout=10)
        s.wallet.next_code("pay")
        s.keys("880{ENTER}")
        s.scan("286123456789012345")
        s.wait_for("PAID", timeout=10)
