"""An aggregator (聚合支付) as one wallet provider: Lakala's open platform (拉卡拉开放平台, API v3), whose
documentation is public (https://o.lakala.com, i.lakala.com/doc/openapi). One scan API takes a payment code of
any wallet (WeChat 10-15…, Alipay 25-30…, UnionPay 62…) and says which wallet paid (account_type WECHAT, ALIPAY,
UQRCODEPAY); one merchant-presented code any of them can pay is its cashier order (聚合收银台), whose
`counter_url` the terminal shows.

Requests are JSON `{"req_time", "version": "3.0", "out_org_code": appid, "req_data": {…}}` POSTed with
`Authorization: LKLAPI-SHA256withRSA appid="…",serial_no="…",timestamp="…",nonce_str="…",signature="…"`, the
signature SHA256withRSA (PKCS#1 v1.5, base64) by the merchant's key over "appid\\nserial_no\\ntimestamp\\nnonce\\n
body\\n". An answer is believed only when its `Lklapi-Signature` verifies over "appid\\nserial\\ntimestamp\\n
nonce\\nbody\\n" (from the `Lklapi-Appid`, `-Serial`, `-Timestamp`, `-Nonce` headers) with Lakala's platform
certificate, its appid is ours and its timestamp within five minutes; then it is compared with its request
(merchant_no, out_trade_no / out_order_no, total_amount in fen), and one that does not match is no answer
(WalletMismatch). A payment's own answer decides only a success bound to it; anything else is decided by the
trade query. Amounts are integers in fen, sent as digit strings.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from firmware.config import key_file
from firmware.errors import ConfigError
from firmware.wallets import keycheck
from firmware.wallets.alipay import CHINA, WalletError, WalletMismatch, WalletResult, _clean, rsa2_sign, rsa2_verify

if TYPE_CHECKING:
    from firmware.config import AggregatorConfig
    from firmware.wallets.keycheck import CheckedKeys

log = logging.getLogger(__name__)

SCHEMA = "LKLAPI-SHA256withRSA"
VERSION = "3.0"
DEFAULT_GATEWAY = "https://s2.lakala.com"
MICROPAY = "/api/v3/labs/trans/micropay"
TRADE_QUERY = "/api/v3/labs/query/tradequery"
REVOKE = "/api/v3/labs/relation/revoked"
REFUND = "/api/v3/labs/relation/refund"
COUNTER_CREATE = "/api/v3/ccss/counter/order/special_create"
COUNTER_QUERY = "/api/v3/ccss/counter/order/query"
COUNTER_CLOSE = "/api/v3/ccss/counter/order/close"
OK_CODES = frozenset({"BBS00000", "000000"})  # the trade APIs' success, the cashier APIs' success
WALLETS = {"WECHAT": "WECHAT PAY", "ALIPAY": "ALIPAY", "UQRCODEPAY": "UNIONPAY"}  # account_type: who paid
ANSWER_WINDOW = 300
# trade_state of the trade query
_PAID = frozenset({"SUCCESS", "PART_REFUND"})
_REFUNDED = "REFUND"  # all of it back to the payer: for an order being reconciled, its revoke went through
_NO_TRADE = "BBS11105"  # no such trade (交易不存在): the query's "not found"
NOT_FOUND = "NOT_FOUND"  # the trade state this client gives a trade Lakala says it does not have
_OPEN = frozenset({"INIT", "CREATE", "DEAL", "UNKNOWN"})
_CLOSED = frozenset({"CLOSE"})
# order_status of a cashier order: 0 waiting, 1 paying, 2 paid, 3 failed, 4 expired, 5 cancelled, 6/7 refunded
_COUNTER_PAID = frozenset({"2", "6", "7"})
_COUNTER_OPEN = frozenset({"0", "1"})
_COUNTER_CLOSED = {"3": "PAYMENT FAILED", "4": "ORDER EXPIRED", "5": "ORDER CLOSED"}
_IDENT = re.compile(r"[0-9A-Za-z_-]{1,64}")
_MAX_BODY = 1 << 20


def message(appid: str, serial: str, timestamp: str, nonce: str, body: str) -> bytes:
    """What a request's or an answer's signature covers."""
    return f"{appid}\n{serial}\n{timestamp}\n{nonce}\n{body}\n".encode()


sign, verify = rsa2_sign, rsa2_verify  # SHA256withRSA (PKCS#1 v1.5), base64: as Alipay signs


def authorization(appid: str, serial: str, key: rsa.RSAPrivateKey, body: str, timestamp: str, nonce: str) -> str:
    """The request's Authorization header value."""
    signature = sign(key, message(appid, serial, timestamp, nonce, body))
    params = f'appid="{appid}",serial_no="{serial}",timestamp="{timestamp}",nonce_str="{nonce}"'
    return f'{SCHEMA} {params},signature="{signature}"'


def _fen(value: Any) -> int | None:
    """An amount as Lakala writes it: a string of digits (fen)."""
    return int(value) if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12 else None


def _ident(value: Any) -> str:
    return value if isinstance(value, str) and _IDENT.fullmatch(value) else ""


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Unknown(WalletError):
    """Lakala answered a query with an error code (it may not know the order under that API)."""


class LakalaClient:
    """Lakala's aggregated code payments for one merchant and terminal: any wallet's code, one cashier code,
    query, revoke, refund."""

    name = "aggregator"

    def __init__(
        self,
        gateway: str,
        appid: str,
        serial_no: str,
        private_key: bytes,
        platform_cert: bytes,
        merchant_no: str,
        term_no: str,
        *,
        timeout: float = 10.0,
        clock: Callable[[], datetime] = _utc_now,
        checked: CheckedKeys | None = None,
    ) -> None:
        self._gateway = gateway.rstrip("/")
        self._appid, self._serial, self._merchant, self._term = appid, serial_no, merchant_no, term_no
        self._timeout, self._clock = timeout, clock
        try:
            key = keycheck.load_private_key(private_key.strip(), checked=checked)
            cert = x509.load_pem_x509_certificate(platform_cert.strip())
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise WalletError("[aggregator] private_key or platform_cert is not a PEM key / certificate") from None
        public = cert.public_key()
        if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(public, rsa.RSAPublicKey):
            raise WalletError("[aggregator] keys must be RSA")
        self._key, self._platform = key, public
        self._kinds: dict[str, str] = {}  # order number -> "code" (a trade) | "qr" (a cashier order), this boot

    @classmethod
    def from_config(
        cls, cfg: AggregatorConfig, clock: Callable[[], datetime] = _utc_now, checked: CheckedKeys | None = None
    ) -> LakalaClient:
        """The client an [aggregator] section describes; ConfigError naming the key when a file cannot be used."""

        read = functools.partial(key_file, "aggregator", cfg)

        try:
            return cls(
                cfg.gateway,
                cfg.appid,
                cfg.serial_no,
                read("private_key"),
                read("platform_cert"),
                cfg.merchant_no,
                cfg.term_no,
                timeout=cfg.timeout,
                clock=clock,
                checked=checked,
            )
        except WalletError as exc:
            raise ConfigError(str(exc)) from None

    # --- transport and verification (worker threads) --------------------------------------------------

    def _round_trip(self, what: str, path: str, req_data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        now = self._clock()
        body = json.dumps(
            {
                "req_time": now.astimezone(CHINA).strftime("%Y%m%d%H%M%S"),
                "version": VERSION,
                "out_org_code": self._appid,
                "req_data": req_data,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        stamp, nonce = str(int(now.timestamp())), secrets.token_hex(16)
        req = urllib.request.Request(
            self._gateway + path,
            data=body.encode(),
            method="POST",
            headers={
                "Authorization": authorization(self._appid, self._serial, self._key, body, stamp, nonce),
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as answer:  # noqa: S310 - configured URL
                headers = {k.lower(): v for k, v in answer.headers.items()}
                raw = answer.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            raise WalletError(f"{what}: Lakala answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise WalletError(f"Lakala unreachable: {exc}") from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WalletError(f"{what}: the answer is not UTF-8") from None
        self._check_signature(what, headers, text)
        try:
            answer_obj = json.loads(text)
        except (ValueError, RecursionError):
            raise WalletError(f"{what}: malformed answer from Lakala") from None
        if not isinstance(answer_obj, dict):
            raise WalletError(f"{what}: the answer is not a JSON object")
        code = answer_obj.get("code")
        data = answer_obj.get("resp_data")
        return (code if isinstance(code, str) else ""), (data if isinstance(data, dict) else {})

    def _check_signature(self, what: str, headers: dict[str, str], body: str) -> None:
        parts = [headers.get(f"lklapi-{n}", "").strip() for n in ("appid", "serial", "timestamp", "nonce", "signature")]
        if not all(parts):
            raise WalletError(f"{what}: an unsigned answer is not believed")
        appid, serial, stamp, nonce, signature = parts
        if appid != self._appid:
            raise WalletError(f"{what}: the answer is for appid {_clean(appid, 40)}, not {self._appid}")
        if not stamp.isdecimal() or abs(int(self._clock().timestamp()) - int(stamp)) >= ANSWER_WINDOW:
            raise WalletError(f"{what}: the answer's timestamp is not within five minutes")
        if not verify(self._platform, message(appid, serial, stamp, nonce, body), signature):
            raise WalletError(f"{what}: the answer's signature does not verify with [aggregator] platform_cert")

    async def _call(self, what: str, path: str, req_data: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        try:
            return await asyncio.to_thread(self._round_trip, what, path, req_data)
        except WalletError:
            raise
        except Exception as exc:  # whatever a hostile answer makes a parser raise
            raise WalletError(f"{what}: unusable answer ({type(exc).__name__})") from None

    # --- binding answers to requests ------------------------------------------------------------------

    def _same(self, what: str, d: dict[str, Any], name: str, number: str, amount: int | None, money: str) -> None:
        if d.get("merchant_no") != self._merchant:
            raise WalletMismatch(f"{what}: the answer is for merchant {_clean(d.get('merchant_no'), 32)}")
        if d.get(name) != number:
            raise WalletMismatch(f"{what}: the answer is for {name} {_clean(d.get(name), 64)}, not {number}")
        if amount is not None:
            got = _fen(d.get(money))
            if got != amount:
                raise WalletMismatch(
                    f"{what}: the answer says {money} {_clean(d.get(money), 16)}, the request {amount}"
                )

    def _base(self) -> dict[str, Any]:
        return {"merchant_no": self._merchant, "term_no": self._term}

    def _location(self) -> dict[str, str]:
        return {"request_ip": "127.0.0.1"}  # Lakala's risk control wants one; the till has no public address

    async def _trade(self, out_trade_no: str, amount: int | None) -> tuple[str, dict[str, Any]]:
        """(trade_state, the answer) of a trade (a code payment or a refund), bound to it."""
        what = "query"
        code, d = await self._call(what, TRADE_QUERY, {**self._base(), "out_trade_no": out_trade_no})
        if code == _NO_TRADE:
            return NOT_FOUND, {}
        if code not in OK_CODES:
            raise _Unknown(f"{what}: Lakala answered {_clean(code, 16)}")
        self._same(what, d, "out_trade_no", out_trade_no, None, "total_amount")
        state = d.get("trade_state")
        if state in _PAID and amount is not None:
            self._same(what, d, "out_trade_no", out_trade_no, amount, "total_amount")
        if not isinstance(state, str) or state not in _PAID | _OPEN | _CLOSED | {"FAIL", _REFUNDED}:
            raise WalletError(f"{what}: unknown trade_state {_clean(state, 20)!r}")
        return state, d

    def _paid(self, d: dict[str, Any]) -> WalletResult:
        trade_no = _ident(d.get("trade_no"))
        if not trade_no:
            raise WalletMismatch("a payment without a trade_no")
        wallet = WALLETS.get(str(d.get("account_type")), "")
        return WalletResult("paid", trade_no=trade_no, payer=wallet)

    def _of_state(self, state: str, d: dict[str, Any]) -> WalletResult:
        if state in _PAID:
            return self._paid(d)
        if state in _CLOSED:
            return WalletResult("closed", "ORDER CLOSED", trade_no=_ident(d.get("trade_no")))
        if state == _REFUNDED:  # the whole of it back to the payer (a revoke): not a payment the shop keeps
            return WalletResult("closed", "REFUNDED TO PAYER", trade_no=_ident(d.get("trade_no")))
        if state == "FAIL":
            return WalletResult("failed", "PAYMENT FAILED")
        if state == NOT_FOUND:
            return WalletResult("not_found", "ORDER NOT FOUND")
        return WalletResult("waiting")

    # --- WalletProvider ---------------------------------------------------------------------------------

    async def pay_by_code(self, order_no: str, amount: int, code: str, subject: str) -> WalletResult:
        """Any wallet's payment code: paid (the payer names the wallet), or what the trade query says."""
        what = "micropay"
        req = {
            **self._base(),
            "out_trade_no": order_no,
            "auth_code": code,
            "total_amount": str(amount),
            "subject": subject[:42],
            "location_info": self._location(),
        }
        self._kinds[order_no] = "code"
        answer, d = await self._call(what, MICROPAY, req)
        if answer in OK_CODES and d:
            self._same(what, d, "out_trade_no", order_no, amount, "total_amount")
            if d.get("trade_state") == "SUCCESS":  # anything else (the payer confirming...): the query decides
                return self._paid(d)
        state, q = await self._trade(order_no, amount)
        return self._of_state(state, q)

    async def create_order(
        self, order_no: str, amount: int, subject: str, expires: datetime | None = None
    ) -> WalletResult:
        """The cashier order (聚合收银台): its counter_url is the one code every wallet app can pay."""
        what = "cashier order"
        req: dict[str, Any] = {
            "merchant_no": self._merchant,
            "out_order_no": order_no,
            "total_amount": str(amount),
            "order_info": subject[:64],
        }
        if expires is not None:
            req["order_efficient_time"] = expires.astimezone(CHINA).strftime("%Y%m%d%H%M%S")
        self._kinds[order_no] = "qr"
        code, d = await self._call(what, COUNTER_CREATE, req)
        if code not in OK_CODES:
            return WalletResult("failed", "ORDER NOT CREATED")
        self._same(what, d, "out_order_no", order_no, amount, "total_amount")
        url = d.get("counter_url")
        if not isinstance(url, str) or not url.startswith("https://") or len(url) > 512 or _clean(url) != url:
            raise WalletError(f"{what}: the answer carries no usable counter_url")
        return WalletResult("waiting", qr=url)

    async def _counter(self, order_no: str, amount: int | None) -> WalletResult:
        what = "cashier query"
        code, d = await self._call(what, COUNTER_QUERY, {"merchant_no": self._merchant, "out_order_no": order_no})
        if code == _NO_TRADE:
            return WalletResult("not_found", "ORDER NOT FOUND")
        if code not in OK_CODES:
            raise _Unknown(f"{what}: Lakala answered {_clean(code, 16)}")
        status = str(d.get("order_status"))
        self._same(what, d, "out_order_no", order_no, amount if status in _COUNTER_PAID else None, "total_amount")
        if status in _COUNTER_PAID:
            trades = d.get("order_trade_info_list")
            first = trades[0] if isinstance(trades, list) and trades and isinstance(trades[0], dict) else {}
            return self._paid(first)
        if status in _COUNTER_OPEN:
            return WalletResult("waiting")
        if status in _COUNTER_CLOSED:
            return WalletResult("closed", _COUNTER_CLOSED[status])
        raise WalletError(f"{what}: unknown order_status {_clean(status, 8)!r}")

    async def query(self, order_no: str, amount: int) -> WalletResult:
        """A code payment's trade, or a shown code's cashier order. An order this boot did not make (reconciling
        after a restart) is asked as a cashier order first, then as a trade."""
        kind = self._kinds.get(order_no)
        if kind == "qr":
            return await self._counter(order_no, amount)
        if kind is None:
            try:
                counter = await self._counter(order_no, amount)
                if counter.state != "not_found":
                    return counter
            except _Unknown:
                pass
        state, d = await self._trade(order_no, amount)
        return self._of_state(state, d)

    async def close(self, order_no: str) -> WalletResult:
        """Close a cashier order: closed once its query says so; refused when it was paid first."""
        await self._call("cashier close", COUNTER_CLOSE, {"merchant_no": self._merchant, "out_order_no": order_no})
        result = await self._counter(order_no, None)
        if result.state == "paid":
            return WalletResult("refused", "ORDERPAID")
        return result if result.state in ("closed", "not_found") else WalletResult("retry")

    async def cancel(self, order_no: str, at: datetime | None = None) -> WalletResult:
        """Revoke (撤销) a code payment whatever became of it; closed once the trade query says CLOSE or REFUND."""
        before, b = await self._trade(order_no, None)
        if before in _CLOSED or before == "FAIL":
            return WalletResult("closed", "PAYMENT CANCELLED")
        if before == _REFUNDED:  # revoked already (a resend after a lost answer)
            return WalletResult("closed", "REFUNDED TO PAYER", trade_no=_ident(b.get("trade_no")))
        if before == NOT_FOUND:  # never reached Lakala: the desk decides when that is final
            return WalletResult("not_found")
        req = {
            **self._base(),
            "out_trade_no": f"{order_no[:30]}RV",
            "origin_out_trade_no": order_no,
            "location_info": self._location(),
        }
        answer, _ = await self._call("revoke", REVOKE, req)
        after, d = await self._trade(order_no, None)
        if after in _CLOSED or after == "FAIL":
            return WalletResult("closed", "PAYMENT CANCELLED", trade_no=_ident(d.get("trade_no")))
        if after == _REFUNDED:
            return WalletResult("closed", "REFUNDED TO PAYER", trade_no=_ident(d.get("trade_no")))
        if after == NOT_FOUND:
            return WalletResult("not_found")
        if answer in OK_CODES:  # accepted, not done yet: the money may be moving
            raise WalletError(f"revoke of {order_no}: accepted, the trade is still {after}; asked again")
        return WalletResult("retry")  # Lakala refused the revoke: nothing moved

    async def refund(
        self,
        order_no: str,
        amount: int,
        request_no: str,
        refunded_before: int = 0,
        total: int | None = None,
        at: datetime | None = None,
    ) -> WalletResult:
        """Refund `amount` under `request_no` (the refund's own out_trade_no: a resend refunds once); decided by
        the trade query of the refund."""
        what = "refund"
        refund_no = request_no[:32]
        req = {
            **self._base(),
            "out_trade_no": refund_no,
            "refund_amount": str(amount),
            "origin_out_trade_no": order_no,
            "location_info": self._location(),
        }
        code, d = await self._call(what, REFUND, req)
        if code in OK_CODES and d:
            self._same(what, d, "out_trade_no", refund_no, amount, "refund_amount")
        state, q = await self._trade(refund_no, None)
        got = _fen(q.get("total_amount"))
        if state != NOT_FOUND and got != amount:  # an answer that names no amount is not this refund's either
            raise WalletMismatch(f"{what}: the refund's query says {got}, the request {amount}")
        if state == "SUCCESS":
            return WalletResult("refunded", trade_no=_ident(q.get("trade_no")))
        if state == "FAIL":
            return WalletResult("failed", "REFUND REFUSED")
        raise WalletError(f"{what}: refund {refund_no} is {state}; asked again later")
