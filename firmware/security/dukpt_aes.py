"""ANSI X9.24-3-2017 AES DUKPT (AES-128 keys): initial key, per-transaction derivation and PIN keys.

Derivation data is one AES block: version 01, key block counter 01, key usage (8001 initial key,
8000 derivation, 1000 PIN encryption), algorithm 0002 (AES-128), length 0080, then the initial key ID
(for the initial key) or the key ID's last four bytes and the 32-bit counter. Chosen per host profile:
[pin] scheme = "aes" with [host] dialect = "aes-dukpt" (fields 52/53 wide enough for its block and KSN).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from firmware.errors import KeyMaterialError

USAGE_INITIAL, USAGE_DERIVATION, USAGE_PIN = "8001", "8000", "1000"
MAX_ONE_BITS = 16


def _aes(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _data(usage: str, tail: bytes) -> bytes:
    return bytes.fromhex(f"0101{usage}00020080") + tail


def initial_key(bdk: bytes, key_id: bytes) -> bytes:
    """The terminal's initial key from the BDK and its 8-byte initial key ID (host side only)."""
    if len(bdk) != 16 or len(key_id) != 8:
        raise KeyMaterialError("AES-128 DUKPT wants a 16-byte BDK and an 8-byte initial key ID")
    return _aes(bdk, _data(USAGE_INITIAL, key_id))


def derivation_key(initial: bytes, key_id: bytes, counter: int) -> bytes:
    """The intermediate derivation key for `counter`: walk its one-bits from the top."""
    if not 0 < counter < 1 << 32:
        raise KeyMaterialError(f"AES DUKPT counter out of range: {counter}")
    key, working = initial, 0
    for bit in range(31, -1, -1):
        mask = 1 << bit
        if counter & mask:
            working |= mask
            key = _aes(key, _data(USAGE_DERIVATION, key_id[4:] + working.to_bytes(4, "big")))
    return key


def pin_key(initial: bytes, key_id: bytes, counter: int) -> bytes:
    """The PIN encryption key of the transaction with `counter`."""
    return _aes(derivation_key(initial, key_id, counter), _data(USAGE_PIN, key_id[4:] + counter.to_bytes(4, "big")))


def ksn(key_id: bytes, counter: int) -> bytes:
    """The 12-byte KSN: the key ID, then the counter."""
    return key_id + counter.to_bytes(4, "big")


def next_counter(counter: int) -> int:
    """The next valid counter: at most 16 one-bits."""
    counter += 1
    while bin(counter).count("1") > MAX_ONE_BITS:
        counter += counter & -counter
    if counter >= 1 << 32:
        raise KeyMaterialError("AES DUKPT counter exhausted")
    return counter


def format4_block(key: bytes, pin_field: bytes, pan_field: bytes) -> bytes:
    """ISO 9564 format 4: E(K, E(K, PIN field) XOR PAN field)."""
    intermediate = _aes(key, pin_field)
    return _aes(key, bytes(a ^ b for a, b in zip(intermediate, pan_field, strict=True)))
