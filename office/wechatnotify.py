"""WeChat Pay payment callbacks (支付成功通知) received by the back office: the signature checked against WeChat
Pay's public key or platform certificate, the resource decrypted with the APIv3 key, the transaction bound to
this merchant, and what a terminal may learn from it.

A callback is an HTTP POST of `{"id", "create_time", "event_type": "TRANSACTION.SUCCESS", "resource_type":
"encrypt-resource", "resource": {"algorithm": "AEAD_AES_256_GCM", "ciphertext", "nonce", "associated_data",
"original_type": "transaction"}}` with `Wechatpay-Timestamp`, `-Nonce`, `-Signature` and `-Serial` headers; the
signature (SHA256withRSA) covers "timestamp\\nnonce\\nbody\\n" exactly as the answers to the terminal's own
requests do, and is believed only when the serial is the configured key's and the timestamp within five
minutes. WeChat expects 200 (or 204) for a callback it may stop resending, anything else is sent again.

A notice never makes a sale approved on its own: the terminal that learns of it asks WeChat Pay itself
(its polling stays the source of truth); the notice only tells it to ask now rather than at its next poll.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from office.errors import OfficeError

log = logging.getLogger(__name__)

ANSWER_WINDOW = 300  # seconds: a callback stamped this far from the office's clock (or farther) is stale

EVENTS = frozenset({"TRANSACTION.SUCCESS"})  # the payment callbacks; refund callbacks are not used
_MAX_BODY = 64 << 10


def verify(key: rsa.RSAPublicKey, stamp: str, nonce: str, body: str, signature: str) -> bool:
    """SHA256withRSA over "timestamp\\nnonce\\nbody\\n" (how WeChat Pay signs answers and callbacks)."""
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, f"{stamp}\n{nonce}\n{body}\n".encode(), padding.PKCS1v15(), hashes.SHA256())
        return True
    except (InvalidSignature, ValueError, binascii.Error):
        return False


def decrypt(apiv3_key: bytes, nonce: str, associated_data: str, ciphertext: str) -> bytes:
    """An AEAD_AES_256_GCM resource's plaintext; ValueError when it does not decrypt with this key."""
    try:
        return AESGCM(apiv3_key).decrypt(
            nonce.encode(), base64.b64decode(ciphertext, validate=True), associated_data.encode()
        )
    except (InvalidTag, binascii.Error):
        raise ValueError("the resource does not decrypt with [wechat] apiv3_key") from None


def _mask(openid: Any) -> str:
    text = openid if isinstance(openid, str) else ""
    return f"{text[:4]}****{text[-4:]}" if len(text) > 8 else "****" if text else ""


class NoticeRefused(OfficeError):
    """A callback that is not believed (bad signature, stale, another merchant, malformed)."""


@dataclass(frozen=True)
class WechatNotifyConfig:
    """[wechat] of office.toml: which merchant's callbacks are taken, and the keys to check and read them."""

    mchid: str
    apiv3_key: str  # path: the 32-character APIv3 key
    verify_key: str  # path: the WeChat Pay public key (pub_key.pem) or the platform certificate (PEM)
    verify_serial: str  # its id (PUB_KEY_ID_…) or the certificate's serial (hex), as Wechatpay-Serial names it


@dataclass(frozen=True)
class Notice:
    """What a believed callback says about one order."""

    out_trade_no: str
    mchid: str
    transaction_id: str
    trade_state: str
    total: int  # fen
    currency: str
    payer: str  # masked openid


class WechatNotices:
    """Checks and reads callbacks for one merchant (keys loaded once)."""

    def __init__(self, cfg: WechatNotifyConfig) -> None:
        try:
            self._apiv3 = Path(cfg.apiv3_key).read_bytes().lstrip(b"\xef\xbb\xbf").strip()
            pem = Path(cfg.verify_key).read_bytes()
        except OSError as exc:
            raise OfficeError(f"[wechat]: cannot read a key file: {exc}") from None
        if len(self._apiv3) != 32:
            raise OfficeError("[wechat] apiv3_key must hold the merchant's 32-character APIv3 key")
        key: object
        if b"CERTIFICATE" in pem:
            key = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
        if not isinstance(key, rsa.RSAPublicKey):
            raise OfficeError("[wechat] verify_key must be WeChat Pay's RSA public key or platform certificate")
        self._key, self._serial, self._mchid = key, cfg.verify_serial, cfg.mchid

    def read(self, headers: dict[str, str], body: bytes, now: datetime) -> Notice | None:
        """The notice a callback carries (None: an event that is not a payment's); NoticeRefused when it is
        not believed. `headers` with lower-case names."""
        if len(body) > _MAX_BODY:
            raise NoticeRefused("the callback is too long")
        text = body.decode("utf-8", "replace")
        stamp, nonce, signature, serial = (
            headers.get(f"wechatpay-{n}", "") for n in ("timestamp", "nonce", "signature", "serial")
        )
        if not (stamp and nonce and signature and serial):
            raise NoticeRefused("the callback is not signed")
        if serial != self._serial:
            raise NoticeRefused(f"the callback is signed by {serial[:64]!r}, not {self._serial}")
        if not stamp.isdecimal() or abs(int(now.timestamp()) - int(stamp)) >= ANSWER_WINDOW:
            raise NoticeRefused("the callback's timestamp is not within five minutes")
        if not verify(self._key, stamp, nonce, text, signature):
            raise NoticeRefused("the callback's signature does not verify")
        try:
            event = json.loads(text)
            if event.get("event_type") not in EVENTS:
                log.info("wechat callback %s ignored", str(event.get("event_type"))[:40])
                return None
            r = event["resource"]
            if r["algorithm"] != "AEAD_AES_256_GCM":
                raise NoticeRefused("the callback's resource is not AEAD_AES_256_GCM")
            plain = decrypt(self._apiv3, r["nonce"], r.get("associated_data") or "", r["ciphertext"])
            t: dict[str, Any] = json.loads(plain)
            amount = t["amount"]
            notice = Notice(
                out_trade_no=str(t["out_trade_no"])[:64],
                mchid=str(t["mchid"]),
                transaction_id=str(t["transaction_id"])[:64],
                trade_state=str(t["trade_state"])[:32],
                total=amount["total"] if type(amount["total"]) is int else -1,
                currency=str(amount.get("currency", "CNY"))[:8],
                payer=_mask((t.get("payer") or {}).get("openid")),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise NoticeRefused(f"a malformed callback ({type(exc).__name__})") from None
        if notice.mchid != self._mchid:
            raise NoticeRefused(f"the callback is for merchant {notice.mchid[:32]}, not {self._mchid}")
        if notice.total < 0:
            raise NoticeRefused("the callback's amount is not a whole number of fen")
        return notice


async def store(conn: Any, notice: Notice, now: datetime) -> None:
    """Keep a believed notice (the latest per order)."""
    await conn.execute(
        "INSERT INTO wallet_notices (provider, out_trade_no, mchid, transaction_id, trade_state, total, currency,"
        " payer, received_at) VALUES ('wechat', %s, %s, %s, %s, %s, %s, %s, %s)"
        " ON CONFLICT (provider, out_trade_no) DO UPDATE SET transaction_id = EXCLUDED.transaction_id,"
        " trade_state = EXCLUDED.trade_state, total = EXCLUDED.total, currency = EXCLUDED.currency,"
        " payer = EXCLUDED.payer, received_at = EXCLUDED.received_at",
        (
            notice.out_trade_no,
            notice.mchid,
            notice.transaction_id,
            notice.trade_state,
            notice.total,
            notice.currency,
            notice.payer,
            now,
        ),
    )


async def lookup(conn: Any, out_trade_no: str) -> dict[str, Any] | None:
    """The stored notice of an order, as the terminal reads it."""
    cur = await conn.execute(
        "SELECT out_trade_no, mchid, transaction_id, trade_state, total, currency FROM wallet_notices"
        " WHERE provider = 'wechat' AND out_trade_no = %s",
        (out_trade_no,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    keys = ("out_trade_no", "mchid", "transaction_id", "trade_state", "total", "currency")
    return dict(zip(keys, row, strict=True))
