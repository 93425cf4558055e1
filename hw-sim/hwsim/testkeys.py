"""TEST-ONLY RSA key pairs for the simulator's gateways, read from hwsim/testkeys/ (made once, kept as test data).

A name with no file there gets a fresh key made in memory, as before. `python -m hwsim.testkeys` (re)writes the
files for KEPT. These keys are published with the source: they must never sign anything real.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

FOLDER = Path(__file__).with_name("testkeys")
KEPT = (
    "merchant",
    "gateway",
    "wechat-merchant",
    "wechat-root",
    "wechat-public-key",
    *(f"wechat-platform-{n}" for n in range(4)),
    *(f"unionpay-{n}" for n in ("root", "middle", "sign", "other", "merchant")),
    *(f"lakala-{n}" for n in ("merchant", "platform", "other")),
)


def _pair(key: rsa.RSAPrivateKey) -> tuple[bytes, bytes]:
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


@functools.lru_cache(maxsize=32)
def keypair(name: str) -> tuple[bytes, bytes]:
    """A TEST-ONLY 2048-bit RSA key pair (private PKCS#8 PEM, public PEM): the kept one for `name`, else a new one."""
    path = FOLDER / f"{name}.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None, unsafe_skip_rsa_key_validation=True)
        if isinstance(key, rsa.RSAPrivateKey):
            return _pair(key)
    return _pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@functools.lru_cache(maxsize=32)
def private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """The harness's own TEST-ONLY private key from its PEM, loaded once, without the RSA consistency check (which
    costs ~28 ms a key: these keys are the harness's own, and the firmware still checks the keys it is given)."""
    key = serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=True)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def main() -> None:
    """Write a new TEST-ONLY key for every kept name."""
    FOLDER.mkdir(exist_ok=True)
    for name in KEPT:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (FOLDER / f"{name}.pem").write_bytes(_pair(key)[0])
        print(f"wrote {FOLDER / name}.pem (TEST ONLY)", file=sys.stderr)


if __name__ == "__main__":
    main()
