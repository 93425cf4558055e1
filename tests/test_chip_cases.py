"""Chip (contact) sales end to end, the cases beyond the plain sale: a blocked offline PIN, PIN bypass refused,
offline data authentication failing (SDA, DDA, CDA) with the action codes deciding, issuer scripts run by the
card and their results journaled, and a card profile written by the test. Through the real pcscd and vpcd,
like tests/test_chip_sale.py; every outcome is read where it lands: field 55 as the acquirer saw it, the
journal, the screen."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest

from conftest import ROOT, sim_config
from firmware.config import ChipConfig
from firmware.core.emv.data import encode_tlv, tlv_items
from firmware.host import dialect
from hwsim import Simulator
from hwsim.emvcard import cryptogram_scheme, load_profile

CHIP_DIR = ROOT / "hw-sim/hwsim/cards/chip"


def chip_config(**emv: object):
    cfg = sim_config(host=2.0)
    return dataclasses.replace(cfg, chip=ChipConfig(reader="hwsim chip slot"), emv=dataclasses.replace(cfg.emv, **emv))


@pytest.fixture
def csim(tmp_path, pcscd):
    with Simulator(tmp_path / "data", chip_config()) as sim:
        yield sim


def variant(tmp_path: Path, base: str, name: str, **contact: object) -> Path:
    """A catalog chip profile with [contact] keys added or replaced (the [contact] table ends every one)."""
    text = (CHIP_DIR / f"{base}.toml").read_text()
    kept = [ln for ln in text.splitlines() if ln.split("=")[0].strip() not in contact]
    added = [f"{k} = {v!r}".replace("'", '"') if isinstance(v, str) else f"{k} = {v}" for k, v in contact.items()]
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(kept + added) + "\n")
    return path


def start(sim, amount="2500"):
    sim.keys(amount + "{ENTER}")
    sim.wait_for("CARD")


def sales(sim):
    return [r for r in sim.journal() if r["kind"] == "sale"]


def requests(sim):
    return [dialect.decode(raw) for d, raw in sim.host_log if d == "request" and raw[:4] == b"0200"]


def icc(request: dict[str, str]) -> dict[str, bytes]:
    return dict(tlv_items(bytes.fromhex(request["55"])))


def tvr_bit(tvr: bytes, byte: int, mask: int) -> bool:
    return bool(tvr[byte - 1] & mask)


# --- cardholder verification ------------------------------------------------------------------------------------


def test_a_blocked_offline_pin_moves_on_to_the_next_rule_online_pin(tmp_path, csim):
    # plaintext PIN by the card (apply the next rule if it fails), then online PIN; the try counter is 0
    start(csim)
    csim.insert(profile=variant(tmp_path, "visa-chip-dda", "blocked-pin", pin_tries=0))
    csim.wait_for("ENTER PIN")
    assert "TRIES LEFT" not in csim.screen  # no offline PIN prompt: the card's PIN is blocked
    csim.pin("1234")
    csim.wait_for("APPROVED")
    [req] = requests(csim)
    data = icc(req)
    assert req["52"]  # the PIN went to the issuer instead
    assert tvr_bit(data["95"], 3, 0x20)  # PIN try limit exceeded
    assert tvr_bit(data["95"], 3, 0x04) and not tvr_bit(data["95"], 3, 0x80)  # online PIN entered; CVM not failed
    assert data["9F34"][0] & 0x3F == 0x02  # 9F34: online PIN was the method performed
    assert sales(csim)[0]["cvm"] == "online_pin"


def test_a_blocked_offline_pin_with_no_next_rule_fails_the_cvm_and_the_card_declines(tmp_path, csim):
    # plaintext PIN only, "fail cardholder verification if unsuccessful"; the issuer denies a failed CVM
    profile = variant(tmp_path, "visa-chip-dda", "blocked-only", pin_tries=0, cvm_list="00000000000000000103")
    profile.write_text(profile.read_text() + 'iac_denial = "0000800000"\n')
    start(csim)
    card = csim.insert(profile=profile)
    csim.wait_for("DECLINED")
    assert "DECLINED BY CARD" in csim.screen and requests(csim) == []
    [row] = sales(csim)
    assert row["status"] == "failed" and "AAC" in row["note"]
    tvr = bytes.fromhex(row["note"].split("TVR ")[1][:10])
    assert tvr_bit(tvr, 3, 0x80) and tvr_bit(tvr, 3, 0x20)  # CVM failed: PIN try limit exceeded
    assert card.pin_tries == 0


def test_pin_bypass_is_refused_when_the_config_says_no(tmp_path, pcscd):
    with Simulator(tmp_path / "data", chip_config(pin_bypass=False)) as sim:
        start(sim)
        sim.insert("unionpay-debit-chip")  # online PIN, else signature: a card that would allow it
        sim.wait_for("ENTER PIN")
        assert "NO PIN" not in sim.screen
        sim.keys("{ENTER}")  # ENTER on the empty prompt is not "no PIN" here
        sim.keys("1")
        sim.wait_for("*")
        assert "ENTER PIN" in sim.screen and requests(sim) == []
        sim.keys("{CLEAR}")
        sim.pin("1234")
        sim.wait_for("APPROVED")
        [req] = requests(sim)
        assert req["52"] and sales(sim)[0]["cvm"] == "online_pin"


def test_pin_bypass_is_refused_by_a_card_that_requires_its_pin(tmp_path, csim):
    # online PIN only ("fail if unsuccessful"), and the issuer denies a cardholder verification that failed
    profile = variant(tmp_path, "unionpay-debit-chip", "pin-required", cvm_list="00000000000000000203")
    profile.write_text(profile.read_text() + 'iac_denial = "0000800000"\n')
    start(csim)
    csim.insert(profile=profile)
    csim.wait_for("NO PIN? PRESS ENTER")  # the terminal offers it; the card's rules decide
    csim.keys("{ENTER}")
    csim.wait_for("DECLINED")
    assert requests(csim) == []
    [row] = sales(csim)
    assert row["status"] == "failed" and "CVM failed" in row["note"]
    tvr = bytes.fromhex(row["note"].split("TVR ")[1][:10])
    assert tvr_bit(tvr, 3, 0x80) and tvr_bit(tvr, 3, 0x08)  # CVM failed: PIN not entered


# --- offline data authentication ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "tamper", "bit"),
    [
        ("visa-chip-sda-signature", "ssad", 0x40),  # SDA failed
        ("unionpay-debit-chip", "sdad", 0x08),  # DDA failed
        ("mc-chip-cda", "icc_cert", 0x04),  # CDA failed: the ICC key is not recovered, before GENERATE AC
    ],
)
def test_failed_offline_data_authentication_goes_online_under_the_terminals_action_codes(
    tmp_path, csim, base, tamper, bit
):
    """The terminal's TAC online has the ODA failure bits: the card is sent online with the bit set in the TVR,
    and the issuer (who sees it) decides; the simulated issuer approves."""
    start(csim)
    csim.insert(profile=variant(tmp_path, base, f"bad-{tamper}", tamper=tamper))
    if base != "visa-chip-sda-signature":
        csim.pin("1234")
    csim.wait_for("APPROVED")
    [req] = requests(csim)
    tvr = icc(req)["95"]
    assert tvr[0] & ~0x02 == bit  # that method failed, nothing else in byte 1 (but "SDA selected")


def test_a_failed_sda_is_declined_where_the_terminals_denial_code_says_so(tmp_path, pcscd):
    with Simulator(tmp_path / "data", chip_config(tac_denial="4000000000")) as sim:
        start(sim)
        sim.insert(profile=variant(tmp_path, "visa-chip-sda-signature", "bad-ssad", tamper="ssad"))
        sim.wait_for("DECLINED")
        assert requests(sim) == []
        [row] = sales(sim)
        assert row["status"] == "failed" and tvr_bit(bytes.fromhex(row["note"].split("TVR ")[1][:10]), 1, 0x40)


def test_a_failed_dda_is_declined_where_the_cards_denial_code_says_so(tmp_path, csim):
    start(csim)
    profile = variant(tmp_path, "unionpay-debit-chip", "bad-sdad-iac", tamper="sdad", iac_denial="0800000000")
    csim.insert(profile=profile)
    csim.pin("1234")  # cardholder verification comes before the action codes are applied
    csim.wait_for("DECLINED")
    assert requests(csim) == [] and "DECLINED BY CARD" in csim.screen


def test_a_cda_signature_that_fails_on_the_arqc_declines_without_going_online(tmp_path, csim):
    """EMV Book 2 6.6: CDA failing on the first GENERATE AC's ARQC: the terminal sets 'CDA failed' and ends with
    an AAC; nothing is sent (the signature over the cryptogram is what failed)."""
    start(csim)
    card = csim.insert(profile=variant(tmp_path, "mc-chip-cda", "bad-cda", tamper="cda"))
    csim.pin("1234")
    csim.wait_for("DECLINED")
    assert requests(csim) == [] and card.gen_ac == 2  # the card was closed with a second GENERATE AC (AAC)
    [row] = sales(csim)
    assert row["status"] == "failed" and tvr_bit(bytes.fromhex(row["note"].split("TVR ")[1][:10]), 1, 0x04)


# --- issuer scripts -------------------------------------------------------------------------------------------


def script_command(profile_path: Path, arqc: bytes, atc: bytes, n: int, header: bytes, body: bytes) -> bytes:
    """An issuer script command (86) as the issuer makes it: secure messaging MAC over header, ATC, ARQC + n."""
    p = load_profile(profile_path)
    scheme = cryptogram_scheme(p.kernel, p.imk_ac, p.pan, p.psn)
    ac = (int.from_bytes(arqc, "big") + n).to_bytes(8, "big")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mac = scheme.generate_command_mac(header + bytes([len(body) + 8]), ac, atc, body)
    return header + bytes([len(body) + 8]) + body + mac


def test_issuer_scripts_run_by_the_card_and_their_results_journaled(csim):
    profile = CHIP_DIR / "unionpay-debit-chip.toml"

    def with_scripts(request, answer):
        sent = icc(request)
        arqc, atc = sent["9F26"], sent["9F36"]
        put_lcol = script_command(profile, arqc, atc, 0, bytes.fromhex("04DA9F14"), b"\x05")
        forged = bytes.fromhex("841E0000") + b"\x08" + bytes(8)  # APPLICATION BLOCK with a MAC that is wrong
        after = encode_tlv("72", encode_tlv("9F18", b"\x00\x00\x00\x01") + encode_tlv("86", put_lcol))
        bad = encode_tlv("72", encode_tlv("9F18", b"\x00\x00\x00\x02") + encode_tlv("86", forged))
        return [{**answer, "55": answer["55"] + (after + bad).hex().upper()}]

    start(csim)
    card = csim.insert("unionpay-debit-chip")
    csim.host.lie(with_scripts)
    csim.pin("1234")
    csim.wait_for("APPROVED")
    assert card.c["lcol"] == 5 and not card.blocked  # the card ran the good command and refused the forged one
    [row] = sales(csim)
    # UnionPay names the results DF31: per script, result (2 = done, 1x = failed at command x) and its id
    assert row["script_results"] == "2000000001" + "1100000002"
    assert tvr_bit(bytes.fromhex(row["tvr"]), 5, 0x10)  # script processing failed after the final GENERATE AC
    assert row["status"] == "approved"


# --- receipts ------------------------------------------------------------------------------------------------


def test_both_receipt_copies_print_what_an_emv_chip_receipt_shows(csim):
    start(csim)
    csim.insert("unionpay-debit-chip")
    csim.pin("1234")
    csim.wait_for("APPROVED")
    [row] = sales(csim)
    assert (row["final_ac_type"], len(row["final_ac"]), len(row["tvr"]), len(row["tsi"])) == ("TC", 16, 10, 4)
    assert row["final_ac"] != row["cryptogram"]  # the TC of the second GENERATE AC, not the ARQC
    merchant, customer = csim.wait_for_receipts(2)[-2:]
    assert "商户存根" in merchant and "持卡人存根" in customer
    for copy in (merchant, customer):
        lines = [" ".join(ln.split()) for ln in copy.splitlines()]
        for expected in (
            "应用 APP UnionPay Debit",
            "AID A000000333010101",
            f"ARQC {row['cryptogram']}",
            f"TVR {row['tvr']}",
            f"TSI {row['tsi']}",
            f"TC {row['final_ac']}",
            "插卡 CHIP",
        ):
            assert any(expected in ln for ln in lines), (expected, copy)
    raw = csim.printer_bytes
    assert b"6250941006529100" not in raw and b"625094******9100" in raw  # the card number only masked


# --- a profile of one's own -----------------------------------------------------------------------------------


def test_a_chip_card_profile_written_for_the_test(tmp_path, csim):
    own = tmp_path / "card.toml"
    own.write_text(
        """# my own chip card: Visa, DDA, signature only, approved by the simulated issuer
kernel = "visa"
aid = "A0000000031010"
label = "MY CHIP CARD"
pan = "4761739001010200"
psn = "00"
expiry = "3112"
imk_ac = "00112233445566778899AABBCCDDEEFF"
balance = "100.00"

[contact]
oda = "dda"
cvm_list = "00000000000000001E03"
app_version = "0096"
"""
    )
    start(csim, "4200")
    csim.insert(profile=own)
    csim.wait_for("APPROVED")
    [req] = requests(csim)
    assert req["22"] == "051" and "MY CHIP CARD" not in req.get("55", "")
    [row] = sales(csim)
    assert (row["masked_pan"], row["app_label"], row["cvm"]) == ("476173******0200", "MY CHIP CARD", "signature")


# --- fallback ---------------------------------------------------------------------------------------------------

CHIP_STRIPE = ";6250941006529100=30122010000000000000?"  # the UnionPay chip card's stripe: service code 201


def test_a_fallback_is_journaled_as_one_and_the_anomaly_report_counts_it_apart(tmp_path, pcscd):
    from firmware.core import reports
    from firmware.core.money import Currency
    from firmware.records.journal import Journal

    unreadable = tmp_path / "odd-chip.toml"  # its only application is one this terminal does not take
    unreadable.write_text((CHIP_DIR / "unionpay-debit-chip.toml").read_text().replace("A000000333", "A000000999"))
    with Simulator(tmp_path / "data", chip_config(fallback=True)) as sim:
        start(sim)
        sim.insert(profile=unreadable)
        sim.wait_for("NOT SUPPORTED")
        sim.remove_card()
        sim.swipe(track2=CHIP_STRIPE)
        sim.pin("1234")
        sim.wait_for("DECLINED")  # the simulated issuer declines a chip card's stripe
        sim.keys("{ENTER}")
        start(sim, "1200")  # and an ordinary chip sale, for the count
        sim.insert("unionpay-debit-chip")
        sim.pin("1234")
        sim.wait_for("APPROVED")
        [fallback] = [r for r in sales(sim) if r["entry_mode"] == "fallback"]
        assert fallback["chip_swiped"] == 1 and requests(sim)[0]["22"] == "801"
        assert any("降级刷卡 FALLBACK" in " ".join(r.split()) for r in sim.wait_for_receipts(4))
        journal = Journal(sim.data_dir / "journal.sqlite3")
        try:
            rows = journal.anomaly_rows("2000-01-01", "2100-01-01")
        finally:
            journal.close()
    all_day = reports.AnomalyRules(opening=(0, 24), limits=())
    [found] = reports.anomalies(rows, all_day, Currency.of("CNY"))
    assert found.rule == "fallbacks from chip" and found.ids == (fallback["id"],)
    assert found.detail.startswith("1 of 2 card sales sent") and "0 approved" in found.detail


def test_the_fallback_rule_is_apart_from_repeated_swipes_of_one_chip_card(tmp_path):
    from datetime import datetime

    from firmware.core import reports
    from firmware.core.money import Currency
    from firmware.records.journal import Journal, NewSale

    j = Journal(tmp_path / "j.sqlite3")
    at = datetime(2026, 11, 3, 12, 0)
    for entry, token in (("swipe", "A"), ("fallback", "B"), ("fallback", "C"), ("chip", "D")):
        sale = NewSale("card", entry, 800, "CNY", "625094******9100", "T1", "M1", card_token=token, chip_swiped=True)
        row, _ = j.begin_sale(sale, at)
        j.finish(row, "approved", at)
    rows = j.anomaly_rows("2026-11-03", "2026-11-03")
    j.close()
    rules = reports.AnomalyRules(opening=(0, 24), limits=())
    [found] = reports.anomalies(rows, rules, Currency.of("CNY"))  # one card each: the per-card rule is quiet
    assert (found.rule, found.ids) == ("fallbacks from chip", (2, 3)) and found.detail.startswith("2 of 4")
    assert (
        reports.anomalies(rows, reports.AnomalyRules(opening=(0, 24), limits=(), fallbacks=3), Currency.of("CNY")) == []
    )


# --- the console simulator's chip reader ------------------------------------------------------------------------


def test_countertop_sim_starts_its_own_pcscd_and_the_console_inserts_a_chip_card(tmp_path, pcscd):
    """`countertop sim` as a person runs it (its own process, no pcscd given): it starts a private pcscd with
    vpcd, and insert / remove work from the console."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in pcscd.environ()}
    typed = "\n".join(
        ["2500", "", "insert unionpay-debit-chip", "pin 1234", "wait APPROVED", "remove", "journal", "quit", ""]
    )
    done = subprocess.run(
        [sys.executable, "-m", "firmware.shell.cli", "sim", "--data", str(tmp_path / "data")],
        input=typed,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "chip reader: hwsim chip slot through a private pcscd" in out
    assert "APPROVED" in out and "?? " not in out
    assert "625094******9100 rc 00" in out  # the journal listing: the chip sale, approved


def test_the_console_says_why_the_chip_reader_is_off(tmp_path, monkeypatch):
    import io

    import hwsim.pcscd
    from hwsim.console import interactive

    for name in (hwsim.pcscd.SOCKET_ENV, hwsim.pcscd.PORT_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hwsim.pcscd, "VPCD_DRIVERS", ())  # a machine without vsmartcard-vpcd
    out = io.StringIO()
    typed = io.StringIO("2500\n\ninsert unionpay-debit-chip\ncards\nquit\n")
    assert interactive(sim_config(), tmp_path / "data", inp=typed, out=out, chip_reader=True) == 0
    text = out.getvalue()
    off = [ln for ln in text.splitlines() if ln.startswith("chip reader: OFF (")]
    assert off and ("vsmartcard-vpcd" in off[0] or "pcscd" in off[0]) and "insert does not work" in off[0]
    assert "?? the chip reader is off: " in text
    assert "unionpay-debit-chip" in text  # the chip cards are still listed
