"""UnionPay QR through the acquirer's ISO 8583 link ([unionpay] via = "acquirer"), end to end through the simulator:
the customer's C2B code (19 digits starting 62) goes as the PAN of a 0200 (field 2, entry mode 03), its payer's PIN
is enciphered with the code as the PIN block's PAN, and everything a card sale has follows: reversal of a lost
answer (at once and after a power cut), void, partial refunds, settlement; an answer for another code is no
approval; the code itself is kept nowhere."""

from __future__ import annotations

from datetime import date

import psec.pinblock
import pytest

from conftest import SIM_TOML, assert_ledger_agrees, wait_until
from firmware.config import load
from firmware.core import reports
from firmware.core.pan import mask
from firmware.errors import ConfigError
from firmware.host import dialect
from firmware.records.journal import Journal
from firmware.security import dukpt
from hwsim.acquirer import CODE_BALANCE, CODE_PIN
from hwsim.simulator import SIM_BDK
from test_refunds import manager, start

CODE = "6223685882046899894"  # 19 digits starting 62: a UnionPay payment code (C2B)
OTHER = "6229876543210987654"


def requests(sim):
    return [dialect.decode(raw) for d, raw in sim.host_log if d == "request"]


def sales(sim):
    return [r for r in sim.journal() if r["kind"] == "sale"]


def scan(sim, code=CODE, amount="880"):
    sim.keys(amount + "{ENTER}")
    sim.wait_for("SWIPE CARD")
    sim.scan(code)


def paid(sim, code=CODE, amount="1250"):
    """A code's sale approved, both copies printed, back at the amount screen."""
    printed = len(sim.receipts)
    scan(sim, code, amount)
    sim.wait_for("APPROVED")
    sim.wait_for_receipts(printed + 2)
    sim.keys("{ENTER}")


def test_a_scanned_code_is_a_card_sale_at_the_acquirer_and_is_kept_nowhere(asim, tmp_path):
    scan(asim)
    asim.wait_for("APPROVED")
    [req] = requests(asim)
    assert (req["t"], req["2"], req["22"], req["4"]) == ("0200", CODE, "031", "000000000880")
    assert "35" not in req and "52" not in req and "55" not in req  # no track, no chip, no PIN under the limit
    [row] = sales(asim)
    assert (row["method"], row["entry_mode"], row["provider"], row["status"]) == (
        "card",
        "code",
        "unionpay",
        "approved",
    )
    assert row["masked_pan"] == mask(CODE) == "622368*********9894" and row["card_token"] == "" and row["cvm"] == "none"
    merchant, customer = asim.wait_for_receipts(2)
    for receipt in (merchant, customer):
        assert "UNIONPAY 云闪付" in receipt and "付款码 PAYMENT CODE" in receipt and mask(CODE) in receipt
        assert "扫顾客付款码 CODE" in receipt and row["rrn"] in receipt
    assert not asim.wallet.requests and not asim.unionpay.requests  # Alipay and UnionPay's own API heard nothing
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            assert CODE.encode() not in path.read_bytes(), path
    assert_ledger_agrees(asim)


def test_above_the_limit_the_payers_pin_is_enciphered_with_the_code_as_its_pan(asim):
    scan(asim, amount="150000")  # ¥1,500: above the ¥1,000 the acquirer takes without a PIN
    asim.pin(CODE_PIN)
    asim.wait_for("APPROVED")
    [req] = requests(asim)
    ksn = bytes.fromhex(req["53"])
    clear = dukpt.tdes_ecb_decrypt(dukpt.pin_key(dukpt.derive_ipek(SIM_BDK, ksn), ksn), bytes.fromhex(req["52"]))
    assert psec.pinblock.decode_pinblock_iso_0(clear, CODE) == CODE_PIN  # the code is the encryption factor
    try:  # with another PAN the block does not give the PIN
        wrong = psec.pinblock.decode_pinblock_iso_0(clear, OTHER)
    except ValueError:
        wrong = None
    assert wrong != CODE_PIN
    [row] = sales(asim)
    assert row["cvm"] == "online_pin" and row["status"] == "approved"
    assert "密码已验证 PIN VERIFIED" in asim.wait_for_receipts(2)[0]


def test_a_payer_whose_app_wants_the_pin_is_asked_for_it_then_pays(asim):
    asim.host.issuer.next_code("password")
    scan(asim)
    asim.wait_for("PAYMENT PIN NEEDED")  # the acquirer answered 55 to a request with no PIN
    asim.keys("111111{ENTER}")
    asim.wait_for("WRONG PIN, TRY AGAIN")
    asim.keys(CODE_PIN + "{ENTER}")
    asim.wait_for("APPROVED")
    assert [("52" in r, r["2"]) for r in requests(asim)] == [(False, CODE), (True, CODE), (True, CODE)]
    assert [r["status"] for r in sales(asim)] == ["declined", "declined", "approved"]
    assert_ledger_agrees(asim)


@pytest.mark.parametrize(
    ("payer", "screen"),
    [("insufficient", "INSUFFICIENT BALANCE"), ("expired", "PAYMENT CODE EXPIRED")],
)
def test_a_payer_who_cannot_pay_is_declined_in_a_codes_words(asim, payer, screen):
    asim.host.issuer.next_code(payer)
    scan(asim)
    asim.wait_for(screen)
    assert sales(asim)[0]["status"] == "declined"


def test_a_code_pays_once(asim):
    scan(asim)
    asim.wait_for("APPROVED")
    asim.keys("{ENTER}")
    scan(asim)  # the same code shown again (a photo of it, say)
    asim.wait_for("PAYMENT CODE INVALID")
    assert [r["status"] for r in sales(asim)] == ["approved", "declined"]


def test_a_lost_answer_is_reversed_and_the_payer_gets_the_money_back(asim):
    asim.host.fault("timeout")
    scan(asim)
    asim.wait_for("NOT APPROVED", timeout=15)
    wait_until(lambda: sales(asim)[0]["status"] == "reversed", what="the reversal")
    reversal = [r for r in requests(asim) if r["t"] in ("0400", "0401")][0]
    assert reversal["4"] == "000000000880" and "2" not in reversal  # found by trace and time, no code again
    assert asim.host.issuer.codes[CODE].balance == CODE_BALANCE and asim.host.ledger[0]["reversed"]
    assert_ledger_agrees(asim)


def test_a_power_cut_while_the_host_is_asked_is_reversed_at_boot(asim):
    issuer = asim.host.issuer
    asim.host.fault("timeout")
    scan(asim, amount="2500")
    wait_until(lambda: asim.host.ledger, what="the issuer's decision")
    before = issuer.codes[CODE].balance
    asim.restart(crash=True)
    wait_until(lambda: sales(asim)[0]["status"] == "reversed", what="the reversal at boot")
    assert issuer.codes[CODE].balance == before + 2500
    assert_ledger_agrees(asim)


@pytest.mark.parametrize("lie", ["other_code", "no_code"])
def test_an_answer_for_another_code_is_never_an_approval(asim, lie):
    def rewrite(request, answer):
        changed = dict(answer)
        if lie == "other_code":
            changed["2"] = OTHER
        else:
            del changed["2"]
        return [changed]

    asim.host.lie(rewrite)
    scan(asim)
    asim.wait_for("NOT APPROVED", timeout=15)
    [row] = sales(asim)
    assert row["status"] in ("unknown", "reversed")
    wait_until(lambda: sales(asim)[0]["status"] == "reversed", what="the reversal")
    assert CODE not in str(row) and OTHER not in str(row)  # the note says which field, masked
    assert_ledger_agrees(asim)


def test_void_and_partial_refunds_go_back_through_the_acquirer(asim):
    issuer = asim.host.issuer
    paid(asim)
    sale = sales(asim)[0]
    after_sale = issuer.codes[CODE].balance
    start(asim, "refund", sale["stan"])
    asim.wait_for("REFUND TRACE")
    asim.keys("500{ENTER}")
    asim.wait_for("1 TO WALLET  2 CASH")  # the money goes back to the payer's wallet, through the acquirer
    asim.keys("1")
    asim.wait_for("REFUND APPROVED")
    asim.keys("{ENTER}")
    assert issuer.codes[CODE].balance == after_sale + 500
    receipt = asim.wait_for_receipts(4)[2]
    assert "原路退回 TO WALLET" in receipt
    [follow] = [r for r in requests(asim) if r["3"] == "200000"]
    assert follow["37"] == sale["rrn"] and "2" not in follow  # found by the sale's RRN, the code not sent again
    start(asim, "void", sale["stan"])
    asim.wait_for("ALREADY REFUNDED")
    assert_ledger_agrees(asim)


def test_a_void_gives_everything_back_and_the_settlement_balances(asim):
    issuer = asim.host.issuer
    paid(asim)
    paid(asim, code=OTHER, amount="990")
    start(asim, "void", sales(asim)[0]["stan"])
    asim.wait_for("ENTER TO CONFIRM")
    asim.keys("{ENTER}")
    asim.wait_for("VOID APPROVED")
    asim.keys("{ENTER}")
    assert issuer.codes[CODE].balance == issuer.codes[OTHER].balance + 990
    manager(asim)
    asim.wait_for("4 SETTLEMENT")
    asim.keys("4")
    asim.wait_for("SETTLED, IN BALANCE")
    assert_ledger_agrees(asim)


def test_the_reports_count_unionpay_through_the_acquirer_apart(asim, tmp_path):
    paid(asim, amount="880")
    asim.keys("1250{ENTER}")
    asim.wait_for("SWIPE CARD")
    asim.swipe("visa-approve")
    asim.pin("1234")
    asim.wait_for("APPROVED")
    wait_until(lambda: len(sales(asim)) == 2 and sales(asim)[1]["status"] == "approved", what="the card sale")
    journal = Journal(tmp_path / "data" / "journal.sqlite3")
    try:
        # From the first sale's day to the last's: two sales either side of midnight are one report still.
        first, last = (date.fromisoformat(r["created_at"][:10]) for r in (sales(asim)[0], sales(asim)[-1]))
        r = reports.build(journal.figures(first.isoformat(), last.isoformat()), first, last, "CNY")
    finally:
        journal.close()
    assert {(m.method, m.count, m.amount) for m in r.methods} == {
        ("unionpay (code scanned, acquirer)", 1, 880),
        ("card swipe", 1, 1250),
    }


def test_the_section_for_the_acquirer_shape(tmp_path):
    good = _config_with(tmp_path, 'via = "acquirer"\npin_above = 50000\n')
    up = load(good).unionpay
    assert up is not None and (up.via, up.pin_above, up.mer_id) == ("acquirer", 50000, "")
    with pytest.raises(ConfigError, match="mer_id"):
        load(_config_with(tmp_path, 'via = "acquirer"\nmer_id = "777290058110048"\n'))
    with pytest.raises(ConfigError, match="via"):
        load(_config_with(tmp_path, 'via = "bank"\n'))


def _config_with(tmp_path, unionpay: str):
    text = SIM_TOML.read_text(encoding="utf-8") + "\n[unionpay]\n" + unionpay
    path = tmp_path / "terminal.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_mismatched_code_is_named_masked_and_still_told_apart():
    from firmware.errors import AnswerMismatch
    from firmware.host.messages import bind

    request = {"t": "0200", "2": CODE, "3": "000000", "4": "000000000880", "11": "000007", "41": "SIM00001"}
    close = CODE[:9] + "0" + CODE[10:]  # one hidden digit changed: the same mask
    answer = {**request, "t": "0210", "2": close, "39": "00"}
    with pytest.raises(AnswerMismatch) as caught:
        bind(request, answer)
    said = str(caught.value)
    assert CODE not in said and close not in said and mask(CODE) in said
    assert "differs in the hidden digits" in said and "19 digits" in said
