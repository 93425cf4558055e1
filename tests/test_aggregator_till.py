"""The aggregator (聚合支付, Lakala's open platform) at the till, end to end through the simulator: codes of
wallets the shop has not set up directly go to it and it says which wallet paid; its key (here F3) shows its
one cashier code any wallet app can pay; lies, lost answers, revokes and refunds; its signing both ways."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest

from conftest import sim_config, wait_until
from firmware.config import AggregatorConfig
from firmware.core import walletorder
from firmware.wallets import aggregator
from firmware.wallets.alipay import WalletError, WalletMismatch
from hwsim import Simulator
from hwsim.lakalagw import LakalaGateway
from test_wallet import _manager_refund

UNIONPAY_CODE = "6223685882046899894"
WECHAT_CODE = "134567890123456789"


@pytest.fixture
def asim(tmp_path, monkeypatch):
    """Alipay and WeChat set up directly, UnionPay only through the aggregator."""
    monkeypatch.setattr(walletorder, "EXPIRY_MARGIN", timedelta(0))
    cfg = sim_config(host=2.0)
    fast = dataclasses.replace(cfg.wallet, qr_timeout=3, poll_interval=0.1, confirm_timeout=1.0, confirm_interval=0.1)
    ag = AggregatorConfig("OP00000003", "-", "-", "-", "82229007392000A", "D9296400")
    with Simulator(tmp_path / "data", dataclasses.replace(cfg, wallet=fast, aggregator=ag)) as s:
        yield s


def wallet_rows(sim):
    return [r for r in sim.journal() if r["method"] == "wallet"]


def scan(sim, code=UNIONPAY_CODE, amount="880"):
    sim.keys(amount + "{ENTER}")
    sim.wait_for("F2 WECHAT PAY")
    sim.scan(code)


def test_a_unionpay_code_goes_to_the_aggregator_which_says_who_paid(asim):
    scan(asim)
    asim.wait_for("PAID")
    [row] = wallet_rows(asim)
    assert (row["provider"], row["entry_mode"], row["status"]) == ("aggregator", "code", "approved")
    trade = asim.aggregator.trades[row["order_no"]]
    assert (
        trade.account_type == "UQRCODEPAY" and row["payer"] == "UNIONPAY" and row["wallet_trade_no"] == trade.trade_no
    )
    receipts = asim.wait_for_receipts(2)
    assert "聚合支付" in receipts[-1] and "UNIONPAY" in receipts[-1]


def test_a_wechat_code_still_goes_to_wechat_when_wechat_is_set_up(asim):
    scan(asim, WECHAT_CODE)
    asim.wait_for("PAID")
    assert wallet_rows(asim)[0]["provider"] == "wechat" and not asim.aggregator.requests


def test_a_payer_who_never_confirms_is_revoked(asim):
    asim.aggregator.next_code("never_confirm")
    scan(asim)
    asim.wait_for("NOT PAID")
    [row] = wallet_rows(asim)
    assert row["status"] == "cancelled" and asim.aggregator.trades[row["order_no"]].state == "CLOSE"


@pytest.mark.parametrize("fault", ["other_order", "wrong_amount", "bad_signature", "unsigned"])
def test_a_lying_answer_is_never_a_payment(asim, fault):
    asim.aggregator.next_code("confirm")
    asim.aggregator.fault(fault, times=1000, endpoint="query")
    scan(asim)
    order_no = wait_until(lambda: next(iter(asim.aggregator.trades), None), what="the trade")
    asim.aggregator.confirm(order_no)  # paid for real; only a true answer may say so
    wait_until(lambda: wallet_rows(asim)[0]["status"] != "pending", what="an outcome")
    assert wallet_rows(asim)[0]["status"] in ("unknown", "cancelled")
    asim.aggregator.fault(None)
    wait_until(lambda: wallet_rows(asim)[0]["status"] in ("approved", "cancelled"), what="settled", timeout=20)
    trade = asim.aggregator.trades[order_no]
    assert (wallet_rows(asim)[0]["status"] == "approved") == (trade.state == "SUCCESS")


def test_f3_shows_one_code_any_wallet_pays(asim):
    asim.keys("1250{ENTER}")
    asim.wait_for("F2 WECHAT PAY")
    asim.keys("{F3}")  # the third wallet set up: the aggregator
    asim.wait_for("SCAN TO PAY")
    assert asim.display_qr.startswith("https://q.lakala.com/")
    order_no = asim.aggregator.pay(asim.display_qr, wallet="alipay")
    asim.wait_for("PAID")
    [row] = wallet_rows(asim)
    assert (row["order_no"], row["provider"], row["entry_mode"], row["payer"]) == (
        order_no,
        "aggregator",
        "qr",
        "ALIPAY",
    )


def test_cancel_closes_the_shown_cashier_code(asim):
    asim.keys("1250{ENTER}")
    asim.wait_for("F2 WECHAT PAY")
    asim.keys("{F3}")  # the third wallet set up: the aggregator
    asim.wait_for("SCAN TO PAY")
    asim.keys("{CANCEL}")
    asim.wait_for("NOT PAID")
    [row] = wallet_rows(asim)
    assert row["status"] == "cancelled" and asim.aggregator.trades[row["order_no"]].state == "5"


def test_refunds_through_the_aggregator_once_each(asim):
    scan(asim, amount="2000")
    asim.wait_for("PAID")
    sale = wallet_rows(asim)[0]
    asim.aggregator.fault("lost", endpoint="refund")
    _manager_refund(asim, sale["stan"], "500", "1")
    asim.wait_for("WILL RETRY BY ITSELF")
    wait_until(lambda: [r for r in asim.journal() if r["kind"] == "refund"][0]["status"] == "approved", what="resent")
    _manager_refund(asim, sale["stan"], "750", "1")
    asim.wait_for("REFUND APPROVED")
    assert sorted(r.amount for r in asim.aggregator.trades[sale["order_no"]].refunds) == [500, 750]


def test_a_request_signed_with_another_key_is_refused_and_our_signature_is_checked():
    gw = LakalaGateway()
    try:
        from hwsim.unionpaygw import sim_keypair as keypair

        other = aggregator.LakalaClient(
            gw.url, gw.appid, gw.serial_no, keypair("lakala-other")[0], gw.platform_cert_pem, gw.merchant_no, gw.term_no
        )
        with pytest.raises(WalletError):
            asyncio.run(other.query("T1260101120000ABCDEF", 100))
        good = aggregator.LakalaClient(
            gw.url, gw.appid, gw.serial_no, gw.merchant_private_pem, gw.platform_cert_pem, gw.merchant_no, gw.term_no
        )
        assert asyncio.run(good.pay_by_code("T1260101120000ABCDEF", 100, UNIONPAY_CODE, "x")).state == "paid"
        gw.fault("other_order", endpoint="query")
        with pytest.raises(WalletMismatch):
            asyncio.run(good.query("T1260101120000ABCDEF", 100))
    finally:
        gw.close()
