"""The WeChat Pay v3 wire format checked against WeChat Pay's published examples and the official Go and Java
SDKs' test vectors (tests/wechatpay_vectors.json says where each comes from): the request signature and its
string, the Authorization header, an answer signature made by WeChat Pay, AEAD_AES_256_GCM, and a platform
certificate download decrypted with the APIv3 key."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from firmware.wallets.alipay import WalletError
from firmware.wallets.wechat import (
    SCHEMA,
    WechatPayClient,
    _Raw,
    answer_message,
    authorization,
    decrypt_resource,
    encrypt_resource,
    parse_authorization,
    request_message,
    sign,
    verify,
)

V = json.loads(Path(__file__).with_name("wechatpay_vectors.json").read_text(encoding="utf-8"))


def private(pem: str):
    return serialization.load_pem_private_key(pem.encode(), password=None)


def test_request_signature_is_the_documented_one():
    d = V["doc_request"]
    header = authorization(
        d["mchid"],
        d["serial_no"],
        private(d["private_key"]),
        d["method"],
        d["url"],
        d["body"],
        d["timestamp"],
        d["nonce"],
    )
    assert header.startswith(SCHEMA + " ")
    params = parse_authorization(header)
    assert params == {
        "mchid": d["mchid"],
        "nonce_str": d["nonce"],
        "signature": d["signature"],
        "timestamp": str(d["timestamp"]),
        "serial_no": d["serial_no"],
    }
    message = request_message(d["method"], d["url"], d["timestamp"], d["nonce"], d["body"])
    assert message == f"POST\n/v3/pay/transactions/jsapi\n1554208460\n{d['nonce']}\n{d['body']}\n".encode()


def test_a_signature_over_another_body_is_not_the_documented_one():
    d = V["doc_request"]
    other = d["body"].replace('"total":100', '"total":101')
    header = authorization(
        d["mchid"], d["serial_no"], private(d["private_key"]), d["method"], d["url"], other, d["timestamp"], d["nonce"]
    )
    assert parse_authorization(header)["signature"] != d["signature"]


def test_pay_sign_example_with_the_documented_key():
    assert (
        sign(private(V["doc_request"]["private_key"]), V["doc_pay_sign"]["message"].encode())
        == V["doc_pay_sign"]["signature"]
    )


def test_go_sdk_signature_vector():
    g = V["go_sdk"]
    assert sign(private(g["private_key"]), g["message"].encode()) == g["signature"]


@pytest.mark.parametrize("case", V["go_sdk"]["messages"], ids=["get", "post-body-ending-in-newline"])
def test_go_sdk_string_to_sign(case):
    assert request_message(case["method"], case["url"], case["timestamp"], case["nonce"], case["body"]) == case[
        "message"
    ].encode("utf-8")


def test_java_sdk_url_with_query_is_signed_whole():
    url = V["java_sdk"]["message_url"]
    assert request_message("GET", url, 1652750623, "N", "").split(b"\n")[1] == url.encode()


def test_parse_authorization_takes_any_order_and_refuses_other_schemas():
    header = f'{SCHEMA} serial_no="AB",timestamp="1",signature="c2ln",nonce_str="n",mchid="1900000109"'
    assert parse_authorization(header)["mchid"] == "1900000109"
    assert parse_authorization(header.replace(SCHEMA, "WECHATPAY2-SHA256-RSA")) is None
    assert parse_authorization(header.replace(',mchid="1900000109"', "")) is None


def test_documented_answer_signature_verifies():
    a = V["doc_answer"]
    key = serialization.load_pem_public_key(a["public_key"].encode())
    assert verify(key, answer_message(a["timestamp"], a["nonce"], a["body"]), a["signature"])
    assert not verify(key, answer_message(a["timestamp"], a["nonce"], a["body"] + " "), a["signature"])
    assert not verify(key, answer_message(str(int(a["timestamp"]) + 1), a["nonce"], a["body"]), a["signature"])
    assert not verify(
        key, answer_message(a["timestamp"], a["nonce"], a["body"]), "WECHATPAY/SIGNTEST/" + a["signature"]
    )


class CannedClient(WechatPayClient):
    """The real client whose HTTP exchange returns one canned answer."""

    raw: _Raw

    def _exchange(self, method: str, path: str, body: str) -> _Raw:
        return self.raw


def documented_client(at: int) -> CannedClient:
    a = V["doc_answer"]
    client = CannedClient(
        "http://127.0.0.1:9",
        "1900007291",
        "wxd678efh567hg6787",
        V["doc_request"]["private_key"].encode(),
        V["doc_request"]["serial_no"],
        b"a7cde1ZJB1kG2e7VfTs3jQzaWizur8Gb",
        platform="public_key",
        public_key=a["public_key"].encode(),
        public_key_id="PUB_KEY_ID_0114232134912410000000000000",
        notify_url="https://shop.example/n",
        clock=lambda: datetime.fromtimestamp(at, UTC),
    )
    headers = {
        "wechatpay-timestamp": a["timestamp"],
        "wechatpay-nonce": a["nonce"],
        "wechatpay-signature": a["signature"],
        "wechatpay-serial": "PUB_KEY_ID_0114232134912410000000000000",
    }
    client.raw = _Raw(200, headers, a["body"].encode())
    return client


def test_the_client_believes_the_documented_answer_only_while_it_is_fresh():
    stamp = int(V["doc_answer"]["timestamp"])
    shown = asyncio.run(documented_client(stamp + 60).create_order("T1", 1, "t"))
    assert shown.state == "waiting" and shown.qr == "weixin://wxpay/bizpayurl?pr=JyC91EIz1"
    with pytest.raises(WalletError, match="stamped"):
        asyncio.run(documented_client(stamp + 300).create_order("T1", 1, "t"))
    with pytest.raises(WalletError, match="stamped"):
        asyncio.run(documented_client(stamp - 300).create_order("T1", 1, "t"))
    client = documented_client(stamp + 1)
    asyncio.run(client.create_order("T1", 1, "t"))
    with pytest.raises(WalletError, match="replayed"):  # the very same answer again
        asyncio.run(client.create_order("T2", 1, "t"))


def test_aead_vector():
    j = V["java_sdk"]
    key, a = j["apiv3_key"].encode(), j["aead"]
    assert decrypt_resource(key, a["nonce"], a["associated_data"], a["ciphertext"]) == a["plaintext"].encode()
    assert encrypt_resource(key, a["nonce"], a["associated_data"], a["plaintext"].encode()) == a["ciphertext"]
    for nonce, ad, ciphertext, apiv3 in [
        ("bad-4a9R25RW", a["associated_data"], a["ciphertext"], key),
        (a["nonce"], "bad-associatedData", a["ciphertext"], key),
        (a["nonce"], a["associated_data"], base64.b64encode(bytes(128)).decode(), key),
        (a["nonce"], a["associated_data"], "not base64!", key),
        (a["nonce"], a["associated_data"], a["ciphertext"], b"b" * 32),
    ]:
        with pytest.raises(WalletError, match="does not decrypt"):
            decrypt_resource(apiv3, nonce, ad, ciphertext)


def certificate_client(apiv3_key: bytes) -> CannedClient:
    from hwsim.wechatgw import test_keypair

    return CannedClient(
        "http://127.0.0.1:9",
        "1234567891",
        "wxd678efh567hg6787",
        test_keypair("wechat-merchant")[0],
        "5F1C72E2A8931B72A2E13AF8DEE92471EB397115",
        apiv3_key,
        notify_url="https://shop.example/n",
    )


def test_certificate_download_vector_decrypts_to_the_serial_it_claims():
    j = V["java_sdk"]
    client = certificate_client(j["apiv3_key"].encode())
    certs = client._decrypt_certificates("download", j["certificates_answer"], datetime(2025, 1, 1, tzinfo=UTC))
    [(serial, cert)] = certs.items()
    assert f"{serial:X}" == j["certificate_serial"] == j["certificates_answer"]["data"][0]["serial_no"]
    assert "Tenpay.com" in cert.issuer.rfc4514_string()
    with pytest.raises(WalletError, match="no platform certificate valid now"):  # it expires in September 2028
        client._decrypt_certificates("download", j["certificates_answer"], datetime(2029, 1, 1, tzinfo=UTC))
    with pytest.raises(WalletError, match="does not decrypt"):
        certificate_client(b"b" * 32)._decrypt_certificates(
            "download", j["certificates_answer"], datetime(2025, 1, 1, tzinfo=UTC)
        )
    lying = json.loads(json.dumps(j["certificates_answer"]))
    lying["data"][0]["serial_no"] = "5DEA10EF55877E3CF6C33255C2E7DEFFF7E427ED"
    with pytest.raises(WalletError, match="holds serial 5DEA10EF55877E3CF6C33255C2E7DEFFF7E427EC"):
        client._decrypt_certificates("download", lying, datetime(2025, 1, 1, tzinfo=UTC))
