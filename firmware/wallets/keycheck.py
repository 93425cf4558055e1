"""Wallet private keys checked once: cryptography's full RSA check the first time this terminal loads a key's bytes,
remembered by their SHA-256 beside the key store, so the same bytes are not checked again at every boot."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cryptography's key loading is imported when a key is loaded (a card-only terminal never does)
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

log = logging.getLogger(__name__)

KEPT = 32  # digests remembered: the newest first (a terminal holds a handful of wallet keys)


class CheckedKeys:
    """The SHA-256 digests of private keys (their bytes and password) that passed the RSA check on this terminal,
    one a line in `path`.

    cryptography checks an RSA private key when it loads one (its primes, its CRT numbers: about 30-100 ms for a
    2048-bit key here) and calls skipping that unsafe for keys not known to be valid: a damaged or crafted key
    can make OpenSSL hang, crash or sign wrongly. The merchant's key files come from outside (a console, an
    installer's copy), so the first load of any bytes is checked in full. The check's answer for the same bytes
    is always the same, so bytes listed here are loaded without it. The list sits in the key store's folder
    (the service's own, 0700): whoever could add a digest to it could as well replace the keys it protects."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _known(self) -> list[str]:
        try:
            return self.path.read_text(encoding="ascii").split()
        except (OSError, UnicodeDecodeError):
            return []  # unreadable or damaged: every key is checked again, and the list rewritten

    def _remember(self, digest: str, known: list[str]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write("".join(f"{d}\n" for d in [digest, *known][:KEPT]))
            os.replace(tmp, self.path)
        except OSError as exc:  # a list not kept only costs a check at the next boot
            log.warning("keys: could not note the checked key in %s: %s", self.path, exc)

    def load(self, data: bytes, password: bytes | None = None, *, der: bool = False) -> PrivateKeyTypes:
        """The private key in `data` (PEM, or DER with `der`), RSA-checked unless these bytes passed before.
        Raises as cryptography's loaders do (ValueError, TypeError, UnsupportedAlgorithm)."""
        from cryptography.hazmat.primitives import serialization

        digest = hashlib.sha256(b"%d:%b%b" % (len(password or b""), password or b"", data)).hexdigest()
        known = self._known()
        checked = digest in known
        loader = serialization.load_der_private_key if der else serialization.load_pem_private_key
        key = loader(data, password, unsafe_skip_rsa_key_validation=checked)
        if not checked:
            self._remember(digest, known)
        return key


def load_private_key(
    data: bytes, password: bytes | None = None, *, der: bool = False, checked: CheckedKeys | None = None
) -> PrivateKeyTypes:
    """A private key, through `checked` when given (see CheckedKeys), else always with cryptography's full check."""
    from cryptography.hazmat.primitives import serialization

    if checked is not None:
        return checked.load(data, password, der=der)
    loader = serialization.load_der_private_key if der else serialization.load_pem_private_key
    return loader(data, password)
