"""Master/session key cryptography: check values, working keys wrapped under the master key, and MACs.

Two schemes, chosen per host profile in `[keys] scheme`:
- "tdes": double-length TDES keys; working keys travel TDES-ECB under the terminal master key (the way
  Chinese acquirers deliver them at sign-on), KCV = first bytes of TDES-ECB(key, 0…0); MAC = ISO/IEC
  9797-1 algorithm 3 (retail MAC, padding method 1).
- "aes": AES-128 keys; working keys travel AES key-wrapped (RFC 3394) under the master key, KCV = first
  five bytes of AES-CMAC(key, 0…0) (ANSI X9.24-1-2017); MAC = AES-CMAC truncated to 8 bytes.
Pure functions over bytes; the key store and the sign-on exchange live elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import warnings
from dataclasses import dataclass, field

import psec.mac
from cryptography.hazmat.primitives import cmac, keywrap
from cryptography.hazmat.primitives.ciphers import algorithms

from firmware.errors import KeyMaterialError
from firmware.security.dukpt import tdes_ecb_decrypt, tdes_ecb_encrypt

SCHEMES = ("tdes", "aes")
KEY_LEN = 16
KCV_LEN = {"tdes": 4, "aes": 5}
MAC_LEN = 8


def _check(scheme: str, key: bytes | bytearray) -> None:
    if scheme not in SCHEMES:
        raise KeyMaterialError(f"unknown key scheme {scheme!r}")
    if len(key) != KEY_LEN:
        raise KeyMaterialError(f"a {scheme} key is {KEY_LEN} bytes, not {len(key)}")


def kcv(scheme: str, key: bytes | bytearray) -> bytes:
    """The key check value (4 bytes for TDES as acquirers send it, 5 for AES; for an "hmac" key, the
    first 5 bytes of its HMAC-SHA256 over 16 zero bytes)."""
    if scheme == "hmac":
        return hmac.new(bytes(key), bytes(16), hashlib.sha256).digest()[:5]
    _check(scheme, key)
    if scheme == "tdes":
        return tdes_ecb_encrypt(bytes(key), bytes(8))[: KCV_LEN["tdes"]]
    c = cmac.CMAC(algorithms.AES(bytes(key)))
    c.update(bytes(16))
    return c.finalize()[: KCV_LEN["aes"]]


def wrap(scheme: str, kek: bytes, key: bytes) -> bytes:
    """`key` enciphered under the key-encrypting key `kek`."""
    _check(scheme, kek)
    _check(scheme, key)
    if scheme == "tdes":
        return tdes_ecb_encrypt(bytes(kek), bytes(key))
    return keywrap.aes_key_wrap(bytes(kek), bytes(key))


def unwrap(scheme: str, kek: bytes | bytearray, blob: bytes) -> bytearray:
    """The clear key inside `blob`; KeyMaterialError when it cannot be (AES key wrap checks integrity)."""
    _check(scheme, kek)
    try:
        if scheme == "tdes":
            if len(blob) != KEY_LEN:
                raise ValueError(f"{len(blob)} bytes")
            return bytearray(tdes_ecb_decrypt(bytes(kek), blob))
        return bytearray(keywrap.aes_key_unwrap(bytes(kek), blob))
    except (ValueError, keywrap.InvalidUnwrap) as exc:
        raise KeyMaterialError(f"cannot unwrap a working key: {exc}") from None


def mac(scheme: str, key: bytes, data: bytes) -> bytes:
    """The 8-byte MAC of `data`: retail MAC (tdes) or truncated AES-CMAC (aes)."""
    _check(scheme, key)
    if scheme == "tdes":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return psec.mac.generate_retail_mac(bytes(key[:8]), bytes(key[8:]), data, 1)
    c = cmac.CMAC(algorithms.AES(bytes(key)))
    c.update(data)
    return c.finalize()[:MAC_LEN]


def combine(components: list[bytes]) -> bytearray:
    """XOR key components into the key (each custodian holds one; none alone knows the key)."""
    if not components or len({len(c) for c in components}) != 1:
        raise KeyMaterialError("key components must all have the same length")
    out = bytearray(len(components[0]))
    for comp in components:
        for i, b in enumerate(comp):
            out[i] ^= b
    return out


def new_key() -> bytes:
    """A fresh random 16-byte key (the host's working keys)."""
    return secrets.token_bytes(KEY_LEN)


def wipe(buf: bytearray) -> None:
    """Overwrite a key held in a bytearray."""
    for i in range(len(buf)):
        buf[i] = 0


@dataclass
class WorkingKeys:
    """The PIN and MAC keys of this sign-on, clear only in memory; `day` is the local date they came on."""

    scheme: str
    pin_key: bytearray = field(repr=False)
    mac_key: bytearray = field(repr=False)
    day: str

    def wipe(self) -> None:
        """Overwrite both keys."""
        wipe(self.pin_key)
        wipe(self.mac_key)


def key_block(scheme: str, tmk: bytes, pin_key: bytes, mac_key: bytes) -> str:
    """Field 62 of the sign-on answer: PIN key, its KCV, MAC key, its KCV — wrapped keys and KCVs in hex."""
    parts = (wrap(scheme, tmk, pin_key), kcv(scheme, pin_key), wrap(scheme, tmk, mac_key), kcv(scheme, mac_key))
    return "".join(p.hex().upper() for p in parts)


def open_key_block(scheme: str, tmk: bytes | bytearray, text: str, day: str) -> WorkingKeys:
    """Unwrap the working keys of a sign-on answer and check each against its KCV."""
    wrapped = KEY_LEN if scheme == "tdes" else KEY_LEN + 8
    size = 2 * (wrapped + KCV_LEN.get(scheme, 0))
    if scheme not in SCHEMES or len(text) != 2 * size:
        raise KeyMaterialError(f"key block of {len(text)} characters, expected {2 * size}")
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise KeyMaterialError("key block is not hex") from None
    keys: list[bytearray] = []
    for i, name in enumerate(("PIN", "MAC")):
        part = raw[i * size // 2 : (i + 1) * size // 2]
        key = unwrap(scheme, tmk, part[:wrapped])
        if not secrets.compare_digest(kcv(scheme, key), part[wrapped:]):
            wipe(key)
            for k in keys:
                wipe(k)
            raise KeyMaterialError(f"{name} key check value does not match")
        keys.append(key)
    return WorkingKeys(scheme, keys[0], keys[1], day)
