"""The pure sale flow: every state, its timeout and its Cancel, table-driven; no I/O anywhere."""

from __future__ import annotations

import pytest

from firmware.core import events, flow
from firmware.core.effects import (
    AbortAuthorization,
    Authorize,
    CollectPin,
    EndPin,
    PrintReceipts,
    Show,
    StartTimer,
    StopTimer,
)
from firmware.core.events import (
    AuthResponse,
    BadRead,
    EncryptedPin,
    HostAnswered,
    HostFailed,
    Key,
    PinEntered,
    PinProgress,
    Swiped,
    TimerExpired,
)
from firmware.core.flow import IDLE, FlowConfig
from firmware.core.flow.states import Amount, Authorizing, AwaitCard, AwaitPin, Result
from firmware.core.money import Currency
from firmware.core.track import parse_swipe

CFG = FlowConfig(
    currency=Currency.of("CNY"),
    min_amount=100,
    max_amount=500_000,
    amount_timeout=60,
    card_timeout=45,
    pin_timeout=30,
    result_timeout=15,
    pin_attempts=3,
)
CARD = parse_swipe(";4242424242424242=30121010000000000000?")
PIN = EncryptedPin(block="1B9C1845EB993A7A", ksn="FFFF9876543210E00001")


def resp(rc: str) -> AuthResponse:
    return AuthResponse(
        stan=7, response_code=rc, auth_code="123456" if rc == "00" else "", rrn="263300000007", terminal_id="SIM00001"
    )


def run(state, *events, cfg: FlowConfig = CFG):
    """Step the flow through `events`; the last state and every effect on the way."""
    effects = []
    for ev in events:
        state, eff = flow.step(state, ev, cfg)
        effects += eff
    return state, effects


def screen(effects) -> str:
    shows = [e for e in effects if isinstance(e, Show)]
    return "\n".join(shows[-1].lines) if shows else ""


def keys(text: str):
    return [Key(c) for c in text]


# --- amount entry ------------------------------------------------------------------------------


def test_digits_shift_in_from_the_right():
    state, eff = run(IDLE, *keys("1250"))
    assert state == Amount(1250)
    assert screen(eff) == "ENTER AMOUNT\nCNY 12.50"
    assert StartTimer(60) in eff


def test_clear_deletes_last_digit_and_cancel_resets():
    state, _ = run(IDLE, *keys("1250"), Key("CLEAR"))
    assert state == Amount(125)
    state, eff = run(state, Key("CANCEL"))
    assert state == IDLE and StopTimer() in eff


@pytest.mark.parametrize("digits, notice", [("99", "AMOUNT TOO LOW"), ("500001", "AMOUNT TOO HIGH")])
def test_amount_limits(digits, notice):
    state, eff = run(IDLE, *keys(digits), Key("ENTER"))
    assert isinstance(state, Amount) and state.notice == notice
    assert notice in screen(eff)


def test_enter_on_zero_does_nothing_and_digit_cap():
    assert run(IDLE, Key("ENTER")) == (IDLE, [])
    state, _ = run(IDLE, *keys("9" * 10), Key("9"))
    assert state.value == 9_999_999_999 and state.notice == "MAX DIGITS"


def test_amount_timeout_returns_to_idle():
    assert run(Amount(5), TimerExpired())[0] == IDLE
    assert run(IDLE, TimerExpired()) == (IDLE, [])


def test_swipe_before_amount_is_refused():
    state, eff = run(IDLE, Swiped(CARD))
    assert isinstance(state, Amount) and "ENTER AMOUNT FIRST" in screen(eff)


# --- card ---------------------------------------------------------------------------------------


def test_enter_waits_for_card():
    state, eff = run(IDLE, *keys("1250"), Key("ENTER"))
    assert state == AwaitCard(1250)
    assert "SWIPE CARD" in screen(eff) and StartTimer(45) in eff


def test_bad_read_asks_again():
    state, eff = run(AwaitCard(1250), BadRead("Luhn"))
    assert isinstance(state, AwaitCard) and "READ ERROR, SWIPE AGAIN" in screen(eff)
    state, eff = run(state, Swiped(CARD))
    assert isinstance(state, AwaitPin) and "READ ERROR" not in screen(eff)


@pytest.mark.parametrize("event, text", [(Key("CANCEL"), "CANCELLED"), (TimerExpired(), "TIMEOUT")])
def test_card_wait_cancel_and_timeout(event, text):
    state, eff = run(AwaitCard(1250), event)
    assert isinstance(state, Result) and text in screen(eff)


def test_clear_goes_back_to_amount():
    assert run(AwaitCard(1250), Key("CLEAR"))[0] == Amount(1250)


# --- PIN ------------------------------------------------------------------------------------------


def test_swipe_starts_pin_collection():
    state, eff = run(AwaitCard(1250), Swiped(CARD))
    assert state == AwaitPin(1250, CARD)
    assert CollectPin(CARD.pan) in eff and StartTimer(30) in eff
    assert "ENTER PIN" in screen(eff)


def test_pin_progress_shows_stars_only():
    state, eff = run(AwaitPin(1250, CARD), PinProgress(3))
    assert screen(eff).endswith("***")


def test_pin_entered_authorizes():
    state, eff = run(AwaitPin(1250, CARD), PinEntered(PIN))
    assert state == Authorizing(1250, CARD, 1)
    assert eff[:2] == [EndPin(), Authorize(1250, CARD, PIN)]
    assert StopTimer() in eff


@pytest.mark.parametrize(
    "event, text",
    [
        (Key("CANCEL"), "CANCELLED"),
        (TimerExpired(), "NO PIN"),
        (events.PinFailed("KEY ERROR"), "PIN PAD ERROR\nKEY ERROR"),
    ],
)
def test_pin_cancel_and_timeout_end_pin_collection(event, text):
    state, eff = run(AwaitPin(1250, CARD), event)
    assert isinstance(state, Result) and EndPin() in eff and text in screen(eff)


# --- host -------------------------------------------------------------------------------------------


def test_approved():
    state, eff = run(Authorizing(1250, CARD, 1), HostAnswered(resp("00"), 7))
    assert isinstance(state, Result)
    assert screen(eff) == "APPROVED\nCNY 12.50\nAUTH CODE 123456"
    assert PrintReceipts(7) in eff


@pytest.mark.parametrize(
    "rc, text",
    [
        ("05", "DO NOT HONOR"),
        ("14", "INVALID CARD NUMBER"),
        ("51", "INSUFFICIENT FUNDS"),
        ("54", "EXPIRED CARD"),
        ("91", "ISSUER UNAVAILABLE"),
        ("43", "STOLEN CARD"),
        ("Z9", "CODE Z9"),
    ],
)
def test_declines(rc, text):
    state, eff = run(Authorizing(1250, CARD, 1), HostAnswered(resp(rc), 7))
    assert screen(eff) == f"DECLINED\n{text}"
    assert any(isinstance(e, PrintReceipts) for e in eff)


def test_wrong_pin_offers_reentry_until_attempts_run_out():
    state, eff = run(Authorizing(1250, CARD, 1), HostAnswered(resp("55"), 7))
    assert state == AwaitPin(1250, CARD, attempt=2, notice="WRONG PIN, TRY AGAIN")
    assert CollectPin(CARD.pan) in eff and not any(isinstance(e, PrintReceipts) for e in eff)
    state, eff = run(Authorizing(1250, CARD, 3), HostAnswered(resp("55"), 9))
    assert screen(eff) == "DECLINED\nWRONG PIN"


@pytest.mark.parametrize(
    "sent, text", [(True, "NO HOST ANSWER\nNOT APPROVED"), (False, "HOST NOT AVAILABLE\nNOT CHARGED")]
)
def test_host_failures(sent, text):
    state, eff = run(Authorizing(1250, CARD, 1), HostFailed("x", sent=sent))
    assert isinstance(state, Result) and screen(eff) == text
    assert not any(isinstance(e, PrintReceipts) for e in eff)


def test_cancel_while_authorizing_waits_for_the_host_outcome():
    state, eff = run(Authorizing(1250, CARD, 1), Key("CANCEL"))
    assert state.cancelling and AbortAuthorization() in eff and "CANCELLING" in screen(eff)
    assert run(state, Key("CANCEL")) == (state, [])  # a second press changes nothing
    done, eff = run(state, HostFailed("cancelled", sent=True))
    assert screen(eff) == "CANCELLED\nCHECK WITH HOST"
    # The answer beat the cancel: the truth is shown.
    done, eff = run(state, HostAnswered(resp("00"), 7))
    assert "APPROVED" in screen(eff)


def test_authorizing_ignores_keys_and_timer():
    s = Authorizing(1250, CARD, 1)
    assert run(s, Key("5")) == (s, []) and run(s, TimerExpired()) == (s, [])


# --- result --------------------------------------------------------------------------------------------


def test_result_times_out_or_starts_next_sale():
    r = Result(("APPROVED",))
    assert run(r, TimerExpired())[0] == IDLE
    assert run(r, Key("ENTER"))[0] == IDLE
    assert run(r, Key("7"))[0] == Amount(7)
    assert run(r, Swiped(CARD)) == (r, [])


def test_every_state_renders():
    for s in (
        IDLE,
        Amount(5, "AMOUNT TOO LOW"),
        AwaitCard(1),
        AwaitPin(1, CARD),
        Authorizing(1, CARD, 1),
        Result(("X",)),
    ):
        assert flow.render(s, CFG)


def test_zero_exponent_currency():
    cfg = FlowConfig(currency=Currency.of("JPY"))
    assert flow.render(Amount(1250), cfg)[1] == "JPY 1250"
