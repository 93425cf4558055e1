"""ANSI X9.24-1 TDES DUKPT: IPEK derivation (host side), per-transaction PIN keys, the KSN counter."""

from __future__ import annotations

from dataclasses import dataclass, field

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from firmware.errors import KeyMaterialError

_KEY_MASK = bytes.fromhex("C0C0C0C000000000C0C0C0C000000000")
_PIN_VARIANT = bytes.fromhex("00000000000000FF00000000000000FF")
_COUNTER_BITS = 21
_COUNTER_MASK = (1 << _COUNTER_BITS) - 1
MAX_COUNTER = _COUNTER_MASK


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _cipher(key: bytes) -> Cipher:
    # cryptography wants 24-byte keys: K1K1K1 is single DES, K1K2K1 is two-key TDES.
    if len(key) == 8:
        key = key * 3
    elif len(key) == 16:
        key = key + key[:8]
    return Cipher(TripleDES(key), modes.ECB())


def tdes_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    """(T)DES ECB encryption; an 8-byte key is single DES, 16 bytes is two-key TDES."""
    enc = _cipher(key).encryptor()
    return enc.update(data) + enc.finalize()


def tdes_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    """(T)DES ECB decryption, the inverse of tdes_ecb_encrypt."""
    dec = _cipher(key).decryptor()
    return dec.update(data) + dec.finalize()


def _check_ksn(ksn: bytes) -> None:
    if len(ksn) != 10:
        raise KeyMaterialError(f"a KSN is 10 bytes (20 hex digits), got {len(ksn)}")


def ksn_counter(ksn: bytes) -> int:
    """The 21-bit transaction counter at the right of a KSN."""
    _check_ksn(ksn)
    return int.from_bytes(ksn[-3:], "big") & _COUNTER_MASK


def with_counter(ksn: bytes, counter: int) -> bytes:
    """The KSN with its 21-bit counter replaced."""
    _check_ksn(ksn)
    value = (int.from_bytes(ksn, "big") & ~_COUNTER_MASK) | (counter & _COUNTER_MASK)
    return value.to_bytes(10, "big")


def derive_ipek(bdk: bytes, ksn: bytes) -> bytes:
    """Initial PIN encryption key from the base derivation key (host side only; terminals never hold a BDK)."""
    _check_ksn(ksn)
    base = with_counter(ksn, 0)[:8]
    return tdes_ecb_encrypt(bdk, base) + tdes_ecb_encrypt(_xor(bdk, _KEY_MASK), base)


def _non_reversible(key: bytes, reg: bytes) -> bytes:
    """X9.24-1 non-reversible key generation process on a 16-byte key and an 8-byte KSN register."""
    left, right = key[:8], key[8:]
    r2 = _xor(tdes_ecb_encrypt(left, _xor(reg, right)), right)
    key = _xor(key, _KEY_MASK)
    left, right = key[:8], key[8:]
    r1 = _xor(tdes_ecb_encrypt(left, _xor(reg, right)), right)
    return r1 + r2


def derive_key(ipek: bytes, ksn: bytes) -> bytes:
    """The current transaction key for `ksn`, walking the counter's one-bits from the IPEK."""
    _check_ksn(ksn)
    counter = ksn_counter(ksn)
    reg = bytearray(with_counter(ksn, 0)[2:])
    key = ipek
    bit = 1 << (_COUNTER_BITS - 1)
    while bit:
        if counter & bit:
            reg_int = int.from_bytes(reg, "big") | bit
            reg = bytearray(reg_int.to_bytes(8, "big"))
            key = _non_reversible(key, bytes(reg))
        bit >>= 1
    return key


def pin_key(ipek: bytes, ksn: bytes) -> bytes:
    """The PIN encryption key variant of the transaction key for `ksn`."""
    return _xor(derive_key(ipek, ksn), _PIN_VARIANT)


def next_counter(counter: int) -> int:
    """The next valid counter: X9.24 skips values with more than ten one-bits."""
    counter += 1
    while bin(counter).count("1") > 10:
        counter += counter & -counter
    if counter > MAX_COUNTER:
        raise KeyMaterialError("DUKPT counter exhausted: the PIN pad needs a new initial key")
    return counter


@dataclass(frozen=True)
class DukptKey:
    """A terminal's PIN key material: the IPEK and the KSN it was injected with."""

    ipek: bytes = field(repr=False)
    initial_ksn: bytes

    def ksn_for(self, counter: int) -> bytes:
        """The KSN carried by the transaction with this counter."""
        return with_counter(self.initial_ksn, counter)

    def encrypt_pin_block(self, clear_block: bytes, counter: int) -> tuple[bytes, bytes]:
        """Encrypt a clear ISO 9564 block under the PIN key for `counter`; returns (block, ksn)."""
        ksn = self.ksn_for(counter)
        return tdes_ecb_encrypt(pin_key(self.ipek, ksn), clear_block), ksn
