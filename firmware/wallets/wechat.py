"""WeChat Pay merchant API v3 (微信支付 APIv3, direct merchant): code payment, Native orders, query, close,
reverse and refunds behind the same WalletProvider interface as the Alipay client.

Why our own signing on `cryptography` and not the PyPI package `wechatpayv3` (MIT, maintained, the Python SDK
WeChat's own pages point to): it sends with blocking `requests` (its async variant adds httpx and aiofiles);
its constructor downloads the platform certificates, so a terminal that boots offline could not even build its
wallet; the gateway address is a fixed private attribute (the simulator could only be reached by patching it);
it does not check an answer's timestamp window and reads the wall clock itself (no injected clock); it raises
bare `Exception`s, answers `(status, text)`, logs request bodies (the payer's payment code) at debug level, and
leaves binding every answer to its request to the caller. What it would give us is about fifteen lines of
signing, verifying and AES-GCM on `cryptography`, which the project already uses; so the wire protocol is written
here, as the Alipay client's is, and tested against WeChat Pay's published examples and its official SDKs' test
vectors (tests/test_wechat_vectors.py).

Requests carry `Authorization: WECHATPAY2-SHA256-RSA2048 mchid=…,nonce_str=…,signature=…,timestamp=…,
serial_no=…`, the signature SHA256withRSA by the merchant's API certificate key over
"METHOD\\nURL-path?query\\ntimestamp\\nnonce\\nbody\\n" (timestamp and nonce from the caller: the clock is
injected), and `Wechatpay-Serial` naming the key the terminal can verify answers with. An answer is believed only
when its `Wechatpay-Signature` verifies over "timestamp\\nnonce\\nbody\\n" with the platform certificate (or the
WeChat Pay public key, `PUB_KEY_ID_…`) named in `Wechatpay-Serial`, its timestamp is less than five minutes from
the terminal's clock, and its nonce has not been seen before (an answer replayed whole is refused). Platform
certificates come from `GET /v3/certificates`, decrypted (AEAD_AES_256_GCM) with the APIv3 key, checked
against the serial they claim and their validity, and the download answer itself verified with one of them;
they are downloaded when the first answer needs one and again when an answer names a serial not yet known
(rotation).

A signature proves who wrote an answer, not which request it answers: every business answer is then compared
with its request (out_trade_no, mchid, appid, amount.total as an integer number of fen, currency CNY,
out_refund_no and amount.refund), and one that does not match is no answer (WalletMismatch). WeChat's error
answers (`{"code": …, "message": …}`, non-2xx; the official SDKs do not verify them) never decide anything
final on their own: USERPAYING and SYSTEMERROR keep asking, and a decline (NOTENOUGH, AUTH_CODE_INVALID …) or a
refund refusal is confirmed by the query that names this order or this refund. A close or a reverse is
confirmed the same way: what the order query then says (CLOSED, REVOKED) decides. Amounts are integers in fen
throughout; no float is ever an amount.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import logging
import re
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.config import key_file
from firmware.errors import ConfigError
from firmware.wallets import keycheck
from firmware.wallets.alipay import (
    CHINA,
    WalletError,
    WalletGatewayError,
    WalletMismatch,
    WalletResult,
    _clean,
    rsa2_sign,
    rsa2_verify,
)

if TYPE_CHECKING:
    from firmware.config import WechatConfig
    from firmware.wallets.keycheck import CheckedKeys

log = logging.getLogger(__name__)

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
DEFAULT_GATEWAY = "https://api.mch.weixin.qq.com"
PLATFORM_MODES = ("certificates", "public_key")
PUBLIC_KEY_PREFIX = "PUB_KEY_ID_"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"  # WeChat's probes: a deliberately wrong signature a client must refuse
ANSWER_WINDOW = 300  # seconds: an answer stamped this far from the terminal's clock (or farther) is stale
CURRENCY = "CNY"
_MAX_BODY = 1 << 20
_NONCES_KEPT = 4096

# Error codes (both spellings WeChat has used: v2's SYSTEMERROR, v3's SYSTEM_ERROR).
_PAYING = frozenset({"USERPAYING"})
_UNCERTAIN = frozenset({"SYSTEMERROR", "SYSTEM_ERROR", "BANKERROR", "BANK_ERROR", "FREQUENCY_LIMITED"})
_NOT_FOUND = frozenset({"ORDERNOTEXIST", "ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS"})
_DECLINES = {
    "NOTENOUGH": "INSUFFICIENT BALANCE",
    "NOT_ENOUGH": "INSUFFICIENT BALANCE",
    "AUTH_CODE_INVALID": "PAYMENT CODE INVALID",
    "AUTH_CODE_ERROR": "PAYMENT CODE INVALID",
    "AUTHCODEEXPIRE": "PAYMENT CODE EXPIRED",
    "ORDERCLOSED": "ORDER CLOSED",
    "ORDER_CLOSED": "ORDER CLOSED",
    "ORDERREVERSED": "PAYMENT CANCELLED",
    "ORDERPAID": "ORDER ALREADY PAID",
    "BUYER_MISMATCH": "PAYER MISMATCH",
    "RULE_LIMIT": "PAYER LIMIT",
    "TRADE_ERROR": "PAYMENT REFUSED",
    "PAYER_ACCOUNT_ABNORMAL": "PAYER ACCOUNT BLOCKED",
}
_REFUND_FAILURES = {
    "NOT_ENOUGH": "MERCHANT BALANCE LOW",
    "NOTENOUGH": "MERCHANT BALANCE LOW",
    "USER_ACCOUNT_ABNORMAL": "PAYER ACCOUNT BLOCKED",
    "INVALID_REQUEST": "REFUND NOT ALLOWED",
    "PARAM_ERROR": "REFUND AMOUNT INVALID",
}
# Errors that say the terminal is set up wrong: never a payment's fate; logged with what to check.
_HINTS = {
    "SIGN_ERROR": "WeChat Pay did not verify the request signature: [wechat] private_key must be the merchant API"
    " certificate's key (apiclient_key.pem) and merchant_serial that certificate's serial number, and the"
    " terminal's clock must be right",
    "MCH_NOT_EXISTS": "WeChat Pay does not know [wechat] mchid",
    "APPID_MCHID_NOT_MATCH": "[wechat] appid is not bound to [wechat] mchid on the merchant platform",
    "NOAUTH": "the merchant has no permission for this API (code payment or Native payment not activated)",
    "NO_AUTH": "the merchant has no permission for this API (code payment or Native payment not activated)",
}
_PAID_STATES = frozenset({"SUCCESS", "REFUND"})  # REFUND: paid, then (partly) refunded
_OPEN_STATES = frozenset({"NOTPAY", "USERPAYING", "PAYERROR", "ACCEPT"})
_CLOSED_STATES = {"CLOSED": "ORDER CLOSED", "REVOKED": "PAYMENT CANCELLED"}
_BUSINESS_KEYS = frozenset({"out_trade_no", "code_url", "out_refund_no", "data"})
_AUTH_PARAM = re.compile(r'([a-z_]+)="([^"]*)"')
_HEX = re.compile(r"[0-9A-Fa-f]{1,64}")
_NONCE = re.compile(r"[0-9A-Za-z_-]{1,64}")
_IDENT = _NONCE  # transaction, refund and openid identifiers


# --- the wire format: pure functions -------------------------------------------------------------------------


def request_message(method: str, url: str, timestamp: int, nonce: str, body: str) -> bytes:
    """What a request's signature covers: method, URL path with query, timestamp, nonce, body, each line ended."""
    return f"{method}\n{url}\n{timestamp}\n{nonce}\n{body}\n".encode()


def answer_message(timestamp: str, nonce: str, body: str) -> bytes:
    """What an answer's (or a callback's) signature covers."""
    return f"{timestamp}\n{nonce}\n{body}\n".encode()


sign, verify = rsa2_sign, rsa2_verify  # SHA256withRSA (PKCS#1 v1.5), base64: as Alipay signs


def authorization(
    mchid: str, serial_no: str, key: rsa.RSAPrivateKey, method: str, url: str, body: str, timestamp: int, nonce: str
) -> str:
    """The request's Authorization header value."""
    signature = sign(key, request_message(method, url, timestamp, nonce, body))
    return (
        f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


def parse_authorization(header: str) -> dict[str, str] | None:
    """The parameters of an Authorization header of our schema (in any order), or None when it is not one."""
    schema, _, params = header.strip().partition(" ")
    if schema != SCHEMA:
        return None
    found = dict(_AUTH_PARAM.findall(params))
    wanted = ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
    return {k: found[k] for k in wanted} if all(k in found for k in wanted) else None


def encrypt_resource(apiv3_key: bytes, nonce: str, associated_data: str, plaintext: bytes) -> str:
    """AEAD_AES_256_GCM under the APIv3 key (how WeChat Pay sends certificates and callback resources), base64."""
    return base64.b64encode(AESGCM(apiv3_key).encrypt(nonce.encode(), plaintext, associated_data.encode())).decode()


def decrypt_resource(apiv3_key: bytes, nonce: str, associated_data: str, ciphertext: str) -> bytes:
    """The plaintext of an AEAD_AES_256_GCM resource; WalletError when it does not decrypt (another key,
    another nonce or associated data, a changed ciphertext)."""
    try:
        return AESGCM(apiv3_key).decrypt(
            nonce.encode(), base64.b64decode(ciphertext, validate=True), associated_data.encode()
        )
    except (InvalidTag, ValueError, binascii.Error):
        raise WalletError("a WeChat Pay resource does not decrypt with [wechat] apiv3_key") from None


def mask_openid(openid: Any) -> str:
    """A payer's openid as receipts may show it: its first and last four characters."""
    text = _ident(openid)
    return f"{text[:4]}****{text[-4:]}" if len(text) > 8 else "****" if text else ""


def expire_time(at: datetime) -> str:
    """RFC 3339 in Beijing time, as `time_expire` wants it: 2026-03-01T12:00:00+08:00."""
    return at.astimezone(CHINA).isoformat(timespec="seconds")


def serial_value(serial: str) -> int | None:
    """A certificate serial number written in hex (any case), or None when it is not one."""
    return int(serial, 16) if _HEX.fullmatch(serial) else None


def load_apiv3_key(data: bytes) -> bytes:
    """The 32-character APIv3 key (the AES-256 key of every encrypted resource)."""
    key = data.lstrip(b"\xef\xbb\xbf").strip()
    if len(key) != 32 or not all(0x21 <= b <= 0x7E for b in key):
        raise WalletError("[wechat] apiv3_key must hold the merchant's 32-character APIv3 key")
    return key


def _private_key(data: bytes, checked: CheckedKeys | None = None) -> rsa.RSAPrivateKey:
    try:
        key = keycheck.load_private_key(data.lstrip(b"\xef\xbb\xbf").strip(), checked=checked)
    except TypeError:
        raise WalletError("[wechat] private_key is encrypted; give it without a password") from None
    except (ValueError, UnsupportedAlgorithm):
        raise WalletError("[wechat] private_key is not a PEM private key (apiclient_key.pem)") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise WalletError("[wechat] private_key is not an RSA key")
    return key


def _public_key(data: bytes) -> rsa.RSAPublicKey:
    try:
        key = serialization.load_pem_public_key(data.lstrip(b"\xef\xbb\xbf").strip())
    except (ValueError, UnsupportedAlgorithm):
        raise WalletError("[wechat] public_key is not a PEM public key (pub_key.pem)") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise WalletError("[wechat] public_key is not an RSA key")
    return key


def _json_object(what: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise WalletError(f"{what}: malformed answer from WeChat Pay") from None
    if not isinstance(value, dict):
        raise WalletError(f"{what}: the answer is not a JSON object")
    return value


def _ident(value: Any) -> str:
    """An identifier WeChat Pay gave (transaction_id, refund_id, openid), or "" when it is not one."""
    return value if isinstance(value, str) and _IDENT.fullmatch(value) else ""


def _fen(value: Any) -> int | None:
    """An amount as WeChat writes it: a JSON integer of fen (never a bool, a float or a string)."""
    return value if type(value) is int and value >= 0 else None


# --- the client ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Raw:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class _Reply:
    """A verified answer: a business object (2xx), or an error code and message (non-2xx; signed or not)."""

    status: int
    data: dict[str, Any] = field(default_factory=dict)
    code: str = ""
    message: str = ""
    signed: bool = True


def _utc_now() -> datetime:
    return datetime.now(UTC)


class WechatPayClient:
    """WeChat Pay APIv3 for one direct merchant: codepay, native, query, close, reverse, refund, refund query."""

    name = "wechat"

    def __init__(
        self,
        gateway: str,
        mchid: str,
        appid: str,
        private_key: bytes,
        merchant_serial: str,
        apiv3_key: bytes,
        *,
        platform: str = "certificates",
        public_key: bytes = b"",
        public_key_id: str = "",
        notify_url: str = "",
        device_id: str = "",
        timeout: float = 10.0,
        clock: Callable[[], datetime] = _utc_now,
        refund_waits: tuple[float, ...] = (1.0, 2.0, 4.0),
        checked: CheckedKeys | None = None,
    ) -> None:
        if platform not in PLATFORM_MODES:
            raise WalletError(f'[wechat] platform must be "certificates" or "public_key", not {platform!r}')
        if serial_value(merchant_serial) is None:
            raise WalletError("[wechat] merchant_serial must be the merchant API certificate's serial number (hex)")
        self._gateway = gateway.rstrip("/")
        self._mchid, self._appid, self._serial = mchid, appid, merchant_serial.upper()
        self._key = _private_key(private_key, checked)
        self._apiv3_key = load_apiv3_key(apiv3_key)
        self._platform = platform
        self._public_key: rsa.RSAPublicKey | None = None
        self._public_key_id = public_key_id
        if platform == "public_key":
            if not public_key_id.startswith(PUBLIC_KEY_PREFIX):
                raise WalletError(
                    f"[wechat] public_key_id must be the WeChat Pay public key's id ({PUBLIC_KEY_PREFIX}…)"
                )
            self._public_key = _public_key(public_key)
            if self._public_key.public_numbers() == self._key.public_key().public_numbers():
                raise WalletError("[wechat] public_key is the merchant's own key; it must be WeChat Pay's public key")
        self._notify_url, self._device_id, self._timeout = notify_url, device_id, timeout
        self._clock, self._refund_waits = clock, refund_waits
        self._lock = threading.Lock()  # certificates and nonces: calls run in worker threads
        self._download = threading.Lock()  # one certificate download at a time
        self._certs: dict[int, x509.Certificate] = {}
        self._asked: dict[int, datetime] = {}  # unknown serials a download was made for, and when
        self._nonces: dict[str, int] = {}  # answer nonces seen in the window, with their timestamps

    @classmethod
    def from_config(
        cls, cfg: WechatConfig, clock: Callable[[], datetime] = _utc_now, checked: CheckedKeys | None = None
    ) -> WechatPayClient:
        """The client a [wechat] section describes; ConfigError naming the key when a file cannot be used."""

        read = functools.partial(key_file, "wechat", cfg)

        try:
            return cls(
                cfg.gateway,
                cfg.mchid,
                cfg.appid,
                read("private_key"),
                cfg.merchant_serial,
                read("apiv3_key"),
                platform=cfg.platform,
                public_key=read("public_key") if cfg.platform == "public_key" else b"",
                public_key_id=cfg.public_key_id,
                notify_url=cfg.notify_url,
                device_id=cfg.device_id,
                timeout=cfg.timeout,
                clock=clock,
                checked=checked,
            )
        except WalletError as exc:
            raise ConfigError(str(exc)) from None

    # --- transport and verification (worker threads) --------------------------------------------------

    def _accept_serial(self) -> str:
        """The key the terminal verifies answers with, for WeChat to sign with: the public key's id, or the
        newest platform certificate's serial ("" before the first download)."""
        if self._platform == "public_key":
            return self._public_key_id
        with self._lock:
            newest = max(self._certs.values(), key=lambda c: c.not_valid_before_utc, default=None)
        return f"{newest.serial_number:X}" if newest is not None else ""

    def _exchange(self, method: str, path: str, body: str) -> _Raw:
        timestamp = int(self._clock().timestamp())
        nonce = secrets.token_hex(16).upper()
        headers = {
            "Authorization": authorization(self._mchid, self._serial, self._key, method, path, body, timestamp, nonce),
            "Accept": "application/json",
            "User-Agent": "countertop-wechatpay/1",
        }
        serial = self._accept_serial()
        if serial:
            headers["Wechatpay-Serial"] = serial
        if body:
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(
            self._gateway + path, data=body.encode() if method == "POST" else None, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as answer:  # noqa: S310 - configured URL
                return _Raw(answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read(_MAX_BODY))
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read(_MAX_BODY)
            except OSError:
                data = b""
            return _Raw(exc.code, {k.lower(): v for k, v in (exc.headers or {}).items()}, data)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise WalletError(f"WeChat Pay unreachable: {exc}") from None

    def _signed(self, what: str, headers: dict[str, str], body: str, extra: dict[int, x509.Certificate]) -> bool:
        """True when the answer carries a good WeChat Pay signature, False when it carries none; WalletError
        when it carries a bad one (another key, a stale timestamp, an unknown serial, a replayed nonce)."""
        parts = [headers.get(f"wechatpay-{n}", "").strip() for n in ("signature", "timestamp", "nonce", "serial")]
        if not any(parts):
            return False
        signature, stamp, nonce, serial = parts
        if not all(parts):
            raise WalletError(f"{what}: the answer's signature headers are incomplete")
        if signature.startswith(SIGNTEST_PREFIX):
            raise WalletError(f"{what}: a WeChat Pay signature probe ({SIGNTEST_PREFIX}), refused as it must be")
        if not stamp.isdecimal() or len(stamp) > 12 or not _NONCE.fullmatch(nonce):
            raise WalletError(f"{what}: malformed signature headers")
        now = int(self._clock().timestamp())
        if abs(now - int(stamp)) >= ANSWER_WINDOW:
            raise WalletError(f"{what}: the answer is stamped {int(stamp) - now:+d} s from the terminal's clock")
        key = self._verifying_key(what, serial, extra)
        if not verify(key, answer_message(stamp, nonce, body), signature):
            raise WalletError(f"{what}: the answer's signature does not verify")
        with self._lock:
            if nonce in self._nonces:
                raise WalletMismatch(f"{what}: an answer seen before (nonce {nonce[:8]}…), replayed")
            for old in [n for n, t in self._nonces.items() if t < now - 2 * ANSWER_WINDOW]:
                del self._nonces[old]
            if len(self._nonces) >= _NONCES_KEPT:
                del self._nonces[next(iter(self._nonces))]
            self._nonces[nonce] = int(stamp)
        return True

    def _verifying_key(self, what: str, serial: str, extra: dict[int, x509.Certificate]) -> rsa.RSAPublicKey:
        if self._platform == "public_key":
            if serial != self._public_key_id:
                raise WalletError(f"{what}: the answer is signed by {_clean(serial, 64)}, not {self._public_key_id}")
            assert self._public_key is not None
            return self._public_key
        number = None if serial.startswith(PUBLIC_KEY_PREFIX) else serial_value(serial)
        if number is None:
            raise WalletError(f"{what}: the answer names no platform certificate ({_clean(serial, 64)})")
        cert = extra.get(number) or self._cert(number)
        if cert is None and not extra:  # a serial not seen yet: WeChat may have rotated its certificate
            self._refresh(number)
            cert = self._cert(number)
        if cert is None:
            raise WalletError(f"{what}: no platform certificate {serial.upper()} (downloaded: {self._known()})")
        key = cert.public_key()
        assert isinstance(key, rsa.RSAPublicKey)  # only RSA certificates are kept
        return key

    def _cert(self, number: int) -> x509.Certificate | None:
        with self._lock:
            return self._certs.get(number)

    def _known(self) -> str:
        with self._lock:
            return ", ".join(f"{n:X}" for n in self._certs) or "none"

    def _refresh(self, wanted: int) -> None:
        """Download the platform certificates (GET /v3/certificates): at most once a minute for a serial that a
        download did not bring (a failed download is tried again with the next answer)."""
        with self._download:
            now = self._clock()
            with self._lock:
                if wanted in self._certs:
                    return
                last = self._asked.get(wanted)
                if last is not None and abs((now - last).total_seconds()) < 60:
                    return
            what = "certificate download"
            raw = self._exchange("GET", "/v3/certificates", "")
            text = self._text(what, raw)
            if not 200 <= raw.status < 300:
                code = _json_object(what, text).get("code", "") if text.strip().startswith("{") else ""
                raise self._gateway_error(what, raw.status, str(code), "", signed=False)
            certs = self._decrypt_certificates(what, _json_object(what, text), now)
            if not self._signed(what, raw.headers, text, certs):
                raise WalletError(f"{what}: the answer is unsigned")
            with self._lock:
                old = set(self._certs)
                self._certs = certs
                if len(self._asked) > 64:
                    self._asked.clear()
                self._asked[wanted] = now  # downloaded: not again for this serial within the minute
            log.info(
                "WeChat Pay platform certificates: %s (were %s)",
                ", ".join(f"{n:X}" for n in certs),
                ", ".join(f"{n:X}" for n in old) or "none",
            )

    def _decrypt_certificates(self, what: str, answer: dict[str, Any], now: datetime) -> dict[int, x509.Certificate]:
        items = answer.get("data")
        if not isinstance(items, list):
            raise WalletError(f"{what}: no certificate list")
        certs: dict[int, x509.Certificate] = {}
        for item in items[:16]:
            enc = item.get("encrypt_certificate") if isinstance(item, dict) else None
            serial = item.get("serial_no") if isinstance(item, dict) else None
            if not isinstance(enc, dict) or not isinstance(serial, str) or serial_value(serial) is None:
                raise WalletError(f"{what}: a malformed certificate entry")
            if enc.get("algorithm") != "AEAD_AES_256_GCM":
                raise WalletError(f"{what}: certificate {serial} uses {_clean(enc.get('algorithm'), 40)!r}")
            nonce, associated, ciphertext = (enc.get(k) for k in ("nonce", "associated_data", "ciphertext"))
            if not (isinstance(nonce, str) and isinstance(associated, str) and isinstance(ciphertext, str)):
                raise WalletError(f"{what}: a malformed certificate entry")
            pem = decrypt_resource(self._apiv3_key, nonce, associated, ciphertext)
            try:
                cert = x509.load_pem_x509_certificate(pem)
            except ValueError:
                raise WalletError(f"{what}: certificate {serial} is not a certificate") from None
            if cert.serial_number != serial_value(serial):
                raise WalletError(f"{what}: certificate {serial} holds serial {cert.serial_number:X}")
            if not isinstance(cert.public_key(), rsa.RSAPublicKey):
                raise WalletError(f"{what}: certificate {serial} is not an RSA certificate")
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                log.warning("WeChat Pay platform certificate %s is not valid now; not used", serial)
                continue
            certs[cert.serial_number] = cert
        if not certs:
            raise WalletError(f"{what}: no platform certificate valid now")
        return certs

    @staticmethod
    def _text(what: str, raw: _Raw) -> str:
        try:
            return raw.body.decode("utf-8")
        except UnicodeDecodeError:
            raise WalletError(f"{what}: the answer is not UTF-8") from None

    def _gateway_error(self, what: str, status: int, code: str, message: str, signed: bool) -> WalletGatewayError:
        hint = _HINTS.get(code, "")
        text = (
            f"{what}: WeChat Pay answered HTTP {status} {code or '?'} {message}".rstrip()
            + ("" if signed else " (unsigned, not trusted)")
            + (f" — {hint}" if hint else "")
        )
        log.error(
            "wechat %s: HTTP %d code=%s message=%s%s", what, status, code, message, "" if signed else " (unsigned)"
        )
        return WalletGatewayError(text, code)

    def _round_trip(self, what: str, method: str, path: str, payload: dict[str, Any] | None) -> _Reply:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")) if payload is not None else ""
        raw = self._exchange(method, path, body)
        text = self._text(what, raw)
        if 200 <= raw.status < 300:
            if not self._signed(what, raw.headers, text, {}):
                raise WalletError(f"{what}: an unsigned answer is not believed")
            data = _json_object(what, text) if text.strip() else {}
            code = data.get("code")
            if isinstance(code, str) and code and not _BUSINESS_KEYS & data.keys():  # 202 USERPAYING and the like
                return _Reply(raw.status, data, _clean(code, 40), _clean(data.get("message"), 120), signed=True)
            return _Reply(raw.status, data)
        signed = self._signed(what, raw.headers, text, {})
        try:
            data = _json_object(what, text)
        except WalletError:
            data = {}
        code, message = _clean(data.get("code"), 40), _clean(data.get("message"), 120)
        if not code:
            raise WalletError(f"{what}: WeChat Pay answered HTTP {raw.status}")
        if code in _HINTS or raw.status == 401:
            raise self._gateway_error(what, raw.status, code, message, signed)
        log.info("wechat %s: HTTP %d %s %s%s", what, raw.status, code, message, "" if signed else " (unsigned)")
        return _Reply(raw.status, data, code, message, signed)

    async def _call(self, what: str, method: str, path: str, payload: dict[str, Any] | None = None) -> _Reply:
        try:
            return await asyncio.to_thread(self._round_trip, what, method, path, payload)
        except WalletError:
            raise
        except Exception as exc:  # whatever a hostile answer makes a parser raise
            raise WalletError(f"{what}: unusable answer ({type(exc).__name__})") from None

    # --- binding answers to requests ------------------------------------------------------------------

    def _same_order(self, what: str, d: dict[str, Any], order_no: str, ids_required: bool = False) -> None:
        got = d.get("out_trade_no")
        if got in (None, ""):
            raise WalletMismatch(f"{what}: the answer names no order (asked about {order_no})")
        if got != order_no:
            raise WalletMismatch(f"{what}: the answer is for order {_clean(got, 64)}, not {order_no}")
        for name, mine in (("mchid", self._mchid), ("appid", self._appid)):
            value = d.get(name)
            if value in (None, "") and not ids_required:
                continue
            if value != mine:
                raise WalletMismatch(f"{what}: the answer is for {name} {_clean(value, 40)}, not {mine}")

    @staticmethod
    def _same_amount(what: str, d: dict[str, Any], name: str, amount: int, required: bool = True) -> None:
        money = d.get("amount")
        if money is None and not required:
            return
        if not isinstance(money, dict):
            raise WalletMismatch(f"{what}: the answer carries no amount")
        got = _fen(money.get(name))
        if got is None:
            raise WalletMismatch(f"{what}: the answer's amount.{name} is not a whole number of fen")
        if got != amount:
            raise WalletMismatch(f"{what}: the answer says amount.{name} {got}, the request {amount}")
        currency = money.get("currency")
        if currency != CURRENCY and (required or currency is not None):
            raise WalletMismatch(f"{what}: the answer's currency is {_clean(currency, 8)!r}, not {CURRENCY}")

    def _paid(self, what: str, d: dict[str, Any], order_no: str, amount: int) -> WalletResult:
        self._same_order(what, d, order_no, ids_required=True)
        self._same_amount(what, d, "total", amount)
        transaction = _ident(d.get("transaction_id"))
        if not transaction:
            raise WalletMismatch(f"{what}: a payment without a transaction id")
        payer = d.get("payer")
        openid = payer.get("openid") if isinstance(payer, dict) else ""
        return WalletResult("paid", trade_no=transaction, payer=mask_openid(openid))

    def _order_path(self, order_no: str, tail: str = "") -> str:
        return f"/v3/pay/transactions/out-trade-no/{urllib.parse.quote(order_no, safe='')}{tail}"

    async def _query(self, order_no: str, amount: int | None) -> tuple[WalletResult, str]:
        """The order as WeChat Pay has it: (result, trade_state); trade_state "" when it does not exist. With
        amount None a paid order is reported as such (state "paid") without its amount being checked."""
        what = "query"
        r = await self._call(what, "GET", self._order_path(order_no, f"?mchid={urllib.parse.quote(self._mchid)}"))
        if r.code:
            if r.code in _NOT_FOUND:
                if not r.signed:
                    raise self._gateway_error(what, r.status, r.code, r.message, signed=False)
                return WalletResult("not_found", "ORDER NOT FOUND"), ""
            raise WalletError(f"{what}: {r.code} {r.message}")
        d = r.data
        state = d.get("trade_state")
        if not isinstance(state, str) or not (
            state in _PAID_STATES or state in _OPEN_STATES or state in _CLOSED_STATES
        ):
            raise WalletError(f"{what}: unknown trade_state {_clean(state, 40)!r}")
        if state in _CLOSED_STATES:  # holds no money of this sale: bound by its order number alone
            self._same_order(what, d, order_no)
            return WalletResult("closed", _CLOSED_STATES[state], trade_no=_ident(d.get("transaction_id"))), state
        if state in _PAID_STATES:
            if amount is None:
                self._same_order(what, d, order_no)
                return WalletResult("paid", trade_no=_ident(d.get("transaction_id"))), state
            return self._paid(what, d, order_no, amount), state
        self._same_order(what, d, order_no)
        if amount is not None:
            self._same_amount(what, d, "total", amount, required=False)
        return WalletResult("waiting"), state

    # --- WalletProvider ---------------------------------------------------------------------------------

    async def create_order(
        self, order_no: str, amount: int, subject: str, expires: datetime | None = None
    ) -> WalletResult:
        """A Native order: the answer's code_url is the code to show; payable until `expires` (time_expire).
        Its answer names no order (only `code_url`): it is believed signed, fresh and never seen before."""
        what = "native"
        payload: dict[str, Any] = {
            "appid": self._appid,
            "mchid": self._mchid,
            "description": subject[:127],
            "out_trade_no": order_no,
            "notify_url": self._notify_url,
            "amount": {"total": amount, "currency": CURRENCY},
        }
        if expires is not None:
            payload["time_expire"] = expire_time(expires)
        r = await self._call(what, "POST", "/v3/pay/transactions/native", payload)
        if not r.code:
            url = r.data.get("code_url")
            if not isinstance(url, str) or not url.startswith("weixin://") or len(url) > 512 or _clean(url) != url:
                raise WalletError(f"{what}: the answer carries no usable code_url")
            return WalletResult("waiting", qr=url)
        if r.code in _UNCERTAIN or r.status >= 500 or r.code in ("ORDERPAID", "OUT_TRADE_NO_USED"):
            raise WalletError(f"{what}: {r.code} {r.message}")
        if not r.signed:
            raise self._gateway_error(what, r.status, r.code, r.message, signed=False)
        return WalletResult("failed", "ORDER NOT CREATED")

    async def pay_by_code(self, order_no: str, amount: int, code: str, subject: str) -> WalletResult:
        """Charge the payer's payment code. USERPAYING (the payer must enter a password) and SYSTEMERROR answer
        `waiting`: the desk asks again and reverses when it gives up. A decline is believed only when the order
        query confirms that this order did not get paid."""
        what = "codepay"
        payload: dict[str, Any] = {
            "appid": self._appid,
            "mchid": self._mchid,
            "description": subject[:127],
            "out_trade_no": order_no,
            "payer": {"auth_code": code},
            "amount": {"total": amount, "currency": CURRENCY},
        }
        if self._device_id:
            payload["scene_info"] = {"device_id": self._device_id}
        r = await self._call(what, "POST", "/v3/pay/transactions/codepay", payload)
        if not r.code:
            d = r.data
            self._same_order(what, d, order_no)
            state = d.get("trade_state")
            if state == "SUCCESS":
                return self._paid(what, d, order_no, amount)
            if state in ("USERPAYING", "NOTPAY", "ACCEPT"):
                self._same_amount(what, d, "total", amount, required=False)
                return WalletResult("waiting")
            return await self._confirm_decline(order_no, amount, "PAYMENT FAILED")
        if r.code in _PAYING:
            return WalletResult("waiting")
        if r.code in _UNCERTAIN or r.status >= 500:
            return WalletResult("waiting", "CHECKING PAYMENT")
        return await self._confirm_decline(order_no, amount, _DECLINES.get(r.code, "PAYMENT FAILED"))

    async def _confirm_decline(self, order_no: str, amount: int, reason: str) -> WalletResult:
        """What a decline is worth: the order query, which names the order, decides."""
        result, state = await self._query(order_no, amount)
        if result.state in ("paid", "not_found", "closed") or state == "PAYERROR":
            return result if result.state == "paid" else WalletResult("failed", reason)
        return result  # still open: the payer may yet pay; the desk asks, then reverses

    async def query(self, order_no: str, amount: int) -> WalletResult:
        """paid (SUCCESS, REFUND), waiting (NOTPAY, USERPAYING, PAYERROR: reverse or close it), closed (CLOSED,
        REVOKED) or not_found."""
        result, _ = await self._query(order_no, amount)
        return result

    async def close(self, order_no: str) -> WalletResult:
        """Close a Native order: closed once the order query says CLOSED, refused when it is paid (ask what it
        is), retry while it is still open, not_found when WeChat Pay never had it."""
        r = await self._call("close", "POST", self._order_path(order_no, "/close"), {"mchid": self._mchid})
        if r.code and (r.code in _UNCERTAIN or r.status >= 500):
            return WalletResult("retry")
        result, state = await self._query(order_no, None)
        if result.state == "closed":
            return WalletResult("closed", "ORDER CLOSED", trade_no=result.trade_no)
        if result.state == "paid":
            return WalletResult("refused", "ORDERPAID")
        return result if result.state == "not_found" else WalletResult("retry")

    async def cancel(self, order_no: str, at: datetime | None = None) -> WalletResult:
        """Reverse a code payment whatever became of it (unpaid: closed; paid: refunded to the payer), until
        the order query says REVOKED or CLOSED: closed, or retry."""
        before, state_before = await self._query(order_no, None)
        if before.state == "closed":
            return WalletResult("closed", "PAYMENT CANCELLED", trade_no=before.trade_no)
        what = "reverse"
        r = await self._call(
            what, "POST", self._order_path(order_no, "/reverse"), {"appid": self._appid, "mchid": self._mchid}
        )
        if not r.code and r.data:
            self._same_order(what, r.data, order_no)
        elif r.code in _PAYING or r.code in _UNCERTAIN or r.status >= 500:
            return WalletResult("retry")
        after, _ = await self._query(order_no, None)
        if after.state == "closed":
            reason = "REFUNDED TO PAYER" if state_before in _PAID_STATES else "PAYMENT CANCELLED"
            return WalletResult("closed", reason, trade_no=after.trade_no)
        if after.state == "not_found":  # WeChat knows no such order: the desk decides when that is final
            return WalletResult("not_found")
        return WalletResult("retry")

    async def refund(
        self,
        order_no: str,
        amount: int,
        request_no: str,
        refunded_before: int = 0,
        total: int | None = None,
        at: datetime | None = None,
    ) -> WalletResult:
        """Refund `amount` of an order under `request_no` (out_refund_no: a resend refunds once). WeChat wants
        the order's total too: pass it, or it is read from the order query. refunded when WeChat says SUCCESS
        for this refund (asked again while PROCESSING), failed when it refuses it (confirmed: no refund under
        this number exists), WalletError while its fate is open (the desk resends it later)."""
        what = "refund"
        if total is None:
            known = await self._order_total(order_no)
            if isinstance(known, WalletResult):
                return known
            total = known
        payload = {
            "out_trade_no": order_no,
            "out_refund_no": request_no,
            "amount": {"refund": amount, "total": total, "currency": CURRENCY},
        }
        r = await self._call(what, "POST", "/v3/refund/domestic/refunds", payload)
        if r.code:
            if r.code in _UNCERTAIN or r.status >= 500:
                raise WalletError(f"{what}: {r.code} {r.message}; resent later")
            asked = await self.refund_query(order_no, amount, request_no)
            if asked.state == "not_found":
                return WalletResult("failed", _REFUND_FAILURES.get(r.code, "REFUND REFUSED"))
            return asked
        result = self._refund_state(what, r.data, order_no, amount, request_no, total)
        for wait in self._refund_waits:
            if result is not None:
                return result
            await asyncio.sleep(wait)
            r = await self._call("refund query", "GET", self._refund_path(request_no))
            result = self._refund_answer("refund query", r, order_no, amount, request_no)
        if result is None:
            raise WalletError(f"{what}: refund {request_no} still processing; asked again later")
        return result

    async def _order_total(self, order_no: str) -> int | WalletResult:
        """The paid order's total (fen) from the order query, or why it cannot be refunded."""
        what = "query"
        r = await self._call(what, "GET", self._order_path(order_no, f"?mchid={urllib.parse.quote(self._mchid)}"))
        if r.code:
            if r.code in _NOT_FOUND and r.signed:
                return WalletResult("failed", "ORDER NOT FOUND")
            raise WalletError(f"{what}: {r.code} {r.message}")
        self._same_order(what, r.data, order_no)
        if r.data.get("trade_state") not in _PAID_STATES:
            return WalletResult("failed", "ORDER NOT PAID")
        money = r.data.get("amount")
        total = _fen(money.get("total")) if isinstance(money, dict) else None
        if not total:
            raise WalletMismatch(f"{what}: the paid order carries no amount.total")
        return total

    def _refund_path(self, request_no: str) -> str:
        return f"/v3/refund/domestic/refunds/{urllib.parse.quote(request_no, safe='')}"

    def _refund_state(
        self, what: str, d: dict[str, Any], order_no: str, amount: int, request_no: str, total: int | None
    ) -> WalletResult | None:
        """A refund object bound to this refund: refunded, failed, or None while PROCESSING."""
        got = d.get("out_refund_no")
        if got != request_no:
            raise WalletMismatch(f"{what}: the answer is for refund {_clean(got, 64)}, not {request_no}")
        self._same_order(what, d, order_no)
        self._same_amount(what, d, "refund", amount)
        if total is not None:
            self._same_amount(what, d, "total", total)
        status = d.get("status")
        if status == "SUCCESS":
            refund_id = _ident(d.get("refund_id"))
            if not refund_id:
                raise WalletMismatch(f"{what}: a refund without a refund id")
            return WalletResult("refunded", trade_no=refund_id)
        if status == "PROCESSING":
            return None
        if status == "CLOSED":
            return WalletResult("failed", "REFUND CLOSED")
        if status == "ABNORMAL":  # the payer's card account is closed: the merchant must act on the platform
            log.error(
                "wechat refund %s of order %s is ABNORMAL: handle it on the merchant platform", request_no, order_no
            )
            return WalletResult("failed", "REFUND ABNORMAL")
        raise WalletError(f"{what}: unknown refund status {_clean(status, 40)!r}")

    def _refund_answer(self, what: str, r: _Reply, order_no: str, amount: int, request_no: str) -> WalletResult | None:
        if r.code:
            if r.code in _NOT_FOUND:
                if not r.signed:
                    raise self._gateway_error(what, r.status, r.code, r.message, signed=False)
                return WalletResult("not_found", "REFUND NOT FOUND")
            raise WalletError(f"{what}: {r.code} {r.message}")
        return self._refund_state(what, r.data, order_no, amount, request_no, None)

    async def refund_query(self, order_no: str, amount: int, request_no: str) -> WalletResult:
        """The refund under `request_no`: refunded, failed, not_found; WalletError while it is processing."""
        what = "refund query"
        result = self._refund_answer(
            what, await self._call(what, "GET", self._refund_path(request_no)), order_no, amount, request_no
        )
        if result is None:
            raise WalletError(f"{what}: refund {request_no} still processing")
        return result
