"""After a busy session of every payment kind, no file the terminal wrote holds card data."""

from __future__ import annotations

import logging
import re

from firmware.cardsec import luhn_valid
from hwsim import CATALOG, Simulator
from hwsim.emvcard import contactless_catalog

from conftest import sim_config

DIGIT_RUNS = re.compile(rb"(?<!\d)\d{13,19}(?!\d)")
TRACK = re.compile(rb"[;%]B?\d{12,19}[=^]|\d{12,19}D\d{4}")


def test_card_data_scan(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)                      # every record, nfcpy's APDU traces included
    data = tmp_path / "data"
    with Simulator(data, sim_config(host=2.0)) as sim:
        sim.keys("1250{ENTER}")
        sim.swipe("visa-approve")
        sim.pin("1234")
        sim.wait_for("APPROVED")
        sim.keys("{ENTER}2500{ENTER}")
        sim.swipe("visa-approve")
        sim.pin("9999")                                   # a wrong PIN, then the right one
        sim.wait_for("WRONG PIN")
        sim.pin("1234")
        sim.wait_for("APPROVED")
        sim.keys("{ENTER}25000{ENTER}")
        sim.tap("mc-tap-approve")
        sim.wait_for("ENTER PIN")
        sim.remove_card()
        sim.pin("1234")
        sim.wait_for("APPROVED")
        sim.keys("{ENTER}1250{ENTER}")
        sim.swipe(raw=";4242424242424241=30121010000000000000?")    # a bad swipe: it must not be logged
        sim.wait_for("READ ERROR")
        sim.keys("{CANCEL}")
        sim.host.fault("timeout")
        sim.keys("{ENTER}700{ENTER}")
        sim.swipe("mc-approve")
        sim.pin("1234")
        sim.wait_for("NO HOST ANSWER", timeout=10)
        sim.restart(crash=True)
        printer_bytes = sim.printer_bytes
        sim.wait_for_receipts(6)

    pans = {c.pan for c in CATALOG.values()} | {p.pan for p in contactless_catalog().values()}
    written = [p for p in data.rglob("*") if p.is_file() and p.suffix != ".pem"]
    assert any(p.name == "journal.sqlite3" for p in written)
    blobs = {str(p): p.read_bytes() for p in written}
    blobs["printer output"] = printer_bytes
    blobs["log records"] = caplog.text.encode()
    for name, blob in blobs.items():
        for run in DIGIT_RUNS.findall(blob):
            assert not luhn_valid(run.decode()), f"{name} holds a card number"
        assert not TRACK.search(blob), f"{name} holds track data"
        for pan in pans:
            assert pan.encode() not in blob, f"{name} holds {pan[:6]}…"
