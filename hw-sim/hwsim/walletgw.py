"""The simulated wallet gateway: an HTTP server on loopback speaking Alipay's face-to-face OpenAPI.

It checks the RSA2 signature of every request against the merchant's public key, signs every answer
with its own key, and lets tests decide what the customer does: pay, pay late, confirm in the app
after a while, run out of balance, cancel, or never scan. Faults make the next answer misbehave.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from firmware.mpqr import MerchantQR, build
from firmware.wallet import load_private_key, load_public_key, rsa2_sign, rsa2_verify, sign_content

log = logging.getLogger(__name__)

FAULTS = ("bad_signature", "malformed", "http500", "unknown_state")
CODE_BEHAVIOURS = ("pay", "confirm", "insufficient", "never_confirm", "user_cancels")


@functools.lru_cache(maxsize=2)
def test_keypair(name: str) -> tuple[bytes, bytes]:
    """A 2048-bit RSA key pair (private PEM, public PEM), made once per process per name."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@dataclass
class Order:
    """The gateway's record of one trade."""

    out_trade_no: str
    kind: str                         # "qr" | "code"
    amount: str                       # yuan, as the request said
    state: str = "created"            # created | waiting | paid | closed
    trade_no: str = ""
    payer: str = ""
    behaviour: str = "pay"            # for code payments
    queries: int = 0
    refunds: dict[str, str] = field(default_factory=dict)   # out_request_no -> amount


class WalletGateway:
    """Threaded HTTP server; `orders` and the behaviour switches are for tests (guarded by a lock)."""

    def __init__(self, app_id: str = "2021000000000000", confirm_after: int = 2) -> None:
        self.app_id = app_id
        self.confirm_after = confirm_after
        self.merchant_private_pem, merchant_public = test_keypair("merchant")
        gateway_private, self.gateway_public_pem = test_keypair("gateway")
        self._merchant_key = load_public_key(merchant_public)
        self._key = load_private_key(gateway_private)
        self.orders: dict[str, Order] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._faults: list[str] = []
        self._next_code = "pay"
        self._pay_at_close = False
        self._trade = itertools.count(1)
        self._lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:            # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                status, body = gateway._handle(self.rfile.read(length).decode("utf-8", "replace"))
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json;charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("wallet gateway: " + fmt, *args)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/gateway.do"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hwsim-wallet", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the server (a connection wakes its loop at once instead of after its poll interval)."""
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        try:
            socket.create_connection(self._server.server_address[:2], timeout=1).close()
        except OSError:
            pass
        stopper.join(5)
        self._server.server_close()

    # --- what the customer (and the network) does -------------------------------------------------

    def _open_qr(self) -> Order:
        open_orders = [o for o in self.orders.values() if o.kind == "qr" and o.state in ("created", "waiting")]
        if not open_orders:
            raise LookupError("no open QR order to pay")
        return open_orders[-1]

    def scan(self) -> None:
        """The customer scans the code on screen (the order now exists for queries: WAIT_BUYER_PAY)."""
        with self._lock:
            self._open_qr().state = "waiting"

    def pay(self) -> str:
        """The customer scans and pays the open QR order; returns its order number."""
        with self._lock:
            order = self._open_qr()
            self._paid(order)
            return order.out_trade_no

    def pay_when_closed(self) -> None:
        """The customer pays at the very moment the terminal gives up: the close finds the order paid."""
        with self._lock:
            self._pay_at_close = True

    def next_code(self, behaviour: str) -> None:
        """What the customer whose code is scanned next does: pay, confirm (in the app, after a few
        queries), insufficient, never_confirm, user_cancels."""
        if behaviour not in CODE_BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {', '.join(CODE_BEHAVIOURS)}")
        with self._lock:
            self._next_code = behaviour

    def fault(self, kind: str | None, times: int = 1) -> None:
        """The next answers misbehave: bad_signature, malformed, http500, unknown_state; None clears."""
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults = [] if kind is None else [kind] * times

    def _paid(self, order: Order) -> None:
        order.state = "paid"
        order.trade_no = f"2026{next(self._trade):024d}"
        order.payer = "138****8888"

    # --- protocol ------------------------------------------------------------------------------------

    def _handle(self, body: str) -> tuple[int, str]:
        params = {k: v[0] for k, v in urllib.parse.parse_qs(body, keep_blank_values=True).items()}
        method = params.get("method", "")
        with self._lock:
            self.requests.append((method, params))
            fault = self._faults.pop(0) if self._faults else None
            if fault == "http500":
                return 500, "internal error"
            if not rsa2_verify(self._merchant_key, sign_content(params), params.get("sign", "")) \
                    or params.get("app_id") != self.app_id or params.get("sign_type") != "RSA2":
                result = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature",
                          "sub_msg": "signature check failed"}
            else:
                try:
                    biz = json.loads(params.get("biz_content", "{}"))
                    result = self._business(method, biz)
                except (ValueError, KeyError, TypeError) as exc:
                    result = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.missing-parameter",
                              "sub_msg": str(exc)}
            if fault == "unknown_state" and "trade_status" in result:
                result["trade_status"] = "TRADE_PENDING_SOMETHING"
        raw = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        signature = rsa2_sign(self._key, raw.encode("utf-8"))
        if fault == "bad_signature":
            signature = rsa2_sign(self._key, b"something else")
        key = method.replace(".", "_") + "_response"
        if fault == "malformed":
            return 200, '{"' + key + '":{"code":"10000",'
        return 200, f'{{"{key}":{raw},"sign":"{signature}"}}'

    @staticmethod
    def _ok(**fields: str) -> dict[str, str]:
        return {"code": "10000", "msg": "Success", **fields}

    @staticmethod
    def _fail(sub_code: str, sub_msg: str) -> dict[str, str]:
        return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}

    def _business(self, method: str, biz: dict[str, Any]) -> dict[str, str]:
        no = str(biz["out_trade_no"])
        order = self.orders.get(no)
        if method == "alipay.trade.precreate":
            if order is None:
                order = self.orders[no] = Order(no, "qr", str(biz["total_amount"]))
            return self._ok(out_trade_no=no, qr_code=self._qr_payload(order))
        if method == "alipay.trade.pay":
            if order is not None:
                return self._fail("ACQ.TRADE_HAS_SUCCESS" if order.state == "paid" else "ACQ.CONTEXT_INCONSISTENT",
                                  "order number used before")
            if not str(biz.get("auth_code", "")).isdigit():
                return self._fail("ACQ.PAYMENT_AUTH_CODE_INVALID", "payment code invalid")
            order = self.orders[no] = Order(no, "code", str(biz["total_amount"]), behaviour=self._next_code)
            self._next_code = "pay"
            if order.behaviour == "insufficient":
                order.state = "closed"
                return self._fail("ACQ.BUYER_BALANCE_NOT_ENOUGH", "balance not enough")
            if order.behaviour == "pay":
                self._paid(order)
                return self._ok(out_trade_no=no, trade_no=order.trade_no, buyer_logon_id=order.payer,
                                total_amount=order.amount)
            order.state = "waiting"
            return {"code": "10003", "msg": "order success pay inprocess", "out_trade_no": no}
        if order is None:
            return self._fail("ACQ.TRADE_NOT_EXIST", "trade does not exist")
        if method == "alipay.trade.query":
            order.queries += 1
            if order.kind == "code" and order.state == "waiting":
                if order.behaviour == "confirm" and order.queries >= self.confirm_after:
                    self._paid(order)
                elif order.behaviour == "user_cancels" and order.queries >= self.confirm_after:
                    order.state = "closed"
            if order.kind == "qr" and order.state == "created":
                return self._fail("ACQ.TRADE_NOT_EXIST", "trade does not exist")      # not scanned yet
            status = {"waiting": "WAIT_BUYER_PAY", "paid": "TRADE_SUCCESS", "closed": "TRADE_CLOSED"}[order.state]
            return self._ok(out_trade_no=no, trade_no=order.trade_no, trade_status=status,
                            buyer_logon_id=order.payer, total_amount=order.amount)
        if method in ("alipay.trade.close", "alipay.trade.cancel"):
            if self._pay_at_close and order.state in ("created", "waiting"):
                self._pay_at_close = False
                self._paid(order)
            if order.state == "paid":
                if method == "alipay.trade.cancel":          # cancel of a paid code payment refunds it
                    order.state = "closed"
                    return self._ok(out_trade_no=no, action="refund")
                return self._fail("ACQ.TRADE_STATUS_ERROR", "trade already paid")
            order.state = "closed"
            return self._ok(out_trade_no=no, action="close")
        if method == "alipay.trade.refund":
            request_no = str(biz.get("out_request_no", no))
            if request_no not in order.refunds:
                if order.state != "paid":
                    return self._fail("ACQ.TRADE_STATUS_ERROR", "trade not paid")
                order.refunds[request_no] = str(biz["refund_amount"])
            return self._ok(out_trade_no=no, trade_no=order.trade_no, refund_fee=order.refunds[request_no],
                            fund_change="Y")
        return {"code": "40004", "msg": "Business Failed", "sub_code": "isv.invalid-method", "sub_msg": method}

    def _qr_payload(self, order: Order) -> str:
        return build(MerchantQR(account_gui="COM.ALIPAY.SIM", merchant_account=self.app_id, mcc="5411",
                                currency_numeric="156", amount=order.amount, country="CN",
                                merchant_name="COUNTERTOP SIM", city="BEIJING", reference=order.out_trade_no))
