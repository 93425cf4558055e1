"""Test EMV public key infrastructure for simulated chip cards: a test CA, issuer and ICC RSA keys, and the certificates
and signatures of EMV Book 2 made with them; writes the CA public key file the terminal reads.

Keys come from `cryptography` (public exponent 3, as EMV keys commonly are); the signatures are raw RSA
(the private operation on the formatted data, Book 2 Annex A2.1). Key generation takes a while, so a
TestPki keeps its keys, and with a directory also keeps them on disk as PEM for the next run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

CA_BITS, ISSUER_BITS, ICC_BITS = 1408, 1152, 1024
PAD, HEADER, TRAILER = 0xBB, 0x6A, 0xBC


def modulus(key: rsa.RSAPrivateKey) -> bytes:
    """The public modulus, big-endian, of the key's byte length."""
    n = key.public_key().public_numbers().n
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def exponent(key: rsa.RSAPrivateKey) -> bytes:
    """The public exponent as EMV carries it (one byte for 3, three for 65537)."""
    e = key.public_key().public_numbers().e
    return e.to_bytes(1 if e < 256 else 3, "big")


def sign(key: rsa.RSAPrivateKey, body: bytes, hashed_extra: bytes) -> bytes:
    """Book 2 signature: 6A | body | SHA-1(body | hashed_extra) | BC, raised to the private exponent."""
    n = len(modulus(key))
    data = bytes([HEADER]) + body + hashlib.sha1(body + hashed_extra).digest() + bytes([TRAILER])
    if len(data) != n:
        raise ValueError(f"signed data of {len(data)} bytes for a {n}-byte key")
    numbers = key.private_numbers()
    value = pow(int.from_bytes(data, "big"), numbers.d, numbers.public_numbers.n)
    return value.to_bytes(n, "big")


def _split_modulus(subject: bytes, room: int) -> tuple[bytes, bytes]:
    """(leftmost digits padded with BB to `room`, remainder)."""
    if len(subject) <= room:
        return subject + bytes([PAD]) * (room - len(subject)), b""
    return subject[:room], subject[room:]


def issuer_certificate(ca: rsa.RSAPrivateKey, issuer: rsa.RSAPrivateKey, pan: str, expiry: str) -> tuple[bytes, bytes]:
    """(issuer public key certificate 90, remainder 92): format 02, issuer identifier = the PAN's first
    6 digits, expiry MMYY, serial 000001, SHA-1, RSA (Book 2 5.3 table 6)."""
    n_ca = len(modulus(ca))
    subject = modulus(issuer)
    digits, remainder = _split_modulus(subject, n_ca - 36)
    ident = bytes.fromhex(pan[:6].ljust(8, "F"))
    body = b"\x02" + ident + bytes.fromhex(expiry) + b"\x00\x00\x01\x01\x01"
    body += bytes([len(subject), len(exponent(issuer))]) + digits
    return sign(ca, body, remainder + exponent(issuer)), remainder


def icc_certificate(
    issuer: rsa.RSAPrivateKey, icc: rsa.RSAPrivateKey, pan: str, expiry: str, static: bytes
) -> tuple[bytes, bytes]:
    """(ICC public key certificate 9F46, remainder 9F48): format 04 with the PAN, its hash over the static
    data to be authenticated too (Book 2 6.4 table 14)."""
    n_i = len(modulus(issuer))
    subject = modulus(icc)
    digits, remainder = _split_modulus(subject, n_i - 42)
    body = b"\x04" + bytes.fromhex(pan.ljust(20, "F")) + bytes.fromhex(expiry) + b"\x00\x00\x01\x01\x01"
    body += bytes([len(subject), len(exponent(icc))]) + digits
    return sign(issuer, body, remainder + exponent(icc) + static), remainder


def signed_static_data(issuer: rsa.RSAPrivateKey, dac: bytes, static: bytes) -> bytes:
    """Signed static application data (93), format 03 (Book 2 5.4 table 7)."""
    n_i = len(modulus(issuer))
    body = b"\x03\x01" + dac + bytes([PAD]) * (n_i - 26)
    return sign(issuer, body, static)


def signed_dynamic_data(icc: rsa.RSAPrivateKey, dynamic: bytes, hashed_extra: bytes) -> bytes:
    """Signed dynamic application data, format 05 (Book 2 6.5 table 17 / 6.6 table 19)."""
    n = len(modulus(icc))
    body = b"\x05\x01" + bytes([len(dynamic)]) + dynamic + bytes([PAD]) * (n - len(dynamic) - 25)
    return sign(icc, body, hashed_extra)


def private_decrypt(key: rsa.RSAPrivateKey, data: bytes) -> bytes:
    """Raw RSA with the private key (the card recovering an enciphered PIN)."""
    numbers = key.private_numbers()
    n = len(modulus(key))
    value = int.from_bytes(data, "big")
    if value >= numbers.public_numbers.n:
        raise ValueError("data is not below the modulus")
    return pow(value, numbers.d, numbers.public_numbers.n).to_bytes(n, "big")


class TestPki:
    """The test CA keys (by RID and index) and the issuer and ICC keys of simulated cards, made on first use
    and kept (in memory, and as PEM files under `directory` when one is given)."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self._keys: dict[str, rsa.RSAPrivateKey] = {}
        self.ca_used: dict[tuple[str, int], rsa.RSAPrivateKey] = {}

    def _key(self, name: str, bits: int) -> rsa.RSAPrivateKey:
        if name in self._keys:
            return self._keys[name]
        path = self.directory / f"{name}.pem" if self.directory else None
        key: rsa.RSAPrivateKey | None = None
        if path is not None and path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if isinstance(loaded, rsa.RSAPrivateKey) and loaded.key_size == bits:
                key = loaded
        if key is None:
            key = rsa.generate_private_key(public_exponent=3, key_size=bits)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(
                    key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    )
                )
        self._keys[name] = key
        return key

    def ca(self, rid: str, index: int) -> rsa.RSAPrivateKey:
        """The test CA key for a RID (e.g. A000000003) and index."""
        key = self._key(f"ca-{rid.upper()}-{index:02X}", CA_BITS)
        self.ca_used[(rid.upper(), index)] = key
        return key

    def issuer(self, rid: str, bin6: str) -> rsa.RSAPrivateKey:
        """An issuer key (one per RID and BIN)."""
        return self._key(f"issuer-{rid.upper()}-{bin6}", ISSUER_BITS)

    def icc(self, pan: str, aid: str) -> rsa.RSAPrivateKey:
        """A card's own key (one per PAN and application)."""
        return self._key(f"icc-{pan[-4:]}-{hashlib.sha1((pan + aid).encode()).hexdigest()[:12]}", ICC_BITS)

    def ca_file_text(self, keys: list[tuple[str, int]] | None = None) -> str:
        """The CA public key file the terminal reads ([emv] ca_keys): one [[key]] table per CA key, with the
        Book 2 check sum (SHA-1 of RID, index, modulus, exponent)."""
        lines = ["# EMV certification authority public keys (TEST keys made by the simulator).", ""]
        for rid, index in keys if keys is not None else sorted(self.ca_used):
            key = self.ca(rid, index)
            mod, exp = modulus(key), exponent(key)
            checksum = hashlib.sha1(bytes.fromhex(rid) + bytes([index]) + mod + exp).hexdigest().upper()
            lines += [
                "[[key]]",
                f'rid = "{rid}"',
                f'index = "{index:02X}"',
                f'exponent = "{exp.hex().upper()}"',
                f'modulus = "{mod.hex().upper()}"',
                f'checksum = "{checksum}"',
                "",
            ]
        return "\n".join(lines)

    def write_ca_file(self, path: Path, keys: list[tuple[str, int]] | None = None) -> Path:
        """Write `ca_file_text` to `path`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.ca_file_text(keys), encoding="utf-8")
        return path
