"""Who may use the back office: the owner's and managers' sign-ins (scrypt password hashes, sessions that expire,
a lock after repeated wrong passwords) and each terminal's credential (a random token; only its SHA-256 is kept).
Cashiers have no sign-in here."""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from office.errors import OfficeError

log = logging.getLogger(__name__)

ROLES = ("owner", "manager")
MIN_PASSWORD = 8
MAX_FAILURES, LOCK_MINUTES = 5, 5
# scrypt's cost for new hashes: OWASP's first choice for scrypt (N=2^17, r=8, p=1), 128 MiB and about 0.9 s a
# check on the 2-core machine the tests run on. Each stored hash keeps its own parameters; a hash made with other
# ones (2^14 before) is made again at its owner's next sign-in. CHECKS_AT_ONCE bounds the memory sign-ins take.
_N, _R, _P = 2**17, 8, 1
MAX_MEMORY = 256 << 20  # a stored hash asking for more than this (a damaged row) is not checked at all
CHECKS_AT_ONCE = 2  # password checks at one time (the office's web server): 2 x 128 MiB at most


@dataclass(frozen=True)
class User:
    """A signed-in user: what they may see (a manager with a shop sees only that shop's terminals)."""

    name: str
    role: str
    shop: str


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (hex): the parameters travel with the hash."""
    salt = salt or secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_N, r=_R, p=_P, dklen=32, maxmem=MAX_MEMORY)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${key.hex()}"


def password_matches(password: str, stored: str) -> bool:
    """True when `password` hashes to `stored` with the parameters stored with it (compared in constant time).
    A stored hash that cannot be read, or that asks for more than MAX_MEMORY, matches nothing."""
    try:
        _, n, r, p, salt, key = stored.split("$")
        got = hashlib.scrypt(
            password.encode("utf-8"),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(key) // 2,
            maxmem=MAX_MEMORY,
        )
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), key)


def outdated(stored: str) -> bool:
    """True when a stored hash was made with other parameters than new hashes are (to be made again)."""
    return stored.split("$")[:4] != ["scrypt", str(_N), str(_R), str(_P)]


# What an unknown or locked name is checked against: as costly as a real hash, matching no password.
_DUMMY = f"scrypt${_N}${_R}${_P}${'00' * 16}${'00' * 32}"


def digest(token: str) -> str:
    """SHA-256 (hex) of a random token: what the database keeps of session cookies and terminal tokens."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_user(conn: Any, name: str, password: str, role: str, shop: str = "") -> None:
    """A new user, or a new password (and role, shop) for an existing one (sync psycopg connection)."""
    if role not in ROLES:
        raise OfficeError(f"role must be {' or '.join(ROLES)}")
    if role == "manager" and not shop:
        raise OfficeError("a manager is a shop's: give the shop (--shop); the owner sees every shop")
    if not name or len(name) > 64 or not name.isprintable():
        raise OfficeError("a user name is 1 to 64 printable characters")
    if len(password) < MIN_PASSWORD:
        raise OfficeError(f"a password has at least {MIN_PASSWORD} characters")
    with conn.transaction():
        conn.execute(
            "INSERT INTO users (name, password_hash, role, shop) VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO UPDATE"
            " SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role, shop = EXCLUDED.shop, failures = 0,"
            " locked_until = NULL",
            (name, hash_password(password), role, shop),
        )
        conn.execute("DELETE FROM sessions WHERE user_name = %s", (name,))  # a new password ends old sign-ins


def add_terminal(conn: Any, terminal_id: str, shop: str = "", rotate: bool = False) -> str:
    """Register a terminal (or, with `rotate`, give it a new token); returns its token, shown only now."""
    if not (len(terminal_id) == 8 and terminal_id.isascii() and terminal_id.isprintable()):
        raise OfficeError("a terminal id is 8 printable ASCII characters (ISO 8583 field 41), as in its config")
    token = secrets.token_urlsafe(32)
    with conn.transaction():
        exists = conn.execute("SELECT 1 FROM terminals WHERE terminal_id = %s", (terminal_id,)).fetchone()
        if exists and not rotate:
            raise OfficeError(f"terminal {terminal_id} is registered already (--rotate gives it a new token)")
        conn.execute(
            "INSERT INTO terminals (terminal_id, shop, token_hash) VALUES (%s, %s, %s) ON CONFLICT (terminal_id) DO"
            " UPDATE SET token_hash = EXCLUDED.token_hash, shop = COALESCE(NULLIF(EXCLUDED.shop, ''), terminals.shop)",
            (terminal_id, shop, digest(token)),
        )
    return token


def take_new_journal(conn: Any, terminal_id: str) -> tuple[int, int, int]:
    """Let a terminal whose storage was replaced send from its new journal (sync connection): its rows will be
    stored past the ids, versions and batch numbers the books hold of it, so nothing old is overwritten. Returns
    the offsets (ids, versions, batches)."""
    with conn.transaction():
        if conn.execute("SELECT 1 FROM terminals WHERE terminal_id = %s FOR UPDATE", (terminal_id,)).fetchone() is None:
            raise OfficeError(f"terminal {terminal_id} is not registered")
        ids, seqs, batches = conn.execute(
            "SELECT GREATEST((SELECT MAX(id) FROM txns WHERE terminal_id = %(t)s),"
            " (SELECT MAX(transaction_id) FROM sale_lines WHERE terminal_id = %(t)s),"
            " (SELECT MAX(transaction_id) FROM signatures WHERE terminal_id = %(t)s), 0),"
            " GREATEST((SELECT MAX(version) FROM txns WHERE terminal_id = %(t)s),"
            " (SELECT MAX(version) FROM sale_lines WHERE terminal_id = %(t)s),"
            " (SELECT MAX(version) FROM settlements WHERE terminal_id = %(t)s),"
            " (SELECT MAX(version) FROM signatures WHERE terminal_id = %(t)s),"
            " (SELECT MAX(seq) FROM set_aside_rows WHERE terminal_id = %(t)s), 0),"
            " GREATEST((SELECT MAX(batch) FROM txns WHERE terminal_id = %(t)s),"
            " (SELECT MAX(batch) FROM settlements WHERE terminal_id = %(t)s), 0)",
            {"t": terminal_id},
        ).fetchone()
        conn.execute(
            "UPDATE terminals SET journal_id = NULL, id_offset = %s, seq_offset = %s, batch_offset = %s,"
            " last_seq = 0, last_refusal = '' WHERE terminal_id = %s",
            (ids, seqs, batches, terminal_id),
        )
    log.warning(
        "office: terminal %s's next journal is taken: its rows go past id %d, version %d, batch %d",
        terminal_id,
        ids,
        seqs,
        batches,
    )
    return ids, seqs, batches


async def terminal_of(conn: Any, token: str) -> str | None:
    """The terminal whose token this is (async connection), or None."""
    cur = await conn.execute("SELECT terminal_id FROM terminals WHERE token_hash = %s", (digest(token),))
    row = await cur.fetchone()
    return None if row is None else str(row[0])


async def sign_in(conn: Any, name: str, password: str, hours: float) -> tuple[str, User] | None:
    """A new session's token and its user, or None (wrong name or password, or locked after MAX_FAILURES wrong
    passwords for LOCK_MINUTES). The attempt is counted (and the lock set when it is the last allowed) before the
    password is checked, in one statement: guesses sent at once cannot outrun the lock. The password is checked in
    a thread (scrypt takes most of a second); unknown and locked names cost a check too. A hash made with an
    older cost is made again (the password is right, and known now). The caller bounds how many run at once."""
    import asyncio

    cur = await conn.execute(
        "UPDATE users SET failures = failures + 1, locked_until = CASE WHEN failures + 1 >= %s THEN"
        " now() + make_interval(mins => %s) ELSE locked_until END"
        " WHERE name = %s AND (locked_until IS NULL OR locked_until <= now()) RETURNING password_hash, role, shop",
        (MAX_FAILURES, LOCK_MINUTES, name),
    )
    row = await cur.fetchone()
    ok = await asyncio.to_thread(password_matches, password, row[0] if row else _DUMMY)
    if row is None:
        log.warning("office: sign-in as %r refused: no such user, or locked after wrong passwords", name[:64])
        return None
    if not ok:
        log.warning("office: wrong password for %s", name)
        return None
    if outdated(row[0]):  # made with an older cost: made again now that the password is known
        fresh = await asyncio.to_thread(hash_password, password)
        await conn.execute(
            "UPDATE users SET password_hash = %s WHERE name = %s AND password_hash = %s", (fresh, name, row[0])
        )
        log.info("office: %s's password hash made again with scrypt N=%d, r=%d, p=%d", name, _N, _R, _P)
    token = secrets.token_urlsafe(32)
    async with conn.transaction():
        await conn.execute("DELETE FROM sessions WHERE expires_at < now()")
        await conn.execute("UPDATE users SET failures = 0, locked_until = NULL WHERE name = %s", (name,))
        await conn.execute(
            "INSERT INTO sessions (token_hash, user_name, expires_at)"
            " VALUES (%s, %s, now() + make_interval(secs => %s))",
            (digest(token), name, hours * 3600),
        )
    log.info("office: %s signed in", name)
    return token, User(name, row[1], row[2])


async def session_user(conn: Any, token: str) -> User | None:
    """The user of an unexpired session, or None."""
    cur = await conn.execute(
        "SELECT u.name, u.role, u.shop FROM sessions s JOIN users u ON u.name = s.user_name"
        " WHERE s.token_hash = %s AND s.expires_at > now()",
        (digest(token),),
    )
    row = await cur.fetchone()
    return None if row is None else User(*row)


async def sign_out(conn: Any, token: str) -> None:
    """End a session."""
    await conn.execute("DELETE FROM sessions WHERE token_hash = %s", (digest(token),))
