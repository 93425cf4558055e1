"""The simulated WeChat Pay gateway: an HTTP server on loopback speaking the merchant API v3 as WeChat Pay does,
for a terminal's code payments, Native orders, queries, closes, reverses and refunds.

It checks every request's `WECHATPAY2-SHA256-RSA2048` Authorization (merchant id, the merchant certificate's
serial, a timestamp within five minutes, the SHA256withRSA signature over method, path with query, timestamp,
nonce and body) and refuses a bad one with WeChat's 401 SIGN_ERROR. Every answer it gives to a verified
request, errors included, is signed over "timestamp\\nnonce\\nbody\\n" with the platform certificate it issued
itself (a private "Tenpay" root signs it), or in public-key mode with the WeChat Pay public key `PUB_KEY_ID_…`;
`GET /v3/certificates` serves its certificates encrypted (AEAD_AES_256_GCM) under the merchant's APIv3 key, and
`rotate()` issues a new one. Amounts are integers in fen, times RFC 3339 in Beijing time.

Tests choose what the payer of the next scanned code does (pay, confirm: a password first (USERPAYING) then
paid, insufficient: NOTENOUGH, never_confirm, user_cancels) and what goes wrong with the next answers (FAULTS):
a signature by another key or WeChat's SIGNTEST probe, a stale timestamp, a serial nobody issued, a body cut
short, HTTP 500, no signature at all, a genuinely signed answer about another order or amount, an earlier
genuine answer for another order replayed whole, or SYSTEMERROR after the request was carried out.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import re
import secrets
import string
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from firmware.wallets.wechat import (
    PUBLIC_KEY_PREFIX,
    SCHEMA,
    answer_message,
    encrypt_resource,
    expire_time,
    parse_authorization,
    request_message,
    serial_value,
    sign,
    verify,
)

from . import testkeys
from .loopback import serve
from .walletgw import _shutdown

log = logging.getLogger(__name__)

CODE_BEHAVIOURS = ("pay", "confirm", "insufficient", "never_confirm", "user_cancels")
FAULTS = (
    "bad_signature",  # signed with another key (the merchant's own)
    "signtest",  # WeChat's signature probe: WECHATPAY/SIGNTEST/…
    "stale_timestamp",  # genuinely signed, stamped ten minutes ago
    "wrong_serial",  # genuinely signed, but Wechatpay-Serial names a certificate nobody issued
    "malformed",  # the body cut short (and signed as it is)
    "http500",  # 500 with a plain-text body, the request not carried out
    "unsigned",  # no signature headers at all
    "other_order",  # genuinely signed, about another order
    "wrong_amount",  # genuinely signed, another amount
    "no_amount",  # genuinely signed, without the amount
    "replay",  # an earlier genuine answer to the same call for another order, replayed whole
    "system_error",  # the request is carried out, then SYSTEMERROR is answered
)
ENDPOINTS = ("certificates", "native", "codepay", "query", "close", "reverse", "refund", "refund_query")
CODE_PATTERN = re.compile(r"1[0-5]\d{16}")  # a WeChat payment code: 18 digits starting 10-15
QR_PREFIX = "weixin://wxpay/bizpayurl?pr="
PAYER_OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
_ORDER_PATH = re.compile(r"/v3/pay/transactions/out-trade-no/([^/?]+)(/close|/reverse)?")
_REFUND_PATH = re.compile(r"/v3/refund/domestic/refunds/([^/?]+)")
_ALNUM = string.ascii_letters + string.digits


def utc_now() -> datetime:
    return datetime.now(UTC)


def test_keypair(name: str) -> tuple[bytes, bytes]:
    """A TEST-ONLY 2048-bit RSA key pair (private PKCS#8 PEM, public PEM): the one kept in hwsim/testkeys/ for
    `name` (so a simulator starts without making keys), else one made once per process."""
    return testkeys.keypair(name)


def _load_private(pem: bytes) -> rsa.RSAPrivateKey:
    return testkeys.private_key(pem)


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hwsim Tenpay"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


@dataclass(frozen=True)
class PlatformCertificate:
    """A platform certificate the gateway issued, with its private key."""

    key: rsa.RSAPrivateKey = field(repr=False)
    cert: x509.Certificate

    @property
    def serial(self) -> str:
        return f"{self.cert.serial_number:X}"

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Refund:
    """One refund of an order."""

    out_refund_no: str
    refund_id: str
    amount: int
    status: str  # PROCESSING | SUCCESS
    queries_left: int  # refund queries until PROCESSING turns SUCCESS
    created: datetime
    succeeded: datetime | None = None


@dataclass
class Order:
    """The gateway's record of one order."""

    out_trade_no: str
    kind: str  # "native" | "codepay"
    total: int  # fen
    description: str = ""
    state: str = "NOTPAY"  # NOTPAY | USERPAYING | SUCCESS | REFUND | CLOSED | REVOKED | PAYERROR
    transaction_id: str = ""
    openid: str = ""
    behaviour: str = "pay"
    queries: int = 0
    refunds: dict[str, Refund] = field(default_factory=dict)
    expires: datetime | None = None
    paid_at: datetime | None = None
    code_url: str = ""
    refunded_after_pay: bool = False  # reversed (or closed) after it was paid: the money went back


class WechatGateway:
    """Threaded HTTP server; `orders`, `requests` and the switches are for tests (guarded by a lock)."""

    def __init__(
        self,
        mchid: str = "1900000109",
        appid: str = "wxd678efh567hg6787",
        mode: str = "certificates",
        confirm_after: int = 2,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if mode not in ("certificates", "public_key"):
            raise ValueError(f'mode must be "certificates" or "public_key", not {mode!r}')
        self.mchid, self.appid, self.mode = mchid, appid, mode
        self.confirm_after = confirm_after
        self._lock = threading.Lock()
        self._clock = clock
        self.merchant_private_pem, self.merchant_public_pem = test_keypair("wechat-merchant")
        self._merchant_key = _load_private(self.merchant_private_pem).public_key()
        self.merchant_serial = secrets.token_hex(20).upper()
        self.apiv3_key = "".join(secrets.choice(_ALNUM) for _ in range(32)).encode()
        self._root_key = _load_private(test_keypair("wechat-root")[0])
        self._root = self._issue_root()
        self.platform: list[PlatformCertificate] = []
        self._generation = itertools.count()
        self.rotate()
        public_private, self.public_key_pem = test_keypair("wechat-public-key")
        self._public_key = _load_private(public_private)
        self.public_key_id = PUBLIC_KEY_PREFIX + "0114" + "".join(secrets.choice(string.digits) for _ in range(18))
        self.orders: dict[str, Order] = {}
        self.requests: list[tuple[str, str, str]] = []  # (endpoint, method, path) of every request
        self.answers: list[tuple[str, str, int, dict[str, str], str]] = []  # (endpoint, order, status, headers, body)
        self.replayed: list[tuple[str, str, str]] = []  # (endpoint, asked order, replayed order)
        self.refund_delay = 1  # refund queries before a refund turns SUCCESS (0: at once)
        self._faults: list[tuple[str, str | None]] = []
        self._next_code = "pay"
        self._next_refund_error: tuple[int, str, str] | None = None
        self._pay_at_close = False
        self._numbers = itertools.count(1)
        self._server, self.url = self._serve()

    def close(self) -> None:
        """Stop the server."""
        _shutdown(self._server)

    # --- keys and certificates -------------------------------------------------------------------------

    def _issue_root(self) -> x509.Certificate:
        now = self._clock()
        return (
            x509.CertificateBuilder()
            .subject_name(_name("hwsim Tenpay Root CA"))
            .issuer_name(_name("hwsim Tenpay Root CA"))
            .public_key(self._root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=3650))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._root_key, hashes.SHA256())
        )

    def rotate(self) -> PlatformCertificate:
        """Issue a new platform certificate; answers are signed with it from now on (the older ones are still
        served by /v3/certificates, as WeChat Pay serves both while it switches)."""
        key = _load_private(test_keypair(f"wechat-platform-{next(self._generation) % 4}")[0])
        now = self._clock()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Tenpay.com sign"))
            .issuer_name(self._root.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=5 * 365))
            .sign(self._root_key, hashes.SHA256())
        )
        issued = PlatformCertificate(key, cert)
        with self._lock:
            self.platform.append(issued)
        return issued

    # --- what the payer (and the network) does ------------------------------------------------------------

    def _open_native(self, code_url: str | None) -> Order:
        now = self._clock()
        open_orders = [
            o
            for o in self.orders.values()
            if o.kind == "native"
            and o.state == "NOTPAY"
            and (o.expires is None or now < o.expires)
            and (code_url is None or o.code_url == code_url)
        ]
        if not open_orders:
            raise LookupError("no open Native order to pay" + (f" for {code_url}" if code_url else ""))
        return open_orders[-1]

    def pay(self, code_url: str | None = None) -> str:
        """The payer scans and pays a shown code (`code_url`, or the latest shown); returns its order number.
        LookupError when it can no longer be paid (closed, expired)."""
        with self._lock:
            order = self._open_native(code_url)
            self._paid(order)
            return order.out_trade_no

    def confirm(self, order_no: str) -> None:
        """The payer of a scanned code enters the password now; LookupError unless the order waits for it."""
        with self._lock:
            order = self.orders.get(order_no)
            if order is None or order.state != "USERPAYING":
                raise LookupError(f"order {order_no} is not waiting for the payer")
            self._paid(order)

    def order_for(self, code_url: str) -> Order:
        """The order a shown code belongs to."""
        with self._lock:
            return next(o for o in self.orders.values() if o.code_url == code_url)

    def pay_when_closed(self) -> None:
        """The payer pays at the very moment the terminal gives up: the close or reverse finds it paid."""
        with self._lock:
            self._pay_at_close = True

    def next_code(self, behaviour: str) -> None:
        """What the payer whose code is scanned next does (CODE_BEHAVIOURS)."""
        if behaviour not in CODE_BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {', '.join(CODE_BEHAVIOURS)}")
        with self._lock:
            self._next_code = behaviour

    def next_refund_fails(self, code: str = "NOT_ENOUGH", status: int = 403, message: str = "余额不足") -> None:
        """The next refund request is refused with this error (no refund is made)."""
        with self._lock:
            self._next_refund_error = (status, code, message)

    def fault(self, kind: str | None, times: int = 1, endpoint: str | None = None) -> None:
        """The next `times` answers (to `endpoint`, or to any request) misbehave; None clears. See FAULTS."""
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
        with self._lock:
            self._faults = [] if kind is None else [(kind, endpoint)] * times

    def callback(self, order_no: str, fault: str | None = None) -> tuple[dict[str, str], bytes]:
        """The payment callback (支付成功通知) WeChat Pay would POST to notify_url for a paid order: (headers,
        body), the transaction encrypted (AEAD_AES_256_GCM) under the APIv3 key, signed as an answer is (with
        the WeChat Pay public key in public-key mode, else the newest platform certificate). `fault`: one of
        "bad_signature", "stale_timestamp", "wrong_serial" (as for answers), "other_merchant" (another mchid
        inside), "wrong_key" (encrypted under another APIv3 key)."""
        with self._lock:
            order = self.orders[order_no]
            transaction = self._transaction(order)
        if fault == "other_merchant":
            transaction["mchid"] = str(int(self.mchid) + 1)
        nonce = "".join(secrets.choice(_ALNUM) for _ in range(12))
        key = self.apiv3_key if fault != "wrong_key" else self.apiv3_key[::-1]
        plain = json.dumps(transaction, ensure_ascii=False).encode()
        event = {
            "id": secrets.token_hex(16),
            "create_time": self._time(),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": {
                "original_type": "transaction",
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": encrypt_resource(key, nonce, "transaction", plain),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        }
        text = json.dumps(event, ensure_ascii=False, separators=(",", ":"))
        sign_as = {"wechatpay-serial": self.public_key_id} if self.mode == "public_key" else {}
        headers = self._signed_headers(sign_as, text, fault if fault != "other_merchant" else None)
        headers["Content-Type"] = "application/json"
        return headers, text.encode()

    def _paid(self, order: Order) -> None:
        now = self._clock()
        order.state = "SUCCESS"
        order.transaction_id = f"4200{now:%Y%m%d}{next(self._numbers):014d}"
        order.openid = PAYER_OPENID
        order.paid_at = now

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _serve(self) -> tuple[ThreadingHTTPServer, str]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("utf-8", "replace")
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, out_headers, text = gateway._handle_http(self.command, self.path, headers, body)
                data = text.encode("utf-8")
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                for name, value in out_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer  # noqa: N815 - http.server's names

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("wechat-gateway: " + fmt, *args)

        return serve(Handler, "wechat-gateway")

    @staticmethod
    def _route(method: str, path: str) -> tuple[str, str]:
        """(endpoint, order or refund number) of a request, ("", "") when no such API."""
        bare = urllib.parse.urlsplit(path).path
        if method == "GET" and bare == "/v3/certificates":
            return "certificates", ""
        if method == "POST" and bare == "/v3/pay/transactions/native":
            return "native", ""
        if method == "POST" and bare == "/v3/pay/transactions/codepay":
            return "codepay", ""
        if method == "POST" and bare == "/v3/refund/domestic/refunds":
            return "refund", ""
        m = _ORDER_PATH.fullmatch(bare)
        if m:
            number = urllib.parse.unquote(m.group(1))
            tail = m.group(2) or ""
            if method == "GET" and not tail:
                return "query", number
            if method == "POST" and tail:
                return tail[1:], number
        m = _REFUND_PATH.fullmatch(bare)
        if m and method == "GET":
            return "refund_query", urllib.parse.unquote(m.group(1))
        return "", ""

    def _handle_http(self, method: str, path: str, headers: dict[str, str], body: str) -> tuple[int, dict, str]:
        endpoint, number = self._route(method, path)
        with self._lock:
            self.requests.append((endpoint or "?", method, path))
            fault = None
            for i, (_kind, target) in enumerate(self._faults):
                if target in (None, endpoint):
                    fault = self._faults.pop(i)[0]
                    break
            if fault == "http500":
                return 500, {}, "internal error"
            refusal = self._check_request(method, path, headers, body)
            if refusal is not None:
                return refusal
            if not endpoint:
                return self._error(headers, 404, "NOT_FOUND", "请求的资源不存在")
            try:
                payload = json.loads(body) if body else {}
                if not isinstance(payload, dict):
                    raise ValueError("the body is not an object")
                status, data, order_no = self._business(endpoint, number, path, payload)
            except (ValueError, KeyError, TypeError) as exc:
                return self._error(headers, 400, "PARAM_ERROR", f"参数错误 {exc}")
            if fault == "system_error":
                code = "SYSTEMERROR" if endpoint in ("codepay", "reverse") else "SYSTEM_ERROR"
                status, data = 500, {"code": code, "message": "系统错误"}
            if fault == "replay":
                stored = [a for a in self.answers if a[0] == endpoint and a[1] != order_no]
                if stored:
                    self.replayed.append((endpoint, order_no, stored[-1][1]))
                    return stored[-1][2], dict(stored[-1][3]), stored[-1][4]
            self._lie(fault, data)
            text = "" if data is None else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
            if fault == "malformed" and text:
                text = text[: len(text) // 2]
            out = self._signed_headers(headers, text, fault)
            if 200 <= status < 300 and order_no and fault is None:
                self.answers.append((endpoint, order_no, status, dict(out), text))
            return status, out, text

    def _check_request(
        self, method: str, path: str, headers: dict[str, str], body: str
    ) -> tuple[int, dict, str] | None:
        """WeChat's checks of the Authorization header; 401 SIGN_ERROR (unsigned) when one fails."""

        def refuse(message: str) -> tuple[int, dict, str]:
            text = json.dumps({"code": "SIGN_ERROR", "message": message}, ensure_ascii=False, separators=(",", ":"))
            return 401, {"Request-ID": secrets.token_hex(16)}, text

        params = parse_authorization(headers.get("authorization", ""))
        if params is None:
            return refuse(f"Authorization 不合法，应为 {SCHEMA} 认证方式")
        if params["mchid"] != self.mchid:
            return refuse("商户号与签名不匹配")
        if serial_value(params["serial_no"]) != serial_value(self.merchant_serial):
            return refuse("商户证书序列号有误。请使用签名私钥匹配的证书序列号")
        stamp = params["timestamp"]
        if not stamp.isdecimal() or abs(int(self._clock().timestamp()) - int(stamp)) > 300:
            return refuse("请求时间戳与当前时间相差过大")
        message = request_message(method, path, int(stamp), params["nonce_str"], body)
        if not verify(self._merchant_key, message, params["signature"]):
            return refuse("签名错误，请检查后再试")
        return None

    def _signer(self, headers: dict[str, str]) -> tuple[rsa.RSAPrivateKey, str]:
        """The key answers are signed with: the public key (public-key mode, or a request naming its id), else
        the newest platform certificate."""
        if self.mode == "public_key" or headers.get("wechatpay-serial") == self.public_key_id:
            return self._public_key, self.public_key_id
        newest = self.platform[-1]
        return newest.key, newest.serial

    def _signed_headers(self, headers: dict[str, str], text: str, fault: str | None) -> dict[str, str]:
        if fault == "unsigned":
            return {"Request-ID": secrets.token_hex(16)}
        key, serial = self._signer(headers)
        stamp = int(self._clock().timestamp()) - (600 if fault == "stale_timestamp" else 0)
        nonce = secrets.token_hex(16)
        message = answer_message(str(stamp), nonce, text)
        if fault == "bad_signature":
            signature = sign(_load_private(self.merchant_private_pem), message)
        elif fault == "signtest":
            signature = "WECHATPAY/SIGNTEST/" + base64.b64encode(secrets.token_bytes(256)).decode()
        else:
            signature = sign(key, message)
        if fault == "wrong_serial":
            serial = secrets.token_hex(20).upper()
        return {
            "Request-ID": secrets.token_hex(16),
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Timestamp": str(stamp),
            "Wechatpay-Serial": serial,
            "Wechatpay-Signature-Type": SCHEMA,
        }

    def _error(self, headers: dict[str, str], status: int, code: str, message: str) -> tuple[int, dict, str]:
        text = json.dumps({"code": code, "message": message}, ensure_ascii=False, separators=(",", ":"))
        return status, self._signed_headers(headers, text, None), text

    def _lie(self, fault: str | None, data: dict[str, Any] | None) -> None:
        """A genuinely signed answer that does not belong to its request."""
        if data is None:
            return
        if fault == "other_order" and "out_trade_no" in data:
            others = [no for no in self.orders if no != data["out_trade_no"]]
            data["out_trade_no"] = others[-1] if others else data["out_trade_no"] + "X"
        elif fault == "wrong_amount" and isinstance(data.get("amount"), dict):
            money = data["amount"]
            for name in ("total", "refund"):
                if name in money:
                    money[name] = money[name] + 1
        elif fault == "no_amount":
            data.pop("amount", None)

    # --- the APIs -----------------------------------------------------------------------------------------

    def _time(self, at: datetime | None = None) -> str:
        return expire_time(at or self._clock())

    @staticmethod
    def _fail(status: int, code: str, message: str) -> tuple[int, dict[str, Any]]:
        return status, {"code": code, "message": message}

    def _business(
        self, endpoint: str, number: str, path: str, payload: dict[str, Any]
    ) -> tuple[int, dict[str, Any] | None, str]:
        """(status, answer object or None for no body, the order the answer is about)."""
        if endpoint == "certificates":
            return 200, self._certificates(), ""
        if endpoint in ("native", "codepay"):
            for name, mine in (("mchid", self.mchid), ("appid", self.appid)):
                if payload.get(name) != mine:
                    return (*self._fail(400, "PARAM_ERROR", f"{name} 与请求不符"), "")
            no = str(payload["out_trade_no"])
            money = payload["amount"]
            if type(money["total"]) is not int or money["total"] <= 0 or money.get("currency", "CNY") != "CNY":
                return (*self._fail(400, "PARAM_ERROR", "amount 不合法"), no)
            handler = self._native if endpoint == "native" else self._codepay
            status, data = handler(no, money["total"], payload)
            return status, data, no
        if endpoint == "query":
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(path).query)
            if query.get("mchid") != [self.mchid]:
                return (*self._fail(400, "PARAM_ERROR", "mchid 与请求不符"), number)
            return (*self._query(number), number)
        if endpoint in ("close", "reverse"):
            if payload.get("mchid") != self.mchid or (endpoint == "reverse" and payload.get("appid") != self.appid):
                return (*self._fail(400, "PARAM_ERROR", "mchid 与请求不符"), number)
            status, data = (self._close if endpoint == "close" else self._reverse)(number)
            return status, data, number
        if endpoint == "refund":
            no = str(payload["out_trade_no"])
            return (*self._refund(no, payload), no)
        refund = next((r for o in self.orders.values() for r in o.refunds.values() if r.out_refund_no == number), None)
        order = next((o for o in self.orders.values() if refund is not None and number in o.refunds), None)
        if refund is None or order is None:
            return (*self._fail(404, "RESOURCE_NOT_EXISTS", "退款单不存在"), number)
        if refund.status == "PROCESSING":
            refund.queries_left -= 1
            if refund.queries_left <= 0:
                refund.status, refund.succeeded = "SUCCESS", self._clock()
        return 200, self._refund_object(order, refund), order.out_trade_no

    def _certificates(self) -> dict[str, Any]:
        data = []
        for issued in self.platform:
            nonce = "".join(secrets.choice(_ALNUM) for _ in range(12))
            data.append(
                {
                    "serial_no": issued.serial,
                    "effective_time": self._time(issued.cert.not_valid_before_utc),
                    "expire_time": self._time(issued.cert.not_valid_after_utc),
                    "encrypt_certificate": {
                        "algorithm": "AEAD_AES_256_GCM",
                        "nonce": nonce,
                        "associated_data": "certificate",
                        "ciphertext": encrypt_resource(self.apiv3_key, nonce, "certificate", issued.pem),
                    },
                }
            )
        return {"data": data}

    def _native(self, no: str, total: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not str(payload.get("notify_url", "")).startswith("https://"):
            return self._fail(400, "PARAM_ERROR", "notify_url 不合法")
        order = self.orders.get(no)
        if order is not None:
            if order.state in ("SUCCESS", "REFUND"):
                return self._fail(403, "ORDERPAID", "该订单已支付")
            if order.kind != "native" or order.total != total:
                return self._fail(400, "INVALID_REQUEST", "参数与首次请求时不一致")
            return 200, {"code_url": order.code_url}
        expires = payload.get("time_expire")
        self.orders[no] = Order(
            no,
            "native",
            total,
            str(payload.get("description", "")),
            expires=datetime.fromisoformat(expires) if expires else None,
            code_url=QR_PREFIX + "".join(secrets.choice(_ALNUM) for _ in range(9)),
        )
        return 200, {"code_url": self.orders[no].code_url}

    def _transaction(self, order: Order) -> dict[str, Any]:
        out: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.mchid,
            "out_trade_no": order.out_trade_no,
            "trade_type": "NATIVE" if order.kind == "native" else "MICROPAY",
            "trade_state": order.state,
            "trade_state_desc": {
                "SUCCESS": "支付成功",
                "NOTPAY": "未支付",
                "USERPAYING": "用户支付中（输入密码）",
                "PAYERROR": "支付失败，请撤销订单",
                "CLOSED": "已关闭",
                "REVOKED": "已撤销",
                "REFUND": "转入退款",
            }[order.state],
            "amount": {"total": order.total, "currency": "CNY"},
        }
        if order.transaction_id:
            out["transaction_id"] = order.transaction_id
        if order.paid_at is not None and order.state in ("SUCCESS", "REFUND"):
            out.update(
                bank_type="OTHERS",
                success_time=self._time(order.paid_at),
                payer={"openid": order.openid},
                amount={"total": order.total, "payer_total": order.total, "currency": "CNY", "payer_currency": "CNY"},
            )
        return out

    def _codepay(self, no: str, total: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        order = self.orders.get(no)
        if order is not None:
            if order.state in ("SUCCESS", "REFUND"):
                return self._fail(403, "ORDERPAID", "该订单已支付")
            return self._fail(400, "INVALID_REQUEST", "商户订单号重复")
        code = str(payload["payer"]["auth_code"])
        if not CODE_PATTERN.fullmatch(code):
            return self._fail(400, "AUTH_CODE_INVALID", "请扫描微信支付付款码(以10/11/12/13/14/15为前缀的18位数字)")
        order = self.orders[no] = Order(no, "codepay", total, str(payload.get("description", "")))
        order.behaviour, self._next_code = self._next_code, "pay"
        if order.behaviour == "insufficient":
            order.state = "PAYERROR"
            return self._fail(403, "NOTENOUGH", "用户的零钱余额不足")
        if order.behaviour == "pay":
            self._paid(order)
            return 200, self._transaction(order)
        order.state = "USERPAYING"
        return self._fail(202, "USERPAYING", "需要用户输入支付密码")

    def _query(self, no: str) -> tuple[int, dict[str, Any]]:
        order = self.orders.get(no)
        if order is None:
            return self._fail(404, "ORDER_NOT_EXIST", "订单不存在")
        order.queries += 1
        if order.kind == "codepay" and order.state == "USERPAYING" and order.queries >= self.confirm_after:
            if order.behaviour == "confirm":
                self._paid(order)
            elif order.behaviour == "user_cancels":
                order.state = "PAYERROR"
        return 200, self._transaction(order)

    def _closing(self, order: Order) -> None:
        if self._pay_at_close and order.state in ("NOTPAY", "USERPAYING"):
            self._pay_at_close = False
            self._paid(order)

    def _close(self, no: str) -> tuple[int, dict[str, Any] | None]:
        order = self.orders.get(no)
        if order is None:
            return self._fail(404, "ORDER_NOT_EXIST", "订单不存在")
        self._closing(order)
        if order.state in ("SUCCESS", "REFUND"):
            return self._fail(400, "ORDERPAID", "订单已支付")
        order.state = "CLOSED" if order.state != "REVOKED" else order.state
        return 204, None

    def _reverse(self, no: str) -> tuple[int, dict[str, Any]]:
        order = self.orders.get(no)
        if order is None:
            return self._fail(404, "ORDERNOTEXIST", "订单不存在")
        if order.kind != "codepay":
            return self._fail(400, "TRADE_ERROR", "非付款码订单不能撤销")
        self._closing(order)
        if order.state in ("SUCCESS", "REFUND"):
            order.refunded_after_pay = True
        if order.state != "CLOSED":
            order.state = "REVOKED"
        return 200, {"appid": self.appid, "mchid": self.mchid, "out_trade_no": no}

    def _refund(self, no: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        request_no = str(payload["out_refund_no"])
        money = payload["amount"]
        amount, total = money["refund"], money["total"]
        if self._next_refund_error is not None:
            status, code, message = self._next_refund_error
            self._next_refund_error = None
            return self._fail(status, code, message)
        order = self.orders.get(no)
        if order is None:
            return self._fail(404, "ORDER_NOT_EXIST", "订单不存在")
        if type(amount) is not int or type(total) is not int or money.get("currency") != "CNY":
            return self._fail(400, "PARAM_ERROR", "amount 不合法")
        existing = order.refunds.get(request_no)
        if existing is not None:  # the same out_refund_no again: the same refund
            if existing.amount != amount:
                return self._fail(400, "INVALID_REQUEST", "退款金额与首次请求时不一致")
            return 200, self._refund_object(order, existing)
        if order.state not in ("SUCCESS", "REFUND"):
            return self._fail(403, "INVALID_REQUEST", "订单状态不允许退款")
        if total != order.total:
            return self._fail(400, "PARAM_ERROR", "订单金额total与原订单金额不一致")
        if amount <= 0 or sum(r.amount for r in order.refunds.values()) + amount > order.total:
            return self._fail(403, "INVALID_REQUEST", "申请退款金额超过订单可退金额")
        refund = Refund(
            request_no,
            f"5030{self._clock():%Y%m%d}{next(self._numbers):014d}",
            amount,
            "SUCCESS" if self.refund_delay <= 0 else "PROCESSING",
            self.refund_delay,
            self._clock(),
        )
        if refund.status == "SUCCESS":
            refund.succeeded = refund.created
        order.refunds[request_no] = refund
        order.state = "REFUND"
        return 200, self._refund_object(order, refund)

    def _refund_object(self, order: Order, refund: Refund) -> dict[str, Any]:
        out: dict[str, Any] = {
            "refund_id": refund.refund_id,
            "out_refund_no": refund.out_refund_no,
            "transaction_id": order.transaction_id,
            "out_trade_no": order.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": self._time(refund.created),
            "status": refund.status,
            "funds_account": "AVAILABLE",
            "amount": {
                "total": order.total,
                "refund": refund.amount,
                "payer_total": order.total,
                "payer_refund": refund.amount,
                "settlement_refund": refund.amount,
                "settlement_total": order.total,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }
        if refund.succeeded is not None:
            out["success_time"] = self._time(refund.succeeded)
        return out
