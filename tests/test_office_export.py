"""A CSV export that fails half way must not look whole. The export streams (a year of a busy shop is more than a
response should hold in memory), so its status line has gone before the database's error comes: the back office
then closes the connection without the chunked body's last chunk. An HTTP client reads an incomplete body, and
Debian's chromium marks the download failed; an export that does not fail still ends as it should. (Before, the
error's 503 answer was written inside the body, the last chunk after it, on a connection left open: chromium
failed that download too, on the garbled chunk, but the bytes on the wire said nothing true; the wire test here
fails on that.)

The database's errors are real ones: the export's connection ended by pg_terminate_backend after two fetches of
rows (as a restart or an administrator would end it; a wrapper around the export picks the moment), or `txns`
made a view whose amount goes through a function that raises SQLSTATE XX001 (data corrupted) at one row, which
PostgreSQL meets at the first fetch (it sorts the rows first), after the header went out."""

from __future__ import annotations

import socket
import ssl

import pytest

from office.ingest import TXN_COLUMNS
from test_office_page import browser, until  # noqa: F401 - the browser fixture
from test_office_review_ingest import sign_in

ROWS, FAILS_AT = 6000, 4500  # the export fetches 2,000 rows at a time: the error comes in its third fetch
EXPORT = "/api/export.csv?from=2026-11-02&to=2026-11-02"


def fill(office, rows: int = ROWS) -> None:
    """`rows` approved sales of SHOP0001 on 2 November (ids 1..rows), straight into the books."""
    office.register("SHOP0001")
    office.add_user("owner", "correct horse battery", "owner")
    office.sql(
        "INSERT INTO txns (terminal_id, id, version, kind, method, entry_mode, amount, currency, status, stan,"
        " created_at, created_local, local_day, local_hour)"
        " SELECT 'SHOP0001', n, n, 'sale', 'card', 'swipe', 100 + n, 'CNY', 'approved', n %% 999999,"
        " '2026-11-02T10:00:00+08:00', '2026-11-02T10:00:00+08:00', '2026-11-02', 10"
        " FROM generate_series(1, %s) AS n",
        (rows,),
    )


def break_at(office, row_id: int) -> None:
    """From now on reading row `row_id`'s amount fails inside PostgreSQL (as a damaged page would)."""
    columns = TXN_COLUMNS.replace(" ", "").split(",")
    shown = ", ".join("office_test_read(id, amount) AS amount" if c == "amount" else c for c in columns)
    office.sql(
        "CREATE FUNCTION office_test_read(row_id bigint, amount bigint) RETURNS bigint VOLATILE LANGUAGE plpgsql AS"
        f" $$ BEGIN IF row_id = {row_id} THEN RAISE EXCEPTION 'could not read block 7 of txns' USING ERRCODE ="
        " 'XX001'; END IF; RETURN amount; END $$"
    )
    office.sql("ALTER TABLE txns RENAME TO txns_kept")
    ordered = 'SELECT * FROM txns_kept ORDER BY terminal_id COLLATE "C", id'  # sorted before the amounts are read
    office.sql(f"CREATE VIEW txns AS SELECT {shown} FROM ({ordered}) AS kept")


def cookie(office) -> str:
    opener = sign_in(office, "owner", "correct horse battery")
    jar = next(h for h in opener.handlers if hasattr(h, "cookiejar")).cookiejar
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def download(office) -> tuple[int, bytes, bool]:
    """GET the export over a bare TLS socket, read to the end of the connection: the status, the body taken out of
    its chunks, and whether the chunked body ended with its last chunk. Anything else on the wire fails the test."""
    ctx = ssl.create_default_context(cafile=office.ca_file)
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", office.port)), server_hostname="127.0.0.1") as s:
        s.settimeout(60)  # only so a connection left open fails the test rather than hanging it
        request = f"GET {EXPORT} HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {cookie(office)}\r\nConnection: close\r\n\r\n"
        s.sendall(request.encode())
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = b""
    while True:
        size_line, found, rest = rest.partition(b"\r\n")
        if not found:
            return status, body + size_line, False  # the connection ended inside a chunk's size line
        size = int(size_line.split(b";")[0], 16)  # not hex: something else is inside the body (a test failure)
        if size == 0:
            assert rest == b"\r\n", rest[:200]  # the last chunk, and nothing after it
            return status, body, True
        body += rest[:size]
        if len(rest) < size + 2:
            return status, body, False  # the connection ended inside a chunk
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]


def test_an_export_that_does_not_fail_ends_whole(office):
    fill(office)
    status, body, whole = download(office)
    assert status == 200 and whole
    lines = body.decode("utf-8-sig").splitlines()
    assert len(lines) == 1 + ROWS and lines[-1].startswith(f"SHOP0001,{ROWS},")


def cut_after(monkeypatch, office, chunks: int) -> None:
    """The export's database connection is ended for real (pg_terminate_backend, as a restart or an administrator
    would) after its first `chunks` pieces went out: its next fetch fails inside psycopg."""
    from office import reports

    real = reports.export_csv

    async def export_csv(conn, scope):
        sent = 0
        async for chunk in real(conn, scope):
            yield chunk
            sent += 1
            if sent == chunks:
                office.sql("SELECT pg_terminate_backend(%s, 10000)", (conn.info.backend_pid,))

    monkeypatch.setattr(reports, "export_csv", export_csv)


@pytest.mark.parametrize("fault", ["terminated", "unreadable"])
def test_a_database_error_half_way_leaves_the_download_incomplete(office, monkeypatch, caplog, fault):
    fill(office)
    if fault == "terminated":
        cut_after(monkeypatch, office, 3)  # the header, then two fetches of 2,000 rows
    else:
        break_at(office, FAILS_AT)  # PostgreSQL sorts first: the error comes at the first fetch, after the header
    status, body, whole = download(office)
    assert status == 200  # it had begun
    lines = body.decode("utf-8-sig").splitlines()
    assert len(lines) == (4001 if fault == "terminated" else 1), "the rows before the error went out"
    assert not whole, f"a body of {len(lines)} lines that looks whole"
    assert any("broke half way" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


@pytest.mark.parametrize("breaks", [False, True], ids=["whole", "broken"])
def test_the_browser_marks_a_broken_export_failed(office, tmp_path, browser, breaks):  # noqa: F811 - the fixture
    """Debian's headless chromium downloads the export from the page's link: it completes the whole one, and
    marks the broken one failed (its download list: "Failed - Network error") and never writes its file."""
    fill(office)
    if breaks:
        break_at(office, FAILS_AT)
    folder = tmp_path / "downloads"
    folder.mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
    browser.get(office.url + "/")
    until(browser, lambda b: b.find_element("id", "signin").is_displayed(), "the sign-in form")
    browser.find_element("id", "name").send_keys("owner")
    browser.find_element("id", "password").send_keys("correct horse battery")
    browser.find_element("id", "signin-button").click()
    until(
        browser, lambda b: "/api/export.csv" in (b.find_element("id", "csv").get_attribute("href") or ""), "signed in"
    )
    browser.execute_script(f"document.getElementById('csv').href = {EXPORT!r}")  # the day the rows are on
    browser.find_element("id", "csv").click()
    browser.get("chrome://downloads/")
    state, reason, name = until(browser, finished, "the download ended", 60)
    assert name == "transactions-2026-11-02-2026-11-02.csv"
    if breaks:
        assert (state, reason) == (INTERRUPTED, "Failed - Network error")
        assert not (folder / name).exists()
    else:
        assert (state, reason) == (COMPLETE, "")
        assert len((folder / name).read_text(encoding="utf-8-sig").splitlines()) == 1 + ROWS


# chrome://downloads' own record of a download: its state (Chromium's downloads.mojom State: 0 in progress,
# 2 complete, 5 interrupted), the reason shown under it, and its file's name
IN_PROGRESS, COMPLETE, INTERRUPTED = "0", "2", "5"


def finished(b) -> list[str] | None:
    """The first download on chrome://downloads once it is no longer in progress: state, reason, file name."""
    item = b.execute_script(
        "const m = document.querySelector('downloads-manager');"
        "const item = m && m.shadowRoot.querySelector('downloads-item');"
        "const d = item && item.data;"
        "return d ? [String(d.state), String(d.lastReasonText || ''), String(d.fileName)] : null;"
    )
    return item if item and item[0] != IN_PROGRESS else None
