"""Mobile wallet providers: a small interface, and a client for Alipay's face-to-face (当面付) OpenAPI.

The Alipay client follows the public OpenAPI documentation and the official SDK: POST to the gateway
with the common parameters (app_id, method, format=JSON, charset=utf-8, sign_type=RSA2, timestamp in
Beijing time, version=1.0, biz_content), signed with SHA256withRSA over the sorted `key=value` pairs;
the answer's `<method_with_underscores>_response` member is verified, over its exact text, against the
gateway's public key before anything is believed. A signature proves who wrote an answer, not which
request it answers: every answer is then compared with the request it claims to answer (order number,
amount, refund request), and one that does not match is no answer at all (WalletMismatch).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from firmware.core.walletorder import WalletResult
from firmware.errors import TerminalError
from firmware.wallets import keycheck
from firmware.wallets.keycheck import CheckedKeys

log = logging.getLogger(__name__)

CHINA = timezone(timedelta(hours=8))  # Alipay's timestamps are Beijing time
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class WalletError(TerminalError):
    """The provider gave no usable answer (network, HTTP error, bad signature, malformed body)."""

    screen = "WALLET NOT AVAILABLE"


class WalletMismatch(WalletError):
    """A genuinely signed answer that does not belong to this request (another order, another amount,
    another refund): no answer at all; the order's fate stays unknown until it is asked again."""


class WalletGatewayError(WalletError):
    """An error the gateway sent unsigned (40002 for a wrong app id or request signature, 20000, ...):
    never believed as an answer, but its codes are kept so that a misconfiguration can be diagnosed."""

    def __init__(self, message: str, code: str = "", sub_code: str = "") -> None:
        super().__init__(message)
        self.code, self.sub_code = code, sub_code


class WalletProvider(Protocol):
    """What a wallet acquirer offers a terminal. Amounts are minor units; order numbers are the terminal's.
    Every result has been matched with its request; an answer that does not match raises WalletMismatch.
    `at` (cancel, refund): when the request was first made, as journaled; a resend after a restart carries it,
    for a provider that names a request by its time (UnionPay's txnTime). Others ignore it."""

    name: str

    async def create_order(
        self, order_no: str, amount: int, subject: str, expires: datetime | None = None
    ) -> WalletResult: ...
    async def pay_by_code(self, order_no: str, amount: int, code: str, subject: str) -> WalletResult: ...
    async def query(self, order_no: str, amount: int) -> WalletResult: ...
    async def close(self, order_no: str) -> WalletResult: ...
    async def cancel(self, order_no: str, at: datetime | None = None) -> WalletResult: ...
    async def refund(
        self,
        order_no: str,
        amount: int,
        request_no: str,
        refunded_before: int = 0,
        total: int | None = None,
        at: datetime | None = None,
    ) -> WalletResult: ...


# alipay.trade.pay failures (40004) that are final, with their screen texts; any other 40004 is a plain
# failure, except the ones in _UNCERTAIN (the payment's fate is unknown: query, then cancel).
_PAY_FAILURES = {
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": "INSUFFICIENT BALANCE",
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": "INSUFFICIENT BALANCE",
    "ACQ.PAYMENT_AUTH_CODE_INVALID": "PAYMENT CODE INVALID",
    "ACQ.ERROR_BALANCE_PAYMENT_DISABLE": "BALANCE PAYMENT OFF",
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": "PAYER DAILY LIMIT",
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR": "PAYER MONTHLY LIMIT",
    "ACQ.TRADE_HAS_CLOSE": "ORDER CLOSED",
    "ACQ.TRADE_STATUS_ERROR": "ORDER STATE WRONG",
}
_REFUND_FAILURES = {
    "ACQ.TRADE_NOT_ALLOW_REFUND": "REFUND NOT ALLOWED",
    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL": "REFUND AMOUNT INVALID",
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": "REFUND AMOUNT INVALID",
    "ACQ.SELLER_BALANCE_NOT_ENOUGH": "MERCHANT BALANCE LOW",
    "ACQ.TRADE_STATUS_ERROR": "ORDER STATE WRONG",
    "ACQ.TRADE_NOT_EXIST": "ORDER NOT FOUND",
}
_UNCERTAIN = ("ACQ.SYSTEM_ERROR", "AQC.SYSTEM_ERROR", "ACQ.TRADE_HAS_SUCCESS")
_TRADE_STATUS = {
    "WAIT_BUYER_PAY": "waiting",
    "TRADE_SUCCESS": "paid",
    "TRADE_FINISHED": "paid",
    "TRADE_CLOSED": "closed",
}
# What an unsigned gateway error most likely means for the person setting the terminal up.
_HINTS = {
    "isv.invalid-signature": "the request signature did not verify at Alipay: [wallet] private_key must be the app"
    " private key whose public half is set for this app_id on the Alipay console",
    "isv.invalid-app-id": "Alipay does not know [wallet] app_id (wrong id, or the app is not online)",
    "isv.app-not-exist": "Alipay does not know [wallet] app_id",
    "isv.invalid-signature-type": "the app is not set up for RSA2 keys on the Alipay console",
    "isv.invalid-timestamp": "the terminal's clock or time zone is wrong",
    "isv.insufficient-isv-permissions": "the app has no face-to-face payment (当面付) permission",
    "isv.insufficient-user-permissions": "the merchant has not signed face-to-face payment (当面付)",
}
_DIGITS = re.compile(r"\d{13,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def yuan(amount: int) -> str:
    """Minor units (fen) as Alipay's decimal yuan string."""
    return f"{amount // 100}.{amount % 100:02d}"


def fen(value: Any) -> int | None:
    """Alipay's decimal yuan (string, or a JSON number) as minor units; None when it is not an amount."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    try:
        d = Decimal(str(value).strip()) * 100
    except InvalidOperation:
        return None
    if not d.is_finite() or d != d.to_integral_value() or d < 0:
        return None
    return int(d)


def sign_content(params: dict[str, str]) -> bytes:
    """The string Alipay signs: non-empty parameters except `sign`, sorted by name, `k=v` joined by '&'."""
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v and k != "sign").encode("utf-8")


def rsa2_sign(private_key: rsa.RSAPrivateKey, data: bytes) -> str:
    """SHA256withRSA (PKCS#1 v1.5), base64."""
    return base64.b64encode(private_key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verify(public_key: rsa.RSAPublicKey, data: bytes, signature: str) -> bool:
    """Check a SHA256withRSA signature; False for a bad or malformed one."""
    try:
        public_key.verify(base64.b64decode(signature, validate=True), data, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError):
        return False


def response_key(method: str) -> str:
    """The member of the gateway's answer that carries (and is signed as) the method's response."""
    return method.replace(".", "_") + "_response"


def top_level_members(body: str) -> dict[str, str]:
    """The members of a JSON object as their exact source text (what the gateway signed), by name;
    WalletError when the body is not one JSON object."""
    decoder = json.JSONDecoder()
    members: dict[str, str] = {}
    try:
        if not isinstance(json.loads(body), dict):
            raise ValueError("not an object")
        i = body.index("{") + 1
        ws = " \t\r\n"
        while True:
            while body[i] in ws:
                i += 1
            if body[i] == "}":
                return members
            name, i = json.decoder.scanstring(body, i + 1)  # type: ignore[attr-defined]  # in json, not in its stubs
            while body[i] in ws:
                i += 1
            i = body.index(":", i) + 1
            while body[i] in ws:
                i += 1
            _, end = decoder.raw_decode(body, i)
            members.setdefault(name, body[i:end])
            i = end
            while body[i] in ws:
                i += 1
            if body[i] == ",":
                i += 1
    except (ValueError, IndexError) as exc:
        raise WalletError(f"malformed answer from the wallet gateway: {exc}") from None


def _clean(value: Any, limit: int = 160) -> str:
    """Text from an unsigned answer, fit for a log line: no control characters, no long digit runs (a
    payment code echoed back), no echo of the signed request, bounded in length."""
    text = _CONTROL.sub(" ", str(value if value is not None else ""))
    for cut in ("网关生成的验签字符串", "sign content", "signContent"):
        if cut in text:
            text = text[: text.index(cut)] + "…"
    text = _DIGITS.sub(lambda m: m.group()[:4] + "…" + m.group()[-2:], text)
    return text[:limit]


def gateway_error(method: str, answer: Any, signed: bool) -> WalletGatewayError:
    """The WalletGatewayError for a gateway-level error answer (code, msg, sub_code, sub_msg kept)."""
    a = answer if isinstance(answer, dict) else {}
    code, msg, sub_code, sub_msg = (_clean(a.get(k)) for k in ("code", "msg", "sub_code", "sub_msg"))
    hint = _HINTS.get(sub_code, "")
    text = (
        f"{method}: gateway error {code or '?'} {msg}".rstrip()
        + (f" / {sub_code}" if sub_code else "")
        + (f": {sub_msg}" if sub_msg else "")
        + ("" if signed else " (unsigned, not trusted)")
        + (f" — {hint}" if hint else "")
    )
    log.error(
        "alipay %s: gateway error code=%s msg=%s sub_code=%s sub_msg=%s%s%s",
        method,
        code,
        msg,
        sub_code,
        sub_msg,
        "" if signed else " (unsigned)",
        f"; {hint}" if hint else "",
    )
    return WalletGatewayError(text, code, sub_code)


def _key_bytes(data: bytes) -> tuple[bool, bytes]:
    """(is PEM, bytes): PEM text as it is, or the DER inside a bare base64 key (Alipay's own tools and
    SDKs hand keys out as one base64 line without PEM armour)."""
    text = data.lstrip(b"\xef\xbb\xbf").strip()
    if text.startswith(b"-----BEGIN"):
        return True, text
    try:
        return False, base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return False, b""


_PRIVATE = "the merchant's app private key ([wallet] private_key)"
_PUBLIC = "Alipay's public key ([wallet] provider_public_key)"


def load_private_key(data: bytes, checked: CheckedKeys | None = None) -> rsa.RSAPrivateKey:
    """The merchant's RSA private key: PEM (PKCS#1 or PKCS#8), or bare base64 of either (RSA-checked unless
    `checked` knows these bytes)."""
    pem, raw = _key_bytes(data)
    if not raw:
        raise WalletError(f"{_PRIVATE} is neither PEM nor base64")
    try:
        key = keycheck.load_private_key(raw, der=not pem, checked=checked)
    except TypeError:
        raise WalletError(f"{_PRIVATE} is encrypted; give it without a password") from None
    except (ValueError, UnsupportedAlgorithm):
        hint = "; that is a public key" if b"PUBLIC KEY" in raw or _is_public(raw) else ""
        raise WalletError(f"{_PRIVATE} is not a readable private key{hint}") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise WalletError(f"{_PRIVATE} is not an RSA key")
    return key


def _is_public(raw: bytes) -> bool:
    try:
        serialization.load_der_public_key(raw)
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False


def load_public_key(data: bytes) -> rsa.RSAPublicKey:
    """Alipay's RSA public key: PEM, or bare base64 of the SubjectPublicKeyInfo (as the console shows it)."""
    pem, raw = _key_bytes(data)
    if not raw:
        raise WalletError(f"{_PUBLIC} is neither PEM nor base64")
    try:
        key = serialization.load_pem_public_key(raw) if pem else serialization.load_der_public_key(raw)
    except (ValueError, UnsupportedAlgorithm):
        hint = "; that is a private key" if b"PRIVATE KEY" in raw else ""
        raise WalletError(f"{_PUBLIC} is not a readable public key{hint}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise WalletError(f"{_PUBLIC} is not an RSA key")
    return key


def _same_order(method: str, r: dict[str, Any], order_no: str, required: bool = True) -> None:
    got = r.get("out_trade_no")
    if got in (None, ""):
        if required:
            raise WalletMismatch(f"{method}: the answer names no order (asked about {order_no})")
        return
    if str(got) != order_no:
        raise WalletMismatch(f"{method}: the answer is for order {_clean(got, 64)}, not {order_no}")


def _same_amount(method: str, r: dict[str, Any], name: str, amount: int) -> None:
    got = fen(r.get(name))
    if got is None:
        raise WalletMismatch(f"{method}: the answer carries no valid {name}")
    if got != amount:
        raise WalletMismatch(f"{method}: the answer says {name} {_clean(r.get(name), 20)}, the request {yuan(amount)}")


class AlipayClient:
    """Alipay face-to-face payments: precreate (QR shown), pay (code scanned), query, close, cancel, refund."""

    name = "alipay"

    def __init__(
        self,
        gateway: str,
        app_id: str,
        private_key: bytes,
        alipay_public_key: bytes,
        timeout: float = 10.0,
        *,
        checked: CheckedKeys | None = None,
    ) -> None:
        self._gateway, self._app_id, self._timeout = gateway, app_id, timeout
        self._key = load_private_key(private_key, checked)
        self._alipay_key = load_public_key(alipay_public_key)
        own = self._key.public_key().public_numbers()
        if self._alipay_key.public_numbers() == own:
            raise WalletError(
                f"{_PUBLIC} is the app's own public key; it must be the Alipay public key the"
                " Alipay console shows for this app"
            )

    def _request(self, method: str, biz: dict[str, Any]) -> bytes:
        params = {
            "app_id": self._app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": datetime.now(CHINA).strftime(TIME_FORMAT),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = rsa2_sign(self._key, sign_content(params))
        return urllib.parse.urlencode(params).encode("utf-8")

    def _post(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        data = self._request(method, biz)
        req = urllib.request.Request(
            self._gateway,
            data=data,
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as answer:  # noqa: S310 - configured URL
                body = answer.read(1 << 20).decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise WalletError(f"wallet gateway answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
            raise WalletError(f"wallet gateway unreachable: {exc}") from None
        return self.verify_answer(body, method)

    def verify_answer(self, body: str, method: str) -> dict[str, Any]:
        """The verified `<method>_response` object of a gateway answer. Unsigned answers and gateway-level
        errors (`error_response`, codes other than 10000/10003/40004) raise WalletGatewayError."""
        members = top_level_members(body)
        key = response_key(method)
        name = key if key in members else "error_response" if "error_response" in members else ""
        if not name:
            raise WalletError(f"malformed answer from the wallet gateway: no {key}")
        raw = members[name]
        sign = members.get("sign", "")
        signature = json.loads(sign) if sign else ""
        if not signature:
            try:
                unsigned = json.loads(raw)
            except ValueError:
                unsigned = {}
            raise gateway_error(method, unsigned, signed=False)
        if not isinstance(signature, str) or not rsa2_verify(self._alipay_key, raw.encode("utf-8"), signature):
            raise WalletError(f"{method}: the answer's signature does not verify")
        result = json.loads(raw)
        if not isinstance(result, dict):
            raise WalletError(f"{method}: the answer is not an object")
        if name == "error_response" or str(result.get("code", "")) not in ("10000", "10003", "40004"):
            raise gateway_error(method, result, signed=True)
        return result

    async def _call(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(self._post, method, biz)
        except WalletError:
            raise
        except Exception as exc:  # whatever a hostile body makes the parsers raise (RecursionError...)
            raise WalletError(f"{method}: unusable answer ({type(exc).__name__})") from None

    @staticmethod
    def _business(method: str, r: dict[str, Any], order_no: str, ends_order: bool = True) -> tuple[str, str]:
        """A 40004 answer's (sub_code, sub_msg). One that ends an order (declines it, says it is closed,
        refuses a refund) must name this order: a replayed failure of another order is no answer."""
        _same_order(method, r, order_no, required=ends_order)
        return str(r.get("sub_code", "")), _clean(r.get("sub_msg"), 80)

    async def create_order(
        self, order_no: str, amount: int, subject: str, expires: datetime | None = None
    ) -> WalletResult:
        method = "alipay.trade.precreate"
        biz = {"out_trade_no": order_no, "total_amount": yuan(amount), "subject": subject}
        if expires is not None:  # the code cannot be paid after this (Beijing time)
            biz["time_expire"] = expires.astimezone(CHINA).strftime(TIME_FORMAT)
        r = await self._call(method, biz)
        if r.get("code") == "10000":
            _same_order(method, r, order_no)
            qr = r.get("qr_code")
            if not isinstance(qr, str) or not qr:
                raise WalletError("precreate answered without a qr_code")
            return WalletResult("waiting", qr=qr)
        if r.get("code") == "40004":
            sub_code, sub_msg = self._business(method, r, order_no)
            if sub_code in _UNCERTAIN:
                raise WalletError(f"{method}: {sub_code} {sub_msg}")
            return WalletResult("failed", _PAY_FAILURES.get(sub_code, "ORDER NOT CREATED"))
        raise WalletError(f"{method}: unexpected code {r.get('code')!r}")

    async def pay_by_code(self, order_no: str, amount: int, code: str, subject: str) -> WalletResult:
        method = "alipay.trade.pay"
        r = await self._call(
            method,
            {
                "out_trade_no": order_no,
                "scene": "bar_code",
                "auth_code": code,
                "total_amount": yuan(amount),
                "subject": subject,
            },
        )
        if r.get("code") == "10000":
            _same_order(method, r, order_no)
            _same_amount(method, r, "total_amount", amount)
            if not r.get("trade_no"):
                raise WalletMismatch(f"{method}: a payment without a trade number")
            return WalletResult("paid", trade_no=str(r["trade_no"]), payer=_clean(r.get("buyer_logon_id"), 40))
        if r.get("code") == "10003":  # waiting for the payer to confirm in the app
            _same_order(method, r, order_no, required=False)
            return WalletResult("waiting")
        sub_code, sub_msg = self._business(method, r, order_no, ends_order=r.get("sub_code") not in _UNCERTAIN)
        if sub_code in _UNCERTAIN:  # Alipay: query the order, then cancel it
            raise WalletError(f"{method}: {sub_code} {sub_msg}; asking again")
        return WalletResult("failed", _PAY_FAILURES.get(sub_code, "PAYMENT FAILED"))

    async def query(self, order_no: str, amount: int) -> WalletResult:
        method = "alipay.trade.query"
        r = await self._call(method, {"out_trade_no": order_no})
        if r.get("code") == "10000":
            _same_order(method, r, order_no)
            status = str(r.get("trade_status", ""))
            if status not in _TRADE_STATUS:
                raise WalletError(f"{method}: unknown trade_status {_clean(status, 40)!r}")
            state = _TRADE_STATUS[status]
            if state != "closed":
                # A closed trade holds no money of this sale whatever amount it names (a number cancelled
                # before a trade existed is closed at 0.00): it is bound by its order number alone.
                _same_amount(method, r, "total_amount", amount)
            if state == "paid" and not r.get("trade_no"):
                raise WalletMismatch(f"{method}: a paid trade without a trade number")
            return WalletResult(
                state,
                "ORDER CLOSED" if state == "closed" else "",
                trade_no=str(r.get("trade_no", "")),
                payer=_clean(r.get("buyer_logon_id"), 40),
            )
        if r.get("code") == "40004":
            sub_code, sub_msg = self._business(method, r, order_no, ends_order=False)
            if sub_code == "ACQ.TRADE_NOT_EXIST":
                return WalletResult("not_found", "ORDER NOT FOUND")
            raise WalletError(f"{method}: {sub_code} {sub_msg}")
        raise WalletError(f"{method}: unexpected code {r.get('code')!r}")

    async def _end(self, method: str, order_no: str, reason: str) -> WalletResult:
        r = await self._call(method, {"out_trade_no": order_no})
        retry = r.get("retry_flag") == "Y"
        if r.get("code") == "10000":
            _same_order(method, r, order_no)
            if retry:
                return WalletResult("retry")
            action = str(r.get("action", ""))
            return WalletResult(
                "closed", "REFUNDED TO PAYER" if action == "refund" else reason, trade_no=str(r.get("trade_no", ""))
            )
        if r.get("code") == "40004":
            ends = not retry and r.get("sub_code") not in (
                "ACQ.SYSTEM_ERROR",
                "AQC.SYSTEM_ERROR",
                "ACQ.TRADE_NOT_EXIST",
            )
            sub_code, sub_msg = self._business(method, r, order_no, ends_order=ends)
            if retry or sub_code in ("ACQ.SYSTEM_ERROR", "AQC.SYSTEM_ERROR"):
                log.info("%s %s: %s %s; Alipay asks to try again", method, order_no, sub_code, sub_msg)
                return WalletResult("retry")
            if sub_code == "ACQ.TRADE_NOT_EXIST":
                return WalletResult("not_found", "ORDER NOT FOUND")
            if sub_code == "ACQ.TRADE_HAS_CLOSE":
                return WalletResult("closed", reason)
            log.info("%s %s: %s %s", method, order_no, sub_code, sub_msg)
            return WalletResult("refused", sub_code)
        raise WalletError(f"{method}: unexpected code {r.get('code')!r}")

    async def close(self, order_no: str) -> WalletResult:
        """Close an unpaid order (a shown code): closed, not_found (never scanned), retry, or refused."""
        return await self._end("alipay.trade.close", order_no, "ORDER CLOSED")

    async def cancel(self, order_no: str, at: datetime | None = None) -> WalletResult:
        """Cancel a scanned-code payment whatever became of it (unpaid: closed; paid: refunded): closed,
        retry (Alipay's retry_flag), or refused."""
        return await self._end("alipay.trade.cancel", order_no, "PAYMENT CANCELLED")

    async def refund(
        self,
        order_no: str,
        amount: int,
        request_no: str,
        refunded_before: int = 0,
        total: int | None = None,
        at: datetime | None = None,
    ) -> WalletResult:
        """Refund `amount` of an order (`total`, the order's amount, Alipay does not need). Alipay answers with
        the order's total refunded so far (refund_fee) and whether money moved this time (fund_change); an
        answer that cannot be this refund's, or that moved no money (a resend), is confirmed with the refund
        query by its request number."""
        method = "alipay.trade.refund"
        r = await self._call(
            method, {"out_trade_no": order_no, "refund_amount": yuan(amount), "out_request_no": request_no}
        )
        if r.get("code") == "10000":
            _same_order(method, r, order_no)
            if r.get("out_request_no") not in (None, "", request_no):
                raise WalletMismatch(f"{method}: the answer is for refund {_clean(r['out_request_no'], 64)}")
            total = fen(r.get("refund_fee"))
            if total is None:
                raise WalletMismatch(f"{method}: the answer carries no valid refund_fee")
            # Alipay's refund answer does not name the request (out_request_no): an earlier refund's answer
            # replayed would look the same. Only one that names this request counts at once; any other is
            # confirmed by the refund query, which does.
            if (
                r.get("out_request_no") == request_no
                and r.get("fund_change") == "Y"
                and total >= refunded_before + amount
            ):
                return WalletResult("refunded", trade_no=str(r.get("trade_no", "")))
            if total < amount:
                raise WalletMismatch(
                    f"{method}: the order's refunds total {yuan(total)}, less than this refund of {yuan(amount)}"
                )
            return await self.refund_query(order_no, amount, request_no)
        if r.get("code") == "40004":
            uncertain = r.get("sub_code") in ("ACQ.SYSTEM_ERROR", "AQC.SYSTEM_ERROR")
            sub_code, sub_msg = self._business(method, r, order_no, ends_order=not uncertain)
            if uncertain:
                raise WalletError(f"{method}: {sub_code} {sub_msg}; resent later")
            return WalletResult("failed", _REFUND_FAILURES.get(sub_code, "REFUND REFUSED"))
        raise WalletError(f"{method}: unexpected code {r.get('code')!r}")

    async def refund_query(self, order_no: str, amount: int, request_no: str) -> WalletResult:
        """Whether the refund with this request number went through (alipay.trade.fastpay.refund.query)."""
        method = "alipay.trade.fastpay.refund.query"
        r = await self._call(method, {"out_trade_no": order_no, "out_request_no": request_no})
        if r.get("code") != "10000":
            sub_code, sub_msg = self._business(method, r, order_no, ends_order=False)
            raise WalletError(f"{method}: {sub_code} {sub_msg}")
        _same_order(method, r, order_no)
        if r.get("out_request_no") not in (None, "", request_no):
            raise WalletMismatch(f"{method}: the answer is for refund {_clean(r['out_request_no'], 64)}")
        if r.get("refund_status") != "REFUND_SUCCESS":
            raise WalletError(f"{method}: refund {request_no} not confirmed yet")
        _same_amount(method, r, "refund_amount", amount)
        return WalletResult("refunded", trade_no=str(r.get("trade_no", "")))
