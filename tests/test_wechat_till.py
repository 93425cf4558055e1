"""WeChat Pay at the till, end to end through the simulator: the real terminal, wallet desk and WeChat Pay v3
client against the simulated gateway (which checks every request's signature and signs every answer)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from conftest import sim_config, wait_until
from firmware.core import walletorder
from hwsim import Simulator
from test_wallet import _manager_refund

WECHAT_CODE = "134567890123456789"
ALIPAY_CODE = "286123456789012345"


@pytest.fixture
def wsim(tmp_path, monkeypatch):
    monkeypatch.setattr(walletorder, "EXPIRY_MARGIN", timedelta(0))  # one clock: the simulator's is ours
    cfg = sim_config(host=2.0)
    fast = dataclasses.replace(cfg.wallet, qr_timeout=3, poll_interval=0.1, confirm_timeout=1.0, confirm_interval=0.1)
    with Simulator(tmp_path / "data", dataclasses.replace(cfg, wallet=fast)) as s:
        yield s


def wallet_rows(sim):
    return [r for r in sim.journal() if r["method"] == "wallet"]


def scan(sim, code=WECHAT_CODE, amount="880"):
    sim.keys(amount + "{ENTER}")
    sim.wait_for("F2 WECHAT PAY")  # both wallets are set up: the screen says which key shows whose code
    sim.scan(code)


def test_a_scanned_wechat_code_pays_with_wechat_and_the_receipt_says_so(wsim):
    scan(wsim)
    wsim.wait_for("WECHAT PAY")
    wsim.wait_for("PAID")
    [row] = wallet_rows(wsim)
    assert (row["provider"], row["entry_mode"], row["status"], row["amount"]) == ("wechat", "code", "approved", 880)
    order = wsim.wechat.orders[row["order_no"]]
    assert order.kind == "codepay" and order.state == "SUCCESS" and row["wallet_trade_no"] == order.transaction_id
    receipts = wsim.wait_for_receipts(2)
    assert "微信支付" in receipts[-1] and "WECHAT PAY" in receipts[-1] and order.transaction_id in receipts[-1]
    assert order.openid not in receipts[-1] and order.openid not in row["payer"]  # the payer's id masked
    assert not [r for r in wsim.wallet.requests]  # Alipay never heard of it


def test_a_payer_who_enters_a_password_then_pays(wsim):
    wsim.wechat.next_code("confirm")
    scan(wsim)
    wsim.wait_for("CONFIRM IN YOUR APP")
    order_no = wait_until(lambda: next(iter(wsim.wechat.orders), None), what="the order")
    wsim.wechat.confirm(order_no)
    wsim.wait_for("PAID")
    assert wallet_rows(wsim)[0]["status"] == "approved"


def test_a_payer_who_never_pays_is_reversed_and_journaled_cancelled(wsim):
    wsim.wechat.next_code("never_confirm")
    scan(wsim)
    wsim.wait_for("CONFIRM IN YOUR APP")
    wsim.wait_for("NOT PAID")  # after confirm_timeout in all: reversed, and WeChat confirmed it
    [row] = wallet_rows(wsim)
    assert row["status"] == "cancelled" and wsim.wechat.orders[row["order_no"]].state == "REVOKED"
    assert any(e == "reverse" for e, _, _ in wsim.wechat.requests)


def test_too_little_balance_is_a_decline(wsim):
    wsim.wechat.next_code("insufficient")
    scan(wsim)
    wsim.wait_for("PAYMENT FAILED")
    assert wallet_rows(wsim)[0]["status"] == "declined"


def test_f2_shows_a_wechat_code_that_the_payer_pays(wsim):
    wsim.keys("1250{ENTER}")
    wsim.wait_for("F2 WECHAT PAY")
    wsim.keys("{F2}")
    wsim.wait_for("SCAN TO PAY")
    assert wsim.display_qr.startswith("weixin://")
    order_no = wsim.wechat.pay(wsim.display_qr)
    wsim.wait_for("PAID")
    [row] = wallet_rows(wsim)
    assert (row["order_no"], row["provider"], row["entry_mode"], row["status"]) == (
        order_no,
        "wechat",
        "qr",
        "approved",
    )


def test_cancel_closes_a_shown_wechat_code(wsim):
    wsim.keys("1250{ENTER}")
    wsim.wait_for("F2 WECHAT PAY")
    wsim.keys("{F2}")
    wsim.wait_for("SCAN TO PAY")
    order = wsim.wechat.order_for(wsim.display_qr)
    wsim.keys("{CANCEL}")
    wsim.wait_for("NOT PAID")
    assert order.state == "CLOSED" and wallet_rows(wsim)[0]["status"] == "cancelled"


def test_partial_refunds_go_back_to_wechat_once_each(wsim):
    scan(wsim, amount="2000")
    wsim.wait_for("PAID")
    sale = wallet_rows(wsim)[0]
    wsim.wechat.fault("bad_signature", endpoint="refund")  # the first refund's answer cannot be believed
    _manager_refund(wsim, sale["stan"], "500", "1")
    wsim.wait_for("WILL RETRY BY ITSELF")
    wait_until(lambda: [r for r in wsim.journal() if r["kind"] == "refund"][0]["status"] == "approved", what="resent")
    _manager_refund(wsim, sale["stan"], "750", "1")
    wsim.wait_for("REFUND APPROVED")
    refunds = wsim.wechat.orders[sale["order_no"]].refunds
    assert sorted(r.amount for r in refunds.values()) == [500, 750]  # each once, whatever was resent


def test_a_power_cut_while_the_payer_enters_a_password_is_reconciled_at_boot(wsim):
    wsim.wechat.next_code("never_confirm")
    scan(wsim)
    wsim.wait_for("CONFIRM IN YOUR APP")
    wsim.restart(crash=True)
    wait_until(lambda: wallet_rows(wsim)[0]["status"] == "cancelled", what="reconciled at boot")
    assert wsim.wechat.orders[wallet_rows(wsim)[0]["order_no"]].state == "REVOKED"


@pytest.mark.parametrize("fault", ["bad_signature", "other_order"])
def test_a_paid_answer_signed_by_another_key_or_for_another_order_is_never_a_payment(wsim, fault):
    wsim.wechat.next_code("never_confirm")  # the order is never paid: only a lie could say it was
    wsim.wechat.fault(fault, times=1000, endpoint="query")
    scan(wsim)
    wsim.wait_for("CONFIRM IN YOUR APP")
    wsim.wait_for("PAYMENT UNKNOWN")  # no query answer can be believed, so not even the reverse is confirmed
    assert wallet_rows(wsim)[0]["status"] == "unknown"
    wsim.wechat.fault(None)  # WeChat answers truly again: reconciliation finds the order reversed
    wait_until(lambda: wallet_rows(wsim)[0]["status"] == "cancelled", what="reconciled", timeout=30)


def test_a_wechat_code_without_wechat_set_up_is_refused(tmp_path):
    cfg = dataclasses.replace(sim_config(host=2.0), wechat=None)
    with Simulator(tmp_path / "data", cfg) as sim:
        sim.keys("880{ENTER}")
        sim.wait_for("SWIPE CARD")
        assert "WECHAT" not in sim.screen  # one wallet: no key list
        sim.scan(WECHAT_CODE)
        sim.wait_for("WECHAT NOT SET UP")
        assert wallet_rows(sim) == []
