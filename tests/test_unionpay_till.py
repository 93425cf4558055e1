"""UnionPay QR at the till, end to end through the simulator: the real terminal, wallet desk and UnionPay ACP
client against the simulated UnionPay gateway (which checks every request's signature and signs every answer
under its own root and intermediate): a scanned 62… code, a shown code, lies, lost answers, refunds, a crash."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from conftest import sim_config, wait_until
from firmware.config import UnionPayConfig
from firmware.core import walletorder
from hwsim import Simulator
from test_wallet import _manager_refund

UNIONPAY_CODE = "6223685882046899894"


@pytest.fixture
def usim(tmp_path, monkeypatch):
    monkeypatch.setattr(walletorder, "EXPIRY_MARGIN", timedelta(0))  # one clock: the simulator's is ours
    cfg = sim_config(host=2.0)
    fast = dataclasses.replace(cfg.wallet, qr_timeout=3, poll_interval=0.1, confirm_timeout=1.0, confirm_interval=0.1)
    up = UnionPayConfig(mer_id="777290058110048", sign_cert="-", root_cert="-", middle_cert="-")
    with Simulator(tmp_path / "data", dataclasses.replace(cfg, wallet=fast, unionpay=up)) as s:
        yield s


def wallet_rows(sim):
    return [r for r in sim.journal() if r["method"] == "wallet"]


def scan(sim, code=UNIONPAY_CODE, amount="880"):
    sim.keys(amount + "{ENTER}")
    sim.wait_for("F3 UNIONPAY")  # three wallets: the screen says which key shows whose code
    sim.scan(code)


def test_a_scanned_unionpay_code_pays_with_unionpay_and_the_receipt_says_so(usim):
    scan(usim)
    usim.wait_for("PAID")
    [row] = wallet_rows(usim)
    assert (row["provider"], row["entry_mode"], row["status"], row["amount"]) == ("unionpay", "code", "approved", 880)
    txn = usim.unionpay.txns[row["order_no"]]
    assert txn.kind == "code" and txn.state == "paid" and row["wallet_trade_no"] == txn.query_id
    receipts = usim.wait_for_receipts(2)
    assert "云闪付" in receipts[-1] and "UNIONPAY" in receipts[-1] and txn.query_id in receipts[-1]
    assert UNIONPAY_CODE not in receipts[-1] and UNIONPAY_CODE not in str(row)  # the payer's code is not kept
    assert not usim.wallet.requests and not usim.wechat.requests  # nobody else heard of it


def test_the_txn_time_is_beijing_time_whatever_zone_the_terminals_clock_runs_in(usim):
    # UnionPay names a request by its txnTime (Beijing time) and the query must repeat it: a board whose clock
    # runs in UTC (this machine's, often a Raspberry Pi's) would send a time eight hours off.
    scan(usim)
    usim.wait_for("PAID")
    [row] = wallet_rows(usim)
    txn = usim.unionpay.txns[row["order_no"]]
    created = datetime.fromisoformat(row["created_at"])
    assert txn.txn_time == created.astimezone(timezone(timedelta(hours=8))).strftime("%Y%m%d%H%M%S")
    assert row["order_no"][-18:-6] == txn.txn_time[2:]  # and the order number carries it for later queries


def test_a_payer_who_enters_a_password_then_pays(usim):
    usim.unionpay.next_code("confirm")
    scan(usim)
    usim.wait_for("CONFIRM IN YOUR APP")
    order_no = wait_until(lambda: next(iter(usim.unionpay.txns), None), what="the order")
    usim.unionpay.confirm(order_no)
    usim.wait_for("PAID")
    assert wallet_rows(usim)[0]["status"] == "approved"


def test_a_payer_who_never_confirms_is_reversed_and_journaled_cancelled(usim):
    usim.unionpay.next_code("never_confirm")
    scan(usim)
    usim.wait_for("CONFIRM IN YOUR APP")
    usim.wait_for("NOT PAID")
    [row] = wallet_rows(usim)
    assert row["status"] == "cancelled" and usim.unionpay.txns[row["order_no"]].state == "failed"
    assert any(e == "reversal" for e, _ in usim.unionpay.requests)


def test_too_little_balance_is_a_decline(usim):
    usim.unionpay.next_code("insufficient")
    scan(usim)
    usim.wait_for("INSUFFICIENT BALANCE")
    assert wallet_rows(usim)[0]["status"] == "declined"


@pytest.mark.parametrize("fault", ["other_order", "wrong_amount", "bad_signature", "foreign_cert"])
def test_a_lying_answer_is_never_a_payment(usim, fault):
    usim.unionpay.next_code("confirm")
    usim.unionpay.fault(fault, times=1000, endpoint="query")  # every query's answer lies
    scan(usim)
    order_no = wait_until(lambda: next(iter(usim.unionpay.txns), None), what="the order")
    usim.unionpay.confirm(order_no)  # the payment really happens; only a true answer may say so
    wait_until(lambda: wallet_rows(usim)[0]["status"] != "pending", what="an outcome")
    assert wallet_rows(usim)[0]["status"] in ("unknown", "cancelled")  # never approved on a lie
    usim.unionpay.fault(None)  # UnionPay answers truly again: reconciliation settles it
    wait_until(lambda: wallet_rows(usim)[0]["status"] in ("approved", "cancelled"), what="settled", timeout=20)
    txn = usim.unionpay.txns[order_no]
    # approved exactly when UnionPay holds the money; cancelled when the terminal undid the payment (消费撤销)
    assert (wallet_rows(usim)[0]["status"] == "approved") == (txn.state == "paid" and not txn.cancelled)


def test_a_lost_answer_to_the_payment_is_found_by_the_query(usim):
    usim.unionpay.fault("lost", endpoint="code")  # carried out, then the answer lost
    scan(usim)
    usim.wait_for("CHECKING WITH WALLET")  # no answer: the sale is unknown, never declined
    wait_until(lambda: wallet_rows(usim)[0]["status"] == "approved", what="the query finds it paid", timeout=20)
    [row] = wallet_rows(usim)
    assert usim.unionpay.txns[row["order_no"]].state == "paid"
    assert [e for e, _ in usim.unionpay.requests].count("code") == 1  # charged once: asked, never resent


def test_f3_shows_a_unionpay_code_that_the_payer_pays(usim):
    usim.keys("1250{ENTER}")
    usim.wait_for("F3 UNIONPAY")
    usim.keys("{F3}")
    usim.wait_for("SCAN TO PAY")
    assert usim.display_qr.startswith("https://qr.95516.com/")
    order_no = usim.unionpay.pay(usim.display_qr)
    usim.wait_for("PAID")
    [row] = wallet_rows(usim)
    assert (row["order_no"], row["provider"], row["entry_mode"], row["status"]) == (
        order_no,
        "unionpay",
        "qr",
        "approved",
    )
    endpoint, fields = usim.unionpay.requests[0]
    assert endpoint == "qr" and fields["txnAmt"] == "1250" and fields["payTimeout"]


def test_a_shown_code_nobody_paid_ends_cancelled_once_it_has_expired(usim):
    usim.keys("1250{ENTER}")
    usim.wait_for("F3 UNIONPAY")
    usim.keys("{F3}")
    usim.wait_for("SCAN TO PAY")
    usim.keys("{CANCEL}")  # UnionPay has no close: the code stays payable until its payTimeout
    wait_until(lambda: wallet_rows(usim)[0]["status"] == "cancelled", what="cancelled after expiry", timeout=20)


def test_partial_refunds_go_back_to_unionpay_once_each(usim):
    scan(usim, amount="2000")
    usim.wait_for("PAID")
    sale = wallet_rows(usim)[0]
    usim.unionpay.fault("lost", endpoint="refund")  # the first refund's answer is lost
    _manager_refund(usim, sale["stan"], "500", "1")
    usim.wait_for("WILL RETRY BY ITSELF")
    wait_until(lambda: [r for r in usim.journal() if r["kind"] == "refund"][0]["status"] == "approved", what="resent")
    _manager_refund(usim, sale["stan"], "750", "1")
    usim.wait_for("REFUND APPROVED")
    refunds = usim.unionpay.txns[sale["order_no"]].refunds
    assert sorted(r.amount for r in refunds) == [500, 750]  # each once, whatever was resent


def test_a_power_cut_mid_order_is_reconciled_at_boot(usim):
    usim.unionpay.next_code("confirm")
    scan(usim)
    usim.wait_for("CONFIRM IN YOUR APP")
    order_no = wait_until(lambda: next(iter(usim.unionpay.txns), None), what="the order")
    usim.restart(crash=True)  # the power goes while the payer types the password
    usim.unionpay.confirm(order_no)
    wait_until(lambda: wallet_rows(usim)[0]["status"] == "approved", what="reconciled at boot", timeout=20)


def test_a_refund_whose_answer_was_lost_to_a_power_cut_is_found_after_the_restart(usim):
    """The refund was made, its answer lost, the power goes: after the restart the desk resends it with the time
    it journaled the refund, so UnionPay's duplicate (12) and the query under the same txnTime settle it, once."""
    scan(usim, amount="2000")
    usim.wait_for("PAID")
    sale = wallet_rows(usim)[0]
    usim.unionpay.fault("lost", times=1000, endpoint="refund")  # every answer lost until the power goes
    _manager_refund(usim, sale["stan"], "500", "1")
    usim.wait_for("WILL RETRY BY ITSELF")
    usim.restart(crash=True)
    usim.unionpay.fault(None)
    wait_until(lambda: [r for r in usim.journal() if r["kind"] == "refund"][0]["status"] == "approved", what="found")
    assert [r.amount for r in usim.unionpay.txns[sale["order_no"]].refunds] == [500]
