"""Master/session keys: KCV, key wrapping and MAC vectors, the MAC codec, sign-on with the acquirer
simulator, daily renewal, a bad MAC answered by a reversal, a bad KCV refused."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime

import pytest

from conftest import assert_ledger_agrees, sales, sim_config, wait_until
from firmware.config import HostConfig, KeysConfig
from firmware.errors import KeyMaterialError, MacError, SignOnError
from firmware.host import dialect
from firmware.host.link import HostLink
from firmware.host.signon import MASTER_KEY, Session
from firmware.records.journal import Journal
from firmware.security import keys
from firmware.security.keystore import KeyStore

TDES_KEY = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")


def test_published_vectors():
    assert keys.kcv("tdes", TDES_KEY).hex().upper()[:6] == "08D7B4"
    # ANSI X9.19 / ISO 9797-1 algorithm 3 example: "Now is the time for all " under the key above.
    assert keys.mac("tdes", TDES_KEY, b"Now is the time for all ").hex().upper() == "A1C72E74EA3FA9B6"
    aes = bytes.fromhex("2B7E151628AED2A6ABF7158809CF4F3C")  # RFC 4493
    assert keys.mac("aes", aes, b"").hex() == "bb1d6929e9593728"
    assert keys.mac("aes", aes, bytes.fromhex("6BC1BEE22E409F96E93D7E117393172A")).hex() == "070a16b46b4d4144"
    kek = bytes.fromhex("000102030405060708090A0B0C0D0E0F")  # RFC 3394 4.1
    wrapped = keys.wrap("aes", kek, bytes.fromhex("00112233445566778899AABBCCDDEEFF"))
    assert wrapped.hex().upper() == "1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"


@pytest.mark.parametrize("scheme", ["tdes", "aes"])
def test_key_block_round_trip_and_kcv_check(scheme):
    tmk, pin, mac = keys.new_key(), keys.new_key(), keys.new_key()
    block = keys.key_block(scheme, tmk, pin, mac)
    got = keys.open_key_block(scheme, tmk, block, "2026-11-26")
    assert (bytes(got.pin_key), bytes(got.mac_key)) == (pin, mac)
    bad_kcv = block[:-2] + ("00" if block[-2:] != "00" else "11")
    with pytest.raises(KeyMaterialError, match="MAC key check value"):
        keys.open_key_block(scheme, tmk, bad_kcv, "x")
    with pytest.raises(KeyMaterialError):
        keys.open_key_block(scheme, keys.new_key(), block, "x")  # another master key
    assert "repr" not in repr(got) and pin.hex() not in repr(got).lower()


def test_components_combine_by_xor():
    a, b = bytes.fromhex("11" * 16), bytes.fromhex("22" * 16)
    assert keys.combine([a, b]) == bytearray.fromhex("33" * 16)
    with pytest.raises(KeyMaterialError):
        keys.combine([a, b[:8]])


@pytest.mark.parametrize("scheme", ["tdes", "aes"])
def test_mac_codec(scheme):
    key = keys.new_key()
    codec = dialect.MacCodec(dialect.DEFAULT, scheme, lambda: key)
    doc = {"t": "0200", "3": "000000", "4": "000000001000", "11": "000001", "41": "SIM00001"}
    raw = codec.encode(doc)
    assert dialect.DEFAULT.decode(raw)["64"] == keys.mac(scheme, key, raw[:-16]).hex().upper()
    assert codec.decode(raw)["4"] == "000000001000"
    with_90 = codec.encode({**doc, "t": "0400", "90": "0200" + "0" * 38})
    assert "128" in dialect.DEFAULT.decode(with_90) and "64" not in dialect.DEFAULT.decode(with_90)
    assert codec.decode(with_90)["t"] == "0400"
    tampered = raw.replace(b"000000001000", b"000000009000")
    with pytest.raises(MacError, match="bad MAC"):
        codec.decode(tampered)
    with pytest.raises(MacError, match="no MAC"):
        codec.decode(dialect.DEFAULT.encode(doc))
    with pytest.raises(MacError, match="not signed on"):
        dialect.MacCodec(dialect.DEFAULT, scheme, lambda: None).encode(doc)


@pytest.fixture
def acquirer():
    """The simulated acquirer on loopback TCP, reached through the terminal's own HostLink."""
    from hwsim.acquirer import Acquirer
    from hwsim.simulator import SIM_BDK, SIM_TMK

    host = Acquirer(SIM_BDK, key_scheme="tdes", tmk=SIM_TMK)
    port = host.start()
    yield host, HostLink(HostConfig("127.0.0.1", port))
    host.stop()


def test_sign_on_renews_daily(tmp_path, acquirer):
    from hwsim.simulator import SIM_TMK

    host, link = acquirer
    store = KeyStore(tmp_path / "keys")
    store.put(MASTER_KEY, SIM_TMK, "tdes")
    now = [datetime(2026, 11, 26, 9, 0)]
    journal = Journal(tmp_path / "j.sqlite3")
    session = Session("tdes", store, link, dialect.DEFAULT, journal, "SIM00001", "1" * 15, 2.0, lambda: now[0])

    def sign_ons():
        return sum(1 for d, raw in host.host_log if d == "request" and raw.startswith(b"0800"))

    async def run():
        await session.ensure()
        first = session.mac_key()
        await session.ensure()  # same day: no new sign-on
        assert sign_ons() == 1 and session.mac_key() == first
        assert host.working["SIM00001"][1] == first
        now[0] = datetime(2026, 11, 27, 0, 5)
        await session.ensure()  # a new day: new keys
        assert sign_ons() == 2 and session.mac_key() != first
        session.invalidate()
        assert session.mac_key() is None

    asyncio.run(run())
    journal.close()


def test_sign_on_without_a_master_key(tmp_path, acquirer):
    host, link = acquirer
    journal = Journal(tmp_path / "j.sqlite3")
    session = Session(
        "tdes", KeyStore(tmp_path / "keys"), link, dialect.DEFAULT, journal, "SIM00001", "1" * 15, 2.0, datetime.now
    )
    with pytest.raises(SignOnError, match="countertop keys load tmk"):
        asyncio.run(session.ensure())
    assert host.host_log == []  # nothing was sent without a master key
    journal.close()


@pytest.fixture(params=["tdes", "aes"])
def msim(request, tmp_path):
    """The simulator on a master/session host profile: MACs on every message, the PIN under the sign-on key."""
    from hwsim import Simulator

    cfg = sim_config(host=2.0)
    cfg = dataclasses.replace(
        cfg,
        keys=KeysConfig(request.param),
        pin=dataclasses.replace(cfg.pin, scheme="session"),
        host=dataclasses.replace(cfg.host, dialect="aes-dukpt" if request.param == "aes" else "default"),
    )
    with Simulator(tmp_path / "data", cfg, late_delay=3.0) as s:
        wait_until(lambda: len(s.host_log) >= 2, what="the sign-on at boot")
        yield s


def test_sale_with_session_keys(msim):
    msim.keys("25000{ENTER}")
    msim.wait_for("SWIPE")
    msim.swipe("visa-approve")
    msim.pin("1234")
    msim.wait_for("APPROVED")
    codec = dialect.DIALECTS[msim.config.host.dialect]
    log = [(d, codec.decode(raw)) for d, raw in msim.host_log]
    assert [doc["t"] for _, doc in log[:2]] == ["0800", "0810"]  # sign-on at boot
    assert log[0][1]["70"] == "001" and len(log[1][1]["62"]) in (80, 116)
    sale = next(doc for d, doc in log if doc["t"] == "0200")
    assert "53" not in sale and "64" in sale  # session PIN key, MAC
    assert all(r.get("39") != "A0" for _, r in log)  # every MAC checked out
    assert_ledger_agrees(msim)
    refused = [e for e in msim.host.ledger if e["kind"] == "refused"]
    assert not refused


def test_bad_mac_on_the_answer_is_no_answer(msim):
    msim.host.fault("badmac")
    msim.keys("5000{ENTER}")
    msim.wait_for("SWIPE")
    msim.swipe("visa-approve")
    msim.pin("1234")
    msim.wait_for("NO HOST ANSWER")  # never APPROVED on an answer we cannot trust
    wait_until(lambda: msim.host.ledger[0]["reversed"], what="the reversal")
    wait_until(lambda: sales(msim)[0]["status"] == "reversed", what="the journal to record the reversal")
    assert_ledger_agrees(msim)


def test_host_that_lost_our_keys_and_a_bad_kcv(msim):
    msim.host.working.clear()  # the host forgot this terminal's sign-on
    msim.host.fault("badkcv", times=100)  # ... and its next key blocks do not check out
    msim.keys("5000{ENTER}")
    msim.wait_for("SWIPE")
    msim.swipe("visa-approve")
    msim.pin("1234")
    msim.wait_for("NO HOST ANSWER")  # A0 without a MAC: untrusted, so reversed
    msim.keys("{CANCEL}")
    msim.wait_for("ENTER AMOUNT")
    msim.keys("5000{ENTER}")  # the next sale signs on; the KCV is wrong
    msim.wait_for("SWIPE")
    msim.swipe("visa-approve")
    msim.pin("1234")
    msim.wait_for("SIGN-ON FAILED")
    assert sum(1 for e in msim.host.ledger if e["kind"] == "sale") == 0  # nothing reached the issuer
    msim.host.fault(None)
    msim.keys("{CANCEL}")
    msim.wait_for("ENTER AMOUNT")
    # The first sale never reached the issuer: its reversal's "no such sale" (25) counts once the sale is
    # twice the host timeout old (a lower bound to wait for, no race).
    time.sleep(2 * msim.config.timeouts.host)
    msim.keys("5000{ENTER}")  # the next sign-on is good again
    msim.wait_for("SWIPE")
    msim.swipe("visa-approve")
    msim.pin("1234")
    msim.wait_for("APPROVED")
    assert_ledger_agrees(msim)


def test_dukpt_initial_key_from_the_key_store(tmp_path):
    from hwsim import Simulator

    cfg = sim_config(host=2.0)
    ipek = cfg.pin.ipek
    cfg = dataclasses.replace(cfg, pin=dataclasses.replace(cfg.pin, ipek=b""))  # not in the config file
    with Simulator(tmp_path / "none", cfg) as sim:
        sim.keys("25000{ENTER}")
        sim.wait_for("SWIPE")
        sim.swipe("visa-approve")
        sim.pin("1234")
        sim.wait_for("KEY ERROR")  # no key anywhere: nothing is sent
        assert sim.host.ledger == []
    KeyStore(tmp_path / "sealed" / "keys").put("ipek", ipek, "tdes")  # as `keys load ipek` does
    with Simulator(tmp_path / "sealed", cfg) as sim:
        sim.keys("25000{ENTER}")
        sim.wait_for("SWIPE")
        sim.swipe("visa-approve")
        sim.pin("1234")
        sim.wait_for("APPROVED")


def test_enter_waits_for_the_sign_on_in_flight(msim):
    """ENTER while the sign-on that PIN entry started is still with the host: the PIN waits for the new keys
    (it used to fail at once with PIN PAD ERROR / SIGN-ON FAILED under load)."""
    # The boot's own sign-on first: keys invalidated before it answered were renewed by it (0800, 0200 only).
    wait_until(lambda: len(msim.host_log) >= 2, what="the sign-on at boot")
    msim.host.late_delay = 1.0  # the 0810 takes a second
    msim.host.fault("late")
    msim._loop.call_soon_threadsafe(msim.terminal._session.invalidate)  # the day's keys have gone
    msim.keys("5000{ENTER}")
    msim.wait_for("SWIPE")
    msim.swipe("visa-approve")  # CollectPin starts the sign-on ...
    msim.pin("1234")  # ... and ENTER comes while it is in flight
    msim.wait_for("APPROVED", timeout=10)
    codec = dialect.DIALECTS[msim.config.host.dialect]
    mtis = [codec.decode(raw)["t"] for d, raw in msim.host_log if d == "request"]
    assert mtis == ["0800", "0800", "0200"]
    assert_ledger_agrees(msim)


def test_a_pin_still_being_enciphered_is_not_the_next_customers(tmp_path):
    """Found in review: A pressed ENTER during a slow sign-on, then CANCEL; B swiped another card and a 0200
    for B went out with A's PIN block before B typed anything (a PIN try counted on B's card)."""
    from hwsim import Simulator

    cfg = sim_config(host=30.0)
    cfg = dataclasses.replace(cfg, keys=KeysConfig("tdes"), pin=dataclasses.replace(cfg.pin, scheme="session"))
    with Simulator(tmp_path / "data", cfg) as sim:
        wait_until(lambda: len(sim.host_log) >= 2, what="the sign-on at boot")
        sim.host.hold()  # the next sign-on answers only when the test says (a fixed delay raced A's CANCEL)
        sim._loop.call_soon_threadsafe(sim.terminal._session.invalidate)
        sim.keys("5000{ENTER}")
        sim.swipe("visa-approve")  # customer A
        sim.pin("9999")  # ENTER: waits for the sign-on ...
        sim.keys("{CANCEL}")  # ... and A walks away
        sim.wait_for("CANCELLED")
        sim.keys("{ENTER}700{ENTER}")
        sim.swipe("mc-approve")  # customer B
        sim.wait_for("ENTER PIN")
        sim.host.release()
        codec = dialect.DIALECTS[sim.config.host.dialect]
        answers = lambda: [codec.decode(raw)["t"] for d, raw in sim.host_log if d == "response"]  # noqa: E731
        wait_until(lambda: answers().count("0810") >= 2, what="the slow sign-on answered")
        sim.keys("")  # everything that followed it is handled
        assert "ENTER PIN" in sim.screen
        assert not any(codec.decode(raw)["t"] == "0200" for d, raw in sim.host_log if d == "request")
        sim.pin("1234")  # B's own PIN
        sim.wait_for("APPROVED")
