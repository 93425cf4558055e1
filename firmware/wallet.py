"""Mobile wallet providers: a small interface, and a client for Alipay's face-to-face (当面付) OpenAPI.

The Alipay client follows the public OpenAPI documentation: POST to the gateway with the common
parameters (app_id, method, format=JSON, charset=utf-8, sign_type=RSA2, timestamp, version=1.0,
biz_content), signed with SHA256withRSA over the sorted `key=value` pairs; the answer's
`<method>_response` object is verified against the gateway's public key before anything is believed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import TerminalError

log = logging.getLogger(__name__)

CHINA = timezone(timedelta(hours=8))


class WalletError(TerminalError):
    """The provider gave no usable answer (network, HTTP error, bad signature, malformed body)."""

    screen = "WALLET NOT AVAILABLE"


@dataclass(frozen=True)
class WalletResult:
    """A provider's answer, mapped to what the terminal does next."""

    state: str                  # paid | waiting | not_found | closed | failed
    reason: str = ""            # short screen text for failed/closed
    trade_no: str = ""          # the provider's transaction number
    payer: str = ""             # the payer's account as the provider masks it
    qr: str = ""                # create_order: the code to show


class WalletProvider(Protocol):
    """What a wallet acquirer offers a terminal. Amounts are minor units; order numbers are the terminal's."""

    name: str

    async def create_order(self, order_no: str, amount: int, subject: str) -> WalletResult: ...
    async def pay_by_code(self, order_no: str, amount: int, code: str, subject: str) -> WalletResult: ...
    async def query(self, order_no: str) -> WalletResult: ...
    async def close(self, order_no: str) -> WalletResult: ...
    async def cancel(self, order_no: str) -> WalletResult: ...
    async def refund(self, order_no: str, amount: int, request_no: str) -> WalletResult: ...


# Alipay sub_codes -> (state, screen text). Anything else under 40004 is a plain failure.
_SUB_CODES = {
    "ACQ.TRADE_NOT_EXIST": ("not_found", "ORDER NOT FOUND"),
    "ACQ.TRADE_HAS_CLOSE": ("closed", "ORDER CLOSED"),
    "ACQ.TRADE_HAS_SUCCESS": ("paid", ""),
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": ("failed", "INSUFFICIENT BALANCE"),
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": ("failed", "INSUFFICIENT BALANCE"),
    "ACQ.PAYMENT_AUTH_CODE_INVALID": ("failed", "PAYMENT CODE INVALID"),
    "ACQ.ERROR_BALANCE_PAYMENT_DISABLE": ("failed", "BALANCE PAYMENT OFF"),
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": ("failed", "PAYER DAILY LIMIT"),
    "ACQ.TRADE_STATUS_ERROR": ("failed", "ORDER STATE WRONG"),
}
_TRADE_STATUS = {"WAIT_BUYER_PAY": "waiting", "TRADE_SUCCESS": "paid", "TRADE_FINISHED": "paid",
                 "TRADE_CLOSED": "closed"}


def yuan(amount: int) -> str:
    """Minor units (fen) as Alipay's decimal yuan string."""
    return f"{amount // 100}.{amount % 100:02d}"


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


def signed_response(body: str, method: str) -> tuple[str, str]:
    """The raw text of `<method>_response` (what the gateway signed) and the signature beside it."""
    key = method.replace(".", "_") + "_response"
    try:
        doc = json.loads(body)
        start = body.index(f'"{key}"')
        start = body.index(":", start) + 1
        while body[start] in " \t\r\n":
            start += 1
        _, end = json.JSONDecoder().raw_decode(body, start)
        return body[start:end], str(doc.get("sign", ""))
    except (ValueError, AttributeError) as exc:
        raise WalletError(f"malformed answer from the wallet gateway: {exc}") from None


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise WalletError("the merchant key is not an RSA key")
    return key


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise WalletError("the gateway key is not an RSA key")
    return key


class AlipayClient:
    """Alipay face-to-face payments: precreate (QR shown), pay (code scanned), query, close, cancel, refund."""

    name = "alipay"

    def __init__(self, gateway: str, app_id: str, private_key_pem: bytes, alipay_public_key_pem: bytes,
                 timeout: float = 10.0) -> None:
        self._gateway, self._app_id, self._timeout = gateway, app_id, timeout
        self._key = load_private_key(private_key_pem)
        self._alipay_key = load_public_key(alipay_public_key_pem)

    def _request(self, method: str, biz: dict[str, Any]) -> bytes:
        params = {
            "app_id": self._app_id, "method": method, "format": "JSON", "charset": "utf-8",
            "sign_type": "RSA2", "timestamp": datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S"),
            "version": "1.0", "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = rsa2_sign(self._key, sign_content(params))
        return urllib.parse.urlencode(params).encode("utf-8")

    def _post(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        data = self._request(method, biz)
        req = urllib.request.Request(self._gateway, data=data, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"})
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as answer:   # noqa: S310 - configured URL
                body = answer.read(1 << 20).decode("utf-8")
        except urllib.error.HTTPError as exc:
            raise WalletError(f"wallet gateway answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, UnicodeDecodeError) as exc:
            raise WalletError(f"wallet gateway unreachable: {exc}") from None
        raw, signature = signed_response(body, method)
        if not rsa2_verify(self._alipay_key, raw.encode("utf-8"), signature):
            raise WalletError(f"{method}: the answer's signature does not verify")
        result = json.loads(raw)
        if not isinstance(result, dict):
            raise WalletError(f"{method}: the answer is not an object")
        return result

    async def _call(self, method: str, biz: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self._post, method, biz)

    @staticmethod
    def _result(r: dict[str, Any], ok: WalletResult) -> WalletResult:
        code = str(r.get("code", ""))
        if code == "10000":
            return ok
        if code == "10003":                               # waiting for the payer to confirm in the app
            return WalletResult("waiting", trade_no=str(r.get("trade_no", "")))
        if code == "40004":
            state, text = _SUB_CODES.get(str(r.get("sub_code", "")), ("failed", "PAYMENT FAILED"))
            return WalletResult(state, text, trade_no=str(r.get("trade_no", "")))
        raise WalletError(f"wallet gateway code {code!r} ({r.get('sub_code', '')}): {r.get('msg', '')}")

    async def create_order(self, order_no: str, amount: int, subject: str) -> WalletResult:
        r = await self._call("alipay.trade.precreate",
                             {"out_trade_no": order_no, "total_amount": yuan(amount), "subject": subject})
        result = self._result(r, WalletResult("waiting", qr=str(r.get("qr_code", ""))))
        if result.state == "waiting" and not result.qr:
            raise WalletError("precreate answered without a qr_code")
        return result

    async def pay_by_code(self, order_no: str, amount: int, code: str, subject: str) -> WalletResult:
        r = await self._call("alipay.trade.pay", {"out_trade_no": order_no, "scene": "bar_code",
                                                  "auth_code": code, "total_amount": yuan(amount), "subject": subject})
        return self._result(r, WalletResult("paid", trade_no=str(r.get("trade_no", "")),
                                            payer=str(r.get("buyer_logon_id", ""))))

    async def query(self, order_no: str) -> WalletResult:
        r = await self._call("alipay.trade.query", {"out_trade_no": order_no})
        status = str(r.get("trade_status", ""))
        if r.get("code") == "10000" and status not in _TRADE_STATUS:
            raise WalletError(f"unknown trade_status {status!r}")
        ok = WalletResult(_TRADE_STATUS.get(status, "failed"), "ORDER CLOSED" if status == "TRADE_CLOSED" else "",
                          trade_no=str(r.get("trade_no", "")), payer=str(r.get("buyer_logon_id", "")))
        return self._result(r, ok)

    async def close(self, order_no: str) -> WalletResult:
        r = await self._call("alipay.trade.close", {"out_trade_no": order_no})
        return self._result(r, WalletResult("closed", "ORDER CLOSED"))

    async def cancel(self, order_no: str) -> WalletResult:
        r = await self._call("alipay.trade.cancel", {"out_trade_no": order_no})
        return self._result(r, WalletResult("closed", "PAYMENT CANCELLED"))

    async def refund(self, order_no: str, amount: int, request_no: str) -> WalletResult:
        r = await self._call("alipay.trade.refund", {"out_trade_no": order_no, "refund_amount": yuan(amount),
                                                     "out_request_no": request_no})
        return self._result(r, WalletResult("paid", trade_no=str(r.get("trade_no", ""))))


def classify_code(code: str) -> str:
    """Which wallet a scanned payment code belongs to: "alipay", "wechat", or "" (not a payment code)."""
    if code.isdigit():
        if 25 <= int(code[:2] or 0) <= 30 and 16 <= len(code) <= 24:
            return "alipay"
        if 10 <= int(code[:2] or 0) <= 15 and len(code) == 18:
            return "wechat"
    return ""
