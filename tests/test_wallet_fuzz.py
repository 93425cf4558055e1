"""Hostile wallet answers, generated: whatever the gateway (or a man in the middle) sends, the client raises
WalletError or returns a result, and it says paid or refunded only for an answer that names this order
and this amount. Deterministic and bounded (derandomize, no example database)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.wallets.alipay import AlipayClient, WalletError, fen, load_private_key, response_key, rsa2_sign
from hwsim.walletgw import test_keypair as keypair

ORDER, AMOUNT = "T1", 1250
SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
METHODS = [
    "alipay.trade.pay",
    "alipay.trade.query",
    "alipay.trade.precreate",
    "alipay.trade.close",
    "alipay.trade.cancel",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
]


class CannedClient(AlipayClient):
    """The real client whose gateway is a canned body: everything after the HTTP exchange is the real code."""

    body = ""

    def _post(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        return self.verify_answer(self.body, method)


def canned() -> CannedClient:
    private, public = keypair("merchant")
    return CannedClient("http://127.0.0.1:9/gateway.do", "2021000000000000", private, keypair("gateway")[1])


def ask(client: CannedClient, method: str) -> Any:
    calls = {
        "alipay.trade.pay": lambda: client.pay_by_code(ORDER, AMOUNT, "286123456789012345", "t"),
        "alipay.trade.query": lambda: client.query(ORDER, AMOUNT),
        "alipay.trade.precreate": lambda: client.create_order(ORDER, AMOUNT, "t"),
        "alipay.trade.close": lambda: client.close(ORDER),
        "alipay.trade.cancel": lambda: client.cancel(ORDER),
        "alipay.trade.refund": lambda: client.refund(ORDER, AMOUNT, "R1"),
        "alipay.trade.fastpay.refund.query": lambda: client.refund_query(ORDER, AMOUNT, "R1"),
    }
    return asyncio.run(calls[method]())


CLIENT = canned()
GATEWAY_KEY = load_private_key(keypair("gateway")[0])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


# A truthful answer (for this order, this amount, refund request R1), then a few fields changed or dropped.
TRUTH = {
    "code": "10000",
    "msg": "Success",
    "out_trade_no": ORDER,
    "total_amount": "12.50",
    "trade_no": "2026030122001000000000000001",
    "trade_status": "TRADE_SUCCESS",
    "buyer_logon_id": "138****8888",
    "qr_code": "https://qr.alipay.com/bax01",
    "fund_change": "Y",
    "refund_fee": "12.50",
    "refund_amount": "12.50",
    "refund_status": "REFUND_SUCCESS",
    "out_request_no": "R1",
    "retry_flag": "N",
    "action": "close",
}
DROP = object()
others = st.one_of(
    st.sampled_from(
        [
            "10003",
            "40004",
            "40002",
            "20000",
            "T2",
            "",
            " T1",
            "t1",
            "12.5",
            "12.500",
            "1250",
            "0.01",
            "12.49",
            "-12.50",
            "1e3",
            "NaN",
            "Infinity",
            "TRADE_FINISHED",
            "WAIT_BUYER_PAY",
            "TRADE_CLOSED",
            "PAID",
            "Y",
            "N",
            "R2",
            "refund",
            "ACQ.TRADE_NOT_EXIST",
            "ACQ.SYSTEM_ERROR",
            "ACQ.TRADE_HAS_SUCCESS",
            "ACQ.TRADE_STATUS_ERROR",
            12.5,
            1250,
            0,
        ]
    ),
    scalars,
)
answers = st.lists(
    st.tuples(st.sampled_from(sorted(TRUTH) + ["sub_code", "sub_msg"]), st.one_of(st.just(DROP), others)), max_size=4
).map(lambda changes: {k: v for k, v in (TRUTH | dict(changes)).items() if v is not DROP})


@SETTINGS
@given(st.sampled_from(METHODS), st.text(max_size=300))
def test_any_body_is_an_answer_or_a_wallet_error(method, body):
    CLIENT.body = body
    try:
        ask(CLIENT, method)
    except WalletError:
        pass


@SETTINGS
@given(st.sampled_from(METHODS), answers, st.sampled_from([True] * 9 + [False]))
def test_signed_answers_pay_only_for_this_order_and_amount(method, answer, signed):
    raw = json.dumps(answer, ensure_ascii=False)
    sign = f',"sign":"{rsa2_sign(GATEWAY_KEY, raw.encode())}"' if signed else ""
    CLIENT.body = f'{{"{response_key(method)}":{raw}{sign}}}'
    try:
        result = ask(CLIENT, method)
    except WalletError:
        return
    assert signed  # nothing unsigned is ever an answer
    if result.state == "paid":
        assert answer.get("out_trade_no") == ORDER and fen(answer.get("total_amount")) == AMOUNT
        assert answer.get("code") == "10000" and answer.get("trade_no")
    if result.state == "refunded":
        assert answer.get("out_trade_no") == ORDER and answer.get("code") == "10000"
        if method == "alipay.trade.refund":  # only one naming this request counts at once
            assert answer.get("out_request_no") == "R1" and answer.get("fund_change") == "Y"
            assert fen(answer.get("refund_fee")) >= AMOUNT
        else:
            assert answer.get("refund_status") == "REFUND_SUCCESS" and fen(answer.get("refund_amount")) == AMOUNT
    if result.state in ("closed", "waiting") and method == "alipay.trade.query":
        assert answer.get("out_trade_no") == ORDER  # a closed trade is bound by its order alone
        assert result.state == "closed" or fen(answer.get("total_amount")) == AMOUNT
    if result.state in ("failed", "refused"):  # a failure that ends an order names it
        assert answer.get("out_trade_no") == ORDER
    if result.state == "closed" and method in ("alipay.trade.close", "alipay.trade.cancel"):
        if answer.get("code") == "10000":
            assert answer.get("out_trade_no") == ORDER
        else:  # ACQ.TRADE_HAS_CLOSE: names this order
            assert answer.get("code") == "40004" and answer.get("out_trade_no") == ORDER


def _signed(method: str, answer: dict) -> str:
    raw = json.dumps(answer)
    return f'{{"{response_key(method)}":{raw},"sign":"{rsa2_sign(GATEWAY_KEY, raw.encode())}"}}'


@pytest.mark.parametrize(
    "method, sub_code",
    [
        ("alipay.trade.pay", "ACQ.BUYER_BALANCE_NOT_ENOUGH"),
        ("alipay.trade.close", "ACQ.TRADE_HAS_CLOSE"),
        ("alipay.trade.cancel", "ACQ.TRADE_HAS_CLOSE"),
        ("alipay.trade.refund", "ACQ.TRADE_NOT_ALLOW_REFUND"),
    ],
)
def test_a_signed_failure_naming_no_order_ends_nothing(method, sub_code):
    """Found in review: a genuinely signed 40004 without out_trade_no (another order's, replayed) declined a
    payment, closed an order or refused a refund that may have gone through."""
    CLIENT.body = _signed(method, {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "x"})
    with pytest.raises(WalletError):
        ask(CLIENT, method)
    CLIENT.body = _signed(
        method, {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": "x", "out_trade_no": ORDER}
    )
    assert ask(CLIENT, method).state in ("failed", "closed", "refused")  # this order's own: believed


def test_an_earlier_refunds_answer_does_not_approve_this_one():
    """Found in review: refund R1's answer (it names no request; Alipay's never do) replayed to refund R2 of
    the same amount was taken as R2's. Without its request number an answer is confirmed by the refund
    query, which names it."""
    r1 = {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": ORDER,
        "trade_no": "2026",
        "fund_change": "Y",
        "refund_fee": "12.50",
    }
    CLIENT.body = _signed("alipay.trade.refund", r1)
    with pytest.raises(WalletError):  # the refund query is asked next: here it gets R1's answer again
        asyncio.run(CLIENT.refund(ORDER, AMOUNT, "R2", refunded_before=0))


def test_a_deeply_nested_body_is_a_wallet_error():
    """Found in review: json raised RecursionError before the signature was checked, killing the task."""
    CLIENT.body = '{"alipay_trade_query_response":' + "[" * 5000 + "]" * 5000 + "}"
    with pytest.raises(WalletError):
        ask(CLIENT, "alipay.trade.query")
