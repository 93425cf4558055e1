"""Review of UnionPay QR through the acquirer's ISO 8583 link (issue 14, fdfebd2): what broke when a card number is
scanned, a refund's receipt is read, and similar; each test fails before the fix it asks for."""

from __future__ import annotations

import dataclasses
import io

import pytest

from conftest import SIM_TOML, sim_config, wait_until
from firmware.config import UnionPayConfig, load
from firmware.core.pan import luhn_valid, mask
from firmware.errors import ConfigError
from firmware.host import dialect
from hwsim.acquirer import Account
from hwsim.console import interactive
from test_refunds import start

CODE = "6223685882046899894"  # the lead's example payment code (19 digits starting 62; not Luhn-valid)
# A UnionPay debit card's number as Chinese banks issue them: 19 digits, BIN 62xxxx, Luhn-valid. Printed as a
# barcode (or a photo of the card run through a barcode app) it has exactly a payment code's shape.
CARD19 = "6222021234567890128"


def sales(sim):
    return [r for r in sim.journal() if r["kind"] == "sale"]


def requests(sim):
    return [dialect.decode(raw) for d, raw in sim.host_log if d == "request"]


def test_a_unionpay_card_number_scanned_as_a_barcode_is_never_charged_to_the_card(asim):
    """A 19-digit UnionPay CARD number (BIN 62, Luhn-valid) has a C2B code's shape: the terminal sends it as the
    PAN of a 0200 with entry mode 03 ("PAN read by a bar code reader" in ISO 8583:1987), no track, no expiry,
    no PIN under pin_above — and the simulated acquirer, which invents a payer for every unseen 62… number and
    reuses the issuer's card account when the number is a card's, approves it and debits the card: a card
    charged without the card, through a terminal that otherwise has no manual PAN entry at all. A payment
    code must be resolved as a code (a one-time token UnionPay issued), never as a card account."""
    assert luhn_valid(CARD19) and not luhn_valid(CODE)
    issuer = asim.host.issuer
    issuer.accounts[CARD19] = Account(CARD19, "1234", 100_000, "active")  # a card the issuer knows
    asim.keys("880{ENTER}")
    asim.wait_for("SWIPE CARD")
    asim.scan(CARD19)
    asim.wait_for("APPROVED", 10, "DECLINED", "NOT SUPPORTED", "NOT APPROVED")
    wait_until(lambda: not sales(asim) or sales(asim)[0]["status"] != "pending", what="the outcome")
    assert issuer.accounts[CARD19].balance == 100_000, "the card was charged from its number alone"
    assert [r["status"] for r in sales(asim) if r["status"] == "approved"] == []


def test_a_refund_receipt_of_a_code_sale_names_the_payment_code_not_a_card(asim):
    """The sale's receipt says 付款码 PAYMENT CODE and the wallet; the refund's (to the wallet or in cash) and the
    void's say 卡号 CARD 622368*********9894: the customer's one-time code printed as if it were a card number,
    on the slip the customer keeps."""
    asim.keys("1250{ENTER}")
    asim.wait_for("SWIPE CARD")
    asim.scan(CODE)
    asim.wait_for("APPROVED")
    asim.wait_for_receipts(2)
    asim.keys("{ENTER}")
    sale = sales(asim)[0]
    start(asim, "refund", sale["stan"])
    asim.wait_for("REFUND TRACE")
    asim.keys("300{ENTER}")
    asim.wait_for("1 TO WALLET  2 CASH")
    asim.keys("1")
    asim.wait_for("REFUND APPROVED")
    asim.keys("{ENTER}")
    refund_receipts = asim.wait_for_receipts(4)[2:]
    for receipt in refund_receipts:
        shown = [line for line in receipt.splitlines() if mask(CODE) in line]
        assert shown, receipt
        assert not any("CARD" in line for line in shown), shown  # "卡号 CARD    622368*********9894"
        assert "PAYMENT CODE" in receipt


def test_the_consoles_acquirer_payers_password_and_expired_reach_the_acquirer(tmp_path):
    """The console's help offers `wallet password` and `wallet expired` for a code the acquirer takes, but the
    command hands every behaviour to the Alipay and WeChat gateways first, which refuse both with ValueError: the
    console prints "?? unknown behaviour" and the acquirer's issuer never hears of the payer."""
    cfg = dataclasses.replace(sim_config(host=2.0), unionpay=UnionPayConfig(via="acquirer"))
    typed = io.StringIO(
        "\n".join(["wallet expired", "880", "enter", "wait SWIPE CARD", f"scan {CODE}", "wait PAYMENT CODE EXPIRED"])
        + "\nquit\n"
    )
    out = io.StringIO()
    assert interactive(cfg, tmp_path / "data", inp=typed, out=out) == 0
    text = out.getvalue()
    assert "?? " not in text, [line for line in text.splitlines() if "?? " in line]


def test_the_acquirer_shape_without_a_scanner_is_said_so_at_load(tmp_path):
    """[unionpay] via = "acquirer" does one thing only: take the codes the 2D scanner reads (no F-key shows a
    UnionPay code in this shape). A terminal configured so but without [scanner] loads silently and can never
    take a UnionPay payment; as `mer_id` under via = "acquirer" is refused at load, so should this be."""
    text = SIM_TOML.read_text(encoding="utf-8")
    head, _, _ = text.partition("[scanner]")  # the simulator's [scanner] is its last section
    assert "[scanner]" not in head
    path = tmp_path / "terminal.toml"
    path.write_text(head + '\n[unionpay]\nvia = "acquirer"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="scanner"):
        load(path)
