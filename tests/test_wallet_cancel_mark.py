"""A wallet sale's cancel, journaled before it is sent (Journal.mark_cancel), and the provider answers that
decide what reconciliation does with it: Lakala's trade states after a revoke, UnionPay's cancellation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from firmware.records.journal import Journal, NewSale, cancel_marked
from firmware.wallets import aggregator, unionpay
from firmware.wallets.alipay import WalletError
from hwsim.lakalagw import LakalaGateway
from hwsim.unionpaygw import UnionPayGateway

UNIONPAY_CODE = "6223685882046899894"
NOW = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)


def order_no(n: int = 1) -> str:
    return f"T1{datetime.now(UTC).astimezone(unionpay.CHINA):%y%m%d%H%M%S}ABCD{n:02d}"


def test_the_first_cancel_time_is_kept_until_the_provider_says_nothing_moved(tmp_path):
    j = Journal(tmp_path / "j.sqlite3")
    wallet = NewSale("wallet", "code", 880, "CNY", "", "T1", "M1", provider="unionpay", order_no="T1X")
    row, _ = j.begin_sale(wallet, NOW)
    card, _ = j.begin_sale(NewSale("card", "swipe", 880, "CNY", "", "T1", "M1"), NOW)
    assert j.mark_cancel(row, NOW) == NOW
    assert j.mark_cancel(row, NOW + timedelta(seconds=5)) == NOW  # a resend is the same request
    assert cancel_marked(j.row(row)["idem_key"]) == NOW
    with pytest.raises(Exception, match="could not be journaled"):
        j.mark_cancel(card, NOW)  # only a wallet sale is cancelled at a provider
    j.clear_cancel(row)
    assert j.row(row)["idem_key"] == "" and cancel_marked("") is None
    assert j.mark_cancel(row, NOW + timedelta(seconds=9)) == NOW + timedelta(seconds=9)
    j.close()


@pytest.fixture
def lkgw():
    g = LakalaGateway()
    yield g
    g.close()


def lk_client(gw: LakalaGateway) -> aggregator.LakalaClient:
    return aggregator.LakalaClient(
        gw.url, gw.appid, gw.serial_no, gw.merchant_private_pem, gw.platform_cert_pem, gw.merchant_no, gw.term_no
    )


def test_a_revoked_lakala_trade_is_closed_and_revoking_it_again_says_so(lkgw):
    no = order_no()
    c = lk_client(lkgw)
    assert asyncio.run(c.pay_by_code(no, 880, UNIONPAY_CODE, "x")).state == "paid"
    lkgw.fault("lost", endpoint="revoke")
    with pytest.raises(WalletError):
        asyncio.run(c.cancel(no))  # revoked; its answer lost
    assert lkgw.trades[no].state == "REFUND"
    assert asyncio.run(c.query(no, 880)).state == "closed"  # the money went back: not a payment
    again = asyncio.run(c.cancel(no))
    assert (again.state, again.reason) == ("closed", "REFUNDED TO PAYER")


@pytest.fixture
def upgw():
    g = UnionPayGateway()
    yield g
    g.close()


def test_a_unionpay_cancellation_is_not_sent_for_a_payment_that_named_no_amount(upgw, monkeypatch):
    no = order_no()
    c = unionpay.UnionPayClient(upgw.url, upgw.mer_id, upgw.merchant_pem, upgw.root_pem, upgw.middle_pem)
    assert asyncio.run(c.pay_by_code(no, 880, UNIONPAY_CODE, "x")).state == "paid"
    real = upgw._business

    def no_amount(endpoint, f):
        answer = real(endpoint, f)
        if endpoint == "query":
            answer.pop("txnAmt", None)
        return answer

    monkeypatch.setattr(upgw, "_business", no_amount)
    with pytest.raises(WalletError):
        asyncio.run(c.cancel(no))
    assert not [e for e, _ in upgw.requests if e == "cancel"]
    assert not upgw.txns[no].cancelled
