"""Operator roles (cashier < manager < admin): PINs stored as scrypt hashes, and a lockout after repeated failures."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Protocol

from firmware.errors import ConfigError

ROLES = ("admin", "manager", "cashier")
RANK = {"cashier": 1, "manager": 2, "admin": 3}  # a role may do what the roles below it may
_N, _R, _P = 2**14, 8, 1  # scrypt cost: ~16 MiB, tens of milliseconds on a Pi 4


def hash_pin(pin: str, salt: bytes | None = None) -> str:
    """'scrypt$<salt hex>$<hash hex>' for an operator PIN (what goes into the config file)."""
    if not (pin.isdigit() and 4 <= len(pin) <= 12):
        raise ValueError("an operator PIN is 4 to 12 digits")
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(pin.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def check_hash_format(stored: str) -> str | None:
    """None when `stored` looks like a hash_pin() result, else what is wrong (for config checks)."""
    parts = stored.split("$")
    if len(parts) != 3 or parts[0] != "scrypt":
        return "must be a hash made by `countertop hash-pin` (scrypt$salt$hash)"
    try:
        bytes.fromhex(parts[1]), bytes.fromhex(parts[2])
    except ValueError:
        return "salt and hash must be hex"
    return None


def pin_matches(pin: str, stored: str) -> bool:
    """Constant-time check of a PIN against its stored hash."""
    problem = check_hash_format(stored)
    if problem:
        raise ConfigError(problem)
    _, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(pin.encode(), salt=bytes.fromhex(salt), n=_N, r=_R, p=_P, dklen=32)
    return hmac.compare_digest(candidate, bytes.fromhex(digest))


def role_of(pin: str, hashes: dict[str, str]) -> str | None:
    """The role whose PIN this is, or None."""
    for role in ROLES:
        stored = hashes.get(role)
        if stored and pin_matches(pin, stored):
            return role
    return None


class OperatorGate:
    """Checks operator PINs for a role; after `max_failures` wrong PINs the role is locked for a while.

    Failures and the lock survive restarts (kept in the journal's counters); time is passed in.
    """

    def __init__(
        self,
        hashes: dict[str, str],
        max_failures: int,
        lockout_seconds: int,
        store: CounterStore,
        cashiers: dict[str, str] | None = None,
    ) -> None:
        self._hashes, self._max, self._lockout, self._store = hashes, max_failures, lockout_seconds, store
        self._cashiers = cashiers or {}  # cashier number -> PIN hash: each cashier signs in as themself

    def _who(self, pin: str) -> tuple[str | None, str]:
        """(role, name) of the PIN's owner: ("cashier", "cashier 02") for a numbered cashier."""
        found = role_of(pin, self._hashes)
        if found is not None:
            return found, found
        for number, stored in self._cashiers.items():
            if pin_matches(pin, stored):
                return "cashier", f"cashier {number}"
        return None, ""

    def check(self, pin: str, role: str, now: float) -> tuple[bool, str]:
        """(True, "") when `pin` is the PIN of `role` or of a higher role; else (False, a short screen text)."""
        ok, notice, _ = self.sign_in(pin, role, now)
        return ok, notice

    def sign_in(self, pin: str, role: str, now: float) -> tuple[bool, str, str]:
        """Like check, and who it is ("manager", "cashier 02", ...) when it succeeds."""
        return self.decide(self.identify(pin), role, now)

    def identify(self, pin: str) -> tuple[str | None, str]:
        """(role, name) of whoever owns `pin`, or (None, ""). The slow part (scrypt, tens of milliseconds):
        no I/O, safe to run in a worker thread while `decide`, which keeps the counts, stays on the loop."""
        return self._who(pin)

    def decide(self, identified: tuple[str | None, str], role: str, now: float) -> tuple[bool, str, str]:
        """Whether an identified PIN opens `role`, counting failures and locking the role after too many."""
        if not any(self._hashes.get(r) for r in ROLES if RANK[r] >= RANK[role]) and not (
            role == "cashier" and self._cashiers
        ):
            return False, f"NO {role.upper()} PIN SET", ""
        locked_until = self._store.counter(f"operator:{role}:locked_until") or 0
        if now < locked_until:
            return False, f"LOCKED, TRY IN {int(locked_until - now) // 60 + 1} MIN", ""
        found, who = identified
        if found is not None and RANK[found] >= RANK[role]:
            self._store.set_counter(f"operator:{role}:failures", 0)
            return True, "", who
        failures = self._store.take_counter(f"operator:{role}:failures", 1)
        if failures >= self._max:
            self._store.set_counter(f"operator:{role}:locked_until", int(now) + self._lockout)
            self._store.set_counter(f"operator:{role}:failures", 0)
            return False, f"LOCKED, TRY IN {self._lockout // 60 or 1} MIN", ""
        return False, (f"{role.upper()} ONLY" if found else "WRONG OPERATOR PIN"), ""


class CounterStore(Protocol):
    """What OperatorGate needs from the journal."""

    def counter(self, name: str) -> int | None: ...
    def set_counter(self, name: str, value: int) -> None: ...
    def take_counter(self, name: str, first: int) -> int: ...
