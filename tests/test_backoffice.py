"""Back-office pieces without I/O: the void/refund flow states, operator PINs and lockout, message mapping."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from firmware.core import effects, events, flow
from firmware.core.effects import FindOriginal, SubmitFollowUp
from firmware.core.events import AuthResponse, Key, OperatorChecked, OriginalFound, OriginalSale
from firmware.core.flow import states
from firmware.core.flow.states import (
    ConfirmVoid,
    Menu,
    OperatorPin,
    RefundAmount,
    RefundRoute,
    Result,
    Submitting,
    TraceEntry,
)
from firmware.host import dialect
from firmware.host.messages import FollowUpRequest, follow_up_to_iso
from firmware.security.operators import OperatorGate, hash_pin, pin_matches, role_of
from test_flow import run, screen

SALE = OriginalSale(
    id=3,
    stan=7,
    amount=1250,
    masked_pan="424242******4242",
    method="card",
    status="approved",
    created_at="2026-11-26T21:05:09+08:00",
    batch=1,
    refunded=0,
)


def found(sale=SALE, batch=1, today="2026-11-26"):
    return OriginalFound(sale, batch, today)


def test_menu_to_trace_entry():
    state, eff = run(flow.IDLE, Key("MENU"))
    assert state == OperatorPin() and effects.CollectOperatorPin() in eff and "MANAGER PIN" in screen(eff)
    state, eff = run(state, OperatorChecked(True))
    assert state == Menu() and effects.EndPin() in eff
    state, eff = run(state, Key("2"), Key("7"), Key("8"), Key("CLEAR"), Key("ENTER"))
    assert FindOriginal(7) in eff


def test_denied():
    state, eff = run(OperatorPin(3), OperatorChecked(False, "LOCKED, TRY IN 5 MIN"))
    assert isinstance(state, Result) and "LOCKED" in screen(eff) and effects.EndPin() in eff


@pytest.mark.parametrize(
    "event, text",
    [
        (found(batch=2), "SETTLED: USE REFUND"),
        (found(today="2026-11-27"), "SETTLED: USE REFUND"),
        (found(OriginalSale(**{**SALE.__dict__, "refunded": 100})), "ALREADY REFUNDED"),
        (found(OriginalSale(**{**SALE.__dict__, "status": "voided"})), "SALE IS VOIDED"),
        (events.OriginalMissing("TRACE 000007 UNKNOWN"), "UNKNOWN"),
    ],
)
def test_void_refusals(event, text):
    state, eff = run(states.Looking("void"), event)
    assert isinstance(state, Result) and text in screen(eff)


def test_void_confirmed():
    state, eff = run(states.Looking("void"), found())
    assert state == ConfirmVoid(SALE) and "ENTER TO CONFIRM" in screen(eff)
    state, eff = run(state, Key("ENTER"))
    assert SubmitFollowUp("void", 3, 1250, "card") in eff


def test_a_wallet_sale_goes_back_to_the_wallet():
    paid = OriginalSale(**{**SALE.__dict__, "method": "wallet", "masked_pan": "buy***@x.com"})
    state, _ = run(states.Looking("void"), found(paid), Key("ENTER"))
    assert state.route == "wallet"
    state, eff = run(states.Looking("refund"), found(paid), Key("5"), Key("0"), Key("0"), Key("ENTER"))
    assert "1 TO WALLET  2 CASH" in screen(eff)
    _, eff = run(state, Key("1"))
    assert SubmitFollowUp("refund", 3, 500, "wallet") in eff
    _, eff = run(RefundRoute(SALE, 500), Key("1"))
    assert SubmitFollowUp("refund", 3, 500, "card") in eff


def test_refund_amount_limits_and_routes():
    partly = OriginalSale(**{**SALE.__dict__, "refunded": 1000})
    state, eff = run(states.Looking("refund"), found(partly))
    assert "LEFT CNY 2.50" in screen(eff)
    state, eff = run(state, Key("3"), Key("0"), Key("0"), Key("ENTER"))
    assert isinstance(state, RefundAmount) and "MORE THAN IS LEFT" in screen(eff)
    state, _ = run(state, Key("CLEAR"), Key("CLEAR"), Key("CLEAR"), Key("2"), Key("5"), Key("0"), Key("ENTER"))
    assert state == RefundRoute(partly, 250)
    _, eff = run(state, Key("2"))
    assert SubmitFollowUp("refund", 3, 250, "cash") in eff
    state, eff = run(states.Looking("refund"), found(OriginalSale(**{**SALE.__dict__, "refunded": 1250})))
    assert "ALREADY FULLY REFUNDED" in screen(eff)


def test_submitting_outcomes():
    s = Submitting("refund", SALE, 500, "card")
    ok = AuthResponse(9, "00", "111111", "263300000009", "SIM00001")
    _, eff = run(s, events.HostAnswered(ok, 9))
    assert effects.PrintReceipts(9) in eff  # what it states comes from the journal row (test_receipt.py)
    _, eff = run(s, events.HostAnswered(AuthResponse(9, "13", "", "", "SIM00001"), 9))
    assert "REFUND DECLINED" in screen(eff) and not any(isinstance(e, effects.PrintReceipts) for e in eff)
    _, eff = run(s, events.HostFailed("x", sent=True))
    assert "WILL RETRY BY ITSELF" in screen(eff)
    _, eff = run(s, events.Refused("REFUNDS WOULD EXCEED"))
    assert "NOT ALLOWED" in screen(eff)
    assert run(s, Key("CANCEL"))[0] == s  # money in flight: CANCEL only asks to wait


@pytest.mark.parametrize(
    "state", [OperatorPin(), Menu(), TraceEntry("void"), ConfirmVoid(SALE), RefundAmount(SALE), RefundRoute(SALE, 5)]
)
def test_cancel_and_timeout_everywhere(state):
    for event in (Key("CANCEL"), events.TimerExpired()):
        nxt, _ = run(state, event)
        assert isinstance(nxt, Result)


def test_pin_hashes():
    h = hash_pin("8888", salt=bytes(16))
    assert h.startswith("scrypt$" + "00" * 16 + "$")
    assert pin_matches("8888", h) and not pin_matches("8889", h)
    assert role_of("8888", {"manager": h}) == "manager" and role_of("1", {"manager": h}) is None
    with pytest.raises(ValueError):
        hash_pin("12a4")


class Store:
    def __init__(self):
        self.values = {}

    def counter(self, name):
        return self.values.get(name)

    def set_counter(self, name, value):
        self.values[name] = value

    def take_counter(self, name, first):
        self.values[name] = first if name not in self.values else self.values[name] + 1
        return self.values[name]


def test_lockout_and_its_end():
    gate = OperatorGate({"manager": hash_pin("8888"), "cashier": hash_pin("1111")}, 2, 300, Store())
    assert gate.check("1111", "manager", 1000) == (False, "MANAGER ONLY")
    assert gate.check("0000", "manager", 1001) == (False, "LOCKED, TRY IN 5 MIN")
    assert gate.check("8888", "manager", 1200)[0] is False  # still locked
    assert gate.check("8888", "manager", 1301) == (True, "")  # lock over
    assert gate.check("0000", "manager", 1302) == (False, "WRONG OPERATOR PIN")  # the count restarted
    assert OperatorGate({}, 3, 300, Store()).check("8888", "manager", 0) == (False, "NO MANAGER PIN SET")


def test_follow_up_message():
    req = FollowUpRequest(
        kind="refund",
        stan=9,
        amount=500,
        currency_numeric="156",
        terminal_id="SIM00001",
        merchant_id="102030405060708",
        original_stan=7,
        original_transmitted_at="1126130509",
        original_rrn="263300000007",
        original_auth_code="654321",
        idem_key="ab" * 16,
        local_time=datetime(2026, 11, 26, 22, 0, 0),
        utc_time=datetime(2026, 11, 26, 14, 0, 0, tzinfo=UTC),
    )
    doc = follow_up_to_iso(req)
    assert (doc["t"], doc["3"], doc["22"], doc["37"], doc["38"], doc["48"]) == (
        "0200",
        "200000",
        "010",
        "263300000007",
        "654321",
        "ab" * 16,
    )
    assert "35" not in doc and "52" not in doc  # no card data at all
    assert dialect.decode(dialect.encode(doc)) == doc
    assert follow_up_to_iso(FollowUpRequest(**{**req.__dict__, "kind": "void"}))["3"] == "020000"
