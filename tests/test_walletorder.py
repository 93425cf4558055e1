"""The wallet order machines, pure: scripted provider answers in, requests and the order's outcome out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.core import walletorder as wo
from firmware.core.walletorder import Call, Failure, Final, Now, Open, Tell, Wait, WalletResult

CREATED = datetime(2026, 12, 3, 10, 0, 0, tzinfo=UTC)
QR_TIMEOUT = 120
PAID = WalletResult("paid", trade_no="2026120322001", payer="138****0000")
WAITING = WalletResult("waiting")
CLOSED = WalletResult("closed", "ORDER CLOSED")
NOT_FOUND = WalletResult("not_found")
DOWN = Failure("connection refused")
LIE = Failure("out_trade_no is another order's", mismatch=True)


def drive(machine, answers, now=CREATED):
    """Run `machine`: each Call takes the next of `answers` (per op, or in order), a Wait advances a fake
    clock, Now reads it. Returns (requests, outcome)."""
    queue = list(answers)
    requests, elapsed, answer = [], 0.0, None
    while True:
        try:
            request = machine.send(answer)
        except StopIteration as stop:
            return requests, stop.value
        requests.append(request)
        if isinstance(request, Call):
            answer = queue.pop(0)
        elif isinstance(request, Wait):
            elapsed += request.seconds
            answer = elapsed
        elif isinstance(request, Now):
            answer = now + timedelta(seconds=elapsed)
        else:
            answer = None
        assert len(requests) < 1000, "the machine does not end"


def calls(requests):
    return [r.op for r in requests if isinstance(r, Call)]


def waits(requests):
    return [r.seconds for r in requests if isinstance(r, Wait)]


def test_a_shown_code_is_asked_about_ever_less_often_until_paid():
    answers = [WalletResult("waiting", qr="https://qr.alipay.com/x"), *[WAITING] * 6, DOWN, LIE, PAID]
    requests, outcome = drive(wo.qr_order(1.0), answers)
    assert requests[1] == Tell("shown", "https://qr.alipay.com/x")
    assert calls(requests) == ["create"] + ["query"] * 9  # a failure or another order's answer: ask again
    assert waits(requests)[:6] == [1.0, 1.5, 2.25, 3.375, 5.0, 5.0]  # grows, then every 5 s
    assert outcome == Final("approved", PAID)


def test_a_shown_code_whose_creation_failed_or_was_odd_is_left_to_reconciliation():
    assert drive(wo.qr_order(1.0), [DOWN])[1] == Open("connection refused", "WALLET NOT AVAILABLE")
    assert drive(wo.qr_order(1.0), [WalletResult("failed", "NO PERMISSION")])[1].status == "declined"
    assert isinstance(drive(wo.qr_order(1.0), [WalletResult("retry")])[1], Open)


def test_a_scanned_code_paid_at_once_or_refused():
    assert drive(wo.code_payment(5, 30, QR_TIMEOUT, CREATED), [PAID]) == ([Call("pay")], Final("approved", PAID))
    refused = WalletResult("failed", "INSUFFICIENT BALANCE")
    assert drive(wo.code_payment(5, 30, QR_TIMEOUT, CREATED), [refused])[1] == Final("declined", refused)
    assert drive(wo.code_payment(5, 30, QR_TIMEOUT, CREATED), [DOWN])[1] == Open("connection refused")


def test_a_payer_who_confirms_in_the_app_is_asked_every_interval():
    requests, outcome = drive(wo.code_payment(5, 30, QR_TIMEOUT, CREATED), [WAITING, WAITING, DOWN, PAID])
    assert Tell("confirming") in requests and waits(requests) == [5, 5, 5]
    assert outcome == Final("approved", PAID)


def test_a_payer_who_never_confirms_is_cancelled_after_the_timeout_in_all():
    requests, outcome = drive(wo.code_payment(5, 30, QR_TIMEOUT, CREATED), [WAITING] * 7 + [CLOSED])
    assert calls(requests) == ["pay"] + ["query"] * 6 + ["cancel"]  # 6 × 5 s = 30 s, then the reverse
    assert outcome == Final("cancelled", WalletResult("closed", "CUSTOMER DID NOT CONFIRM"))


def test_a_cancel_that_cannot_be_confirmed_leaves_the_order_open_never_cancelled():
    retry = WalletResult("retry")
    answers = [WAITING] * 7 + [retry, WAITING, DOWN, retry, WAITING, retry, WAITING]
    requests, outcome = drive(wo.code_payment(5, 30, QR_TIMEOUT, CREATED), answers)
    assert calls(requests)[7:] == ["cancel", "query", "cancel", "cancel", "query", "cancel", "query"]
    assert waits(requests)[-3:] == [0.5, 1.0, 2.0]  # the cancel's own backoff
    assert isinstance(outcome, Open) and outcome.state == "unknown"


def test_a_payment_that_beat_the_cancel_is_kept():
    requests, outcome = drive(wo.end_order("code", "CANCELLED", QR_TIMEOUT, CREATED), [WalletResult("refused"), PAID])
    assert calls(requests) == ["cancel", "query"] and outcome == Final("approved", PAID)
    refunded = WalletResult("closed", "REFUNDED TO PAYER")  # a cancel of a paid trade refunds it
    assert drive(wo.end_order("code", "CANCELLED", QR_TIMEOUT, CREATED), [refunded])[1] == Final("cancelled", refunded)


def test_a_shown_code_nobody_scanned_stays_open_until_its_expiry_has_passed():
    early = drive(wo.end_order("qr", "CANCELLED", QR_TIMEOUT, CREATED), [NOT_FOUND, NOT_FOUND])
    assert isinstance(early[1], Open) and early[1].state == "closed" and early[1].screen == "CANCELLED"
    late_clock = CREATED + timedelta(seconds=QR_TIMEOUT) + wo.EXPIRY_MARGIN
    late = drive(wo.end_order("qr", "CANCELLED", QR_TIMEOUT, CREATED), [NOT_FOUND, NOT_FOUND], now=late_clock)
    assert late[1] == Final("cancelled", WalletResult("closed", "CANCELLED"))


def test_reconciliation_says_only_what_the_provider_said():
    assert drive(wo.reconcile_order("qr", QR_TIMEOUT, CREATED), [DOWN])[1] is None
    assert drive(wo.reconcile_order("qr", QR_TIMEOUT, CREATED), [PAID])[1] == Final("approved", PAID)
    closed = drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED), [WAITING, CLOSED])
    assert calls(closed[0]) == ["query", "cancel"] and closed[1] == Final("cancelled", CLOSED)
    failed = WalletResult("failed", "INSUFFICIENT BALANCE")  # UnionPay's origRespCode 51, Lakala's FAIL
    assert drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED), [failed])[1] == Final("declined", failed)
    assert drive(wo.reconcile_order("qr", QR_TIMEOUT, CREATED), [NOT_FOUND, NOT_FOUND, NOT_FOUND])[1] is None
    expired = CREATED + timedelta(seconds=QR_TIMEOUT) + wo.EXPIRY_MARGIN
    gone = drive(wo.reconcile_order("qr", QR_TIMEOUT, CREATED), [NOT_FOUND, NOT_FOUND, NOT_FOUND], now=expired)
    assert gone[1] == Final("cancelled", WalletResult("closed", "NEVER PAID; CODE EXPIRED"))


def test_an_order_whose_cancel_was_sent_is_never_reconciled_as_paid():
    """The cashier's cancel was journaled and sent, its answer lost: the query of the original may still say
    paid (UnionPay's consume after 消费撤销), so the order is cancelled again, never approved."""
    refunded = WalletResult("closed", "REFUNDED TO PAYER")
    again = drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED, cancelling=True), [PAID, refunded])
    assert calls(again[0]) == ["query", "cancel"] and again[1] == Final("cancelled", refunded)
    for answer in (DOWN, WalletResult("retry"), PAID):  # not confirmed: asked again later, not approved
        assert drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED, cancelling=True), [PAID, answer])[1] is None
    refused = WalletResult("refused", "ORDERPAID")  # the provider will not cancel it: nothing moved
    kept = drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED, cancelling=True), [PAID, refused])
    assert kept[1] == Final("approved", PAID)
    # Still open when asked, the cancel not confirmed, paid when asked again: asked again later, not approved.
    still = drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED, True), [WAITING, WalletResult("retry"), PAID])
    assert calls(still[0]) == ["query", "cancel", "query"] and still[1] is None
    reversed_ = drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED, True), [WalletResult("failed")])
    assert reversed_[1] is not None and reversed_[1].status == "cancelled"  # a reversed payment reads failed
    assert drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED, True), [CLOSED])[1] == Final("cancelled", CLOSED)


STATES = ["paid", "waiting", "not_found", "closed", "failed", "retry", "refused", "refunded"]
ANSWERS = st.one_of(
    st.builds(WalletResult, st.sampled_from(STATES), st.sampled_from(["", "REFUNDED TO PAYER", "X"])),
    st.builds(Failure, st.just("down"), st.just("WALLET NOT AVAILABLE"), st.booleans()),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)  # the same examples every run
@given(st.lists(ANSWERS, min_size=20, max_size=20), st.sampled_from(["qr", "code"]))
def test_any_answers_end_an_order_and_only_a_paid_answer_approves_it(answers, kind):
    """Whatever the provider answers, the order ends within a bounded number of calls; it is approved exactly
    when a payment or query answered paid (the first such answer), and never cancelled after one."""
    machine = (
        wo.code_payment(5, 30, QR_TIMEOUT, CREATED)
        if kind == "code"
        else wo.end_order("qr", "CANCELLED", QR_TIMEOUT, CREATED)
    )
    requests, outcome = drive(machine, answers)
    asked = zip(calls(requests), answers, strict=False)
    paid = [a for op, a in asked if op in ("pay", "query") and isinstance(a, WalletResult) and a.state == "paid"]
    if paid:
        assert outcome == Final("approved", paid[0])
    else:
        assert not (isinstance(outcome, Final) and outcome.status == "approved")


def test_a_scanned_code_the_provider_never_had_is_final_only_once_it_is_old():
    """A "not found" names no order (a lying proxy could pass another request's off as this one's): at the
    till it leaves the sale unknown; reconciliation calls it never paid once the order is old enough."""
    gone = [NOT_FOUND, NOT_FOUND]
    at_till = drive(wo.end_order("code", "CUSTOMER DID NOT CONFIRM", QR_TIMEOUT, CREATED), gone)[1]
    assert isinstance(at_till, Open) and at_till.state == "closed"
    young = drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED), [NOT_FOUND, *gone])[1]
    assert young is None
    old = CREATED + wo.CODE_NOT_FOUND_WAIT + wo.EXPIRY_MARGIN
    final = drive(wo.reconcile_order("code", QR_TIMEOUT, CREATED), [NOT_FOUND, *gone], now=old)[1]
    assert final == Final("cancelled", WalletResult("closed", "NEVER REACHED THE WALLET"))
