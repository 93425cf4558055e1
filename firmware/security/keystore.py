"""Keys at rest: each key AES-256-GCM-sealed under a device key, in files only the service user can read.

`<data>/keys/device.key` holds 32 random bytes made at first use (mode 0600); each stored key is
`<data>/keys/<name>.sealed`, JSON with the nonce, the ciphertext (the key name is the associated data, so
a sealed file renamed to another key's name does not open) and the key's check value, which is safe to
show. On a board with a hardware key store (a TPM 2.0 or a secure element such as the ATECC608 on the
I2C bus), the device key would live there and `_device_key` would ask it to unseal instead.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from firmware.errors import KeyMaterialError
from firmware.security import keys

log = logging.getLogger(__name__)

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class KeyStore:
    """Sealed keys in one folder; `get` returns a bytearray the caller wipes when done."""

    def __init__(self, folder: Path) -> None:
        self._folder = Path(folder)

    def _device_key(self) -> bytes:
        path = self._folder / "device.key"
        self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = path.read_bytes()
            if len(key) != 32:
                raise KeyMaterialError(f"{path} is damaged ({len(key)} bytes, expected 32)") from None
            return key
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
            f.flush()
            os.fsync(f.fileno())
        return path.read_bytes()

    def _path(self, name: str) -> Path:
        if not NAME.match(name):
            raise KeyMaterialError(f"bad key name {name!r} (lower-case letters, digits, - and _)")
        return self._folder / f"{name}.sealed"

    def put(self, name: str, key: bytes, scheme: str) -> str:
        """Seal and store a key (replacing any of that name); returns its check value in hex."""
        check = keys.kcv(scheme, key).hex().upper()
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(self._device_key()).encrypt(nonce, bytes(key), name.encode())
        path = self._path(name)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"scheme": scheme, "nonce": nonce.hex(), "sealed": sealed.hex(), "kcv": check}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        log.info("key %s stored (KCV %s)", name, check)
        return check

    def get(self, name: str) -> bytearray | None:
        """The clear key, or None when there is no such key; KeyMaterialError when it does not open."""
        path = self._path(name)
        try:
            doc = json.loads(path.read_text())
            nonce, sealed = bytes.fromhex(doc["nonce"]), bytes.fromhex(doc["sealed"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyMaterialError(f"{path} is damaged: {exc.__class__.__name__}") from None
        try:
            return bytearray(AESGCM(self._device_key()).decrypt(nonce, sealed, name.encode()))
        except InvalidTag:
            raise KeyMaterialError(f"{path} does not open under this terminal's device key") from None

    def listing(self) -> list[tuple[str, str, str]]:
        """(name, scheme, check value) of every stored key: what may be shown, never the keys."""
        out = []
        for path in sorted(self._folder.glob("*.sealed")):
            try:
                doc = json.loads(path.read_text())
                out.append((path.stem, str(doc.get("scheme", "?")), str(doc.get("kcv", "?"))))
            except (OSError, ValueError):
                out.append((path.stem, "?", "damaged"))
        return out
