"""WeChat Pay's payment callbacks at the back office: a callback is believed only with WeChat Pay's signature
(its public key, the serial it names, a fresh timestamp) and this merchant inside its decrypted resource; a
terminal learns what it said only about its own orders, and only as a hint (its own query decides)."""

from __future__ import annotations

import dataclasses
import json
import ssl
import urllib.request
from pathlib import Path

import pytest

from hwsim.wechatgw import WechatGateway
from office.config import OfficeSettings, ServerConfig
from office.wechatnotify import WechatNotifyConfig


@pytest.fixture
def gw():
    g = WechatGateway(mode="public_key")
    yield g
    g.close()


@pytest.fixture
def wechat_office(office_db, tmp_path, gw):
    from office.tlscert import self_signed
    from office.web import BackgroundOffice
    from office_fixtures import Office

    folder = tmp_path / "office"
    folder.mkdir()
    cert, key, _ = self_signed(["127.0.0.1", "localhost"])
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    (folder / "apiv3.txt").write_bytes(gw.apiv3_key)
    (folder / "pub_key.pem").write_bytes(gw.public_key_pem)
    notify = WechatNotifyConfig(gw.mchid, str(folder / "apiv3.txt"), str(folder / "pub_key.pem"), gw.public_key_id)
    settings = OfficeSettings(
        "test", office_db, ServerConfig("127.0.0.1", 0, str(folder / "cert.pem"), str(folder / "key.pem"))
    )
    server = BackgroundOffice(dataclasses.replace(settings, wechat=notify)).start()
    try:
        yield Office(
            f"https://127.0.0.1:{server.port}", server.port, str(folder / "cert.pem"), office_db, folder, server
        )
    finally:
        server.stop()


def post(office, path, headers, body=None, method="POST"):
    ctx = ssl.create_default_context(cafile=office.ca_file)
    req = urllib.request.Request(office.url + path, body, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30, context=ctx) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _token(office, terminal_id):
    return Path(office.register(terminal_id)).read_text(encoding="ascii").strip()


def paid_order(gw, no="SHOP0001260101120000ABCDEF", amount=880):
    from hwsim.wechatgw import Order

    gw.orders[no] = Order(no, "native", amount)
    gw.pay(None)
    return no


def test_a_signed_callback_is_decrypted_stored_and_read_by_its_own_terminal_only(wechat_office, gw):
    token = _token(wechat_office, "SHOP0001")
    other = _token(wechat_office, "SHOP0002")
    no = paid_order(gw)
    status, _ = post(wechat_office, "/api/v1/wechat/notify", *gw.callback(no))
    assert status == 204
    [row] = wechat_office.sql("SELECT out_trade_no, mchid, trade_state, total, payer FROM wallet_notices")
    assert row[:4] == (no, gw.mchid, "SUCCESS", 880) and "****" in row[4]
    status, body = post(
        wechat_office, f"/api/v1/wallet/notice?order={no}", {"Authorization": f"Bearer {token}"}, method="GET"
    )
    assert status == 200 and json.loads(body) == {
        "out_trade_no": no,
        "mchid": gw.mchid,
        "transaction_id": gw.orders[no].transaction_id,
        "trade_state": "SUCCESS",
        "total": 880,
        "currency": "CNY",
    }
    status, _ = post(
        wechat_office, f"/api/v1/wallet/notice?order={no}", {"Authorization": f"Bearer {other}"}, method="GET"
    )
    assert status == 403  # another terminal's order
    assert post(wechat_office, f"/api/v1/wallet/notice?order={no}", {}, method="GET")[0] == 401


@pytest.mark.parametrize("fault", ["bad_signature", "stale_timestamp", "wrong_serial", "other_merchant", "wrong_key"])
def test_a_callback_not_from_wechat_or_not_for_this_merchant_is_refused_and_not_stored(wechat_office, gw, fault):
    no = paid_order(gw)
    headers, body = gw.callback(no, fault)
    status, answer = post(wechat_office, "/api/v1/wechat/notify", headers, body)
    assert status == 401 and json.loads(answer)["code"] == "FAIL"  # WeChat sends it again
    assert wechat_office.sql("SELECT count(*) FROM wallet_notices") == [(0,)]


def test_a_changed_body_is_refused(wechat_office, gw):
    no = paid_order(gw)
    headers, body = gw.callback(no)
    status, _ = post(wechat_office, "/api/v1/wechat/notify", headers, body.replace(b"SUCCESS", b"SUCCESs"))
    assert status == 401


def test_a_terminal_waiting_for_its_notice_gets_it_when_the_callback_arrives(wechat_office, gw):
    import threading

    token = _token(wechat_office, "SHOP0001")
    no = paid_order(gw)
    got = {}

    def wait():
        got["answer"] = post(
            wechat_office,
            f"/api/v1/wallet/notice?order={no}&wait=20",
            {"Authorization": f"Bearer {token}"},
            method="GET",
        )

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert post(wechat_office, "/api/v1/wechat/notify", *gw.callback(no))[0] == 204
    waiter.join(30)
    assert got["answer"][0] == 200 and json.loads(got["answer"][1])["trade_state"] == "SUCCESS"
