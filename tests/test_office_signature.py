"""Issue 16's electronic signature in the back office: a terminal's journal keeps the signature with its sale, the
outbox forwards it (journal migration 16), the office stores it byte for byte with the sale, and the owner (or the
manager of that sale's shop, no other) sees the sale and its signature on the page; a bad image is set aside."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

import psycopg
import pytest

from firmware.records.journal import Journal, NewSale
from firmware.records.schema import MIGRATIONS
from firmware.shell.signature import signature_png
from office.users import take_new_journal
from test_office_books import forward_all, post
from test_office_page import browser, until  # noqa: F401 - the page's browser fixture
from test_office_review_ingest import CN, forwarder_tries, get, sign_in, txn_body

STROKES = [[(40, 200), (120, 120), (200, 220), (280, 100)], [(300, 250), (420, 250)]]
AT = datetime(2026, 11, 2, 10, tzinfo=CN)


def signed_sale(journal: Journal, terminal_id: str, amount: int, strokes=STROKES, at=AT) -> tuple[int, bytes]:
    """An approved chip sale verified by signature, its signature kept as the terminal keeps it; (row, png)."""
    row, stan = journal.begin_sale(
        NewSale("card", "chip", amount, "CNY", "622848******1234", terminal_id, "102030405060708", card_token="t"), at
    )
    journal.finish(row, "approved", at, response_code="00", auth_code="654321")
    png = signature_png(strokes, 480, 320)
    assert journal.keep_signature(stan, png, "", at) == row
    return row, png


def test_an_older_journal_keeps_its_outbox_and_versions_through_the_migration(tmp_path):
    """Migration 16 makes the outbox table again (its CHECK names the entities): what waits in it stays, and the
    next version follows the highest ever handed out, even when the queue was empty."""
    path = tmp_path / "journal.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:15], start=1):
        db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    db.execute("INSERT INTO counters VALUES ('forwarding', 1)")
    for seq in range(1, 8):
        db.execute("INSERT INTO forward_queue (entity, row_id, body) VALUES ('transaction', ?, '{}')", (seq,))
    db.execute("DELETE FROM forward_queue WHERE seq < 7")  # acknowledged
    db.close()
    journal = Journal(path)
    try:
        assert [tuple(r) for r in journal._db.execute("SELECT seq, row_id FROM forward_queue")] == [(7, 7)]
        row, png = signed_sale(journal, "SHOP0001", 2500)
        queued = [
            tuple(r) for r in journal._db.execute("SELECT seq, entity, row_id, body FROM forward_queue WHERE seq > 7")
        ]
    finally:
        journal.close()
    assert [(s, e, r) for s, e, r, _ in queued] == [(8, "transaction", row), (9, "transaction", row)] + [
        (10, "signature", row)
    ]  # the sale begun, then approved, then its signature
    body = json.loads(queued[2][3])
    assert body == {"transaction_id": row, "png_hex": png.hex().upper(), "note": "", "created_at": AT.isoformat()}


def test_a_signed_sale_reaches_the_office_byte_for_byte_and_only_its_shop_sees_it(office, tmp_path):
    office.register("SHOPA001", shop="north")
    office.register("SHOPB001", shop="south")
    office.add_user("owner", "correct horse battery", "owner")
    office.add_user("north-mgr", "manager password", "manager", shop="north")
    office.add_user("south-mgr", "manager password", "manager", shop="south")
    journal = Journal(tmp_path / "a" / "journal.sqlite3")
    before, png_before = signed_sale(journal, "SHOPA001", 1250)  # kept before forwarding was on: queued when it is
    journal.set_forwarding(True)
    row, png = signed_sale(journal, "SHOPA001", 2500, STROKES[:1])
    paper, stan = journal.begin_sale(NewSale("card", "chip", 900, "CNY", "622848******1234", "SHOPA001", "1"), AT)
    journal.finish(paper, "approved", AT, response_code="00")
    journal.keep_signature(stan, None, "cancelled: signed on paper", AT)
    forward_all(office, "SHOPA001", journal)
    journal.close()
    stored = office.sql("SELECT transaction_id, png, note FROM signatures WHERE terminal_id = 'SHOPA001' ORDER BY 1")
    assert stored == [(before, png_before, ""), (row, png, ""), (paper, None, "cancelled: signed on paper")]

    owner = sign_in(office, "owner", "correct horse battery")
    code, body = get(owner, office, f"/api/sale?terminal=SHOPA001&id={row}")
    sale = json.loads(body)
    assert code == 200 and sale["amount"] == 2500 and sale["masked_pan"] == "622848******1234"
    assert sale["auth_code"] == "654321" and sale["exponent"] == 2 and "card_token" not in sale
    assert sale["signature"] == {"image": True, "note": "", "created_at": AT.isoformat()}
    answer = owner.open(office.url + f"/api/signature.png?terminal=SHOPA001&id={row}", timeout=10)
    assert answer.status == 200 and answer.headers["Content-Type"] == "image/png" and answer.read() == png
    code, body = get(owner, office, f"/api/sale?terminal=SHOPA001&id={paper}")
    assert code == 200 and json.loads(body)["signature"] == {
        "image": False,
        "note": "cancelled: signed on paper",
        "created_at": AT.isoformat(),
    }
    assert get(owner, office, f"/api/signature.png?terminal=SHOPA001&id={paper}")[0] == 404
    assert get(owner, office, "/api/sale?terminal=SHOPA001&id=999")[0] == 404
    assert get(owner, office, "/api/sale?terminal=SHOPA001&id=x1")[0] == 400

    north = sign_in(office, "north-mgr", "manager password")
    assert get(north, office, f"/api/signature.png?terminal=SHOPA001&id={row}") == (200, png)
    south = sign_in(office, "south-mgr", "manager password")  # another shop's manager: as if there were no sale
    for path in (f"/api/sale?terminal=SHOPA001&id={row}", f"/api/signature.png?terminal=SHOPA001&id={row}"):
        code, body = get(south, office, path)
        assert code == 404 and png not in body and b"622848" not in body
    import urllib.request

    stranger = urllib.request.build_opener(urllib.request.HTTPSHandler(context=_ctx(office)))
    assert get(stranger, office, f"/api/signature.png?terminal=SHOPA001&id={row}")[0] == 401


def _ctx(office):
    import ssl

    return ssl.create_default_context(cafile=office.ca_file)


@pytest.mark.parametrize(
    ("png_hex", "reason"),
    [
        ("474946383961" + "00" * 20, "not a PNG"),  # a GIF
        ("89504E470D0A1A0A" + "00" * (64 << 10), "over 65536 bytes"),
        ("89504E470D0A1A0AZZ", "not hex"),
        (12, "png_hex must be str or NoneType"),
    ],
    ids=["gif", "too-big", "not-hex", "not-text"],
)
def test_a_bad_signature_image_is_set_aside_with_its_reason_and_the_rows_after_it_arrive(office, png_hex, reason):
    token = open(office.register("SHOPA001")).read().strip()
    good = signature_png(STROKES, 480, 320)
    rows = [
        {"seq": 1, "entity": "transaction", "row_id": 1, "line_no": 0, "body": txn_body("SHOPA001", 1)},
        {"seq": 2, "entity": "signature", "row_id": 1, "line_no": 0, "body": _sig(1, png_hex)},
        {"seq": 3, "entity": "transaction", "row_id": 2, "line_no": 0, "body": txn_body("SHOPA001", 2)},
        {"seq": 4, "entity": "signature", "row_id": 2, "line_no": 0, "body": _sig(2, good.hex())},
    ]
    status, answer = post(office, token, {"terminal_id": "SHOPA001", "queue_depth": 0, "rows": rows})
    assert status == 200 and answer["acknowledged"] == 4 and answer["stored"] == 3
    [aside] = answer["set_aside"]
    assert aside["seq"] == 2 and reason in aside["reason"]
    assert office.sql("SELECT entity, row_id FROM set_aside_rows") == [("signature", 1)]
    assert office.sql("SELECT transaction_id, png FROM signatures") == [(2, good)]


def _sig(row_id: int, png_hex) -> dict:
    return {"transaction_id": row_id, "png_hex": png_hex, "note": "", "created_at": AT.isoformat()}


def test_a_signature_is_replaced_only_by_a_newer_version_and_never_outlives_a_sale_set_aside(office):
    token = open(office.register("SHOPA001")).read().strip()
    first, second = signature_png(STROKES, 480, 320), signature_png(STROKES[:1], 480, 320)

    def send(rows):
        return post(office, token, {"terminal_id": "SHOPA001", "queue_depth": 0, "rows": rows})

    txn = {"entity": "transaction", "row_id": 1, "line_no": 0, "body": txn_body("SHOPA001", 1)}
    assert send([{"seq": 1, **txn}, {"seq": 5, "entity": "signature", "row_id": 1, "body": _sig(1, second.hex())}])[0]
    assert send([{"seq": 3, "entity": "signature", "row_id": 1, "body": _sig(1, first.hex())}])[0] == 200  # older
    assert office.sql("SELECT png, version FROM signatures") == [(second, 5)]
    unmasked = txn_body("SHOPA001", 2, masked_pan="6228481234561234")
    status, answer = send(
        [
            {"seq": 6, "entity": "transaction", "row_id": 2, "line_no": 0, "body": unmasked},
            {"seq": 7, "entity": "signature", "row_id": 2, "body": _sig(2, first.hex())},
        ]
    )
    assert status == 200 and [r["seq"] for r in answer["set_aside"]] == [6, 7]
    assert "set aside" in answer["set_aside"][1]["reason"]
    assert office.sql("SELECT transaction_id FROM signatures") == [(1,)]


def test_a_replaced_journals_signatures_go_with_its_sales_past_the_old_ones(office, tmp_path):
    """After `countertop office terminal ID --new-journal` the new journal's sale 1 is the books' sale 2: its
    signature goes there too, and the old sale keeps its own."""
    office.register("SHOPA001")
    old = Journal(tmp_path / "old" / "journal.sqlite3")
    old.set_forwarding(True)
    _, old_png = signed_sale(old, "SHOPA001", 1000)
    forward_all(office, "SHOPA001", old)
    old.close()
    new = Journal(tmp_path / "new" / "journal.sqlite3")
    new.set_forwarding(True)
    _, new_png = signed_sale(new, "SHOPA001", 2000, STROKES[1:])
    assert "409" in forwarder_tries(office, "SHOPA001", new, tries=1)[0]
    with psycopg.connect(office.dsn, autocommit=True) as conn:
        take_new_journal(conn, "SHOPA001")
    assert forwarder_tries(office, "SHOPA001", new, tries=3) == []
    new.close()
    assert office.sql("SELECT transaction_id, png FROM signatures ORDER BY 1") == [(1, old_png), (2, new_png)]
    assert office.sql("SELECT id, amount FROM txns ORDER BY 1") == [(1, 1000), (2, 2000)]


def test_the_owner_finds_a_sale_on_the_page_and_sees_its_signature(office, tmp_path, browser):  # noqa: F811
    office.register("SHOPA001")
    office.add_user("owner", "correct horse battery", "owner")
    journal = Journal(tmp_path / "journal.sqlite3")
    journal.set_forwarding(True)
    row, _ = signed_sale(journal, "SHOPA001", 2500)
    unsigned, _ = journal.begin_sale(NewSale("card", "swipe", 1250, "CNY", "622848******1234", "SHOPA001", "1"), AT)
    journal.finish(unsigned, "approved", AT, response_code="00")
    late, _ = signed_sale(journal, "SHOPA001", 3300, STROKES[1:], AT.replace(hour=23))  # outside opening hours
    forward_all(office, "SHOPA001", journal)
    journal.close()

    browser.get(office.url + "/")
    until(browser, lambda b: b.find_element("id", "signin").is_displayed(), "the sign-in form")
    browser.find_element("id", "name").send_keys("owner")
    browser.find_element("id", "password").send_keys("correct horse battery")
    browser.find_element("id", "signin-button").click()
    until(browser, lambda b: b.find_element("id", "find-sale").is_displayed(), "the find-a-sale form")
    assert browser.find_element("id", "find-sale-button").text == "查找"
    browser.find_element("id", "sale-terminal").send_keys("SHOPA001")
    browser.find_element("id", "sale-id").send_keys(str(row))
    browser.find_element("id", "find-sale-button").click()
    image = "const i = document.getElementById('sale-signature'); return i ? i.naturalWidth : 0"
    until(browser, lambda b: b.find_element("id", "sale").is_displayed() and b.execute_script(image) > 0, "the image")
    assert browser.execute_script(image) == 480
    shown = browser.find_element("id", "sale").text
    assert "25.00" in shown and "622848******1234" in shown and "654321" in shown
    browser.save_screenshot(str(tmp_path / "sale-zh.png"))

    browser.find_element("id", "sale-id").clear()
    browser.find_element("id", "sale-id").send_keys(str(unsigned))
    browser.find_element("id", "find-sale-button").click()
    until(browser, lambda b: "12.50" in b.find_element("id", "sale").text, "the unsigned sale")
    assert not browser.find_elements("id", "sale-signature")
    assert "无电子签名" in browser.find_element("id", "sale").text

    browser.find_element("id", "sale-id").clear()
    browser.find_element("id", "sale-id").send_keys("999")
    browser.find_element("id", "find-sale-button").click()
    until(browser, lambda b: b.find_element("id", "sale-error").text == "找不到这笔交易", "no such sale")
    assert not browser.find_element("id", "sale").is_displayed()

    # the anomaly list names the late sale as TERMINAL:ID; clicking it opens the sale
    browser.execute_script(
        "for (const id of ['from', 'to']) { const e = document.getElementById(id); e.value = arguments[0];"
        " e.dispatchEvent(new Event('change')); }",
        AT.date().isoformat(),
    )
    link = f"SHOPA001:{late}"
    until(browser, lambda b: b.find_elements("link text", link), "the late sale named in the anomalies")
    browser.find_element("link text", link).click()
    until(browser, lambda b: "33.00" in b.find_element("id", "sale").text, "the late sale opened")
    until(browser, lambda b: b.execute_script(image) > 0, "its signature")
    assert browser.find_element("id", "sale-id").get_attribute("value") == str(late)
    assert browser.find_element("id", "sale-error").text == ""
