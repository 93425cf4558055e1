"""The owner's and managers' passwords: scrypt at OWASP's cost (N=2^17, r=8, p=1; each hash keeps its parameters),
an older hash made again at the next right password, a damaged hash that would ask for gigabytes checked against
nothing, and at most users.CHECKS_AT_ONCE checks at a time (128 MiB each), with a bounded queue behind them."""

from __future__ import annotations

import hashlib
import secrets
import threading

from conftest import wait_until
from office import users, web
from test_office_web import Browser


def old_hash(password: str) -> str:
    """A hash as the back office made them before (N=2^14), in the same stored form."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${key.hex()}"


def test_new_hashes_are_made_at_owasps_cost_and_keep_their_parameters():
    stored = users.hash_password("correct horse battery")
    kind, n, r, p, salt, key = stored.split("$")
    assert (kind, n, r, p, len(salt), len(key)) == ("scrypt", str(2**17), "8", "1", 32, 64)
    assert users.password_matches("correct horse battery", stored)
    assert not users.password_matches("correct horse batterY", stored)
    assert not users.outdated(stored) and users.outdated(old_hash("x"))
    assert users.password_matches("an older one", old_hash("an older one"))  # read with its own parameters


def test_a_damaged_hash_asking_for_gigabytes_matches_nothing():
    salt, key = "00" * 16, "00" * 32
    for stored in (f"scrypt${2**24}$8$1${salt}${key}", f"scrypt$16384$8$64${salt}${key}", "scrypt$x", ""):
        assert not users.password_matches("anything", stored), stored


def test_an_older_hash_is_made_again_at_the_next_right_password(office):
    office.add_user("owner", "correct horse battery", "owner")
    before = old_hash("correct horse battery")
    office.sql("UPDATE users SET password_hash = %s WHERE name = 'owner'", (before,))
    assert Browser(office).sign_in("owner", "wrong horse battery") == 401
    assert office.sql("SELECT password_hash FROM users") == [(before,)]  # a wrong password changes nothing
    assert Browser(office).sign_in("owner", "correct horse battery") == 200
    [(after,)] = office.sql("SELECT password_hash FROM users")
    assert after != before and after.startswith(f"scrypt${2**17}$8$1$") and not users.outdated(after)
    assert users.password_matches("correct horse battery", after)
    assert Browser(office).sign_in("owner", "correct horse battery") == 200  # and it signs in with the new one
    assert office.sql("SELECT password_hash FROM users") == [(after,)]  # made once


def test_password_checks_run_two_at_a_time_and_a_flood_is_told_to_come_back(office, monkeypatch):
    office.add_user("owner", "correct horse battery", "owner")
    gate = office.server._runner.app[web.GATE]
    real, go = users.password_matches, threading.Event()
    running, most, lock = [0], [0], threading.Lock()

    def held(password: str, stored: str) -> bool:  # the real check, held until the test lets it go
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            go.wait(60)
            return real(password, stored)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(users, "password_matches", held)
    monkeypatch.setattr(web, "SIGN_IN_QUEUE", 2)
    answers: list[int] = []
    signs = [
        threading.Thread(target=lambda n=n: answers.append(Browser(office).sign_in(f"user{n}", "a wrong password")))
        for n in range(users.CHECKS_AT_ONCE + 2)
    ]
    for s in signs:
        s.start()
    wait_until(lambda: running[0] == users.CHECKS_AT_ONCE and gate.waiting == 2, 60, "two checked, two waiting")
    assert Browser(office).sign_in("owner", "correct horse battery") == 503  # the queue is full: come back
    go.set()
    for s in signs:
        s.join(60)
    assert answers == [401] * len(signs) and most[0] == users.CHECKS_AT_ONCE and gate.waiting == 0
    assert Browser(office).sign_in("owner", "correct horse battery") == 200


def test_a_user_made_by_the_command_signs_in(office):
    office.add_user("someone", "a long enough password", "manager", shop="east")
    [(stored,)] = office.sql("SELECT password_hash FROM users")
    assert stored.startswith(f"scrypt${2**17}$")
    assert Browser(office).sign_in("someone", "a long enough password") == 200
