"""UnionPay QR (银联二维码 / 云闪付) over UnionPay's online open-platform API (全渠道 "ACP", version 5.1.0) for a
merchant or an acquirer's sub-merchant: a scanned customer code (qrNo, 19 digits starting 62), a shown
merchant code (申请消费二维码), query, reversal (冲正), cancellation (消费撤销) and refunds (退货), behind the same
WalletProvider interface as the Alipay and WeChat Pay clients.

The wire protocol as UnionPay's published ACP SDKs implement it: a request is an HTTP form POST (to
`/gateway/api/backTransReq.do`, queries to `/gateway/api/queryTrans.do`) of flat fields; `signMethod=01`
signs it with the merchant's signing certificate (the .pfx UnionPay issues): the fields except `signature`,
sorted by name and joined as `k=v&k=v`, are hashed with SHA-256, and the lower-case hex of that digest is signed
SHA256withRSA (PKCS#1 v1.5), base64, into `signature`; `certId` is the signing certificate's serial number in
decimal. An answer is `k=v&…` (values not URL-encoded; a value may be `{…}` or `[…]` holding `&` and `=`), signed
the same way by UnionPay, with the certificate that signed it in `signPubKeyCert`: it is believed only when
that certificate was issued by the configured intermediate (itself issued by the configured root), is valid
now, names UnionPay in its subject (CN `…@…@中国银联股份有限公司@…`; the test environment's `00040000:SIGN`),
and the signature verifies (tested against two answers UnionPay's 5.1.0 SDK sample ships:
tests/unionpay_vectors.json).

A signature proves who wrote an answer, not which request it answers: every answer is then compared with its
request (merId, orderId, txnTime, txnAmt in fen, currencyCode 156, txnType), and one that does not match is no
answer (WalletMismatch). A consume's own answer never decides a payment: respCode 00 only means "accepted" for
a QR consume, and 03/04/05 mean "not known yet"; the transaction query (`origRespCode`) decides, and a query
that finds nothing (34) is "not found" which the desk treats as final only after a while. Amounts are integers
in fen; no float is ever an amount.

UnionPay's query needs the original request's `txnTime`. The terminal's order number carries it: the wallet
desk writes order numbers as terminal id + yymmddHHMMSS + 6 hex digits (see WalletDesk._begin), the time in
the client's `order_zone` (Beijing time, whatever zone the terminal's clock runs in), so the client reads it
back from there. A refund's and a
cancellation's txnTime is the time the wallet desk journaled them (passed as `at`), so a resend after a restart
is the same request (UnionPay says duplicate, 12) and its query, under that same txnTime, finds it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from firmware.config import key_file
from firmware.errors import ConfigError
from firmware.wallets.alipay import CHINA, WalletError, WalletMismatch, WalletResult, _clean

if TYPE_CHECKING:
    from firmware.config import UnionPayConfig

log = logging.getLogger(__name__)

VERSION = "5.1.0"
SIGN_METHOD = "01"  # RSA with the signing certificate
CURRENCY = "156"  # CNY, ISO 4217 numeric
BACK_PATH = "/gateway/api/backTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
UNIONPAY_CN = "中国银联股份有限公司"  # the signing certificate's owner, in production
TEST_CN = "00040000:SIGN"  # ... and in UnionPay's test environment
TIME_FORMAT = "%Y%m%d%H%M%S"
CODE_PATTERN = re.compile(r"62\d{17}")  # a UnionPay payment code (C2B 付款码): 19 digits starting 62

# What each request is (txnType, txnSubType).
CONSUME_SHOWN = ("01", "07")  # 申请消费二维码: a code for the payer to scan
CONSUME_SCANNED = ("01", "06")  # 二维码消费: the payer's code, scanned
QUERY = ("00", "00")
REFUND = ("04", "00")
CANCEL = ("31", "00")  # 消费撤销: a paid consume, the same day
REVERSAL = ("99", "01")  # 冲正: a consume whose fate is unknown

_PENDING = frozenset({"03", "04", "05"})  # timeout, state unknown, accepted: ask the query
_NOT_FOUND = "34"
_DUPLICATE = "12"
_DECLINES = {
    "01": "PAYMENT FAILED",
    "30": "PAYMENT REFUSED",
    "33": "AMOUNT OVER LIMIT",
    "38": "PAYMENT REFUSED",
    "51": "INSUFFICIENT BALANCE",
    "60": "PAYMENT REFUSED",
    "61": "PAYMENT CODE INVALID",
}
_HINTS = {
    "10": "UnionPay could not read the request (message format)",
    "11": "UnionPay did not verify the request signature: [unionpay] sign_cert must be the merchant's signing"
    " certificate (.pfx or PEM key and certificate) registered for [unionpay] mer_id",
    "13": "a field UnionPay requires is missing",
    "31": "UnionPay says the merchant's state is wrong ([unionpay] mer_id not active)",
    "32": "the merchant has no permission for UnionPay QR (二维码) payments",
}
_DIGITS_ONLY = re.compile(r"\d{1,40}")
_ORDER_ID = re.compile(r"[0-9A-Za-z]{8,40}")
_MAX_BODY = 1 << 20


# --- the wire format: pure functions -------------------------------------------------------------------------


def sign_content(fields: dict[str, str]) -> str:
    """What a signature covers: every field but `signature`, sorted by name, `k=v` joined by `&`."""
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k != "signature")


def sign(key: rsa.RSAPrivateKey, fields: dict[str, str]) -> str:
    """signMethod 01: SHA256withRSA over the lower-case hex SHA-256 of the sign content, base64."""
    digest = hashlib.sha256(sign_content(fields).encode()).hexdigest().encode()
    return base64.b64encode(key.sign(digest, padding.PKCS1v15(), hashes.SHA256())).decode()


def verify(key: rsa.RSAPublicKey, fields: dict[str, str]) -> bool:
    """Whether `fields["signature"]` is a good signMethod 01 signature of the other fields by `key`."""
    digest = hashlib.sha256(sign_content(fields).encode()).hexdigest().encode()
    signature = fields.get("signature", "")
    try:
        raw = base64.b64decode(signature + "=" * (-len(signature) % 4), validate=True)
        key.verify(raw, digest, padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError, binascii.Error):
        return False


def encode_request(fields: dict[str, str]) -> bytes:
    """The request body: the fields form-encoded (UTF-8)."""
    return urllib.parse.urlencode(fields).encode()


def parse_answer(text: str) -> dict[str, str]:
    """An answer's `k=v&k=v` fields; `&` inside `{…}` or `[…]` does not split. WalletError when malformed."""
    fields: dict[str, str] = {}
    depth, start = 0, 0
    for i, ch in enumerate(text + "&"):
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth = max(depth - 1, 0)
        elif ch == "&" and depth == 0:
            part = text[start:i]
            start = i + 1
            if not part:
                continue
            name, eq, value = part.partition("=")
            if not eq or not name or name in fields:
                raise WalletError("UnionPay: a malformed answer")
            fields[name] = value
    return fields


def cn_owner(cert: x509.Certificate) -> str:
    """Whose signing certificate this is: the third `@` part of its CN (`041@Z12@<owner>@00000062`)."""
    names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    parts = (value if isinstance(value, str) else value.decode("utf-8", "replace")).split("@")
    return parts[2] if len(parts) > 2 else ""


def txn_time(at: datetime) -> str:
    """txnTime: YYYYMMDDhhmmss in Beijing time."""
    return at.astimezone(CHINA).strftime(TIME_FORMAT)


def order_txn_time(order_no: str) -> str:
    """The txnTime an order was sent with, from the order number the wallet desk made (…yymmddHHMMSS + 6 hex)."""
    stamp = order_no[-18:-6]
    if len(order_no) < 18 or not stamp.isdigit():
        raise WalletError(f"UnionPay: order number {order_no!r} carries no time")
    return "20" + stamp


def load_signing(data: bytes, password: bytes = b"") -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    """The merchant's signing key and certificate: a PKCS#12 (.pfx, as UnionPay issues it) or PEM holding both."""
    key: object
    cert: x509.Certificate | None
    try:
        if data.lstrip().startswith(b"-----"):
            key = serialization.load_pem_private_key(data, password=password or None)
            cert = x509.load_pem_x509_certificate(data)
        else:
            key, cert, _ = pkcs12.load_key_and_certificates(data, password or None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise WalletError("[unionpay] sign_cert is not a signing certificate with its key (.pfx or PEM)") from None
    if not isinstance(key, rsa.RSAPrivateKey) or cert is None:
        raise WalletError("[unionpay] sign_cert must hold an RSA key and its certificate")
    mine = cert.public_key()
    if not isinstance(mine, rsa.RSAPublicKey) or key.public_key().public_numbers() != mine.public_numbers():
        raise WalletError("[unionpay] sign_cert: the key is not the certificate's")
    return key, cert


def load_certificate(data: bytes, what: str) -> x509.Certificate:
    """A PEM or DER certificate (UnionPay ships acp_prod_root.cer / acp_prod_middle.cer as PEM)."""
    try:
        if data.lstrip().startswith(b"-----"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise WalletError(f"[unionpay] {what} is not a certificate") from None


def _fen(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 12 else None


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- the client ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Txn:
    """What the query says about one transaction."""

    state: str  # paid | pending | failed | not_found
    query_id: str = ""
    code: str = ""  # origRespCode (or respCode 34)
    amount: int = 0  # txnAmt of a success


class UnionPayClient:
    """UnionPay QR for one merchant id over the ACP online API: shown and scanned codes, query, reversal,
    cancellation, refund."""

    name = "unionpay"
    order_zone = CHINA  # the order number's time is the txnTime: Beijing time (see the module's docstring)

    def __init__(
        self,
        gateway: str,
        mer_id: str,
        sign_cert: bytes,
        root_cert: bytes,
        middle_cert: bytes,
        *,
        sign_cert_password: bytes = b"",
        back_url: str = "",
        term_id: str = "",
        owner: str = UNIONPAY_CN,
        access_type: str = "0",
        timeout: float = 10.0,
        clock: Callable[[], datetime] = _utc_now,
        refund_waits: tuple[float, ...] = (1.0, 2.0, 4.0),
    ) -> None:
        if not _DIGITS_ONLY.fullmatch(mer_id):
            raise WalletError("[unionpay] mer_id must be the 15-digit merchant id")
        self._gateway = gateway.rstrip("/")
        self._mer_id, self._back_url, self._term_id = mer_id, back_url, term_id
        self._owner, self._access_type, self._timeout = owner, access_type, timeout
        self._key, cert = load_signing(sign_cert, sign_cert_password)
        self._cert_id = str(cert.serial_number)
        self._root = load_certificate(root_cert, "root_cert")
        self._middle = load_certificate(middle_cert, "middle_cert")
        try:
            self._middle.verify_directly_issued_by(self._root)
        except (ValueError, TypeError, InvalidSignature):
            raise WalletError("[unionpay] middle_cert was not issued by root_cert") from None
        self._clock, self._refund_waits = clock, refund_waits
        self._lock = threading.Lock()
        self._trusted: dict[str, x509.Certificate] = {}  # signPubKeyCert text -> its checked certificate
        # orderId -> txnTime of follow-up requests (refunds, cancellations) sent without `at`, this boot only
        self._sent: dict[str, str] = {}

    @classmethod
    def from_config(cls, cfg: UnionPayConfig, clock: Callable[[], datetime] = _utc_now) -> UnionPayClient:
        """The client a [unionpay] section describes; ConfigError naming the key when a file cannot be used."""

        read = functools.partial(key_file, "unionpay", cfg)

        try:
            return cls(
                cfg.gateway,
                cfg.mer_id,
                read("sign_cert"),
                read("root_cert"),
                read("middle_cert"),
                sign_cert_password=read("sign_cert_password").strip() if cfg.sign_cert_password else b"",
                back_url=cfg.back_url,
                term_id=cfg.term_id,
                owner=TEST_CN if cfg.test_environment else UNIONPAY_CN,
                access_type=cfg.access_type,
                timeout=cfg.timeout,
                clock=clock,
            )
        except WalletError as exc:
            raise ConfigError(str(exc)) from None

    # --- transport and verification (worker threads) --------------------------------------------------

    def _common(self, kind: tuple[str, str], order_id: str, when: str) -> dict[str, str]:
        return {
            "version": VERSION,
            "encoding": "UTF-8",
            "signMethod": SIGN_METHOD,
            "txnType": kind[0],
            "txnSubType": kind[1],
            "bizType": "000000",
            "channelType": "08",
            "accessType": self._access_type,
            "merId": self._mer_id,
            "orderId": order_id,
            "txnTime": when,
        }

    def _round_trip(self, what: str, path: str, fields: dict[str, str]) -> dict[str, str]:
        fields = {**fields, "certId": self._cert_id}
        fields["signature"] = sign(self._key, fields)
        req = urllib.request.Request(
            self._gateway + path,
            data=encode_request(fields),
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self._timeout) as answer:  # noqa: S310 - configured URL
                body = answer.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            raise WalletError(f"{what}: UnionPay answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise WalletError(f"UnionPay unreachable: {exc}") from None
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise WalletError(f"{what}: the answer is not UTF-8") from None
        answer_fields = parse_answer(text.strip())
        if not answer_fields:
            raise WalletError(f"{what}: an empty answer")
        self._check_signature(what, answer_fields)
        code = answer_fields.get("respCode", "")
        if code in _HINTS:
            log.error("unionpay %s: respCode %s %s — %s", what, code, answer_fields.get("respMsg", ""), _HINTS[code])
        return answer_fields

    def _check_signature(self, what: str, fields: dict[str, str]) -> None:
        if fields.get("signMethod") != SIGN_METHOD or fields.get("version") != VERSION:
            raise WalletError(f"{what}: the answer is not signed with signMethod {SIGN_METHOD} / {VERSION}")
        cert = self._signer(what, fields.get("signPubKeyCert", ""))
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey) or not verify(key, fields):
            raise WalletError(f"{what}: the answer's signature does not verify")

    def _signer(self, what: str, pem: str) -> x509.Certificate:
        """The certificate an answer names, once it is known to be UnionPay's and valid now."""
        now = self._clock()
        with self._lock:
            cert = self._trusted.get(pem)
        if cert is None:
            try:
                cert = x509.load_pem_x509_certificate(pem.encode())
                cert.verify_directly_issued_by(self._middle)
            except (ValueError, TypeError, InvalidSignature):
                raise WalletError(
                    f"{what}: the answer's certificate was not issued by [unionpay] middle_cert"
                ) from None
            owner = cn_owner(cert)
            if owner != self._owner:
                raise WalletError(f"{what}: the answer is signed by {_clean(owner, 60)!r}, not {self._owner}")
            with self._lock:
                if len(self._trusted) > 8:
                    self._trusted.clear()
                self._trusted[pem] = cert
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise WalletError(f"{what}: the answer's signing certificate is not valid now")
        return cert

    async def _call(self, what: str, path: str, fields: dict[str, str]) -> dict[str, str]:
        try:
            return await asyncio.to_thread(self._round_trip, what, path, fields)
        except WalletError:
            raise
        except Exception as exc:  # whatever a hostile answer makes a parser raise
            raise WalletError(f"{what}: unusable answer ({type(exc).__name__})") from None

    # --- binding answers to requests ------------------------------------------------------------------

    def _same(self, what: str, d: dict[str, str], sent: dict[str, str], *names: str) -> None:
        """The answer echoes the request's `names` (merId, orderId, txnTime… when the answer carries them;
        merId and orderId always)."""
        for name in ("merId", "orderId", *names):
            got = d.get(name)
            if got is None and name not in ("merId", "orderId"):
                continue
            if got != sent[name]:
                raise WalletMismatch(f"{what}: the answer is for {name} {_clean(got, 40)}, not {sent[name]}")

    def _same_amount(self, what: str, d: dict[str, str], amount: int) -> None:
        got = _fen(d.get("txnAmt", ""))
        if got is None:
            raise WalletMismatch(f"{what}: the answer carries no txnAmt")
        if got != amount:
            raise WalletMismatch(f"{what}: the answer says txnAmt {got}, the request {amount}")
        currency = d.get("currencyCode")
        if currency is not None and currency != CURRENCY:
            raise WalletMismatch(f"{what}: the answer's currency is {_clean(currency, 8)!r}, not {CURRENCY}")

    async def _query(self, order_id: str, when: str, amount: int | None) -> _Txn:
        """The transaction `order_id` sent at `when`, as UnionPay has it (amount checked when given)."""
        what = "query"
        sent = self._common(QUERY, order_id, when)
        d = await self._call(what, QUERY_PATH, sent)
        self._same(what, d, sent, "txnTime")
        code = d.get("respCode", "")
        if code == _NOT_FOUND:
            return _Txn("not_found", code=code)
        if code != "00":
            raise WalletError(f"{what}: respCode {_clean(code, 4)} {_clean(d.get('respMsg'), 80)}")
        orig = d.get("origRespCode", "")
        if orig == "00":
            if amount is not None:
                self._same_amount(what, d, amount)
            query_id = d.get("queryId", "")
            if not _DIGITS_ONLY.fullmatch(query_id) and not _ORDER_ID.fullmatch(query_id):
                raise WalletMismatch(f"{what}: a success without a queryId")
            return _Txn("paid", query_id, orig, _fen(d.get("txnAmt", "")) or 0)
        if orig in _PENDING or not orig:
            return _Txn("pending", code=orig)
        return _Txn("failed", code=orig)

    def _result(self, t: _Txn, reason: str = "") -> WalletResult:
        if t.state == "paid":
            return WalletResult("paid", trade_no=t.query_id)
        if t.state == "pending":
            return WalletResult("waiting")
        if t.state == "not_found":
            return WalletResult("not_found", "ORDER NOT FOUND")
        return WalletResult("failed", reason or _DECLINES.get(t.code, "PAYMENT FAILED"))

    # --- WalletProvider ---------------------------------------------------------------------------------

    async def create_order(
        self, order_no: str, amount: int, subject: str, expires: datetime | None = None
    ) -> WalletResult:
        """申请消费二维码 (01/07): the answer's qrCode is the code to show, payable until `expires` (payTimeout)."""
        what = "qr order"
        sent = self._common(CONSUME_SHOWN, order_no, order_txn_time(order_no))
        sent.update(txnAmt=str(amount), currencyCode=CURRENCY)
        if self._back_url:
            sent["backUrl"] = self._back_url
        if self._term_id:
            sent["termId"] = self._term_id
        if expires is not None:
            sent["payTimeout"] = txn_time(expires)
        d = await self._call(what, BACK_PATH, sent)
        self._same(what, d, sent, "txnTime", "txnType", "txnSubType")
        code = d.get("respCode", "")
        if code != "00":
            if code in _PENDING:
                raise WalletError(f"{what}: respCode {code}: not known whether the code was issued")
            return WalletResult("failed", "ORDER NOT CREATED")
        qr = d.get("qrCode", "")
        if not (qr.startswith("https://") or qr.startswith("000201")) or len(qr) > 512 or _clean(qr) != qr:
            raise WalletError(f"{what}: the answer carries no usable qrCode")
        return WalletResult("waiting", qr=qr)

    async def pay_by_code(self, order_no: str, amount: int, code: str, subject: str) -> WalletResult:
        """二维码消费 (01/06) with the payer's code as qrNo. Its answer only says whether UnionPay took the
        request; the query that names this order and amount decides."""
        what = "code payment"
        if not CODE_PATTERN.fullmatch(code):
            return WalletResult("failed", "PAYMENT CODE INVALID")
        sent = self._common(CONSUME_SCANNED, order_no, order_txn_time(order_no))
        sent.update(txnAmt=str(amount), currencyCode=CURRENCY, qrNo=code)
        if self._back_url:
            sent["backUrl"] = self._back_url
        if self._term_id:
            sent["termId"] = self._term_id
        d = await self._call(what, BACK_PATH, sent)
        self._same(what, d, sent, "txnTime", "txnType", "txnSubType")
        if "txnAmt" in d:
            self._same_amount(what, d, amount)
        answer = d.get("respCode", "")
        t = await self._query(order_no, sent["txnTime"], amount)
        if answer == "00" or answer in _PENDING:
            return self._result(t) if t.state != "not_found" else WalletResult("waiting", "CHECKING PAYMENT")
        if t.state in ("paid", "pending"):  # the refusal is not what happened to the order
            return self._result(t)
        return WalletResult("failed", _DECLINES.get(answer, "PAYMENT FAILED"))

    async def query(self, order_no: str, amount: int) -> WalletResult:
        """paid, waiting (still being processed), failed, or not_found."""
        return self._result(await self._query(order_no, order_txn_time(order_no), amount))

    async def close(self, order_no: str) -> WalletResult:
        """A shown UnionPay code cannot be withdrawn: it dies at its payTimeout. paid: refused (ask what it is);
        not yet paid: not_found (the desk takes it as never paid once the code has expired)."""
        t = await self._query(order_no, order_txn_time(order_no), None)
        if t.state == "paid":
            return WalletResult("refused", "ORDERPAID")
        if t.state == "failed":
            return WalletResult("closed", "ORDER CLOSED")
        return WalletResult("not_found") if t.state == "not_found" else WalletResult("retry")

    async def cancel(self, order_no: str, at: datetime | None = None) -> WalletResult:
        """Undo a scanned code's payment whatever became of it: a paid one is cancelled (消费撤销, the money
        goes back to the payer), an unknown one reversed (冲正); closed once the queries confirm it. `at`: when
        the first cancel was sent (journaled), the cancellation's txnTime, so that a resend after a restart is
        the same request and its query finds it. A request sent whose effect the queries do not confirm yet
        raises WalletError (the money may be moving: asked again); `refused` only when UnionPay refused it."""
        when = order_txn_time(order_no)
        t = await self._query(order_no, when, None)
        if t.state == "failed":
            return WalletResult("closed", "PAYMENT CANCELLED")
        if t.state == "not_found":
            return WalletResult("not_found")
        if t.state == "pending":
            what = "reversal"
            sent = self._common(REVERSAL, order_no, when)
            d = await self._call(what, BACK_PATH, sent)
            self._same(what, d, sent, "txnTime")
            after = await self._query(order_no, when, None)
            if after.state == "failed":
                return WalletResult("closed", "PAYMENT CANCELLED")
            if after.state == "not_found":
                return WalletResult("not_found")
            raise WalletError(f"{what}: sent, the order is {after.state} (origRespCode {after.code}); asked again")
        return await self._cancel_paid(order_no, t, at)

    async def _cancel_paid(self, order_no: str, paid: _Txn, at: datetime | None) -> WalletResult:
        what = "cancellation"
        if paid.amount <= 0:  # a success that named no amount: nothing to cancel it with
            raise WalletMismatch(f"{what}: the payment's query named no amount")
        cancel_id = order_no[:39] + "C"
        with self._lock:
            when = txn_time(at) if at is not None else self._sent.setdefault(cancel_id, txn_time(self._clock()))
        sent = self._common(CANCEL, cancel_id, when)
        sent.update(origQryId=paid.query_id, txnAmt=str(paid.amount), currencyCode=CURRENCY)
        d = await self._call(what, BACK_PATH, sent)
        self._same(what, d, sent, "txnTime", "origQryId")
        answer = d.get("respCode", "")
        t = await self._query(cancel_id, when, paid.amount)  # the cancellation of this amount, none other
        if t.state == "paid":
            return WalletResult("closed", "REFUNDED TO PAYER", trade_no=t.query_id)
        if t.state == "failed" or (t.state == "not_found" and answer not in ("00", _DUPLICATE, *_PENDING)):
            return WalletResult("refused", "ORDERPAID")  # UnionPay refused the cancellation: nothing moved
        raise WalletError(f"{what}: {cancel_id} not confirmed (respCode {_clean(answer, 4)}); asked again")

    async def refund(
        self,
        order_no: str,
        amount: int,
        request_no: str,
        refunded_before: int = 0,
        total: int | None = None,
        at: datetime | None = None,
    ) -> WalletResult:
        """退货 (04) of `amount` under `request_no` (its orderId): refunded once the refund's own query says
        so, failed when UnionPay refuses it and the query confirms none was made, WalletError while open."""
        what = "refund"
        if not _ORDER_ID.fullmatch(request_no):
            raise WalletError(f"{what}: request number {request_no!r} is not 8-40 letters and digits")
        original = await self._query(order_no, order_txn_time(order_no), total)
        if original.state != "paid":
            return WalletResult("failed", "ORDER NOT PAID" if original.state != "not_found" else "ORDER NOT FOUND")
        with self._lock:  # `at`: when the refund was journaled, so a resend after a restart is the same request
            when = txn_time(at) if at is not None else self._sent.setdefault(request_no, txn_time(self._clock()))
        sent = self._common(REFUND, request_no, when)
        sent.update(txnAmt=str(amount), currencyCode=CURRENCY, origQryId=original.query_id)
        if self._back_url:
            sent["backUrl"] = self._back_url
        d = await self._call(what, BACK_PATH, sent)
        self._same(what, d, sent, "txnTime", "origQryId")
        if "txnAmt" in d:
            self._same_amount(what, d, amount)
        answer = d.get("respCode", "")
        t = await self._query(request_no, when, amount)
        for wait in self._refund_waits:
            if t.state != "pending":
                break
            await asyncio.sleep(wait)
            t = await self._query(request_no, when, amount)
        if t.state == "paid":
            return WalletResult("refunded", trade_no=t.query_id)
        if t.state == "failed" or (t.state == "not_found" and answer not in ("00", _DUPLICATE, *_PENDING)):
            return WalletResult("failed", "REFUND REFUSED")
        raise WalletError(f"{what}: refund {request_no} not final (respCode {_clean(answer, 4)}); asked again later")
