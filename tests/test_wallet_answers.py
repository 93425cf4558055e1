"""Wallet answers that lie: genuinely signed Alipay answers that belong to some other request (replayed by a
man in the middle, or a gateway that says the wrong order or amount), unsigned gateway errors, retried
cancels, and the key forms Alipay hands out. None of them may pay, cancel or refund anything."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import sim_config, wait_until
from firmware.core import walletorder
from firmware.errors import ConfigError
from firmware.wallets import desk as walletdesk
from firmware.wallets.alipay import (
    CHINA,
    AlipayClient,
    WalletError,
    WalletGatewayError,
    WalletMismatch,
    load_private_key,
    load_public_key,
)
from firmware.wallets.providers import make_wallet
from hwsim import Simulator
from hwsim.walletgw import ReplayProxy, WalletGateway, bare_base64

CODE = "286123456789012345"  # a payer's one-time payment code: never in a log or the journal
AMOUNT = 1250


@pytest.fixture
def gw():
    g = WalletGateway()
    yield g
    g.close()


def client(
    gateway: WalletGateway,
    url: str | None = None,
    app_id: str | None = None,
    private: bytes | None = None,
    public: bytes | None = None,
) -> AlipayClient:
    return AlipayClient(
        url or gateway.url,
        app_id or gateway.app_id,
        private or gateway.merchant_private_pem,
        public or gateway.gateway_public_pem,
        timeout=5,
    )


def run(coro):
    return asyncio.run(coro)


def paid_qr_order(gw: WalletGateway, c: AlipayClient, no: str, amount: int = AMOUNT) -> str:
    """A shown code the customer paid; returns the gateway's trade number."""
    shown = run(c.create_order(no, amount, "t"))
    gw.pay(shown.qr)
    return gw.orders[no].trade_no


# --- a gateway that signs answers which are not this request's ---------------------------------------


def _pay(gw, c):
    return run(c.pay_by_code("B1", AMOUNT, CODE, "t"))


def _pay_declined(gw, c):
    gw.next_code("insufficient")
    return run(c.pay_by_code("B1", AMOUNT, CODE, "t"))


def _query(gw, c):
    paid_qr_order(gw, c, "B1")
    return run(c.query("B1", AMOUNT))


def _precreate(gw, c):
    return run(c.create_order("B1", AMOUNT, "t"))


def _close(gw, c):
    gw.scan(run(c.create_order("B1", AMOUNT, "t")).qr)
    return run(c.close("B1"))


def _cancel(gw, c):
    gw.next_code("never_confirm")
    assert run(c.pay_by_code("B1", AMOUNT, CODE, "t")).state == "waiting"
    return run(c.cancel("B1"))


def _refund(gw, c):
    paid_qr_order(gw, c, "B1")
    return run(c.refund("B1", 500, "R1"))


def _refund_resent(gw, c):
    paid_qr_order(gw, c, "B1")
    assert run(c.refund("B1", 500, "R1")).state == "refunded"
    return run(c.refund("B1", 500, "R1"))  # no money moves: confirmed by the refund query


LIES = [  # (what is asked, the method that lies, how it lies)
    (_pay, "alipay.trade.pay", "other_order"),
    (_pay, "alipay.trade.pay", "no_order_no"),
    (_pay, "alipay.trade.pay", "wrong_amount"),
    (_pay, "alipay.trade.pay", "no_amount"),
    (_pay_declined, "alipay.trade.pay", "other_order"),  # somebody else's decline is not ours either
    (_query, "alipay.trade.query", "other_order"),
    (_query, "alipay.trade.query", "no_order_no"),
    (_query, "alipay.trade.query", "wrong_amount"),
    (_query, "alipay.trade.query", "no_amount"),
    (_precreate, "alipay.trade.precreate", "other_order"),
    (_precreate, "alipay.trade.precreate", "no_order_no"),
    (_close, "alipay.trade.close", "other_order"),
    (_cancel, "alipay.trade.cancel", "other_order"),
    (_refund, "alipay.trade.refund", "other_order"),
    (_refund, "alipay.trade.refund", "wrong_amount"),  # refunds total less than this refund
    (_refund, "alipay.trade.refund", "no_amount"),
    (_refund_resent, "alipay.trade.fastpay.refund.query", "wrong_amount"),
    (_refund_resent, "alipay.trade.fastpay.refund.query", "other_order"),
]


@pytest.mark.parametrize(
    "ask, method, lie", LIES, ids=[f"{m.removeprefix('alipay.trade.')}-{lie}-{a.__name__[1:]}" for a, m, lie in LIES]
)
def test_a_signed_answer_for_another_request_is_no_answer(gw, ask, method, lie):
    c = client(gw)
    if lie == "other_order":
        paid_qr_order(gw, c, "A0")  # an earlier order whose number the lie borrows
    gw.fault(lie, method=method)
    with pytest.raises(WalletMismatch):
        ask(gw, c)
    assert any(m == method for m, _ in gw.requests)  # the lie really was served


def test_unsigned_success_is_not_believed(gw):
    gw.fault("unsigned", method="alipay.trade.pay")
    with pytest.raises(WalletGatewayError, match="unsigned, not trusted"):
        _pay(gw, client(gw))
    assert gw.orders["B1"].state == "paid"  # it was paid; the terminal must ask again
    assert run(client(gw).query("B1", AMOUNT)).state == "paid"


def test_an_answer_to_another_method_is_no_answer(gw):
    c = client(gw)
    paid_qr_order(gw, c, "A0")
    proxy = ReplayProxy(gw.url)
    try:
        run(client(gw, proxy.url).query("A0", AMOUNT))
        body = proxy.answers[-1][2]  # a genuine, signed query answer
    finally:
        proxy.close()
    with pytest.raises(WalletError, match="no alipay_trade_pay_response"):
        c.verify_answer(body, "alipay.trade.pay")
    assert c.verify_answer(body, "alipay.trade.query")["out_trade_no"] == "A0"


# --- a man in the middle replaying genuinely signed answers -------------------------------------------


@pytest.fixture
def mitm(gw):
    p = ReplayProxy(gw.url)
    yield p
    p.close()


def test_replayed_payment_of_an_earlier_order_does_not_pay_a_new_one(gw, mitm):
    c = client(gw, mitm.url)
    trade_a = paid_qr_order(gw, c, "A0")
    run(c.query("A0", AMOUNT))  # the proxy keeps A's TRADE_SUCCESS
    gw.scan(run(c.create_order("B1", AMOUNT, "t")).qr)
    mitm.replay("alipay.trade.query")
    with pytest.raises(WalletMismatch, match="for order A0, not B1"):
        run(c.query("B1", AMOUNT))
    assert mitm.replayed == [("alipay.trade.query", "B1", "A0")]
    mitm.honest()
    assert run(c.query("B1", AMOUNT)).state == "waiting"
    assert gw.orders["A0"].trade_no == trade_a


def test_replayed_pay_answer_is_no_payment(gw, mitm):
    c = client(gw, mitm.url)
    assert run(c.pay_by_code("A0", AMOUNT, CODE, "t")).state == "paid"
    mitm.replay("alipay.trade.pay")
    with pytest.raises(WalletMismatch):
        run(c.pay_by_code("B1", AMOUNT, "287654321098765432", "t"))
    assert "B1" not in gw.orders  # the request never reached Alipay


@pytest.mark.parametrize("method", ["alipay.trade.precreate", "alipay.trade.close", "alipay.trade.cancel"])
def test_replayed_answers_of_other_methods(gw, mitm, method):
    c = client(gw, mitm.url)
    gw.scan(run(c.create_order("A0", AMOUNT, "t")).qr)
    run(c.close("A0"))
    run(c.cancel("A9"))
    mitm.replay(method)
    with pytest.raises(WalletMismatch):
        if method == "alipay.trade.precreate":
            run(c.create_order("B1", AMOUNT, "t"))
        elif method == "alipay.trade.close":
            run(c.close("B1"))
        else:
            run(c.cancel("B1"))


def test_replayed_refund_answer_is_confirmed_by_request_number(gw, mitm):
    c = client(gw, mitm.url)
    paid_qr_order(gw, c, "A0")
    assert run(c.refund("A0", 500, "R1")).state == "refunded"
    mitm.replay("alipay.trade.refund", "A0")  # R1's answer (refund_fee 5.00) to R2's request
    with pytest.raises(WalletMismatch, match="refunds total 5.00, less than this refund of 7.50"):
        run(c.refund("A0", 750, "R2", refunded_before=500))
    with pytest.raises(WalletError, match="not confirmed"):  # 5.00 could hold 3.00: asked by request number
        run(c.refund("A0", 300, "R2", refunded_before=500))
    assert list(gw.orders["A0"].refunds) == ["R1"]  # R2 never reached Alipay, and is not taken as done
    mitm.honest()
    assert run(c.refund("A0", 300, "R2", refunded_before=500)).state == "refunded"
    assert gw.orders["A0"].refunds == {"R1": "5.00", "R2": "3.00"}


# --- the terminal behind a replaying man in the middle ------------------------------------------------


@pytest.fixture
def mitm_sim(tmp_path, monkeypatch):
    """A simulator whose terminal reaches the wallet gateway through a replaying proxy."""
    monkeypatch.setattr(walletorder, "EXPIRY_MARGIN", timedelta(0))
    monkeypatch.setattr(walletdesk, "CHASE_MAX", 1.0)
    cfg = sim_config(host=2.0)
    cfg = dataclasses.replace(
        cfg,
        wallet=dataclasses.replace(
            cfg.wallet, qr_timeout=30, poll_interval=0.1, confirm_timeout=1.0, confirm_interval=0.1
        ),
    )
    with Simulator(tmp_path / "data", cfg) as s:
        proxy = ReplayProxy(s.wallet.url)
        s.config = dataclasses.replace(s.config, wallet=dataclasses.replace(s.config.wallet, gateway=proxy.url))
        s.restart(crash=False)  # the terminal now talks through the proxy
        try:
            yield s, proxy
        finally:
            proxy.close()


def wallet_rows(sim):
    return [r for r in sim.journal() if r["method"] == "wallet"]


def show_code(sim, amount="1250"):
    sim.keys(amount + "{ENTER}")
    sim.wait_for("SWIPE CARD")
    sim.keys("{F1}")
    sim.wait_for("SCAN TO PAY")
    return sim.display_qr


def first_paid_order(sim, proxy):
    """Order A: shown, paid, PAID on screen; the proxy now holds its signed TRADE_SUCCESS."""
    show_code(sim)
    order_a = sim.wallet.pay()
    sim.wait_for("PAID")
    assert wallet_rows(sim)[0]["status"] == "approved"
    assert any(m == "alipay.trade.query" and o == order_a and "TRADE_SUCCESS" in b for m, o, b in proxy.answers)
    sim.keys("{ENTER}")
    sim.wait_for("ENTER AMOUNT")
    return order_a


@pytest.mark.parametrize("customer", ["never pays", "pays while the proxy lies"])
def test_terminal_behind_a_replaying_proxy(mitm_sim, customer):
    sim, proxy = mitm_sim
    order_a = first_paid_order(sim, proxy)
    proxy.replay("alipay.trade.query")  # every query now gets A's signed TRADE_SUCCESS
    qr = show_code(sim)
    order_b = sim.wallet.scan(qr)  # Alipay: WAIT_BUYER_PAY
    wait_until(lambda: len([r for r in proxy.replayed if r[1] == order_b]) >= 3, what="lies told")
    assert "SCAN TO PAY" in sim.screen and "PAID" not in sim.screen
    assert wallet_rows(sim)[1]["status"] == "pending"
    if customer == "pays while the proxy lies":
        sim.wallet.pay(qr)
        wait_until(lambda: len([r for r in proxy.replayed if r[1] == order_b]) >= 6, what="more lies told")
    proxy.block("alipay.trade.close")  # nor can the order be closed
    sim.keys("{CANCEL}")
    sim.wait_for("PAYMENT UNKNOWN", timeout=15)
    row = wallet_rows(sim)[1]
    assert row["order_no"] == order_b and row["status"] == "unknown"  # neither approved nor cancelled
    proxy.honest()
    if customer == "never pays":
        wait_until(lambda: wallet_rows(sim)[1]["status"] == "cancelled", timeout=15, what="reconciled")
        assert sim.wallet.orders[order_b].state == "closed"
    else:
        wait_until(lambda: wallet_rows(sim)[1]["status"] == "approved", timeout=15, what="reconciled")
        row = wallet_rows(sim)[1]
        assert row["wallet_trade_no"] == sim.wallet.orders[order_b].trade_no
        assert row["wallet_trade_no"] != sim.wallet.orders[order_a].trade_no
    assert wallet_rows(sim)[0]["status"] == "approved" and len(wallet_rows(sim)) == 2


def test_replayed_pay_answer_at_the_till(mitm_sim):
    sim, proxy = mitm_sim
    sim.keys("880{ENTER}")
    sim.scan(CODE)
    sim.wait_for("PAID")
    sim.keys("{ENTER}")
    sim.wait_for("ENTER AMOUNT")
    proxy.replay("alipay.trade.pay")  # the first payment's signed answer, to the next one
    sim.keys("990{ENTER}")
    sim.scan("287654321098765432")
    sim.wait_for("PAYMENT UNKNOWN")
    assert wallet_rows(sim)[1]["status"] == "unknown"
    proxy.honest()
    wait_until(lambda: wallet_rows(sim)[1]["status"] == "cancelled", timeout=15, what="reconciled")
    assert sim.wallet.orders[wallet_rows(sim)[1]["order_no"]].state == "closed"  # cancelled at Alipay too
    assert "287654321098765432" not in str(sim.journal())


# --- Alipay says "retry" to a cancel --------------------------------------------------------------------


@pytest.fixture
def wsim(tmp_path, monkeypatch):
    monkeypatch.setattr(walletorder, "EXPIRY_MARGIN", timedelta(0))
    monkeypatch.setattr(walletorder, "END_FIRST_DELAY", 0.05)
    monkeypatch.setattr(walletdesk, "CHASE_MAX", 1.0)
    cfg = sim_config(host=2.0)
    cfg = dataclasses.replace(
        cfg,
        wallet=dataclasses.replace(
            cfg.wallet, qr_timeout=3, poll_interval=0.1, confirm_timeout=0.5, confirm_interval=0.1
        ),
    )
    with Simulator(tmp_path / "data", cfg) as s:
        yield s


def unconfirmed_code(sim):
    sim.wallet.next_code("never_confirm")
    sim.keys("880{ENTER}")
    sim.scan(CODE)
    sim.wait_for("CONFIRM IN YOUR APP")


def cancels(sim):
    return [p for m, p in sim.wallet.requests if m == "alipay.trade.cancel"]


def test_cancel_is_retried_while_alipay_says_retry(wsim):
    wsim.wallet.fault("retry", times=2, method="alipay.trade.cancel")
    unconfirmed_code(wsim)
    wsim.wait_for("NOT PAID")
    assert wallet_rows(wsim)[0]["status"] == "cancelled" and len(cancels(wsim)) == 3
    assert wsim.wallet.orders[wallet_rows(wsim)[0]["order_no"]].state == "closed"


def test_a_cancel_alipay_keeps_refusing_is_never_journaled_cancelled(wsim):
    wsim.wallet.fault("retry", times=1000, method="alipay.trade.cancel")
    unconfirmed_code(wsim)
    wsim.wait_for("PAYMENT UNKNOWN")
    [row] = wallet_rows(wsim)
    assert row["status"] == "unknown"  # the trade is still open at Alipay: it may be paid
    # The cashier's tries, and maybe already the first of the background reconciliation's (1 s later).
    assert len(cancels(wsim)) >= walletorder.END_ATTEMPTS
    wsim.wallet.confirm(row["order_no"])  # and so it is: the payer confirms late
    wait_until(lambda: wallet_rows(wsim)[0]["status"] == "approved", what="reconciled as paid")
    assert wallet_rows(wsim)[0]["wallet_trade_no"] == wsim.wallet.orders[row["order_no"]].trade_no


def test_reconcile_keeps_cancelling_until_alipay_closes_the_order(wsim):
    wsim.wallet.fault("retry", times=walletorder.END_ATTEMPTS + 2, method="alipay.trade.cancel")
    unconfirmed_code(wsim)
    wsim.wait_for("PAYMENT UNKNOWN")
    wait_until(lambda: wallet_rows(wsim)[0]["status"] == "cancelled", what="closed by reconciliation")
    assert len(cancels(wsim)) == walletorder.END_ATTEMPTS + 3
    assert wsim.wallet.orders[wallet_rows(wsim)[0]["order_no"]].state == "closed"


def test_a_payment_the_cancel_catches_is_refunded_by_alipay(wsim):
    wsim.wallet.pay_when_closed()  # the payer confirms as the terminal gives up
    unconfirmed_code(wsim)
    wsim.wait_for("REFUNDED TO PAYER")  # Alipay's cancel refunded it (action = refund)
    [row] = wallet_rows(wsim)
    assert row["status"] == "cancelled" and row["note"] == "REFUNDED TO PAYER"
    assert wsim.wallet.orders[row["order_no"]].state == "closed"


# --- unsigned gateway errors: logged for the operator, never believed --------------------------------


def test_wrong_app_id_is_logged_with_its_codes(gw, caplog):
    caplog.set_level(logging.INFO)
    with pytest.raises(WalletGatewayError) as err:
        run(client(gw, app_id="2021999999999999").create_order("B1", AMOUNT, "t"))
    assert (err.value.code, err.value.sub_code) == ("40002", "isv.invalid-app-id")
    assert "app_id" in str(err.value)
    [record] = [r for r in caplog.records if r.name == "firmware.wallets.alipay" and r.levelno == logging.ERROR]
    line = record.getMessage()
    for part in (
        "code=40002",
        "msg=Invalid Arguments",
        "sub_code=isv.invalid-app-id",
        "sub_msg=无效的AppID参数",
        "(unsigned)",
    ):
        assert part in line
    assert "B1" not in gw.orders


def test_wrong_private_key_is_logged_without_the_payment_code(gw, caplog):
    caplog.set_level(logging.INFO)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(WalletGatewayError) as err:
        run(client(gw, private=other).pay_by_code("B1", AMOUNT, CODE, "t"))
    assert (err.value.code, err.value.sub_code) == ("40002", "isv.invalid-signature")
    assert "private_key" in str(err.value)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sub_code=isv.invalid-signature" in logged and "sub_msg=验签出错" in logged
    assert CODE not in logged and CODE not in str(err.value)  # Alipay echoes the signed string: cut
    assert "B1" not in gw.orders


def test_misconfigured_key_at_the_till(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(walletdesk, "CHASE_MAX", 1.0)
    caplog.set_level(logging.INFO)
    with Simulator(tmp_path / "data", sim_config(host=2.0)) as sim:
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
        (tmp_path / "wrong.pem").write_bytes(other)
        sim.config = dataclasses.replace(
            sim.config, wallet=dataclasses.replace(sim.config.wallet, private_key=str(tmp_path / "wrong.pem"))
        )
        sim.restart(crash=False)
        sim.keys("880{ENTER}")
        sim.scan(CODE)
        sim.wait_for("PAYMENT UNKNOWN")
        [row] = wallet_rows(sim)
        assert row["status"] == "unknown" and "40002" in row["note"] and "isv.invalid-signature" in row["note"]
        assert any("sub_code=isv.invalid-signature" in r.getMessage() for r in caplog.records)
        assert CODE not in str(sim.journal()) and CODE not in caplog.text


# --- the gateway as Alipay: Beijing time ------------------------------------------------------------


def test_times_are_beijing_time(gw):
    fixed = datetime(2026, 3, 1, 17, 30, 5, tzinfo=UTC)  # 01:30:05 the next day in Beijing
    g = WalletGateway(clock=lambda: fixed)
    try:
        c = client(g)
        assert run(c.pay_by_code("B1", AMOUNT, CODE, "t")).state == "paid"
        proxy = ReplayProxy(g.url)
        try:
            run(client(g, proxy.url).query("B1", AMOUNT))
            answer = json.loads(proxy.answers[-1][2])["alipay_trade_query_response"]
        finally:
            proxy.close()
        assert answer["send_pay_date"] == "2026-03-02 01:30:05"
        sent = g.requests[0][1]["timestamp"]
        stamp = datetime.strptime(sent, "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
        assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=5)  # our request: Beijing time
    finally:
        g.close()


# --- keys as Alipay hands them out -------------------------------------------------------------------


@pytest.mark.parametrize("private_form", ["pem-pkcs8", "pem-pkcs1", "base64-pkcs1", "base64-pkcs8"])
@pytest.mark.parametrize("public_form", ["pem", "base64"])
def test_key_forms(gw, private_form, public_form):
    pem = gw.merchant_private_pem
    private = {
        "pem-pkcs8": pem,
        "pem-pkcs1": serialization.load_pem_private_key(pem, None).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        ),
        "base64-pkcs1": bare_base64(pem, pkcs1=True) + b"\n",
        "base64-pkcs8": b"\xef\xbb\xbf" + bare_base64(pem),
    }[private_form]
    public = gw.gateway_public_pem if public_form == "pem" else bare_base64(gw.gateway_public_pem)
    shown = run(client(gw, private=private, public=public).create_order("B1", AMOUNT, "t"))
    assert shown.qr.startswith("https://qr.alipay.com/")


@pytest.mark.parametrize(
    "loader, data, message",
    [
        (
            load_private_key,
            b"not a key at all!",
            r"app private key \(\[wallet\] private_key\) is neither PEM nor base64",
        ),
        (load_private_key, b"QUJDRA==", r"\[wallet\] private_key\) is not a readable private key"),
        (load_public_key, b"QUJDRA==", r"Alipay's public key \(\[wallet\] provider_public_key\) is not a readable"),
        (load_public_key, b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", r"provider_public_key"),
    ],
)
def test_bad_keys_say_which(loader, data, message):
    with pytest.raises(WalletError, match=message):
        loader(data)


def test_keys_swapped_or_mixed_up(gw):
    with pytest.raises(WalletError, match="private_key.*that is a public key"):
        load_private_key(gw.gateway_public_pem)
    with pytest.raises(WalletError, match="provider_public_key.*that is a private key"):
        load_public_key(gw.merchant_private_pem)
    with pytest.raises(WalletError, match="provider_public_key.*the app's own public key"):
        client(gw, public=gw.merchant_public_pem)


def test_make_wallet_reads_bare_base64_key_files(tmp_path, gw):
    cfg = sim_config()
    (tmp_path / "app_private_key.txt").write_bytes(bare_base64(gw.merchant_private_pem, pkcs1=True))
    (tmp_path / "alipay_public_key.txt").write_bytes(bare_base64(gw.gateway_public_pem))
    wallet = dataclasses.replace(
        cfg.wallet,
        gateway=gw.url,
        app_id=gw.app_id,
        private_key=str(tmp_path / "app_private_key.txt"),
        provider_public_key=str(tmp_path / "alipay_public_key.txt"),
    )
    provider = make_wallet(dataclasses.replace(cfg, wallet=wallet))
    assert provider is not None and run(provider.create_order("B1", AMOUNT, "t")).state == "waiting"
    (tmp_path / "alipay_public_key.txt").write_bytes(b"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA")
    with pytest.raises(ConfigError, match=r"\[wallet\] keys: Alipay's public key \(\[wallet\] provider_public_key\)"):
        make_wallet(dataclasses.replace(cfg, wallet=wallet))


def test_a_number_cancelled_before_its_trade_existed_reads_closed():
    """Found by the kill harness: a power cut after the order row, before the pay request; the reconciliation
    cancels the number, is cut off again, and then every query met 'TRADE_CLOSED 0.00' with an amount check
    and the order stayed unknown forever. A closed trade is bound by its order number."""
    import asyncio

    from hwsim.walletgw import WalletGateway

    gw = WalletGateway()
    try:
        alipay = client(gw)
        assert asyncio.run(alipay.cancel("ORDER-NEVER-SENT")).state == "closed"
        assert asyncio.run(alipay.query("ORDER-NEVER-SENT", 1250)).state == "closed"
    finally:
        gw.close()
