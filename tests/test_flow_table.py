"""The pure flow's table and the states the older table tests left to the simulator: taps, wallets, the back office's
searches, reprints and settlement. Every test here is data in, data out: no simulator, no I/O."""

from __future__ import annotations

from dataclasses import replace
from typing import get_args

import pytest

from firmware.core import flow
from firmware.core.effects import (
    AbortChip,
    AnswerChip,
    Authorize,
    CollectPin,
    EndPin,
    EndWalletOrder,
    FindOriginal,
    PayByCode,
    PrintCode,
    PrintReceipts,
    PrintReport,
    ReadCard,
    ReleaseCard,
    Reprint,
    Settle,
    Show,
    StartChip,
    StartQrOrder,
    StartTimer,
    StopTimer,
    SubmitFollowUp,
)
from firmware.core.emv import ChipCard
from firmware.core.events import (
    AuthResponse,
    CardFailed,
    CardRead,
    ChipAsks,
    ChipInserted,
    ChipRemoved,
    ChipWorking,
    DeviceTrouble,
    EncryptedPin,
    HostAnswered,
    HostFailed,
    Key,
    OperatorChecked,
    OrderShown,
    OriginalSale,
    PinEntered,
    PinProgress,
    Reprinted,
    Scanned,
    Settled,
    Swiped,
    Tapped,
    TimerExpired,
    WalletConfirming,
    WalletEnded,
    WalletPaid,
)
from firmware.core.flow import IDLE, TABLE, FlowConfig
from firmware.core.flow.states import (
    Amount,
    Authorizing,
    AwaitCard,
    AwaitPin,
    ChipChoosing,
    ChipPin,
    ChipReading,
    ConfirmVoid,
    Looking,
    Menu,
    OperatorPin,
    ReadingCard,
    Result,
    SearchEntry,
    ShowingQR,
    State,
    Till,
    TraceEntry,
    WalletBusy,
)
from firmware.core.money import Currency
from firmware.core.track import parse_swipe
from test_flow import run as run_flow
from test_flow import screen

CFG = FlowConfig(
    currency=Currency.of("CNY"),
    min_amount=100,
    max_amount=500_000,
    amount_timeout=60,
    card_timeout=45,
    pin_timeout=30,
    result_timeout=15,
    pin_attempts=3,
    contactless_limit=100_000,
    wallets=("alipay",),
    qr_timeout=3,
)
ALIPAY_CODE = "281234567890123456"
WECHAT_CODE = "134567890123456789"


def chip(cvm: str = "none") -> ChipCard:
    return ChipCard(
        pan="4761739001010010",
        track2="4761739001010010D30122010000000000000",
        psn="01",
        aid="A0000000031010",
        label="VISA CREDIT",
        cvm=cvm,
        cid=0x80,
        cryptogram="1A2B3C4D5E6F7081",
        icc={"9F26": "1A2B3C4D5E6F7081"},
    )


def run(state: State, *events, cfg: FlowConfig = CFG):
    return run_flow(state, *events, cfg=cfg)


# --- the table ------------------------------------------------------------------------------------


def test_every_state_type_has_one_route():
    assert set(TABLE) == set(get_args(State))


EXAMPLES = [
    IDLE,
    Amount(1250),
    AwaitCard(1250),
    ReadingCard(1250),
    AwaitPin(1250, chip("online_pin")),
    Authorizing(1250, chip(), 1),
    ChipReading(1250),
    ChipChoosing(1250, ("VISA CREDIT", "UNIONPAY DEBIT")),
    ChipPin(1250, offline=True, tries_left=3, bypass=True),
    WalletBusy(1250, "PROCESSING..."),
    ShowingQR(1250, "https://qr.alipay.com/x", 90),
    Result(("APPROVED",)),
    Menu(),
    TraceEntry("reprint"),
    SearchEntry("refund"),
    Looking("settle"),
]


@pytest.mark.parametrize("state", EXAMPLES, ids=lambda s: type(s).__name__)
def test_entering_any_state_shows_it_and_sets_its_timer(state):
    same, effects = flow.enter(state, CFG)
    assert same is state
    [show] = [e for e in effects if isinstance(e, Show)]
    assert show.lines and all(isinstance(line, str) for line in show.lines)
    assert isinstance(effects[-1], (StartTimer, StopTimer)) and effects[-2] is show


# --- a tap --------------------------------------------------------------------------------------


def test_a_tap_within_the_contactless_limit_reads_the_card():
    state, effects = run(AwaitCard(1250), Tapped("session-1"))
    assert state == ReadingCard(1250) and ReadCard("session-1", 1250) in effects
    assert screen(effects) == "CNY 12.50\nREADING CARD..." and StopTimer() in effects


def test_a_tap_over_the_limit_or_when_no_sale_wants_it_is_let_go():
    state, effects = run(AwaitCard(100_001), Tapped("s"))
    assert state == AwaitCard(100_001) and effects == [ReleaseCard("s")]
    for other in (IDLE, Menu(), Result(("APPROVED",)), AwaitPin(1250, chip("online_pin"))):
        assert flow.step(other, Tapped("s"), CFG) == (other, [ReleaseCard("s")])


def test_the_screen_offers_a_tap_only_within_the_limit():
    assert "TAP OR SWIPE CARD" in screen(flow.enter(AwaitCard(100_000), CFG)[1])
    assert "PLEASE SWIPE CARD" in screen(flow.enter(AwaitCard(100_001), CFG)[1])
    assert flow.wants_tap(AwaitCard(1), CFG) and not flow.wants_tap(IDLE, CFG)


@pytest.mark.parametrize("cvm, wants_pin", [("none", False), ("cdcvm", False), ("online_pin", True)])
def test_a_read_card_goes_to_the_pin_or_straight_to_the_host(cvm, wants_pin):
    card = chip(cvm)
    state, effects = run(ReadingCard(1250), CardRead(card))
    if wants_pin:
        assert state == AwaitPin(1250, card) and CollectPin(card.pan) in effects
    else:
        assert state == Authorizing(1250, card, 1) and Authorize(1250, card, None) in effects


def test_a_failed_read_asks_for_the_card_again_and_keys_wait_for_the_kernel():
    state, effects = run(ReadingCard(1250), Key("CANCEL"))
    assert state == ReadingCard(1250) and effects == []
    state, effects = run(state, CardFailed("PLEASE TAP AGAIN", "card removed"))
    assert state == AwaitCard(1250, notice="PLEASE TAP AGAIN") and screen(effects).startswith("PLEASE TAP AGAIN\n")


def test_a_wrong_pin_on_a_tapped_card_needs_a_new_tap():
    card = chip("online_pin")
    answer = HostAnswered(AuthResponse(stan=9, response_code="55", auth_code="", rrn="", terminal_id="SIM00001"), 9)
    state, effects = run(Authorizing(1250, card, 1), answer)
    assert state == AwaitCard(1250, notice="WRONG PIN, TAP AGAIN")
    assert not any(isinstance(e, (PrintReceipts, CollectPin)) for e in effects)


def test_a_tapped_approval_prints_its_receipts():
    answer = HostAnswered(AuthResponse(stan=9, response_code="00", auth_code="123456", rrn="1", terminal_id="T"), 9)
    state, effects = run(Authorizing(1250, chip(), 1), answer)
    assert state == Result(("APPROVED", "CNY 12.50", "AUTH CODE 123456")) and PrintReceipts(9) in effects


# --- a wallet payment ---------------------------------------------------------------------------


def test_f1_makes_an_order_and_its_code_is_shown_with_a_countdown():
    state, effects = run(AwaitCard(1250), Key("F1"))
    assert state == WalletBusy(1250, "PREPARING QR CODE", provider="alipay")
    assert StartQrOrder(1250, provider="alipay") in effects
    state, effects = run(state, OrderShown("https://qr.alipay.com/bax1", "ORDER1"))
    assert state == ShowingQR(1250, "https://qr.alipay.com/bax1", 3, "alipay")
    [show] = [e for e in effects if isinstance(e, Show)]
    assert show.qr == "https://qr.alipay.com/bax1" and "SCAN TO PAY  0:03" in show.lines
    assert StartTimer(1.0) in effects


def test_no_wallet_configured_means_f1_does_nothing():
    plain = FlowConfig(currency=Currency.of("CNY"))
    assert flow.step(AwaitCard(1250), Key("F1"), plain) == (AwaitCard(1250), [])


def test_the_countdown_runs_out_and_closes_the_order():
    state, effects = run(ShowingQR(1250, "p", 2, "alipay"), TimerExpired())
    assert state == ShowingQR(1250, "p", 1, "alipay") and "SCAN TO PAY  0:01" in screen(effects)
    state, effects = run(state, TimerExpired())
    assert state == WalletBusy(1250, "CODE EXPIRED, CLOSING", provider="alipay")
    assert EndWalletOrder("CODE EXPIRED") in effects


def test_cancel_closes_a_shown_code_and_f2_prints_it_without_redrawing():
    assert run(ShowingQR(1250, "p", 60), Key("F2")) == (ShowingQR(1250, "p", 60), [PrintCode("p", 1250)])
    state, effects = run(ShowingQR(1250, "p", 60), Key("CANCEL"))
    assert state == WalletBusy(1250, "CLOSING ORDER...") and EndWalletOrder("CANCELLED") in effects


def test_a_payer_confirming_in_the_app_can_be_cancelled_but_a_busy_request_cannot():
    busy = WalletBusy(1250, "PROCESSING...")
    assert run(busy, Key("CANCEL")) == (busy, [])
    state, effects = run(busy, WalletConfirming())
    assert state == WalletBusy(1250, "CONFIRM IN YOUR APP", cancellable=True)  # still the same wallet's
    state, effects = run(state, Key("CANCEL"))
    assert state == WalletBusy(1250, "CANCELLING...") and EndWalletOrder("CANCELLED") in effects


@pytest.mark.parametrize(
    "start",
    [WalletBusy(1250, "CLOSING ORDER...", provider="wechat"), ShowingQR(1250, "p", 10, "wechat")],
    ids=["busy", "showing"],
)
def test_paid_prints_a_wallet_receipt(start):
    state, effects = run(start, WalletPaid("ORDER1", "4200001234202612021234567890", "o*****Xk", 12, "QR"))
    assert state == Result(("PAID", "CNY 12.50", "WECHAT PAY"))  # the wallet that was paid
    assert PrintReceipts(12) in effects  # what it states comes from the journal row (test_receipt.py)


@pytest.mark.parametrize(
    "ended, title", [("failed", "PAYMENT FAILED"), ("closed", "NOT PAID"), ("unknown", "PAYMENT UNKNOWN")]
)
def test_a_wallet_payment_that_did_not_happen(ended, title):
    state, effects = run(WalletBusy(1250, "PROCESSING..."), WalletEnded(ended, "WHY"))
    assert state == Result((title, "WHY")) and not any(isinstance(e, PrintReceipts) for e in effects)


@pytest.mark.parametrize(
    "code, outcome",
    [
        (ALIPAY_CODE, "alipay"),
        (WECHAT_CODE, "WECHAT NOT SET UP"),
        ("hello", "CODE NOT SUPPORTED"),
        ("²" * 18, "CODE NOT SUPPORTED"),
        ("", "CODE NOT SUPPORTED"),
    ],
)
def test_a_scanned_code_is_charged_only_for_the_configured_wallet(code, outcome):
    state, effects = run(AwaitCard(1250), Scanned(code))
    if outcome == "alipay":
        assert state == WalletBusy(1250, "PROCESSING...", provider=outcome)
        assert PayByCode(1250, code, provider=outcome) in effects
    else:
        assert state == AwaitCard(1250, notice=outcome) and not any(isinstance(e, PayByCode) for e in effects)


def test_two_wallets_each_code_goes_to_its_own_and_f1_f2_show_each_ones_code():
    both = replace(CFG, wallets=("alipay", "wechat"))
    for code, provider in ((ALIPAY_CODE, "alipay"), (WECHAT_CODE, "wechat")):
        state, effects = run(AwaitCard(1250), Scanned(code), cfg=both)
        assert state.provider == provider and [e.provider for e in effects if isinstance(e, PayByCode)] == [provider]
    for key, provider in (("F1", "alipay"), ("F2", "wechat")):
        state, effects = run(AwaitCard(1250), Key(key), cfg=both)
        assert [e.provider for e in effects if isinstance(e, StartQrOrder)] == [provider]
    assert "F1 ALIPAY  F2 WECHAT PAY" in screen(run(Amount(1250), Key("ENTER"), cfg=both)[1])
    assert run(AwaitCard(1250), Key("F2"))[1] == []  # one wallet: F2 shows nothing


# --- the back office: reprint, search, settlement -------------------------------------------------


def test_reprint_from_idle_and_by_trace_number():
    state, effects = run(IDLE, Key("F2"))
    assert state == Looking("reprint") and Reprint() in effects
    state, effects = run(Menu(), Key("5"), *[Key(c) for c in "1234567"], Key("CLEAR"), Key("ENTER"))
    assert state == Looking("reprint") and Reprint(12345) in effects  # six digits at most
    state, _ = run(state, Reprinted("QUEUED FOR PRINTER"))
    assert state == Result(("REPRINT", "QUEUED FOR PRINTER"))
    state, effects = run(TraceEntry("reprint"), Key("ENTER"))
    assert Reprint(0) in effects  # ENTER alone: the last one


def test_a_reprint_trace_ignores_a_scanned_receipt_but_a_refund_takes_it():
    assert run(TraceEntry("reprint"), Scanned("REF1")) == (TraceEntry("reprint"), [])
    state, effects = run(TraceEntry("refund"), Scanned("REF1"))
    assert state == Looking("refund") and FindOriginal(reference="REF1") in effects


def test_search_by_date_amount_and_last_four():
    state, effects = run(TraceEntry("refund"), Key("F2"))
    assert state == SearchEntry("refund") and "DATE MMDD" in screen(effects)
    state, _ = run(state, *[Key(c) for c in "1332"], Key("ENTER"))  # month 13: asked again
    assert state == SearchEntry("refund", value="")
    state, _ = run(state, *[Key(c) for c in "1126"], Key("ENTER"))
    assert state == SearchEntry("refund", "amount", date="1126")
    state, effects = run(state, *[Key(c) for c in "1250"], Key("ENTER"))
    assert state == SearchEntry("refund", "last4", date="1126", amount=1250)
    state, effects = run(state, *[Key(c) for c in "424"], Key("ENTER"))  # three digits: not yet
    assert state.field == "last4" and not any(isinstance(e, FindOriginal) for e in effects)
    state, effects = run(state, Key("2"), Key("ENTER"))
    assert state == Looking("refund") and FindOriginal(date="1126", amount=1250, last4="4242") in effects


@pytest.mark.parametrize(
    "outcome, title",
    [("in_balance", "SETTLED, IN BALANCE"), ("out_of_balance", "OUT OF BALANCE"), ("failed", "SETTLEMENT FAILED")],
)
def test_settlement_outcomes(outcome, title):
    state, effects = run(Menu(), Key("4"))
    assert state == Looking("settle") and Settle() in effects and StopTimer() in effects
    state, _ = run(state, Settled(outcome, "DETAIL"))
    assert state == Result((title, "DETAIL"))


def test_cancel_leaves_a_wait_for_the_journal():
    assert run(Looking("refund"), Key("CANCEL"))[0] == Result(("CANCELLED",))


# --- who is signed in: kept by the core, named on what they do --------------------------------------


PIN = EncryptedPin(block="1B9C1845EB993A7A", ksn="FFFF9876543210E00001")


def advance(till: Till, *evs) -> tuple[Till, list]:
    todo: list = []
    for event in evs:
        till, todo = flow.advance(till, event, CFG)
    return till, todo


def test_a_cashier_sign_in_names_the_sales_that_follow():
    till, _ = advance(Till(OperatorPin(purpose="signin")), OperatorChecked(True, "", "alice"))
    assert till.cashier == "alice" and till.manager == "" and till.state == Result(("SIGNED IN", "ALICE"))
    card = chip()
    _, todo = advance(replace(till, state=AwaitPin(10_000, card)), PinEntered(PIN))
    assert [e.operator for e in todo if isinstance(e, Authorize)] == ["alice"]
    _, todo = advance(replace(till, state=AwaitCard(500)), Key("F1"))
    assert [e.operator for e in todo if isinstance(e, StartQrOrder)] == ["alice"]
    _, todo = advance(replace(till, state=AwaitCard(500)), Scanned(ALIPAY_CODE))
    assert [e.operator for e in todo if isinstance(e, PayByCode)] == ["alice"]
    _, todo = advance(replace(till, state=IDLE), Key("F2"))
    assert [e.operator for e in todo if isinstance(e, Reprint)] == ["alice"]  # F2 at the till: the cashier's


def test_the_manager_who_opened_the_back_office_is_named_on_its_work():
    till, _ = advance(Till(OperatorPin(), cashier="alice"), OperatorChecked(True, "", "bob"))
    assert (till.cashier, till.manager, till.state) == ("alice", "bob", Menu())
    _, todo = advance(till, Key("4"))
    assert [e.operator for e in todo if isinstance(e, Settle)] == ["bob"]
    _, todo = advance(till, Key("3"))
    assert [e.operator for e in todo if isinstance(e, PrintReport)] == ["bob"]
    _, todo = advance(till, Key("5"), Key("1"), Key("ENTER"))
    assert [e.operator for e in todo if isinstance(e, Reprint)] == ["bob"]  # a reprint from the menu: the manager's
    sale = OriginalSale(7, 12, 10_000, "476173******0010", "card", "approved", "2026-12-03T10:00:00", 1, 0)
    _, todo = advance(replace(till, state=ConfirmVoid(sale)), Key("ENTER"))
    assert [e.operator for e in todo if isinstance(e, SubmitFollowUp)] == ["bob"]


def test_a_refused_or_stray_operator_answer_changes_no_one():
    till = Till(OperatorPin(purpose="signin"), cashier="alice", manager="bob")
    refused, _ = advance(till, OperatorChecked(False, "WRONG OPERATOR PIN"))
    assert (refused.cashier, refused.manager) == ("alice", "bob")
    stray, _ = advance(Till(IDLE, "alice", "bob"), OperatorChecked(True, "", "mallory"))  # no PIN pad asked
    assert (stray.state, stray.cashier, stray.manager) == (IDLE, "alice", "bob")


# --- a chip card: the kernel runs in the shell, the flow shows it and asks the cardholder ---------------


def test_an_inserted_card_starts_the_contact_kernel_and_one_no_sale_wants_is_let_go():
    state, effects = run(AwaitCard(2500), ChipInserted("session"))
    assert state == ChipReading(2500) and StartChip("session", 2500) in effects
    assert flow.step(IDLE, ChipInserted("s"), CFG) == (IDLE, [ReleaseCard("s")])
    till, todo = flow.advance(Till(AwaitCard(2500), cashier="alice"), ChipInserted("session"), CFG)
    assert [e.operator for e in todo if isinstance(e, StartChip)] == ["alice"]


def test_the_cardholder_picks_an_application_by_its_number():
    state, effects = run(ChipReading(2500), ChipAsks("choose", ("UNIONPAY DEBIT", "UNIONPAY CREDIT")))
    assert isinstance(state, ChipChoosing) and "2 UNIONPAY CREDIT" in screen(effects)
    assert run(state, Key("3")) == (state, [])  # no third application
    state, effects = run(state, Key("2"))
    assert state == ChipReading(2500, text="PROCESSING...") and AnswerChip(2) in effects
    state, effects = run(ChipChoosing(2500, ("A", "B")), Key("CANCEL"))
    assert state.cancelling and AbortChip("CANCELLED") in effects


def test_a_pin_the_card_checks_counts_its_tries_and_offers_no_pin_where_allowed():
    state, effects = run(ChipReading(2500), ChipAsks("pin", offline=True, tries_left=1, bypass=True))
    assert state == ChipPin(2500, True, 1, False, True)
    assert "LAST PIN TRY" in screen(effects) and "NO PIN? PRESS ENTER" in screen(effects)
    state, effects = run(state, PinProgress(2))
    assert state.digits == 2 and "**" in screen(effects) and "NO PIN?" not in screen(effects)
    wrong, effects = run(state, ChipAsks("pin", offline=True, tries_left=2, retry=True))
    assert wrong.digits == 0 and "WRONG PIN, 2 TRIES LEFT" in screen(effects)
    state, effects = run(state, ChipWorking("PROCESSING..."))
    assert state == ChipReading(2500, text="PROCESSING...") and EndPin() in effects


@pytest.mark.parametrize("event, reason", [(Key("CANCEL"), "CANCELLED"), (ChipRemoved(), "CARD REMOVED")])
def test_cancel_or_a_removed_card_at_the_pin_prompt_stops_the_kernel(event, reason):
    state, effects = run(ChipPin(2500, False), event)
    assert state.cancelling and AbortChip(reason) in effects and EndPin() in effects
    state, _ = run(state, CardFailed("CANCELLED", "cancelled"))
    assert state == Result(("CANCELLED", "NOT CHARGED"))


def test_how_a_chip_sale_ends():
    answer = HostAnswered(AuthResponse(stan=9, response_code="00", auth_code="123456", rrn="1", terminal_id="T"), 9)
    state, effects = run(ChipReading(2500), answer)
    assert state == Result(("APPROVED", "CNY 25.00", "AUTH CODE 123456")) and PrintReceipts(9) in effects
    state, _ = run(ChipReading(2500), CardFailed("DECLINED BY CARD", "declined offline", declined=True))
    assert state == Result(("DECLINED", "DECLINED BY CARD"))
    state, _ = run(ChipReading(2500), CardFailed("CARD ERROR, TRY ANOTHER CARD", "mute"))
    assert state == AwaitCard(2500, notice="CARD ERROR, TRY ANOTHER CARD", chip_failed=True)  # or the stripe
    state, _ = run(ChipReading(2500), HostFailed("declined by the card", sent=True, stan=9, title="CARD DECLINED"))
    assert state == Result(("CARD DECLINED", "NOT APPROVED"))


# --- device trouble: a line under every screen, kept by the core ------------------------------------------


def test_device_trouble_stays_under_every_screen_until_it_is_fine_again():
    till, todo = flow.advance(Till(AwaitCard(1250)), DeviceTrouble("printer", "PRINTER: NO PAPER"), CFG)
    assert till.problems == (("printer", "PRINTER: NO PAPER"),) and screen(todo).endswith("PRINTER: NO PAPER")
    assert not any(isinstance(e, (StartTimer, StopTimer)) for e in todo)  # a redraw, not a new state
    assert flow.advance(till, DeviceTrouble("printer", "PRINTER: NO PAPER"), CFG) == (till, [])  # nothing new
    till, todo = flow.advance(till, Key("CANCEL"), CFG)
    assert "CANCELLED" in screen(todo) and "PRINTER: NO PAPER" in screen(todo)  # the next screen has it too
    till, todo = flow.put(till, IDLE, CFG)
    assert "PRINTER: NO PAPER" in screen(todo)
    till, todo = flow.advance(till, DeviceTrouble("printer", ""), CFG)
    assert till.problems == () and "PRINTER" not in screen(todo)


def test_a_shown_code_keeps_its_qr_when_a_device_line_is_added():
    _, todo = flow.advance(Till(ShowingQR(1250, "https://qr.alipay.com/x", 60)), DeviceTrouble("scanner", "X"), CFG)
    [show] = todo
    assert show.qr == "https://qr.alipay.com/x" and show.lines[-1] == "X"


@pytest.mark.parametrize(
    "chip_reader, fallback, chip_failed, refused",
    [
        (True, False, False, True),
        (True, True, False, True),
        (True, False, True, True),
        (True, True, True, False),
        (False, False, False, False),
    ],
)
def test_a_chip_cards_stripe_is_refused_where_a_chip_reader_is_unless_its_chip_failed_and_fallback_is_on(
    chip_reader, fallback, chip_failed, refused
):
    chip_card = parse_swipe(";6250941006528599=30122010000000000000?")  # service code 201: an IC card
    cfg = replace(CFG, chip_reader=chip_reader, fallback=fallback)
    state, effects = run(AwaitCard(2500, chip_failed=chip_failed), Swiped(chip_card), cfg=cfg)
    if refused:
        assert state.notice == "USE CHIP READER" and effects and not any(isinstance(e, CollectPin) for e in effects)
    else:
        assert isinstance(state, AwaitPin)
    plain = parse_swipe(";4242424242424242=30121010000000000000?")  # service code 101: no chip
    assert isinstance(run(AwaitCard(2500), Swiped(plain), cfg=cfg)[0], AwaitPin)
