"""The simulated wallet gateway: an HTTP server on loopback speaking Alipay's face-to-face OpenAPI as the
real gateway does, and a man in the middle that replays its genuinely signed answers.

The gateway checks the app id, the timestamp and the RSA2 signature of every request (common parameters
in the body or, as the official SDK sends them, in the query string); gateway errors (40002) go back
unsigned, as Alipay sends them; every other answer is signed with the gateway's key over the exact text
of `<method>_response` and carries what Alipay's does (out_trade_no, total_amount, trade_no, Beijing
times, cumulative refund_fee, retry_flag/action). precreate answers an `https://qr.alipay.com/…` URL;
an order made by precreate does not exist (query, close) until the payer scans it, and cannot be paid
after its `time_expire`. Tests decide what the customer does: pay, pay late, confirm in the app after a
while, run out of balance, cancel, or never scan. Faults make the next answers misbehave or lie.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import secrets
import socket
import string
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import serialization

from firmware.wallets.alipay import (
    CHINA,
    TIME_FORMAT,
    load_public_key,
    response_key,
    rsa2_sign,
    rsa2_verify,
    sign_content,
)

from . import testkeys
from .loopback import serve

log = logging.getLogger(__name__)

# Faults: the transport breaks (http500, malformed), the signature is wrong (bad_signature) or missing
# (unsigned), or a genuinely signed answer lies (other_order, no_order_no, wrong_amount, no_amount,
# unknown_state) ; `retry` makes a close/cancel fail with retry_flag Y and leaves the order as it is.
FAULTS = (
    "bad_signature",
    "malformed",
    "http500",
    "unknown_state",
    "unsigned",
    "other_order",
    "no_order_no",
    "wrong_amount",
    "no_amount",
    "retry",
)
CODE_BEHAVIOURS = ("pay", "confirm", "insufficient", "never_confirm", "user_cancels")
QR_PREFIX = "https://qr.alipay.com/"
SIGNATURE_FAILED = "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："


def test_keypair(name: str) -> tuple[bytes, bytes]:
    """A TEST-ONLY 2048-bit RSA key pair (private PKCS#8 PEM, public PEM): the one kept in hwsim/testkeys/ for
    `name` (so a simulator starts without making keys), else one made once per process."""
    return testkeys.keypair(name)


def bare_base64(pem: bytes, pkcs1: bool = False) -> bytes:
    """A PEM key as Alipay's key tool hands it out: one base64 line, no armour (PKCS#1 for a private
    key with pkcs1=True, PKCS#8 otherwise; SubjectPublicKeyInfo for a public key)."""
    if b"PRIVATE" in pem:
        key = serialization.load_pem_private_key(pem, password=None)
        fmt = serialization.PrivateFormat.TraditionalOpenSSL if pkcs1 else serialization.PrivateFormat.PKCS8
        der = key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
    else:
        der = serialization.load_pem_public_key(pem).public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(der)


def beijing_now() -> datetime:
    return datetime.now(CHINA)


@dataclass
class Order:
    """The gateway's record of one trade."""

    out_trade_no: str
    kind: str  # "qr" | "code"
    amount: str  # yuan, as the request said
    state: str = "created"  # created (QR not scanned) | waiting | paid | closed | expired (never scanned)
    trade_no: str = ""
    payer: str = ""
    behaviour: str = "pay"  # for code payments
    queries: int = 0
    refunds: dict[str, str] = field(default_factory=dict)  # out_request_no -> amount
    expires: datetime | None = None  # time_expire: no payment after this
    paid_at: datetime | None = None
    qr: str = ""


def _params(path: str, body: str) -> dict[str, str]:
    """Request parameters from the query string and the form body (the SDK splits them so)."""
    out: dict[str, str] = {}
    for source in (urllib.parse.urlsplit(path).query, body):
        out.update({k: v[0] for k, v in urllib.parse.parse_qs(source, keep_blank_values=True).items()})
    return out


def _serve(handler: Callable[[str, str, str], tuple[int, str]], name: str) -> tuple[ThreadingHTTPServer, str]:
    """A threaded HTTP server on loopback whose POSTs are answered by handler(path, content type, body)."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length", "0"))
            status, body = handler(
                self.path, self.headers.get("Content-Type", ""), self.rfile.read(length).decode("utf-8", "replace")
            )
            data = body.encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug(name + ": " + fmt, *args)

    server, url = serve(Handler, name)
    return server, url + "/gateway.do"


def _shutdown(server: ThreadingHTTPServer) -> None:
    """Stop a server (a connection wakes its loop at once instead of after its poll interval)."""
    stopper = threading.Thread(target=server.shutdown, daemon=True)
    stopper.start()
    try:
        socket.create_connection(server.server_address[:2], timeout=1).close()
    except OSError:
        pass
    stopper.join(5)
    server.server_close()


class WalletGateway:
    """Threaded HTTP server; `orders` and the behaviour switches are for tests (guarded by a lock)."""

    def __init__(
        self, app_id: str = "2021000000000000", confirm_after: int = 2, clock: Callable[[], datetime] = beijing_now
    ) -> None:
        self.app_id = app_id
        self.confirm_after = confirm_after
        self._clock = clock
        self.merchant_private_pem, self.merchant_public_pem = test_keypair("merchant")
        gateway_private, self.gateway_public_pem = test_keypair("gateway")
        self._merchant_key = load_public_key(self.merchant_public_pem)
        self._key = testkeys.private_key(gateway_private)
        self.orders: dict[str, Order] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._faults: list[tuple[str, str | None]] = []
        self._next_code = "pay"
        self._pay_at_close = False
        self._trade = itertools.count(1)
        self._lock = threading.Lock()
        self._server, self.url = _serve(self._handle_http, "wallet-gateway")

    def close(self) -> None:
        """Stop the server."""
        _shutdown(self._server)

    # --- what the customer (and the network) does -------------------------------------------------

    def _open_qr(self, qr: str | None) -> Order:
        self._expire()
        open_orders = [
            o
            for o in self.orders.values()
            if o.kind == "qr" and o.state in ("created", "waiting") and (qr is None or o.qr == qr)
        ]
        if not open_orders:
            raise LookupError("no open QR order to pay" + (f" for {qr}" if qr else ""))
        return open_orders[-1]

    def scan(self, qr: str | None = None) -> str:
        """The customer scans the code on screen (`qr`, or the latest shown): the order now exists for
        queries (WAIT_BUYER_PAY). Returns its order number."""
        with self._lock:
            order = self._open_qr(qr)
            order.state = "waiting"
            return order.out_trade_no

    def pay(self, qr: str | None = None) -> str:
        """The customer scans and pays a shown code (`qr`, or the latest shown); returns its order number.
        LookupError when that code can no longer be paid (closed, expired)."""
        with self._lock:
            order = self._open_qr(qr)
            self._paid(order)
            return order.out_trade_no

    def confirm(self, order_no: str) -> None:
        """The payer of a scanned code confirms in the app now; LookupError unless the order is waiting."""
        with self._lock:
            order = self.orders.get(order_no)
            if order is None or order.state != "waiting":
                raise LookupError(f"order {order_no} is not waiting for the payer")
            self._paid(order)

    def order_for(self, qr: str) -> Order:
        """The order a shown code belongs to."""
        with self._lock:
            return next(o for o in self.orders.values() if o.qr == qr)

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

    def fault(self, kind: str | None, times: int = 1, method: str | None = None) -> None:
        """The next `times` answers (to `method`, or to any request) misbehave; None clears. See FAULTS."""
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults = [] if kind is None else [(kind, method)] * times

    def _paid(self, order: Order) -> None:
        order.state = "paid"
        order.trade_no = f"{self._clock():%Y%m%d}22001{next(self._trade):015d}"
        order.payer = "138****8888"
        order.paid_at = self._clock()

    def _expire(self) -> None:
        """Orders past their time_expire: an unscanned code is dead, a scanned unpaid trade closes."""
        now = self._clock()
        for o in self.orders.values():
            if o.expires is not None and now >= o.expires and o.state in ("created", "waiting"):
                if self._pay_at_close:  # paid in the last moment before the expiry
                    self._pay_at_close = False
                    self._paid(o)
                else:
                    o.state = "expired" if o.state == "created" else "closed"

    # --- protocol ------------------------------------------------------------------------------------

    def _handle_http(self, path: str, content_type: str, body: str) -> tuple[int, str]:
        params = _params(path, body)
        method = params.get("method", "")
        with self._lock:
            self.requests.append((method, params))
            fault = None
            for i, (_kind, target) in enumerate(self._faults):
                if target in (None, method):
                    fault = self._faults.pop(i)[0]
                    break
            if fault == "http500":
                return 500, "internal error"
            error = self._check_request(method, params)
            if error is not None:
                return 200, self._unsigned(method, error)
            try:
                biz = json.loads(params.get("biz_content", "{}"))
                if not isinstance(biz, dict):
                    raise ValueError("biz_content is not an object")
                self._expire()
                result = (
                    self._fail("ACQ.SYSTEM_ERROR", "系统异常", biz, retry_flag="Y")
                    if fault == "retry" and method in ("alipay.trade.close", "alipay.trade.cancel")
                    else self._business(method, biz)
                )
            except (ValueError, KeyError, TypeError) as exc:
                result = {
                    "code": "40004",
                    "msg": "Business Failed",
                    "sub_code": "ACQ.INVALID_PARAMETER",
                    "sub_msg": f"参数无效 {exc}",
                }
            if result is None:
                return 200, self._unsigned(
                    method,
                    {
                        "code": "40002",
                        "msg": "Invalid Arguments",
                        "sub_code": "isv.invalid-method",
                        "sub_msg": "不存在的方法名",
                    },
                    key="error_response",
                )
            self._lie(fault, result)
        raw = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
        signature = rsa2_sign(self._key, raw.encode("utf-8"))
        if fault == "bad_signature":
            signature = rsa2_sign(self._key, b"something else")
        key = response_key(method)
        if fault == "malformed":
            return 200, '{"' + key + '":{"code":"10000",'
        if fault == "unsigned":
            return 200, f'{{"{key}":{raw}}}'
        return 200, f'{{"{key}":{raw},"sign":"{signature}"}}'

    def _lie(self, fault: str | None, result: dict[str, Any]) -> None:
        """A genuinely signed answer that does not belong to its request."""
        if fault == "unknown_state" and "trade_status" in result:
            result["trade_status"] = "TRADE_PENDING_SOMETHING"
        elif fault == "other_order" and "out_trade_no" in result:
            others = [no for no in self.orders if no != result["out_trade_no"]]
            result["out_trade_no"] = others[-1] if others else result["out_trade_no"] + "X"
        elif fault == "no_order_no":
            result.pop("out_trade_no", None)
        elif fault == "wrong_amount":
            for name in ("total_amount", "refund_fee", "refund_amount"):
                if name in result:
                    result[name] = "0.01"
        elif fault == "no_amount":
            for name in ("total_amount", "refund_fee", "refund_amount"):
                result.pop(name, None)

    def _check_request(self, method: str, params: dict[str, str]) -> dict[str, str] | None:
        """The gateway-level checks, in Alipay's order; the (unsigned) error, or None."""

        def invalid(sub_code: str, sub_msg: str) -> dict[str, str]:
            return {"code": "40002", "msg": "Invalid Arguments", "sub_code": sub_code, "sub_msg": sub_msg}

        if not method:
            return {
                "code": "40001",
                "msg": "Missing Required Arguments",
                "sub_code": "isv.missing-method",
                "sub_msg": "缺少方法名参数",
            }
        if params.get("app_id") != self.app_id:
            return invalid("isv.invalid-app-id", "无效的AppID参数")
        if params.get("sign_type", "").upper() != "RSA2":
            return invalid("isv.invalid-signature-type", "无效的签名类型")
        try:
            datetime.strptime(params.get("timestamp", ""), TIME_FORMAT)
        except ValueError:
            return invalid("isv.invalid-timestamp", "非法的时间戳参数")
        content = sign_content(params)
        if not rsa2_verify(self._merchant_key, content, params.get("sign", "")):
            return invalid("isv.invalid-signature", SIGNATURE_FAILED + content.decode("utf-8"))
        return None

    @staticmethod
    def _unsigned(method: str, error: dict[str, str], key: str = "") -> str:
        """A gateway error as Alipay sends it: no signature."""
        raw = json.dumps(error, ensure_ascii=False, separators=(",", ":"))
        return f'{{"{key or response_key(method)}":{raw}}}'

    @staticmethod
    def _ok(**fields: str) -> dict[str, str]:
        return {"code": "10000", "msg": "Success", **fields}

    @staticmethod
    def _fail(sub_code: str, sub_msg: str, biz: dict[str, Any], **fields: str) -> dict[str, str]:
        out = {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg}
        if biz.get("out_trade_no"):
            out["out_trade_no"] = str(biz["out_trade_no"])
        return {**out, **fields}

    def _business(self, method: str, biz: dict[str, Any]) -> dict[str, str] | None:
        handlers = {
            "alipay.trade.precreate": self._precreate,
            "alipay.trade.pay": self._pay,
            "alipay.trade.query": self._query,
            "alipay.trade.close": self._close,
            "alipay.trade.cancel": self._cancel,
            "alipay.trade.refund": self._refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
        }
        handler = handlers.get(method)
        if handler is None:
            return None
        if not biz.get("out_trade_no"):
            return self._fail("ACQ.INVALID_PARAMETER", "参数无效: out_trade_no", biz)
        return handler(str(biz["out_trade_no"]), biz)

    def _time(self, at: datetime | None = None) -> str:
        return (at or self._clock()).astimezone(CHINA).strftime(TIME_FORMAT)

    def _precreate(self, no: str, biz: dict[str, Any]) -> dict[str, str]:
        order = self.orders.get(no)
        if order is None:
            amount = f"{Decimal(str(biz['total_amount'])):.2f}"
            expires = biz.get("time_expire")
            order = self.orders[no] = Order(
                no,
                "qr",
                amount,
                qr=QR_PREFIX
                + "bax0"
                + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(21)),
                expires=datetime.strptime(expires, TIME_FORMAT).replace(tzinfo=CHINA) if expires else None,
            )
        elif order.kind != "qr" or order.state not in ("created", "waiting"):
            return self._fail(
                "ACQ.TRADE_HAS_CLOSE" if order.state == "closed" else "ACQ.TRADE_HAS_SUCCESS",
                "交易已经关闭" if order.state == "closed" else "交易已被支付",
                biz,
            )
        return self._ok(out_trade_no=no, qr_code=order.qr)

    def _pay(self, no: str, biz: dict[str, Any]) -> dict[str, str]:
        order = self.orders.get(no)
        if order is not None:
            return self._fail(
                "ACQ.TRADE_HAS_SUCCESS" if order.state == "paid" else "ACQ.TRADE_HAS_CLOSE",
                "交易已被支付" if order.state == "paid" else "交易已经关闭",
                biz,
            )
        if not str(biz.get("auth_code", "")).isdigit():
            return self._fail("ACQ.PAYMENT_AUTH_CODE_INVALID", "支付失败，获取顾客账户信息失败", biz)
        amount = f"{Decimal(str(biz['total_amount'])):.2f}"
        order = self.orders[no] = Order(no, "code", amount, behaviour=self._next_code)
        self._next_code = "pay"
        if order.behaviour == "insufficient":
            order.state = "closed"
            return self._fail("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足", biz)
        if order.behaviour == "pay":
            self._paid(order)
            return self._ok(
                out_trade_no=no,
                trade_no=order.trade_no,
                buyer_logon_id=order.payer,
                total_amount=order.amount,
                receipt_amount=order.amount,
                buyer_pay_amount=order.amount,
                gmt_payment=self._time(order.paid_at),
            )
        order.state = "waiting"
        order.trade_no = f"{self._clock():%Y%m%d}22001{next(self._trade):015d}"
        return {
            "code": "10003",
            "msg": "order success pay inprocess",
            "out_trade_no": no,
            "trade_no": order.trade_no,
            "total_amount": order.amount,
        }

    def _query(self, no: str, biz: dict[str, Any]) -> dict[str, str]:
        order = self.orders.get(no)
        if order is None or order.state in ("created", "expired"):  # a code nobody scanned
            return self._fail("ACQ.TRADE_NOT_EXIST", "交易不存在", biz)
        order.queries += 1
        if order.kind == "code" and order.state == "waiting":
            if order.behaviour == "confirm" and order.queries >= self.confirm_after:
                self._paid(order)
            elif order.behaviour == "user_cancels" and order.queries >= self.confirm_after:
                order.state = "closed"
        status = {"waiting": "WAIT_BUYER_PAY", "paid": "TRADE_SUCCESS", "closed": "TRADE_CLOSED"}[order.state]
        out = self._ok(out_trade_no=no, trade_no=order.trade_no, trade_status=status, total_amount=order.amount)
        if order.state == "paid":
            out.update(
                buyer_logon_id=order.payer,
                buyer_pay_amount=order.amount,
                receipt_amount=order.amount,
                send_pay_date=self._time(order.paid_at),
            )
        return out

    def _closing(self, order: Order) -> None:
        if self._pay_at_close and order.state in ("created", "waiting"):
            self._pay_at_close = False
            self._paid(order)

    def _close(self, no: str, biz: dict[str, Any]) -> dict[str, str]:
        order = self.orders.get(no)
        if order is not None:
            self._closing(order)
        if order is None or order.state in ("created", "expired"):  # precreated, never scanned
            return self._fail("ACQ.TRADE_NOT_EXIST", "交易不存在", biz)
        if order.state == "paid":
            return self._fail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法", biz)
        if order.state == "closed":
            return self._fail("ACQ.TRADE_HAS_CLOSE", "交易已经关闭", biz)
        order.state = "closed"
        return self._ok(out_trade_no=no, trade_no=order.trade_no)

    def _cancel(self, no: str, biz: dict[str, Any]) -> dict[str, str]:
        order = self.orders.get(no)
        if order is None:
            # Nothing reached Alipay: the cancel succeeds, and the order number cannot be paid any more.
            self.orders[no] = Order(no, "code", "0.00", state="closed")
            return self._ok(out_trade_no=no, retry_flag="N")
        self._closing(order)
        if order.state == "paid":  # a cancel of a paid trade refunds it
            order.state = "closed"
            return self._ok(
                out_trade_no=no, trade_no=order.trade_no, retry_flag="N", action="refund", gmt_refund_pay=self._time()
            )
        order.state = "closed"
        return self._ok(out_trade_no=no, trade_no=order.trade_no, retry_flag="N", action="close")

    def _refund(self, no: str, biz: dict[str, Any]) -> dict[str, str]:
        order = self.orders.get(no)
        if order is None or order.state in ("created", "expired"):
            return self._fail("ACQ.TRADE_NOT_EXIST", "交易不存在", biz)
        request_no = str(biz.get("out_request_no") or no)
        fund_change = "N"
        if request_no not in order.refunds:
            if order.state != "paid":
                return self._fail("ACQ.TRADE_STATUS_ERROR", "交易状态不合法", biz)
            amount = Decimal(str(biz["refund_amount"]))
            if amount <= 0 or sum(map(Decimal, order.refunds.values())) + amount > Decimal(order.amount):
                return self._fail("ACQ.REASON_TRADE_REFUND_FEE_ERR", "退款金额无效", biz)
            order.refunds[request_no] = f"{amount:.2f}"
            fund_change = "Y"
        total = sum(map(Decimal, order.refunds.values()))
        return self._ok(
            out_trade_no=no,
            trade_no=order.trade_no,
            buyer_logon_id=order.payer,
            fund_change=fund_change,
            refund_fee=f"{total:.2f}",
            gmt_refund_pay=self._time(),
        )

    def _refund_query(self, no: str, biz: dict[str, Any]) -> dict[str, str]:
        order = self.orders.get(no)
        if order is None or order.state in ("created", "expired"):
            return self._fail("ACQ.TRADE_NOT_EXIST", "交易不存在", biz)
        request_no = str(biz.get("out_request_no") or no)
        if request_no not in order.refunds:  # no refund by that number: no refund_status
            return self._ok(out_trade_no=no, trade_no=order.trade_no, out_request_no=request_no)
        return self._ok(
            out_trade_no=no,
            trade_no=order.trade_no,
            out_request_no=request_no,
            total_amount=order.amount,
            refund_amount=order.refunds[request_no],
            refund_status="REFUND_SUCCESS",
        )


def _order_of(params: dict[str, str]) -> str:
    try:
        return str(json.loads(params.get("biz_content", "{}")).get("out_trade_no", ""))
    except (ValueError, AttributeError):
        return ""


class ReplayProxy:
    """A man in the middle on loopback, between a terminal and the wallet gateway. It forwards requests
    and keeps every signed answer (by method and order); told to, it answers a method's requests with a
    stored answer instead (a genuine signature on an answer to some other request), or blocks them."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.answers: list[tuple[str, str, str]] = []  # (method, order number, body) of signed answers
        self.replayed: list[tuple[str, str, str]] = []  # (method, asked order, replayed order)
        self._rules: dict[str, str | None] = {}  # method -> order to replay (None: any other)
        self._blocked: set[str] = set()
        self._lock = threading.Lock()
        self._server, self.url = _serve(self._handle_http, "wallet-mitm")

    def close(self) -> None:
        _shutdown(self._server)

    def replay(self, method: str, order_no: str | None = None) -> None:
        """Answer `method` with the stored answer for `order_no` (None: the latest for another order)."""
        with self._lock:
            self._rules[method] = order_no

    def block(self, method: str) -> None:
        """Answer `method` with HTTP 502 without forwarding it."""
        with self._lock:
            self._blocked.add(method)

    def honest(self) -> None:
        """Forward everything again."""
        with self._lock:
            self._rules.clear()
            self._blocked.clear()

    def _handle_http(self, path: str, content_type: str, body: str) -> tuple[int, str]:
        params = _params(path, body)
        method, order_no = params.get("method", ""), _order_of(params)
        with self._lock:
            if method in self._blocked:
                return 502, "bad gateway"
            if method in self._rules:
                wanted = self._rules[method]
                stored = [
                    (o, b)
                    for m, o, b in self.answers
                    if m == method and (o == wanted if wanted is not None else o != order_no)
                ]
                if stored:
                    self.replayed.append((method, order_no, stored[-1][0]))
                    return 200, stored[-1][1]
        query = urllib.parse.urlsplit(path).query
        req = urllib.request.Request(
            self.upstream + (f"?{query}" if query else ""),
            data=body.encode("utf-8"),
            method="POST",
            headers={"Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:  # noqa: S310 - loopback
                status, text = answer.status, answer.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode("utf-8", "replace")
        except OSError:
            return 502, "bad gateway"
        if '"sign"' in text:
            with self._lock:
                self.answers.append((method, order_no, text))
        return status, text
