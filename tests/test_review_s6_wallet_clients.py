"""Review (session 6) of issue 14's provider clients against their simulated gateways: a UnionPay refund whose
answer was lost before a restart can never be settled; Lakala answers believed without the amount they must be
bound to; a Lakala order that never reached Lakala is never "not found". Each test failed on the code as merged
(7bf7a9f); fixed on branch walletfix."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from firmware.wallets import aggregator, unionpay
from firmware.wallets.alipay import WalletError, WalletMismatch
from hwsim.lakalagw import LakalaGateway
from hwsim.unionpaygw import UnionPayGateway

UNIONPAY_CODE = "6223685882046899894"


def order_no(n: int = 1) -> str:
    return f"T1{datetime.now(UTC).astimezone(unionpay.CHINA):%y%m%d%H%M%S}ABCD{n:02d}"


@pytest.fixture
def upgw():
    g = UnionPayGateway()
    yield g
    g.close()


@pytest.fixture
def lkgw():
    g = LakalaGateway()
    yield g
    g.close()


def up_client(gw: UnionPayGateway) -> unionpay.UnionPayClient:
    return unionpay.UnionPayClient(
        gw.url, gw.mer_id, gw.merchant_pem, gw.root_pem, gw.middle_pem, refund_waits=(0.0, 0.0)
    )


def lk_client(gw: LakalaGateway) -> aggregator.LakalaClient:
    return aggregator.LakalaClient(
        gw.url, gw.appid, gw.serial_no, gw.merchant_private_pem, gw.platform_cert_pem, gw.merchant_no, gw.term_no
    )


# --- UnionPay -----------------------------------------------------------------------------------------------


def test_unionpay_refund_whose_answer_was_lost_before_a_restart_is_found_after_it(upgw):
    """A power cut mid-refund: the refund was made (UnionPay holds it under its orderId and txnTime), its answer
    lost. The desk resends it at boot under the same request number. The client used to keep the txnTime only in
    memory, so the rebooted one sent a new one: UnionPay said duplicate (12), the query under the new txnTime
    found nothing (34), and refund() raised 'not final' on every pass, for ever (on a later day the same orderId
    with a new txnTime might even be a second refund). Now the desk passes the time it journaled the refund
    (`at`, the row's created_at) with every send, and the txnTime is made from it."""
    upgw.refund_delay = 0
    no = order_no()
    journaled = datetime.now(UTC)  # the refund row's created_at, passed by the desk with every send
    before = up_client(upgw)
    assert asyncio.run(before.pay_by_code(no, 2000, UNIONPAY_CODE, "x")).state == "paid"
    upgw.fault("lost", endpoint="refund")
    with pytest.raises(WalletError):
        asyncio.run(before.refund(no, 500, "b" * 32, 0, 2000, journaled))
    assert [(r.amount, r.state) for r in upgw.txns[no].refunds] == [(500, "paid")]  # made, once

    later = datetime.now(UTC) + timedelta(minutes=3)  # booted again a few minutes later
    after = unionpay.UnionPayClient(
        upgw.url,
        upgw.mer_id,
        upgw.merchant_pem,
        upgw.root_pem,
        upgw.middle_pem,
        refund_waits=(0.0, 0.0),
        clock=lambda: later,
    )
    result = asyncio.run(after.refund(no, 500, "b" * 32, 0, 2000, journaled))
    assert result.state == "refunded"
    assert [r.amount for r in upgw.txns[no].refunds] == [500]


def test_unionpay_cancellation_is_confirmed_only_by_a_query_of_its_own_amount(upgw, monkeypatch):
    """消费撤销's confirming query used to be asked with amount None (unionpay.py _cancel_paid): a genuinely signed
    query answer for the cancellation naming another amount made the sale 'closed, REFUNDED TO PAYER'. It is
    asked with the paid amount now, and a mismatch is no answer."""
    no = order_no()
    c = up_client(upgw)
    assert asyncio.run(c.pay_by_code(no, 2000, UNIONPAY_CODE, "x")).state == "paid"
    real = upgw._business

    def lying(endpoint, f):
        answer = real(endpoint, f)
        if endpoint == "query" and f["orderId"].endswith("C") and "txnAmt" in answer:
            answer["txnAmt"] = "1"  # the cancellation's query says 0.01, not 20.00
        return answer

    monkeypatch.setattr(upgw, "_business", lying)
    try:
        result = asyncio.run(c.cancel(no))
    except WalletMismatch:
        return  # bound: the mismatch is no answer
    assert result.state != "closed", f"a cancellation confirmed by a query of another amount: {result}"


# --- Lakala (the aggregator) --------------------------------------------------------------------------------


def test_lakala_refund_is_not_confirmed_by_a_query_that_names_no_amount(lkgw, monkeypatch):
    """refund() used to check the refund query's total_amount only when it was there: a SUCCESS that names no
    amount was taken as this refund's, unlike every other answer. A missing amount is a mismatch now."""
    lkgw.refund_delay = 0
    no = order_no()
    c = lk_client(lkgw)
    assert asyncio.run(c.pay_by_code(no, 2000, UNIONPAY_CODE, "x")).state == "paid"
    real = lkgw._trade_answer

    def no_amount(t):
        answer = real(t)
        if t.kind == "refund":
            del answer["total_amount"]
        return answer

    real_business = lkgw._business

    def unsure(endpoint, req):
        code, data = real_business(endpoint, req)
        return (code, {}) if endpoint == "refund" else (code, data)  # carried out; an answer with no data

    monkeypatch.setattr(lkgw, "_trade_answer", no_amount)
    monkeypatch.setattr(lkgw, "_business", unsure)  # only the refund's query can decide
    try:
        result = asyncio.run(c.refund(no, 500, "c" * 32, 0, 2000))
    except WalletError:
        return  # not believed: asked again later
    assert result.state != "refunded", "a refund confirmed by an answer that does not say how much"


def test_lakala_payment_answer_that_says_the_trade_is_not_paid_is_not_a_payment(lkgw, monkeypatch):
    """pay_by_code used to take any BBS00000 answer bound to the order and amount as paid without reading its
    trade_state; the simulated gateway itself sends trade_state in that answer. One that says DEAL (the payer
    has not confirmed) is asked about (the trade query), not paid: only SUCCESS is."""
    real = lkgw._business

    def deal(endpoint, req):
        code, data = real(endpoint, req)
        if endpoint == "micropay" and code == "BBS00000":
            lkgw.trades[req["out_trade_no"]].state = "DEAL"
            data = {**data, "trade_state": "DEAL"}
        return code, data

    monkeypatch.setattr(lkgw, "_business", deal)
    no = order_no()
    result = asyncio.run(lk_client(lkgw).pay_by_code(no, 880, UNIONPAY_CODE, "x"))
    assert lkgw.trades[no].state == "DEAL"
    assert result.state != "paid", "paid on an answer whose trade_state says the payment is still in progress"


def test_lakala_order_that_never_reached_lakala_is_not_found(lkgw):
    """A micropay that never reached Lakala (HTTP 500 before it was carried out): Lakala's trade query answers
    BBS11105 (no such trade). The client used to raise it as an error, so query() and cancel() never said
    not_found and the desk left the sale 'unknown' for ever; it is not_found now, like UnionPay's 34 and
    WeChat's ORDER_NOT_EXIST, final after walletorder.CODE_NOT_FOUND_WAIT."""
    no = order_no()
    c = lk_client(lkgw)
    lkgw.fault("http500", endpoint="micropay")
    with pytest.raises(WalletError):
        asyncio.run(c.pay_by_code(no, 880, UNIONPAY_CODE, "x"))
    assert no not in lkgw.trades
    assert asyncio.run(c.query(no, 880)).state == "not_found"
    assert asyncio.run(c.cancel(no)).state in ("not_found", "closed")
