"""The wire protocol checked against Alipay's official Python SDK (PyPI `alipay-sdk-python`), both ways:
the SDK as the client of our simulated gateway, and our client against a gateway built from the SDK's
own signing helpers. Skipped where the SDK is not installed: it is a large package (hundreds of MB of
generated models), so it is not a project dependency; install it into a scratch environment and put its
site-packages on PYTHONPATH to run these (see the README)."""

from __future__ import annotations

import asyncio
import importlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("alipay.aop.api.DefaultAlipayClient", reason="the official Alipay SDK is not installed")

from alipay.aop.api.AlipayClientConfig import AlipayClientConfig  # noqa: E402
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient  # noqa: E402
from alipay.aop.api.exception.Exception import ResponseException  # noqa: E402
from alipay.aop.api.util import SignatureUtils, WebUtils  # noqa: E402

from firmware.wallets.alipay import AlipayClient, WalletGatewayError, WalletMismatch, sign_content  # noqa: E402
from hwsim.walletgw import WalletGateway, bare_base64  # noqa: E402
from hwsim.walletgw import test_keypair as keypair  # noqa: E402

AMOUNT = 1250


@pytest.fixture
def sdk_transport(monkeypatch):
    """The SDK builds its HTTP connection without the URL's port (and fails on `url += port`, an int):
    connect it to the port in the URL. Only the transport is replaced; signing and verification are the SDK's."""
    import http.client

    def get_http_connection(url: str, query_string: str, timeout: int) -> tuple[str, Any]:
        parts = urllib.parse.urlsplit(url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
        return f"{parts.path}?{query_string}", connection

    monkeypatch.setattr(WebUtils, "get_http_connection", get_http_connection)


@pytest.fixture
def gw():
    g = WalletGateway()
    yield g
    g.close()


def sdk_client(gw: WalletGateway, app_id: str | None = None) -> DefaultAlipayClient:
    config = AlipayClientConfig()
    config.server_url = gw.url
    config.app_id = app_id or gw.app_id
    config.app_private_key = bare_base64(gw.merchant_private_pem, pkcs1=True).decode()  # the SDK's key form
    config.alipay_public_key = bare_base64(gw.gateway_public_pem).decode()
    return DefaultAlipayClient(config)


def sdk_call(client: DefaultAlipayClient, method: str, biz: dict[str, Any]) -> dict[str, Any]:
    """One request through the SDK's request class for `method`; the SDK verifies the answer's signature."""
    name = "".join(p.capitalize() for p in method.split(".")[1:])  # trade.pay -> TradePay
    module = importlib.import_module(f"alipay.aop.api.request.Alipay{name}Request")
    request = getattr(module, f"Alipay{name}Request")()
    request.biz_content = biz
    text = client.execute(request)
    response_module = importlib.import_module(f"alipay.aop.api.response.Alipay{name}Response")
    response = getattr(response_module, f"Alipay{name}Response")()
    response.parse_response_content(text)
    return json.loads(text) | {"_response": response}


def test_the_official_sdk_as_client_of_the_simulated_gateway(gw, sdk_transport):
    c = sdk_client(gw)
    shown = sdk_call(c, "alipay.trade.precreate", {"out_trade_no": "S1", "total_amount": "12.50", "subject": "小店"})
    assert shown["code"] == "10000" and shown["out_trade_no"] == "S1"
    assert shown["_response"].qr_code.startswith("https://qr.alipay.com/")
    assert sdk_call(c, "alipay.trade.query", {"out_trade_no": "S1"})["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    gw.pay(shown["qr_code"])
    q = sdk_call(c, "alipay.trade.query", {"out_trade_no": "S1"})
    assert (q["trade_status"], q["total_amount"], q["out_trade_no"]) == ("TRADE_SUCCESS", "12.50", "S1")
    assert q["_response"].trade_no == gw.orders["S1"].trade_no
    r = sdk_call(c, "alipay.trade.refund", {"out_trade_no": "S1", "refund_amount": "5.00", "out_request_no": "R1"})
    assert (r["fund_change"], r["refund_fee"]) == ("Y", "5.00")
    r = sdk_call(c, "alipay.trade.refund", {"out_trade_no": "S1", "refund_amount": "2.50", "out_request_no": "R2"})
    assert r["_response"].refund_fee == "7.50"  # the order's refunds so far
    rq = sdk_call(c, "alipay.trade.fastpay.refund.query", {"out_trade_no": "S1", "out_request_no": "R2"})
    assert (rq["refund_status"], rq["refund_amount"], rq["out_request_no"]) == ("REFUND_SUCCESS", "2.50", "R2")
    p = sdk_call(
        c,
        "alipay.trade.pay",
        {
            "out_trade_no": "S2",
            "scene": "bar_code",
            "auth_code": "286123456789012345",
            "total_amount": "8.80",
            "subject": "t",
        },
    )
    assert (p["code"], p["total_amount"], p["out_trade_no"]) == ("10000", "8.80", "S2")
    cancel = sdk_call(c, "alipay.trade.cancel", {"out_trade_no": "S2"})
    assert (cancel["_response"].action, cancel["_response"].retry_flag) == ("refund", "N")
    gw.scan(
        sdk_call(c, "alipay.trade.precreate", {"out_trade_no": "S3", "total_amount": "1.00", "subject": "t"})["qr_code"]
    )
    assert sdk_call(c, "alipay.trade.close", {"out_trade_no": "S3"})["_response"].out_trade_no == "S3"
    # The gateway verified every request the SDK signed (common parameters in the query string).
    assert len(gw.requests) == 10 and all(p.get("sign") for _, p in gw.requests)


def test_the_sdk_cannot_verify_an_unsigned_40002_either(gw, sdk_transport):
    with pytest.raises(ResponseException, match="isv.invalid-app-id"):
        sdk_call(sdk_client(gw, app_id="2021999999999999"), "alipay.trade.query", {"out_trade_no": "S1"})


def test_our_request_signature_is_the_sdks(gw):
    client = AlipayClient(gw.url, gw.app_id, gw.merchant_private_pem, gw.gateway_public_pem)
    params = {
        k: v[0]
        for k, v in urllib.parse.parse_qs(
            client._request(
                "alipay.trade.precreate",
                {
                    "out_trade_no": "S1",
                    "total_amount": "12.50",  # noqa: SLF001
                    "subject": "小店 & co=1",
                },
            ).decode()
        ).items()
    }
    unsigned = {k: v for k, v in params.items() if k != "sign"}
    assert sign_content(params).decode() == SignatureUtils.get_sign_content(unsigned)
    public = bare_base64(keypair("merchant")[1]).decode()
    assert SignatureUtils.verify_with_rsa(public, SignatureUtils.get_sign_content(unsigned).encode(), params["sign"])


class SdkGateway:
    """A gateway built from the SDK's signing helpers: it verifies requests with them and signs answers
    with them, laid out with spaces as a JSON library may lay them out. `answer` says what to answer."""

    def __init__(self) -> None:
        private, _ = keypair("gateway")
        self.private = bare_base64(private, pkcs1=True).decode()
        self.merchant_public = bare_base64(keypair("merchant")[1]).decode()
        self.answer: dict[str, Any] = {}
        self.signed = True
        self.verified: list[bool] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                params = {k: v[0] for k, v in urllib.parse.parse_qs(body).items()}
                content = SignatureUtils.get_sign_content({k: v for k, v in params.items() if k != "sign"})
                gateway.verified.append(
                    SignatureUtils.verify_with_rsa(gateway.merchant_public, content.encode(), params["sign"])
                )
                key = params["method"].replace(".", "_") + "_response"
                raw = json.dumps(gateway.answer, ensure_ascii=False)
                sign = SignatureUtils.sign_with_rsa2(gateway.private, raw, "utf-8")
                text = f'{{"{key}": {raw}, "sign": "{sign}"}}' if gateway.signed else f'{{"{key}": {raw}}}'
                data = text.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/gateway.do"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def sdk_gw():
    g = SdkGateway()
    yield g
    g.server.shutdown()
    g.server.server_close()


def test_our_client_against_a_gateway_built_from_the_sdk(sdk_gw):
    client = AlipayClient(
        sdk_gw.url,
        "2021000000000000",
        bare_base64(keypair("merchant")[0], pkcs1=True),
        bare_base64(keypair("gateway")[1]),
    )
    sdk_gw.answer = {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": "S1",
        "trade_no": "2026030122001000000000000001",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "12.50",
        "buyer_logon_id": "138****8888",
    }
    assert asyncio.run(client.query("S1", AMOUNT)).state == "paid"
    with pytest.raises(WalletMismatch):
        asyncio.run(client.query("S2", AMOUNT))  # the SDK-signed answer names S1
    sdk_gw.answer = {
        "code": "40002",
        "msg": "Invalid Arguments",
        "sub_code": "isv.invalid-signature",
        "sub_msg": "验签出错",
    }
    sdk_gw.signed = False
    with pytest.raises(WalletGatewayError, match="40002 Invalid Arguments / isv.invalid-signature"):
        asyncio.run(client.query("S1", AMOUNT))
    assert sdk_gw.verified == [True, True, True]  # the SDK's helpers verified each of our requests
