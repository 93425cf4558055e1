"""Admin commands at the shell: sign in with the admin PIN, load keys by components, list key check values.

Input comes from a terminal without echo (getpass), or line by line from standard input when it is not
a terminal (for scripted installs). Keys and components are never printed or logged; check values are.
"""

from __future__ import annotations

import getpass
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import TextIO

from firmware.config import Config
from firmware.errors import KeyMaterialError, PermissionDenied
from firmware.records.journal import Journal
from firmware.security import keys
from firmware.security.keystore import KeyStore
from firmware.security.operators import OperatorGate

log = logging.getLogger(__name__)


def reader(stream: TextIO | None = None) -> Callable[[str], str]:
    """Ask without echo on a terminal; read a line otherwise (standard input unless `stream` is given)."""

    def ask(prompt: str) -> str:
        source = stream or sys.stdin
        if source.isatty():
            return getpass.getpass(prompt)
        return source.readline().strip()

    return ask


def sign_in(cfg: Config, journal: Journal, ask: Callable[[str], str], role: str, action: str) -> None:
    """Check the PIN of `role` (or a higher role), audited; PermissionDenied when it is refused or locked."""
    ops = cfg.operators
    gate = OperatorGate(ops.hashes, ops.max_failures, ops.lockout, journal)
    ok, notice = gate.check(ask(f"{role} PIN: "), role, time.time())
    journal.audit(
        role,
        "sign-in" if ok else "sign-in refused",
        f"{action}{'' if ok else ': ' + notice}",
        datetime.now().astimezone(),
    )
    if not ok:
        raise PermissionDenied(f"{action} needs the {role} PIN: {notice}")


def load_key(
    cfg: Config,
    journal: Journal,
    name: str,
    scheme: str,
    parts: int,
    ask: Callable[[str], str],
    out: TextIO | None = None,
) -> str:
    """Take a key as `parts` hex components (each custodian keys one; each KCV is shown for them to check
    against their paper), combine them, seal the key in the key store. Returns the key's KCV."""
    out = out or sys.stdout
    sign_in(cfg, journal, ask, "admin", f"load key {name}")
    components = []
    try:
        for i in range(1, parts + 1):
            text = ask(f"component {i} of {parts} (32 hex digits): ").replace(" ", "")
            try:
                comp = bytearray.fromhex(text)
            except ValueError:
                raise KeyMaterialError(f"component {i} is not hex") from None
            if len(comp) != keys.KEY_LEN:
                raise KeyMaterialError(f"component {i} is {len(comp)} bytes, expected {keys.KEY_LEN}")
            components.append(comp)
            print(f"component {i} KCV {keys.kcv(scheme, bytes(comp)).hex().upper()[:6]}", file=out)
        key = keys.combine([bytes(c) for c in components])
        try:
            check = KeyStore(cfg.terminal.data_dir / "keys").put(name, bytes(key), scheme)
        finally:
            keys.wipe(key)
    finally:
        for comp in components:
            keys.wipe(comp)
    journal.audit("admin", "key loaded", f"{name} ({scheme}) KCV {check[:6]}", datetime.now().astimezone())
    print(f"key {name} stored, KCV {check[:6]}", file=out)
    return check
