"""UnionPay QR's ACP 5.1.0 wire format: signing and verifying as UnionPay's SDK does (checked against two answers
UnionPay's own SDK sample ships), answers bound to their requests, the payment code's shape, the [unionpay]
section and the scanned-code router."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from firmware.config import UnionPayConfig
from firmware.core.paycode import classify_code, route_code
from firmware.errors import ConfigError
from firmware.wallets import unionpay
from firmware.wallets.alipay import WalletError, WalletMismatch
from hwsim.unionpaygw import UnionPayGateway
from hwsim.unionpaygw import sim_keypair as keypair
from hwsim.wechatgw import _load_private

VECTORS = json.loads((Path(__file__).parent / "unionpay_vectors.json").read_text(encoding="utf-8"))
UNIONPAY_CODE = "6223685882046899894"  # 19 digits starting 62


def _vector_answers():
    for answer in VECTORS["answers"]:
        yield {k: v.replace("@CERT@", VECTORS["certificate"]) for k, v in answer.items()}


@pytest.mark.parametrize("answer", list(_vector_answers()), ids=["consume-notice", "error-answer"])
def test_unionpays_own_sample_answers_verify_and_a_changed_field_does_not(answer):
    cert = x509.load_pem_x509_certificate(answer["signPubKeyCert"].encode())
    assert unionpay.cn_owner(cert) == unionpay.TEST_CN
    key = cert.public_key()
    assert unionpay.verify(key, answer)
    changed = {**answer, "orderId": answer["orderId"][:-1] + "9"}
    assert not unionpay.verify(key, changed)
    assert not unionpay.verify(key, {**answer, "signature": answer["signature"][:-4] + "AAAA"})


def test_our_signature_is_what_the_sdk_computes_and_verifies_back():
    key = _load_private(keypair("unionpay-merchant")[0])
    fields = {"version": "5.1.0", "txnAmt": "880", "merId": "777290058110048", "orderId": "T1260101120000ABCDEF"}
    signature = unionpay.sign(key, fields)
    assert (
        unionpay.sign_content(fields) == "merId=777290058110048&orderId=T1260101120000ABCDEF&txnAmt=880&version=5.1.0"
    )
    assert unionpay.verify(key.public_key(), {**fields, "signature": signature})
    assert not unionpay.verify(key.public_key(), {**fields, "txnAmt": "881", "signature": signature})


def test_answers_split_on_ampersands_outside_braces_only():
    text = "a=1&reqReserved={x=1&y=2}&b=&c=[{d=1&e=2}]&signPubKeyCert=-----BEGIN=="
    assert unionpay.parse_answer(text) == {
        "a": "1",
        "reqReserved": "{x=1&y=2}",
        "b": "",
        "c": "[{d=1&e=2}]",
        "signPubKeyCert": "-----BEGIN==",
    }
    for bad in ("a=1&a=2", "novalue", "=x"):
        with pytest.raises(WalletError):
            unionpay.parse_answer(bad)


def test_payment_codes_are_routed_by_prefix_and_config():
    assert classify_code(UNIONPAY_CODE) == "unionpay"
    assert classify_code("62" + "1" * 16) == "" and classify_code("63" + "1" * 17) == ""
    assert route_code(UNIONPAY_CODE, ("alipay", "unionpay")) == ("unionpay", "unionpay")
    assert route_code(UNIONPAY_CODE, ("alipay",)) == ("", "unionpay")
    assert route_code(UNIONPAY_CODE, ("alipay", "aggregator")) == ("aggregator", "unionpay")
    assert route_code("286123456789012345", ("alipay", "aggregator")) == ("alipay", "alipay")
    assert route_code("hello", ("aggregator",)) == ("", "")


def test_the_order_number_carries_the_txn_time():
    assert unionpay.order_txn_time("T1260302123456ABCDEF") == "20260302123456"
    with pytest.raises(WalletError):
        unionpay.order_txn_time("short")


@pytest.fixture
def gw():
    g = UnionPayGateway()
    yield g
    g.close()


def client(gw, **kw):
    return unionpay.UnionPayClient(
        gw.url, gw.mer_id, gw.merchant_pem, gw.root_pem, gw.middle_pem, refund_waits=(0.0, 0.0), **kw
    )


def order_no(n=1):
    return f"T1{datetime.now(UTC).astimezone(unionpay.CHINA):%y%m%d%H%M%S}ABCD{n:02d}"


def test_a_scanned_code_pays_and_every_request_is_signed_as_unionpay_checks(gw):
    c = client(gw)
    no = order_no()
    result = asyncio.run(c.pay_by_code(no, 880, UNIONPAY_CODE, "x"))
    assert result.state == "paid" and result.trade_no == gw.txns[no].query_id
    endpoint, fields = gw.requests[0]
    assert endpoint == "code" and fields["qrNo"] == UNIONPAY_CODE and fields["txnAmt"] == "880"
    assert fields["certId"] == str(gw.merchant_cert.serial_number) and fields["currencyCode"] == "156"


@pytest.mark.parametrize("fault", ["bad_signature", "foreign_cert", "malformed"])
def test_an_answer_not_signed_by_unionpay_is_no_answer(gw, fault):
    c = client(gw)
    gw.fault(fault, endpoint="query")
    with pytest.raises(WalletError):
        asyncio.run(c.query(order_no(), 880))


@pytest.mark.parametrize("fault", ["other_order", "wrong_amount"])
def test_a_genuine_answer_about_another_order_or_amount_is_a_mismatch(gw, fault):
    c = client(gw)
    no = order_no()
    asyncio.run(c.pay_by_code(no, 880, UNIONPAY_CODE, "x"))
    gw.fault(fault, endpoint="query")
    with pytest.raises(WalletMismatch):
        asyncio.run(c.query(no, 880))
    assert asyncio.run(c.query(no, 880)).state == "paid"  # asked again: the true answer


def test_a_refund_is_made_once_under_its_request_number(gw):
    c = client(gw)
    no = order_no()
    asyncio.run(c.pay_by_code(no, 2000, UNIONPAY_CODE, "x"))
    gw.fault("lost", endpoint="refund")
    with pytest.raises(WalletError):
        asyncio.run(c.refund(no, 500, "a" * 32))
    result = asyncio.run(c.refund(no, 500, "a" * 32))  # the resend: UnionPay says duplicate, the query decides
    assert result.state == "refunded" and [r.amount for r in gw.txns[no].refunds] == [500]


def test_a_middle_certificate_that_is_not_the_roots_is_refused(gw):
    other_root = VECTORS["certificate"].encode()  # any certificate that did not issue the intermediate
    with pytest.raises(WalletError, match="middle_cert"):
        unionpay.UnionPayClient(gw.url, gw.mer_id, gw.merchant_pem, other_root, gw.middle_pem)


def test_the_unionpay_section_reads_and_names_a_bad_key(tmp_path):
    from firmware.config import loads

    base = (Path(__file__).parent.parent / "config" / "sim.toml").read_text(encoding="utf-8")
    section = (
        '[unionpay]\nmer_id = "777290058110048"\nsign_cert = "s.pfx"\nroot_cert = "r.cer"\nmiddle_cert = "m.cer"\n'
    )
    cfg = loads((base + "\n" + section).encode(), "t.toml", tmp_path)
    assert isinstance(cfg.unionpay, UnionPayConfig) and cfg.unionpay.gateway == "https://gateway.95516.com"
    with pytest.raises(ConfigError, match=r"\[unionpay\] mer_id"):
        loads((base + "\n" + section.replace("777290058110048", "12")).encode(), "t.toml", tmp_path)
    with pytest.raises(ConfigError, match=r"\[unionpay\] sign_cert: cannot read"):
        unionpay.UnionPayClient.from_config(cfg.unionpay)
