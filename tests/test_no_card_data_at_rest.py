"""After a busy session of every payment kind, no file the terminal wrote holds card data.

The check is exact, so it gives the same verdict on every date and every run: it looks for the card numbers,
the track data and the PIN blocks of *this* session, in every encoding they could be written in (ASCII digits,
packed BCD, hex of either case, UTF-16), anywhere in a file (inside longer runs too). A generic "any Luhn-valid
run of digits" rule cannot be exact: one digit run in ten passes Luhn by chance, and the journal's columns sit
side by side in SQLite records (a masked PAN's last four, a response code and a dated RRN form such runs).
"""

from __future__ import annotations

import logging
import re

from conftest import sim_config
from firmware.core.pan import luhn_valid
from firmware.host import dialect
from hwsim import CATALOG, Simulator
from hwsim.emvcard import contactless_catalog

BAD_SWIPE_PAN = "4242424242424241"  # a garbled read: its number must not be logged either
# Track data of any card (not only this session's): sentinel, 13-19 digits, separator, expiry.
TRACK = re.compile(rb"(?:;|%B)(\d{13,19})[=^]\d{4}")


def encodings(digits: str) -> set[bytes]:
    """Every way a string of digits could be written to a file: ASCII, UTF-16 both ways, packed BCD (padded
    with F when odd, as in EMV tag 5A and track 2 equivalent data) and that BCD's hex in either case."""
    padded = digits + "F" * (len(digits) % 2)
    forms = {
        digits.encode(),
        digits.encode("utf-16-le"),
        digits.encode("utf-16-be"),
        bytes.fromhex(padded),
        padded.lower().encode(),
    }
    return forms | {f.encode("utf-16-le") for f in (padded, padded.lower())}


def secrets_of_session(host_log: list[tuple[str, bytes]]) -> dict[str, set[bytes]]:
    """What must never be at rest: every card number used, and every PIN block the acquirer received."""
    pans = {c.pan for c in CATALOG.values()} | {p.pan for p in contactless_catalog().values()} | {BAD_SWIPE_PAN}
    found: dict[str, set[bytes]] = {f"card {pan[:6]}…{pan[-4:]}": encodings(pan) for pan in pans}
    blocks = [dialect.decode(raw).get("52", "") for kind, raw in host_log if kind == "request"]
    for n, block in enumerate(b for b in blocks if b):
        found[f"PIN block #{n + 1}"] = {
            block.upper().encode(),
            block.lower().encode(),
            bytes.fromhex(block),
            block.upper().encode("utf-16-le"),
        }
    return found


def test_encodings_cover_what_a_leak_would_look_like():
    """The matcher finds a card number however it was written (so a pass below means something)."""
    forms = encodings("4761739001010010")
    leaks = [
        b"x4761739001010010=2812",
        "卡号4761739001010010".encode("utf-16-le"),
        bytes.fromhex("9F6B0847617390010100105A"),
        b"57134761739001010010d2812",
        "4761739001010010".encode("utf-16-be"),
    ]
    for leak in leaks:
        assert any(f in leak for f in forms), leak
    assert TRACK.search(b"\x00;4111111111111111=3012101?")
    assert not TRACK.search(b"4242****4242" + b"55" + b"263360000002")  # the old rule's false alarm


def test_card_data_scan(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # every record, nfcpy's APDU traces included
    data = tmp_path / "data"
    with Simulator(data, sim_config(host=2.0)) as sim:
        sim.keys("1250{ENTER}")
        sim.swipe("visa-approve")
        sim.pin("1234")
        sim.wait_for("APPROVED")
        sim.keys("{ENTER}2500{ENTER}")
        sim.swipe("visa-approve")
        sim.pin("9999")  # a wrong PIN, then the right one
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
        sim.swipe(raw=f";{BAD_SWIPE_PAN}=30121010000000000000?")  # a bad swipe: it must not be logged
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
        host_log = sim.host_log

    secrets = secrets_of_session(host_log)
    assert sum(name.startswith("PIN block") for name in secrets) >= 4, "the session sent its PIN blocks"
    written = [p for p in data.rglob("*") if p.is_file() and p.suffix != ".pem"]
    assert any(p.name == "journal.sqlite3" for p in written)
    blobs = {str(p): p.read_bytes() for p in written}
    blobs["printer output"] = printer_bytes
    blobs["log records"] = caplog.text.encode()
    blobs["log records (UTF-16)"] = caplog.text.encode("utf-16-le")
    for name, blob in blobs.items():
        for what, forms in secrets.items():
            assert not any(f in blob for f in forms), f"{name} holds {what}"
        track = TRACK.search(blob)
        assert not (track and luhn_valid(track.group(1).decode())), f"{name} holds track data"
