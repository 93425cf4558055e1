"""Hostile WeChat Pay answers, generated: whatever comes back (any status, any headers, any body, signed or not),
the client returns a result or raises WalletError, and it says paid, refunded or closed only for a signed answer
that names this order, this amount, this refund. Deterministic and bounded (derandomize, no example database)."""

from __future__ import annotations

import asyncio
import json
import secrets
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.wallets.alipay import WalletError
from firmware.wallets.wechat import WechatPayClient, _Raw, answer_message, sign
from hwsim.wechatgw import test_keypair as keypair

ORDER, AMOUNT, REFUND_NO = "T1", 1250, "R1"
MCHID, APPID, KEY_ID = "1900000109", "wxd678efh567hg6787", "PUB_KEY_ID_0114000000000000000000"
NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
SETTINGS = settings(
    max_examples=250, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
WECHAT_KEY = serialization.load_pem_private_key(keypair("wechat-public-key")[0], password=None)
CALLS = ["pay_by_code", "query", "create_order", "close", "cancel", "refund", "refund_query"]


class CannedClient(WechatPayClient):
    """The real client whose gateway is one canned answer (status, body, signed or not), given to every request;
    signed answers get a fresh nonce each time, as WeChat's would. Everything after the exchange is real."""

    status = 200
    body = ""
    signed = True
    extra_headers: dict[str, str] = {}

    def _exchange(self, method: str, path: str, body: str) -> _Raw:
        headers = dict(self.extra_headers)
        if self.signed:
            stamp, nonce = str(int(NOW.timestamp())), secrets.token_hex(16)
            headers |= {
                "wechatpay-timestamp": stamp,
                "wechatpay-nonce": nonce,
                "wechatpay-serial": KEY_ID,
                "wechatpay-signature": sign(WECHAT_KEY, answer_message(stamp, nonce, self.body)),
            }
        return _Raw(self.status, headers, self.body.encode("utf-8", "surrogatepass"))


def canned() -> CannedClient:
    return CannedClient(
        "http://127.0.0.1:9",
        MCHID,
        APPID,
        keypair("wechat-merchant")[0],
        "5157F09EFDC096DE15EBE81A47057A7232F1B8E1",
        b"a" * 32,
        platform="public_key",
        public_key=keypair("wechat-public-key")[1],
        public_key_id=KEY_ID,
        notify_url="https://shop.example/n",
        clock=lambda: NOW,
        refund_waits=(0.0,),
    )


def ask(client: CannedClient, call: str) -> Any:
    calls = {
        "pay_by_code": lambda: client.pay_by_code(ORDER, AMOUNT, "134567890123456789", "t"),
        "query": lambda: client.query(ORDER, AMOUNT),
        "create_order": lambda: client.create_order(ORDER, AMOUNT, "t"),
        "close": lambda: client.close(ORDER),
        "cancel": lambda: client.cancel(ORDER),
        "refund": lambda: client.refund(ORDER, AMOUNT, REFUND_NO, total=AMOUNT),
        "refund_query": lambda: client.refund_query(ORDER, AMOUNT, REFUND_NO),
    }
    return asyncio.run(calls[call]())


CLIENT = canned()

# A truthful answer (this order, this amount, this refund), then a few fields changed or dropped.
TRUTH: dict[str, Any] = {
    "appid": APPID,
    "mchid": MCHID,
    "out_trade_no": ORDER,
    "transaction_id": "4200002026030100000000000001",
    "trade_state": "SUCCESS",
    "amount": {"total": AMOUNT, "refund": AMOUNT, "currency": "CNY"},
    "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    "code_url": "weixin://wxpay/bizpayurl?pr=abc",
    "out_refund_no": REFUND_NO,
    "refund_id": "50302026030100000000000001",
    "status": "SUCCESS",
}
DROP = object()
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
)
others = st.one_of(
    st.sampled_from(
        [
            "T2",
            "",
            " T1",
            "t1",
            "1900000108",
            "wx0",
            1250,
            1250.0,
            "1250",
            12.5,
            1249,
            True,
            "USD",
            "NOTPAY",
            "USERPAYING",
            "CLOSED",
            "REVOKED",
            "PAYERROR",
            "REFUND",
            "PROCESSING",
            "ABNORMAL",
            "R2",
            "USERPAYING",
            "SYSTEMERROR",
            "ORDERNOTEXIST",
            "NOTENOUGH",
            {"total": AMOUNT, "currency": "CNY"},
            {"total": 1250.0, "refund": 1250, "currency": "CNY"},
            {"total": AMOUNT, "refund": AMOUNT},
        ]
    ),
    scalars,
)
answers = st.lists(
    st.tuples(st.sampled_from([*sorted(TRUTH), "code", "message"]), st.one_of(st.just(DROP), others)), max_size=4
).map(lambda changes: {k: v for k, v in (TRUTH | dict(changes)).items() if v is not DROP})
statuses = st.sampled_from([200, 200, 200, 202, 204, 400, 403, 404, 500])


@SETTINGS
@given(st.sampled_from(CALLS), statuses, st.text(max_size=300), st.booleans())
def test_any_body_is_a_result_or_a_wallet_error(call, status, body, signed):
    CLIENT.status, CLIENT.body, CLIENT.signed = status, body, signed
    try:
        result = ask(CLIENT, call)
    except WalletError:
        return
    assert result.state not in ("paid", "refunded")  # no text that is not a truthful object pays


@SETTINGS
@given(
    st.sampled_from(CALLS),
    statuses,
    answers,
    st.sampled_from([True] * 9 + [False]),
    st.dictionaries(
        st.sampled_from(["wechatpay-serial", "wechatpay-timestamp", "wechatpay-nonce"]), st.text(max_size=8)
    ),
)
def test_answers_pay_only_for_this_order_and_amount(call, status, answer, signed, tampered):
    CLIENT.status, CLIENT.body, CLIENT.signed = status, json.dumps(answer, ensure_ascii=False), signed
    CLIENT.extra_headers = {} if signed else tampered
    try:
        result = ask(CLIENT, call)
    except WalletError:
        return
    finally:
        CLIENT.extra_headers = {}
    if result.state in ("paid", "refunded", "closed"):
        assert signed  # only a signed answer decides anything
        if call == "cancel" and result.state == "closed" and status == 404:  # a number WeChat never had
            assert answer.get("code") in ("ORDERNOTEXIST", "ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS")
            return
        assert 200 <= status < 300 and answer.get("out_trade_no") == ORDER
    if result.state == "paid":
        assert answer.get("trade_state") in ("SUCCESS", "REFUND") and answer.get("transaction_id")
        assert answer.get("mchid") == MCHID and answer.get("appid") == APPID
        money = answer["amount"]
        assert type(money["total"]) is int and money["total"] == AMOUNT and money["currency"] == "CNY"
    if result.state == "refunded":
        assert answer.get("out_refund_no") == REFUND_NO and answer.get("status") == "SUCCESS"
        money = answer["amount"]
        assert type(money["refund"]) is int and money["refund"] == AMOUNT and money["currency"] == "CNY"
    if result.state == "closed":
        assert answer.get("trade_state") in ("CLOSED", "REVOKED")


@pytest.mark.parametrize("call", CALLS)
def test_a_deeply_nested_body_is_a_wallet_error(call):
    CLIENT.status, CLIENT.body, CLIENT.signed = 200, '{"amount":' + "[" * 5000 + "]" * 5000 + "}", True
    with pytest.raises(WalletError):
        ask(CLIENT, call)


def test_the_truth_is_believed():
    """The generated answers start from a truthful one: it must pay (or the tests above prove nothing)."""
    CLIENT.status, CLIENT.body, CLIENT.signed = 200, json.dumps(TRUTH), True
    assert ask(CLIENT, "pay_by_code").state == "paid"
    assert ask(CLIENT, "query").state == "paid"
    assert ask(CLIENT, "refund").state == "refunded"
    CLIENT.signed = False
    with pytest.raises(WalletError):
        ask(CLIENT, "query")
