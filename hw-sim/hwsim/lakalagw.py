"""The simulated aggregator: Lakala's open platform (API v3) on loopback, for a terminal's aggregated payments:
any wallet's scanned code (micropay, the wallet told by the code's prefix), the cashier order whose one code
every wallet app can pay, trade and cashier queries, revoke, close and refunds.

It checks every request's `LKLAPI-SHA256withRSA` Authorization (appid, serial, the merchant's SHA256withRSA
signature over appid, serial, timestamp, nonce and body) and refuses a bad one unsigned with HTTP 401; every
other answer is signed with the platform key whose certificate the merchant holds (`Lklapi-*` headers).

Tests choose what the payer of the next scanned code does (pay, confirm: DEAL until `confirm()`, insufficient:
FAIL, never_confirm) and what goes wrong with the next answers (FAULTS).
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from firmware.core.paycode import classify_code
from firmware.wallets import aggregator as lkl

from .loopback import serve
from .unionpaygw import sim_keypair
from .walletgw import _shutdown
from .wechatgw import _load_private

log = logging.getLogger(__name__)

CODE_BEHAVIOURS = ("pay", "confirm", "insufficient", "never_confirm")
FAULTS = ("bad_signature", "other_order", "wrong_amount", "http500", "lost", "unsigned")
ENDPOINTS = {
    lkl.MICROPAY: "micropay",
    lkl.TRADE_QUERY: "query",
    lkl.REVOKE: "revoke",
    lkl.REFUND: "refund",
    lkl.COUNTER_CREATE: "counter",
    lkl.COUNTER_QUERY: "counter_query",
    lkl.COUNTER_CLOSE: "counter_close",
}
ACCOUNT_TYPES = {"wechat": "WECHAT", "alipay": "ALIPAY", "unionpay": "UQRCODEPAY"}
COUNTER_PREFIX = "https://q.lakala.com/ccss/counter/"


@dataclass
class Trade:
    """A trade (a code payment, a refund) or a cashier order, as the gateway keeps it."""

    number: str
    kind: str  # "micropay" | "refund" | "counter"
    amount: int
    state: str = "DEAL"  # trade_state; a cashier order: its order_status ("0" waiting, "2" paid, "5" closed …)
    trade_no: str = ""
    account_type: str = ""
    url: str = ""
    origin: str = ""
    refunds: list[Trade] = field(default_factory=list)
    queries_left: int = 0


class LakalaGateway:
    """Threaded HTTP server; `trades`, `requests` and the switches are for tests (guarded by a lock)."""

    def __init__(
        self, appid: str = "OP00000003", merchant_no: str = "82229007392000A", term_no: str = "D9296400"
    ) -> None:
        self.appid, self.merchant_no, self.term_no = appid, merchant_no, term_no
        self._lock = threading.Lock()
        self.merchant_private_pem, merchant_public = sim_keypair("lakala-merchant")
        self._merchant_key = serialization.load_pem_public_key(merchant_public)
        self.serial_no = f"{secrets.randbits(64):x}"
        self._platform_key = _load_private(sim_keypair("lakala-platform")[0])
        self._other_key = _load_private(sim_keypair("lakala-other")[0])
        now = datetime.now(UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hwsim Lakala open platform")])
        self.platform_cert_pem = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._platform_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3 * 365))
            .sign(self._platform_key, hashes.SHA256())
            .public_bytes(serialization.Encoding.PEM)
        )
        self.trades: dict[str, Trade] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.refund_delay = 1
        self._faults: list[tuple[str, str | None]] = []
        self._next_code = "pay"
        self._numbers = itertools.count(1)
        self._server, self.url = self._serve()

    def close(self) -> None:
        """Stop the server."""
        _shutdown(self._server)

    # --- what the payer does -----------------------------------------------------------------------------

    def pay(self, url: str | None = None, wallet: str = "wechat") -> str:
        """A payer opens the shown cashier code (`url`, or the latest) in `wallet`'s app and pays."""
        with self._lock:
            shown = [t for t in self.trades.values() if t.kind == "counter" and t.state == "0" and url in (None, t.url)]
            if not shown:
                raise LookupError("no open cashier order to pay")
            t = shown[-1]
            t.state, t.trade_no, t.account_type = "2", self._trade_no(), ACCOUNT_TYPES[wallet]
            return t.number

    def confirm(self, number: str) -> None:
        """The payer of a scanned code confirms in the app now."""
        with self._lock:
            t = self.trades[number]
            if t.state != "DEAL":
                raise LookupError(f"{number} is not waiting for the payer")
            t.state = "SUCCESS"

    def next_code(self, behaviour: str) -> None:
        """What the payer whose code is scanned next does (CODE_BEHAVIOURS)."""
        if behaviour not in CODE_BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        with self._lock:
            self._next_code = behaviour

    def fault(self, kind: str | None, times: int = 1, endpoint: str | None = None) -> None:
        """The next `times` answers (to `endpoint`, or any) misbehave; None clears. See FAULTS."""
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self._faults = [] if kind is None else [(kind, endpoint)] * times

    def _trade_no(self) -> str:
        return f"{datetime.now(UTC):%Y%m%d}{next(self._numbers):014d}"

    # --- HTTP ---------------------------------------------------------------------------------------------

    def _serve(self) -> tuple[ThreadingHTTPServer, str]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length).decode("utf-8", "replace")
                status, headers, text = gateway._handle(self.path, self.headers.get("Authorization", ""), body)
                data = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("lakala-gateway: " + fmt, *args)

        return serve(Handler, "lakala-gateway")

    def _authorized(self, header: str, body: str) -> bool:
        schema, _, params = header.partition(" ")
        found = dict(p.split("=", 1) for p in params.split(",") if "=" in p)
        found = {k.strip(): v.strip().strip('"') for k, v in found.items()}
        if schema != lkl.SCHEMA or found.get("appid") != self.appid or found.get("serial_no") != self.serial_no:
            return False
        data = lkl.message(self.appid, self.serial_no, found.get("timestamp", ""), found.get("nonce_str", ""), body)
        return lkl.verify(self._merchant_key, data, found.get("signature", ""))  # type: ignore[arg-type]

    def _handle(self, path: str, auth: str, body: str) -> tuple[int, dict[str, str], str]:
        endpoint = ENDPOINTS.get(path, "")
        with self._lock:
            fault = None
            for i, (_kind, target) in enumerate(self._faults):
                if target in (None, endpoint):
                    fault = self._faults.pop(i)[0]
                    break
            if fault == "http500":
                return 500, {}, "internal error"
            if not self._authorized(auth, body):
                return 401, {}, json.dumps({"code": "BBS00002", "msg": "验签失败"})
            if not endpoint:
                return 404, {}, "{}"
            try:
                req = json.loads(body)["req_data"]
                self.requests.append((endpoint, req))
                code, data = self._business(endpoint, req)
            except (ValueError, KeyError, TypeError) as exc:
                code, data = "BBS00001", {"error": str(exc)}
            if fault == "lost":
                return 500, {}, "internal error"
            for key in ("out_trade_no", "out_order_no"):
                if fault == "other_order" and key in data:
                    data[key] = "OTHER" + str(data[key])[5:]
            for key in ("total_amount", "refund_amount"):
                if fault == "wrong_amount" and key in data:
                    data[key] = str(int(data[key]) + 1)
            text = json.dumps(
                {"code": code, "msg": "成功" if code in lkl.OK_CODES else "失败", "resp_time": "", "resp_data": data},
                ensure_ascii=False,
            )
            if fault == "unsigned":
                return 200, {}, text
            stamp, nonce = str(int(datetime.now(UTC).timestamp())), secrets.token_hex(12)
            key = self._other_key if fault == "bad_signature" else self._platform_key
            signature = lkl.sign(key, lkl.message(self.appid, self.serial_no, stamp, nonce, text))
            headers = {
                "Lklapi-Appid": self.appid,
                "Lklapi-Serial": self.serial_no,
                "Lklapi-Timestamp": stamp,
                "Lklapi-Nonce": nonce,
                "Lklapi-Signature": signature,
            }
            return 200, headers, text

    def _trade_answer(self, t: Trade) -> dict[str, Any]:
        return {
            "merchant_no": self.merchant_no,
            "out_trade_no": t.number,
            "trade_no": t.trade_no,
            "account_type": t.account_type,
            "trade_state": t.state,
            "total_amount": str(t.amount),
        }

    def _business(self, endpoint: str, req: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        if req["merchant_no"] != self.merchant_no:
            return "BBS00001", {}
        if endpoint == "micropay":
            number = req["out_trade_no"]
            if number in self.trades:
                return "BBS10001", {}
            wallet = ACCOUNT_TYPES.get(classify_code(req["auth_code"]))
            if wallet is None:
                return "BBS11001", {}
            t = Trade(number, "micropay", int(req["total_amount"]), trade_no=self._trade_no(), account_type=wallet)
            behaviour, self._next_code = self._next_code, "pay"
            self.trades[number] = t
            if behaviour == "pay":
                t.state = "SUCCESS"
                return "BBS00000", self._trade_answer(t)
            if behaviour == "insufficient":
                t.state = "FAIL"
                return "BBS11003", {}
            return "BBS11112", {}  # the payer must confirm: the query follows it
        if endpoint == "query":
            t = self.trades.get(req["out_trade_no"])
            if t is None or t.kind == "counter":
                return "BBS11105", {}
            if t.kind == "refund" and t.state == "DEAL":
                t.queries_left -= 1
                if t.queries_left <= 0:
                    t.state = "SUCCESS"
            return "BBS00000", self._trade_answer(t)
        if endpoint == "revoke":
            t = self.trades.get(req["origin_out_trade_no"])
            if t is None:
                return "BBS11105", {}
            t.state = "REFUND" if t.state == "SUCCESS" else "CLOSE"
            return "BBS00000", {"merchant_no": self.merchant_no, "out_trade_no": req["out_trade_no"]}
        if endpoint == "refund":
            number = req["out_trade_no"]
            if number in self.trades:  # a resend: the same refund, once
                return "BBS00000", self._refund_answer(self.trades[number])
            original = self.trades.get(req["origin_out_trade_no"])
            if original is None or original.state not in ("SUCCESS", "PART_REFUND") and original.state != "2":
                return "BBS11105", {}
            amount = int(req["refund_amount"])
            if amount + sum(r.amount for r in original.refunds) > original.amount:
                return "BBS11201", {}
            t = Trade(number, "refund", amount, trade_no=self._trade_no(), origin=original.number)
            t.queries_left = self.refund_delay
            t.state = "DEAL" if self.refund_delay else "SUCCESS"
            original.refunds.append(t)
            self.trades[number] = t
            return "BBS00000", self._refund_answer(t)
        if endpoint == "counter":
            number = req["out_order_no"]
            if number in self.trades:
                return "BBS10001", {}
            t = Trade(number, "counter", int(req["total_amount"]), state="0")
            t.url = COUNTER_PREFIX + secrets.token_hex(10)
            self.trades[number] = t
            out = {"merchant_no": self.merchant_no, "out_order_no": number, "total_amount": req["total_amount"]}
            return "000000", {**out, "pay_order_no": self._trade_no(), "counter_url": t.url}
        t = self.trades.get(req["out_order_no"])
        if t is None or t.kind != "counter":
            return "BBS11105", {}
        if endpoint == "counter_close" and t.state == "0":
            t.state = "5"
        answer = {
            "merchant_no": self.merchant_no,
            "out_order_no": t.number,
            "total_amount": str(t.amount),
            "order_status": t.state,
        }
        if t.trade_no:
            answer["order_trade_info_list"] = [{"trade_no": t.trade_no, "account_type": t.account_type}]
        return "000000", answer

    def _refund_answer(self, t: Trade) -> dict[str, Any]:
        return {
            "merchant_no": self.merchant_no,
            "out_trade_no": t.number,
            "trade_no": t.trade_no,
            "refund_amount": str(t.amount),
            "trade_state": t.state,
        }
