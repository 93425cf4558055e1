"""WeChat Pay's payment callbacks at the back office: a callback is believed only with WeChat Pay's signature
(its public key, the serial it names, a fresh timestamp) and this merchant inside its decrypted resource; a
terminal learns what it said only about its own orders, and only as a hint (its own query decides)."""

from __future__ import annotations

import dataclasses
import json
import re
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
    status, _ = post(  # its own id, but not an order number it could have made
        wechat_office, "/api/v1/wallet/notice?order=SHOP0001%25", {"Authorization": f"Bearer {token}"}, method="GET"
    )
    assert status == 403
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


def test_a_shown_wechat_code_learns_of_its_payment_from_the_back_office_callback(office_db, tmp_path, monkeypatch):
    """The terminal's first poll is ten minutes away: only the back office's notice can make it ask WeChat now;
    and what it shows then is what WeChat's own answer to its query said."""
    import socket

    from conftest import sim_config
    from firmware.config import OfficeConfig
    from firmware.core import walletorder
    from hwsim import Simulator
    from office.tlscert import self_signed
    from office.web import BackgroundOffice
    from office_fixtures import Office

    monkeypatch.setattr(walletorder, "POLL_MAX", 600.0)
    with socket.socket() as s:  # the office's port, known before the terminal boots
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tmp_path / "office"
    folder.mkdir()
    cert, key, _ = self_signed(["127.0.0.1", "localhost"])
    (folder / "cert.pem").write_bytes(cert)
    (folder / "key.pem").write_bytes(key)
    office = Office(f"https://127.0.0.1:{port}", port, str(folder / "cert.pem"), office_db, folder, None)
    cfg = sim_config(host=2.0)
    cfg = dataclasses.replace(
        cfg,
        terminal=dataclasses.replace(cfg.terminal, terminal_id="SHOPW001"),
        wallet=dataclasses.replace(cfg.wallet, poll_interval=600.0, qr_timeout=900),
        wechat=dataclasses.replace(cfg.wechat, office_notices=True),
        office=OfficeConfig(
            url=office.url, token_file=office.register("SHOPW001"), ca_file=office.ca_file, timeout=3.0
        ),
    )
    with Simulator(tmp_path / "data", cfg) as sim:
        gw = sim.wechat
        (folder / "apiv3.txt").write_bytes(gw.apiv3_key)
        (folder / "platform.pem").write_bytes(gw.platform[-1].pem)
        notify = WechatNotifyConfig(
            gw.mchid, str(folder / "apiv3.txt"), str(folder / "platform.pem"), gw.platform[-1].serial
        )
        settings = OfficeSettings(
            "test",
            office_db,
            ServerConfig("127.0.0.1", port, str(folder / "cert.pem"), str(folder / "key.pem")),
            wechat=notify,
        )
        server = BackgroundOffice(settings, port=port).start()
        try:
            sim.keys("1250{ENTER}")
            sim.wait_for("F2 WECHAT PAY")
            sim.keys("{F2}")
            sim.wait_for("SCAN TO PAY")
            order_no = gw.pay(sim.display_qr)
            assert post(office, "/api/v1/wechat/notify", *gw.callback(order_no))[0] == 204
            sim.wait_for("PAID")
            [row] = [r for r in sim.journal() if r["method"] == "wallet"]
            assert (row["order_no"], row["status"]) == (order_no, "approved")
            assert [e for e, _, _ in gw.requests].count("query") == 1  # asked once, right after the notice
        finally:
            server.stop()


def test_a_notice_wakes_the_terminal_only_when_it_is_this_orders_payment():
    from firmware.config import OfficeConfig
    from firmware.wallets.notices import OfficeNotices

    n = OfficeNotices(OfficeConfig(url="https://127.0.0.1:1"), "1900000109")
    good = {"out_trade_no": "T1", "mchid": "1900000109", "trade_state": "SUCCESS", "total": 880, "currency": "CNY"}
    assert n.bound(good, "T1", 880)
    for lie in (
        {"out_trade_no": "T2"},
        {"mchid": "1900000110"},
        {"total": 881},
        {"total": "880"},
        {"total": 880.0},
        {"trade_state": "NOTPAY"},
    ):
        assert not n.bound({**good, **lie}, "T1", 880), lie
    assert not n.bound(None, "T1", 880)


def test_the_office_wechat_table_reads_and_names_what_is_wrong(tmp_path):
    from firmware.errors import ConfigError
    from office.config import parse

    doc = {
        "database": {"dsn": "dbname=x"},
        "server": {"host": "127.0.0.1"},
        "wechat": {"mchid": "1900000109", "apiv3_key": "k.txt", "verify_key": "p.pem", "verify_serial": "PUB_KEY_ID_1"},
    }
    settings = parse(doc, "office.toml", tmp_path)
    assert settings.wechat is not None and settings.wechat.apiv3_key == str(tmp_path / "k.txt")
    for change, message in (
        ({"mchid": "wx"}, "[wechat] mchid"),
        ({"verify_serial": ""}, "[wechat] verify_serial"),
        ({"colour": "red"}, "[wechat] colour: unknown key"),
    ):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse({**doc, "wechat": {**doc["wechat"], **change}}, "office.toml", tmp_path)
