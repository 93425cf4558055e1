"""The owner's side of the back office over HTTPS: sign-in with hashed passwords, sessions that expire, a lock after
wrong passwords, what a manager of one shop sees, the report and CSV downloads, and the headers every answer
carries. The page itself in a browser: tests/test_office_page.py."""

from __future__ import annotations

import csv
import http.cookiejar
import io
import json
import ssl
import urllib.request
from datetime import date

import pytest

from test_office_books import busy_journal, forward_all, terminal_report


class Browser:
    """A cookie-keeping HTTPS client that trusts the office's certificate."""

    def __init__(self, office) -> None:
        self.office = office
        self.jar = http.cookiejar.CookieJar()
        ctx = ssl.create_default_context(cafile=office.ca_file)
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), urllib.request.HTTPSHandler(context=ctx)
        )

    def call(self, path: str, body=None, content_type="application/json"):
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        req = urllib.request.Request(self.office.url + path, data, {"Content-Type": content_type} if data else {})
        try:
            with self.opener.open(req, timeout=60) as answer:  # a sign-in may queue behind others' checks
                return answer.status, answer.headers, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def sign_in(self, name: str, password: str) -> int:
        return self.call("/api/login", {"name": name, "password": password})[0]


@pytest.fixture
def books(office, tmp_path):
    journals = {}
    for n, (tid, shop) in enumerate((("SHOP0001", "north"), ("SHOP0002", "south"))):
        office.register(tid, shop)
        journals[tid] = busy_journal(tmp_path / tid / "journal.sqlite3", tid, seed=n)
        forward_all(office, tid, journals[tid])
    office.add_user("owner", "correct horse battery", "owner")
    office.add_user("north-mgr", "manager password", "manager", shop="north")
    yield journals
    for j in journals.values():
        j.close()


def test_sign_in_sessions_and_what_each_user_sees(office, books):
    b = Browser(office)
    assert b.call("/api/me")[0] == 401 and b.call("/api/report?from=2026-11-01")[0] == 401  # nothing before sign-in
    assert b.sign_in("owner", "wrong password") == 401
    assert b.sign_in("owner", "correct horse battery") == 200
    [cookie] = list(b.jar)
    assert cookie.name == "countertop_session" and cookie.secure and cookie.has_nonstandard_attr("HttpOnly")
    status, _, body = b.call("/api/me")
    me = json.loads(body)
    assert (me["name"], me["role"], [t["terminal_id"] for t in me["terminals"]]) == (
        "owner",
        "owner",
        ["SHOP0001", "SHOP0002"],
    )
    stored = office.sql("SELECT token_hash FROM sessions")
    assert stored and cookie.value not in {s for (s,) in stored}  # only its SHA-256 is kept
    assert office.sql("SELECT password_hash FROM users WHERE name = 'owner'")[0][0].startswith("scrypt$")

    # a manager of one shop sees that shop's books only, whatever the query asks for
    m = Browser(office)
    assert m.sign_in("north-mgr", "manager password") == 200
    mine = json.loads(m.call("/api/report?from=2026-11-01&to=2026-11-03")[2])
    theirs = json.loads(m.call("/api/report?from=2026-11-01&to=2026-11-03&terminal=SHOP0002")[2])
    assert [t["terminal_id"] for t in mine["terminals"]] == ["SHOP0001"] and theirs["terminals"] == []
    own, _ = terminal_report(books["SHOP0001"], date(2026, 11, 1), date(2026, 11, 3))
    assert (mine["sales"]["amount"], mine["net"]) == (own.sales_amount, own.net_amount)
    assert theirs["sales"] == {"count": 0, "amount": 0}

    # a session ends when it expires, and at sign-out
    office.sql("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE user_name = 'north-mgr'")
    assert m.call("/api/me")[0] == 401
    assert b.call("/api/logout", {})[0] == 200 and b.call("/api/me")[0] == 401
    assert office.sql("SELECT COUNT(*) FROM sessions WHERE user_name = 'owner'") == [(0,)]


def test_wrong_passwords_lock_the_user(office, books):
    b = Browser(office)
    for _ in range(5):
        assert b.sign_in("owner", "not the password") == 401
    assert b.sign_in("owner", "correct horse battery") == 401  # locked, even with the right password
    office.sql("UPDATE users SET locked_until = now() - interval '1 second' WHERE name = 'owner'")
    assert b.sign_in("owner", "correct horse battery") == 200
    assert b.sign_in("nobody-here", "whatever it is") == 401
    # a form on another site cannot sign anyone in: only a same-origin script sends application/json
    form = b"name=owner&password=correct+horse+battery"
    assert b.call("/api/login", form, "application/x-www-form-urlencoded")[0] == 415


def test_report_and_export_as_csv(office, books):
    b = Browser(office)
    b.sign_in("owner", "correct horse battery")
    status, headers, body = b.call("/api/report.csv?from=2026-11-01&to=2026-11-03")
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    figures = {row[0]: row for row in csv.reader(io.StringIO(body.decode("utf-8-sig")))}
    total = sum(terminal_report(j, date(2026, 11, 1), date(2026, 11, 3))[0].net_amount for j in books.values())
    assert figures["net"][2] == f"{total // 100}.{total % 100:02d}"
    status, headers, body = b.call("/api/export.csv?from=2026-11-01&to=2026-11-03&shop=south")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    assert status == 200 and "attachment" in headers["Content-Disposition"]
    assert {r["terminal_id"] for r in rows} == {"SHOP0002"}
    own = books["SHOP0002"].rows_between("2026-11-01", "2026-11-03")  # the terminal's own export of the range
    assert [(int(r["id"]), r["status"], r["amount"]) for r in rows] == [
        (r["id"], r["status"], f"{r['amount'] // 100}.{r['amount'] % 100:02d}") for r in own
    ]
    assert all("*" in r["masked_pan"] for r in rows if r["masked_pan"])
    assert (
        headers["X-Content-Type-Options"] == "nosniff"
        and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    )
    assert b.call("/api/report?from=2026-11-03&to=2026-11-01")[0] == 400
    assert b.call("/api/report?from=yesterday")[0] == 400
