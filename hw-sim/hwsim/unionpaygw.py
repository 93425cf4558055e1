"""The simulated UnionPay online gateway (全渠道 ACP 5.1.0) on loopback, for a terminal's UnionPay QR payments:
shown codes (申请消费二维码), scanned codes (二维码消费), queries, reversals, cancellations and refunds.

It checks every request's signMethod 01 signature against the merchant signing certificate it issued (named by
certId) and refuses a bad one with respCode 11, unsigned; every answer is signed with a UnionPay signing
certificate (CN `041@Z12@中国银联股份有限公司@00000062`) issued by a private intermediate under a private root,
sent whole in `signPubKeyCert`, as UnionPay does. Amounts are integers in fen.

Tests choose what the payer of the next scanned code does (pay, confirm: a password first, then paid,
insufficient: 51, never_confirm) and what goes wrong with the next answers (FAULTS): a signature by another key
under a certificate nobody trusts, a genuine UnionPay-issued certificate that is not UnionPay's, an answer about
another order or amount, HTTP 500 before or after the request was carried out, a body cut short.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from firmware.wallets.unionpay import BACK_PATH, QUERY_PATH, UNIONPAY_CN, sign, verify

from . import testkeys
from .loopback import serve
from .walletgw import _shutdown
from .wechatgw import _load_private

log = logging.getLogger(__name__)

CODE_BEHAVIOURS = ("pay", "confirm", "insufficient", "never_confirm")
FAULTS = (
    "bad_signature",  # signed by a key under a certificate of the gateway's own making, not UnionPay's chain
    "foreign_cert",  # a certificate the intermediate issued, but to somebody else (CN not UnionPay)
    "other_order",  # genuinely signed, about another order
    "wrong_amount",  # genuinely signed, another amount
    "http500",  # 500, the request not carried out
    "lost",  # the request carried out, then 500: the answer is lost
    "malformed",  # a body cut short (signed as it was)
)
ENDPOINTS = ("qr", "code", "query", "reversal", "cancel", "refund")
QR_PREFIX = "https://qr.95516.com/00010000/"
CODE_PATTERN = re.compile(r"62\d{17}")


def sim_keypair(name: str) -> tuple[bytes, bytes]:
    """The TEST-ONLY key pair kept for `name` in hwsim/testkeys/ (private PKCS#8 PEM, public PEM): no RSA key is
    made at a simulator's start (eight of them cost about 450 ms of every boot)."""
    return testkeys.keypair(name)


def _name(common: str, org: str = "hwsim CFCA") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _cert(
    subject: str, key: rsa.RSAPrivateKey, issuer: x509.Name, issuer_key: rsa.RSAPrivateKey, ca: bool, now: datetime
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3 * 365))
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode().replace("\n", "\r\n").rstrip("\r\n")


@dataclass
class Txn:
    """The gateway's record of one transaction (a consume, a cancellation or a refund)."""

    order_id: str
    txn_time: str
    kind: str  # "qr" | "code" | "cancel" | "refund"
    amount: int
    state: str = "pending"  # pending | paid | failed (origRespCode) | open (a shown code nobody paid yet)
    code: str = "05"
    query_id: str = ""
    qr: str = ""
    behaviour: str = "pay"
    expires: str = ""
    orig: str = ""  # cancel/refund: the original's queryId
    refunds: list[Txn] = field(default_factory=list)
    cancelled: bool = False


class UnionPayGateway:
    """Threaded HTTP server; `txns`, `requests` and the switches are for tests (guarded by a lock)."""

    def __init__(self, mer_id: str = "777290058110048") -> None:
        self.mer_id = mer_id
        self._lock = threading.Lock()
        now = datetime.now(UTC)
        root_key = _load_private(sim_keypair("unionpay-root")[0])
        middle_key = _load_private(sim_keypair("unionpay-middle")[0])
        self._sign_key = _load_private(sim_keypair("unionpay-sign")[0])
        self._other_key = _load_private(sim_keypair("unionpay-other")[0])
        merchant_key = _load_private(sim_keypair("unionpay-merchant")[0])
        self.root = _cert("hwsim CFCA ACS TEST ROOT", root_key, _name("hwsim CFCA ACS TEST ROOT"), root_key, True, now)
        self.middle = _cert("hwsim CFCA ACS TEST OCA31", middle_key, self.root.subject, root_key, True, now)
        self.sign_cert = _cert(
            f"041@Z12@{UNIONPAY_CN}@00000062", self._sign_key, self.middle.subject, middle_key, False, now
        )
        self.foreign_cert = _cert(
            "041@Z12@somebody else@00000063", self._other_key, self.middle.subject, middle_key, False, now
        )
        self.rogue_cert = _cert(
            f"041@Z12@{UNIONPAY_CN}@00000062", self._other_key, _name("rogue"), self._other_key, False, now
        )
        self.merchant_cert = _cert(
            f"041@Z12@{mer_id}@00000001", merchant_key, self.middle.subject, middle_key, False, now
        )
        self.merchant_pem = merchant_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ) + self.merchant_cert.public_bytes(serialization.Encoding.PEM)
        self.root_pem = self.root.public_bytes(serialization.Encoding.PEM)
        self.middle_pem = self.middle.public_bytes(serialization.Encoding.PEM)
        self.txns: dict[str, Txn] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []  # (endpoint, fields) of every verified request
        self.refund_delay = 1  # queries of a refund before it turns paid
        self._faults: list[tuple[str, str | None]] = []
        self._next_code = "pay"
        self._numbers = itertools.count(1)
        self._server, self.url = self._serve()

    def close(self) -> None:
        """Stop the server."""
        _shutdown(self._server)

    # --- what the payer does -----------------------------------------------------------------------------

    def pay(self, qr: str | None = None) -> str:
        """The payer scans and pays a shown code (`qr`, or the latest shown); returns its order id."""
        with self._lock:
            shown = [t for t in self.txns.values() if t.kind == "qr" and t.state == "open" and qr in (None, t.qr)]
            if not shown:
                raise LookupError("no shown UnionPay code to pay")
            t = shown[-1]
            self._paid(t)
            return t.order_id

    def confirm(self, order_id: str) -> None:
        """The payer of a scanned code enters the password now."""
        with self._lock:
            t = self.txns.get(order_id)
            if t is None or t.state != "pending":
                raise LookupError(f"order {order_id} is not waiting for the payer")
            self._paid(t)

    def next_code(self, behaviour: str) -> None:
        """What the payer whose code is scanned next does (CODE_BEHAVIOURS)."""
        if behaviour not in CODE_BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {', '.join(CODE_BEHAVIOURS)}")
        with self._lock:
            self._next_code = behaviour

    def fault(self, kind: str | None, times: int = 1, endpoint: str | None = None) -> None:
        """The next `times` answers (to `endpoint`, or any) misbehave; None clears. See FAULTS."""
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        if endpoint is not None and endpoint not in ENDPOINTS:
            raise ValueError(f"unknown endpoint {endpoint!r}; one of {', '.join(ENDPOINTS)}")
        with self._lock:
            self._faults = [] if kind is None else [(kind, endpoint)] * times

    def _paid(self, t: Txn) -> None:
        t.state, t.code = "paid", "00"
        t.query_id = f"{datetime.now(UTC):%Y%m%d%H%M%S}{next(self._numbers):07d}"

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _serve(self) -> tuple[ThreadingHTTPServer, str]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("utf-8", "replace")
                status, text = gateway._handle(self.path, body)
                data = text.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("unionpay-gateway: " + fmt, *args)

        return serve(Handler, "unionpay-gateway")

    @staticmethod
    def _endpoint(path: str, f: dict[str, str]) -> str:
        kinds = {
            ("01", "07"): "qr",
            ("01", "06"): "code",
            ("99", "01"): "reversal",
            ("31", "00"): "cancel",
            ("04", "00"): "refund",
        }
        if path == QUERY_PATH:
            return "query" if (f.get("txnType"), f.get("txnSubType")) == ("00", "00") else ""
        return kinds.get((f.get("txnType", ""), f.get("txnSubType", "")), "") if path == BACK_PATH else ""

    def _handle(self, path: str, body: str) -> tuple[int, str]:
        fields = dict(urllib.parse.parse_qsl(body, keep_blank_values=True))
        endpoint = self._endpoint(urllib.parse.urlsplit(path).path, fields)
        with self._lock:
            fault = None
            for i, (_kind, target) in enumerate(self._faults):
                if target in (None, endpoint):
                    fault = self._faults.pop(i)[0]
                    break
            if fault == "http500":
                return 500, "internal error"
            if fields.get("certId") != str(self.merchant_cert.serial_number) or not verify(
                self.merchant_cert.public_key(),  # type: ignore[arg-type]
                fields,
            ):
                return 200, "respCode=11&respMsg=验证签名失败"  # unsigned, as UnionPay's own
            if not endpoint:
                return 404, "not found"
            self.requests.append((endpoint, fields))
            answer = self._business(endpoint, fields)
            if fault == "lost":
                return 500, "internal error"
            if fault == "other_order":
                answer["orderId"] = "OTHER" + answer.get("orderId", "")[5:]
            if fault == "wrong_amount" and "txnAmt" in answer:
                answer["txnAmt"] = str(int(answer["txnAmt"]) + 1)
            text = self._signed(answer, fault)
            if fault == "malformed":
                text = "respCode=00&orderId"
            return 200, text

    def _signed(self, answer: dict[str, str], fault: str | None) -> str:
        key, cert = self._sign_key, self.sign_cert
        if fault == "bad_signature":
            key, cert = self._other_key, self.rogue_cert
        elif fault == "foreign_cert":
            key, cert = self._other_key, self.foreign_cert
        answer = {**answer, "version": "5.1.0", "encoding": "UTF-8", "signMethod": "01", "signPubKeyCert": _pem(cert)}
        answer["signature"] = sign(key, answer)
        return "&".join(f"{k}={v}" for k, v in answer.items())

    def _business(self, endpoint: str, f: dict[str, str]) -> dict[str, str]:
        echo = {k: f[k] for k in ("merId", "orderId", "txnTime", "txnType", "txnSubType", "accessType", "bizType")}
        if f["merId"] != self.mer_id:
            return {**echo, "respCode": "31", "respMsg": "商户状态不正确"}
        order_id = f["orderId"]
        if endpoint == "query":
            t = self.txns.get(order_id)
            if t is None or t.txn_time != f["txnTime"] or t.state == "open":
                return {**echo, "respCode": "34", "respMsg": "查无此交易"}
            if t.state == "pending" and t.kind == "refund":
                t.behaviour = str(int(t.behaviour) - 1)
                if int(t.behaviour) <= 0:
                    self._paid(t)
            out = {**echo, "respCode": "00", "respMsg": "成功", "origRespCode": t.code, "txnAmt": str(t.amount)}
            out["currencyCode"] = "156"
            if t.query_id:
                out["queryId"] = t.query_id
            return out
        if endpoint in ("qr", "code", "cancel", "refund") and order_id in self.txns:
            return {**echo, "respCode": "12", "respMsg": "重复交易"}
        if endpoint == "qr":
            t = Txn(order_id, f["txnTime"], "qr", int(f["txnAmt"]), state="open", expires=f.get("payTimeout", ""))
            t.qr = QR_PREFIX + secrets.token_hex(12)
            self.txns[order_id] = t
            return {**echo, "respCode": "00", "respMsg": "成功", "qrCode": t.qr}
        if endpoint == "code":
            if not CODE_PATTERN.fullmatch(f.get("qrNo", "")):
                return {**echo, "respCode": "61", "respMsg": "无效二维码"}
            t = Txn(order_id, f["txnTime"], "code", int(f["txnAmt"]), behaviour=self._next_code)
            self._next_code = "pay"
            self.txns[order_id] = t
            if t.behaviour == "pay":
                self._paid(t)
            elif t.behaviour == "insufficient":
                t.state, t.code = "failed", "51"
                return {**echo, "respCode": "51", "respMsg": "余额不足"}
            return {**echo, "respCode": "00" if t.state == "paid" else "05", "respMsg": "成功", "txnAmt": f["txnAmt"]}
        if endpoint == "reversal":
            t = self.txns.get(order_id)
            if t is None or t.txn_time != f["txnTime"]:
                return {**echo, "respCode": "35", "respMsg": "原交易不存在"}
            if t.state == "paid":  # a reversal undoes the payment too: the money goes back
                t.cancelled = True
            t.state, t.code = "failed", "01"
            return {**echo, "respCode": "00", "respMsg": "成功"}
        original = next((t for t in self.txns.values() if t.query_id and t.query_id == f.get("origQryId")), None)
        if original is None or original.state != "paid":
            return {
                **echo,
                "respCode": "35",
                "respMsg": "原交易不存在或状态不正确",
                "origQryId": f.get("origQryId", ""),
            }
        if endpoint == "cancel":
            if f.get("txnAmt") != str(original.amount):
                return {**echo, "respCode": "36", "respMsg": "与原交易信息不符", "origQryId": original.query_id}
            t = Txn(order_id, f["txnTime"], "cancel", original.amount, orig=original.query_id)
            self._paid(t)
            original.cancelled = True
            self.txns[order_id] = t
            return {**echo, "respCode": "00", "respMsg": "成功", "origQryId": original.query_id}
        amount = int(f["txnAmt"])
        if amount + sum(r.amount for r in original.refunds) > original.amount:
            return {**echo, "respCode": "36", "respMsg": "退货金额超限", "origQryId": original.query_id}
        t = Txn(order_id, f["txnTime"], "refund", amount, orig=original.query_id, behaviour=str(self.refund_delay))
        if self.refund_delay <= 0:
            self._paid(t)
        original.refunds.append(t)
        self.txns[order_id] = t
        return {**echo, "respCode": "00", "respMsg": "成功", "origQryId": original.query_id, "txnAmt": f["txnAmt"]}
