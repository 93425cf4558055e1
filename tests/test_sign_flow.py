"""The signature after an approval (pure flow): a signature CVM leads to the signing screen on a touch screen
(ink drawn live, CLEAR, ENTER, CANCEL, timeout) or to the paper copy without one; the sale stays approved."""

from __future__ import annotations

from dataclasses import replace

from firmware.core import flow
from firmware.core.effects import AwaitSignature, KeepSignature, NoSignature, PrintReceipts, Show, StartTimer
from firmware.core.events import AuthResponse, HostAnswered, Key, TimerExpired, Touched
from firmware.core.flow import FlowConfig
from firmware.core.flow.sign import TEXT
from firmware.core.flow.states import Authorizing, ChipReading, Result, Signing
from firmware.core.money import Currency
from firmware.core.track import parse_swipe

CFG = FlowConfig(currency=Currency.of("CNY"), pin_timeout=30, result_timeout=15)
TOUCH = replace(CFG, touch=(480, 320), sign_timeout=90)
CARD = parse_swipe(";4242424242424242=30121010000000000000?")
APPROVED = HostAnswered(AuthResponse(7, "00", "A1B2C3", "123456789012", "T1"), 7, cvm="signature")
LINES = ("APPROVED", "CNY 12.50", "AUTH CODE A1B2C3")


def signing(cfg: FlowConfig = TOUCH, *events):
    """A chip sale approved with a signature CVM, then `events`; the last state and effects."""
    state, eff = flow.step(ChipReading(1250), APPROVED, cfg)
    for event in events:
        state, eff = flow.step(state, event, cfg)
    return state, eff


def test_a_signature_cvm_on_a_touch_screen_asks_the_cardholder_to_sign_before_the_receipts():
    state, eff = signing()
    assert state == Signing(7, 1250, "A1B2C3")
    assert eff[0] == AwaitSignature(7) and not any(isinstance(e, PrintReceipts) for e in eff)
    assert TEXT["sign"] in eff[1].lines and eff[2] == StartTimer(90)


def test_the_contactless_path_asks_too_and_a_pin_cvm_does_not():
    state, _ = flow.step(Authorizing(1250, CARD, 1), APPROVED, TOUCH)
    assert isinstance(state, Signing)
    state, eff = flow.step(Authorizing(1250, CARD, 1), replace(APPROVED, cvm="online_pin"), TOUCH)
    assert state == Result(LINES) and PrintReceipts(7) in eff
    state, _ = flow.step(ChipReading(1250), replace(APPROVED, cvm="offline_pin_signature"), TOUCH)
    assert isinstance(state, Signing)  # PIN and then signature: both


def test_without_a_touch_screen_the_cashier_collects_it_on_the_merchant_copy():
    state, eff = signing(CFG)
    assert state == Result((*LINES, TEXT["paper"]))
    assert PrintReceipts(7) in eff and not any(isinstance(e, (AwaitSignature, NoSignature)) for e in eff)


def test_touches_draw_live_each_finger_its_own_stroke_and_the_timer_runs_on():
    state, eff = signing(TOUCH, Touched(((1, 10, 20),)), Touched(((1, 12, 22), (2, 100, 50))))
    assert state.strokes == ((1, ((10, 20), (12, 22))), (2, ((100, 50),)))
    [show] = eff
    assert isinstance(show, Show) and show.strokes == (((10, 20), (12, 22)), ((100, 50),))
    state, eff = flow.step(state, Touched(((1, 12, 22),)), TOUCH)  # the same point again: nothing new
    assert eff == [] and len(state.strokes[0][1]) == 2


def test_clear_starts_again():
    state, eff = signing(TOUCH, Touched(((1, 10, 20), (1, 30, 40))), Key("CLEAR"))
    assert state == Signing(7, 1250, "A1B2C3") and eff[0].strokes == () and eff[1] == StartTimer(90)


def test_enter_keeps_the_signature_then_prints_and_shows_the_approval():
    state, eff = signing(TOUCH, Touched(((1, 10, 20),)), Touched(((1, 30, 40),)), Key("ENTER"))
    assert state == Result(LINES)
    assert eff[:2] == [KeepSignature(7, (((10, 20), (30, 40)),), 480, 320), PrintReceipts(7)]


def test_enter_before_signing_asks_for_the_signature_first():
    state, eff = signing(TOUCH, Key("ENTER"))
    assert isinstance(state, Signing) and state.notice == TEXT["sign_first"]
    assert not any(isinstance(e, (KeepSignature, PrintReceipts)) for e in eff)


def test_cancel_or_timeout_leave_it_to_the_paper_copy_and_the_sale_approved():
    for event, reason in ((Key("CANCEL"), "cancelled"), (TimerExpired(), "timeout")):
        state, eff = signing(TOUCH, Touched(((1, 10, 20),)), event)
        assert state == Result((*LINES, TEXT["paper"]))
        assert eff[:2] == [NoSignature(7, reason), PrintReceipts(7)]
        assert not any(type(e).__name__ in ("AbortChip", "AbortAuthorization") for e in eff)  # no money undone


def test_a_signature_keeps_at_most_max_points():
    from firmware.core.flow.sign import MAX_POINTS

    state, _ = signing(TOUCH, Touched(tuple((1, n % 400, n // 400) for n in range(MAX_POINTS + 50))))
    assert sum(len(points) for _, points in state.strokes) == MAX_POINTS


def test_a_device_problem_redraws_the_ink():
    state, _ = signing(TOUCH, Touched(((1, 10, 20), (1, 11, 21))))
    till = flow.Till(state=state)
    from firmware.core.events import DeviceTrouble

    _, eff = flow.advance(till, DeviceTrouble("printer", "PRINTER: NO PAPER"), TOUCH)
    assert eff[0].strokes == (((10, 20), (11, 21)),) and "PRINTER: NO PAPER" in eff[0].lines


def test_touches_outside_signing_change_nothing():
    from firmware.core.flow.states import IDLE, AwaitCard, AwaitPin

    for state in (IDLE, AwaitCard(1250), AwaitPin(1250, CARD), Result(LINES), ChipReading(1250)):
        assert flow.step(state, Touched(((1, 10, 20),)), TOUCH) == (state, [])
