"""The soak's transactions: each kind drives the simulator as a customer and a cashier would, waits for the
screen it must end on, and says which journal rows it leaves (kind, method, final status).

Used by bench/soak.py. A kind that does not end as expected raises `Unexpected` (the soak records it and
goes on). Amounts are drawn from the seeded generator; what the simulator's threads do in between is
timing, so two runs with one seed run the same kinds in the same order, not byte for byte the same.
"""

from __future__ import annotations

import logging
import random
import re
import sqlite3
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hwsim import Simulator

log = logging.getLogger(__name__)

PIN, WRONG_PIN, MANAGER_PIN = "1234", "9999", "8888"
SWIPE_APPROVE = ("visa-approve", "mc-approve", "unionpay-approve")
SWIPE_DECLINE = (
    "visa-insufficient",
    "visa-expired",
    "visa-stolen",
    "visa-do-not-honor",
    "visa-invalid-number",
    "visa-issuer-down",
)
TAP_DECLINE = ("visa-tap-insufficient", "mc-tap-stolen", "visa-tap-bad-arqc", "visa-tap-expired")
CVM_LIMIT = 10000  # config/sim.toml [contactless] cvm_limit
TAP_LIMIT = 500000  # ... transaction_limit
UNDECIDED = ("pending", "unknown", "queued")

# The soak's own contactless cards: the catalog's approving cards hold 5,000.00, which thousands of taps would
# spend. Same keys as the catalog's cards, new card numbers (Luhn-valid, unknown to the catalog: the simulated
# issuer keeps the first account of a number, so a clash spends that card's balance; Till checks), ample balance.
SOAK_CARDS = {
    "soak-visa-tap": 'kernel = "visa"\naid = "A0000000031010"\nlabel = "SOAK VISA"\npan = "4761739001990013"\n'
    'psn = "01"\nexpiry = "3012"\nimk_ac = "0123456789ABCDEFFEDCBA9876543210"\natc = 1\n'
    'balance = "90000000.00"\n',
    "soak-mc-tap": 'kernel = "mastercard"\naid = "A0000000041010"\nlabel = "SOAK MC"\npan = "5413330089020052"\n'
    'psn = "00"\nexpiry = "3012"\nimk_ac = "AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBB"\natc = 1\n'
    'balance = "90000000.00"\n',
    "soak-visa-tap-b": 'kernel = "visa"\ntechnology = "B"\naid = "A0000000031010"\nlabel = "SOAK VISA B"\n'
    'pan = "4761739001010093"\npsn = "01"\nexpiry = "3012"\n'
    'imk_ac = "0123456789ABCDEFFEDCBA9876543210"\natc = 1\nbalance = "90000000.00"\n',
    "soak-phone": 'kernel = "visa"\naid = "A0000000031010"\nlabel = "SOAK PHONE"\npan = "4761739001010101"\n'
    'psn = "00"\nexpiry = "3012"\nimk_ac = "0123456789ABCDEFFEDCBA9876543210"\natc = 1\n'
    'cdcvm = true\nbalance = "90000000.00"\n',
}
TAP_APPROVE = ("soak-visa-tap", "soak-mc-tap", "soak-visa-tap-b")


def _pan(profile: str) -> str:
    found = re.search(r'^pan = "(\d+)"$', profile, re.MULTILINE)
    if found is None:
        raise ValueError(f"no pan in {profile!r}")
    return found.group(1)


class Unexpected(Exception):
    """A transaction did not end the way its kind must end."""


@dataclass
class Sale:
    """An approved sale the soak may void or refund later."""

    stan: int
    amount: int
    method: str  # card | wallet
    day: str  # YYYY-MM-DD of created_at
    refunded: int = 0
    voidable: bool = True  # same batch (no settlement since), nothing refunded


class Till:
    """The simulator seen from the counter: screens, keys, receipts, what the journal must end up holding."""

    def __init__(self, sim: Simulator, card_dir: Path, rng: random.Random) -> None:
        """`card_dir`: a folder of the soak's own for its card profiles (they hold card numbers: keep them out
        of the terminal's data)."""
        self.sim = sim
        self.rng = rng
        self.expected: Counter[tuple[str, str, str]] = Counter()  # (kind, method, final status) -> rows
        self.sales: deque[Sale] = deque(maxlen=64)  # recent approved sales, for voids/refunds
        self.receipts_due = 0  # receipts the printer must have cut since the last prune
        self.restarts: Counter[str] = Counter()
        self.after_restart: Callable[[], None] | None = None  # the soak's census of what a restart left behind
        self._seen_row = 0
        self._cond = threading.Condition()
        sim.display.listen(self._changed)
        self.cards: dict[str, Path] = {}
        known = sim.host.issuer.accounts if sim.host is not None else {}
        clash = [name for name, text in SOAK_CARDS.items() if _pan(text) in known]
        if clash:
            raise ValueError(f"the soak's cards {clash} have the card number of a catalog card: give them new ones")
        for name, text in SOAK_CARDS.items():
            path = card_dir / f"{name}.toml"
            path.write_text(text, encoding="utf-8")
            self.cards[name] = path

    # --- the screen ---------------------------------------------------------------------------

    def _changed(self, lines: tuple[str, ...]) -> None:
        with self._cond:
            self._cond.notify_all()

    def title(self) -> str:
        """The first line on screen."""
        lines = self.sim.display.lines
        return lines[0] if lines else ""

    def wait_title(self, *titles: str, timeout: float = 10.0) -> str:
        """Wait until the first line on screen is one of `titles`; returns it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                lines = self.sim.display.lines
                if lines and lines[0] in titles:
                    return lines[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unexpected(f"screen is {' / '.join(lines)!r}, expected {' or '.join(titles)}")
                self._cond.wait(min(left, 0.5))

    def wait_text(self, text: str, timeout: float = 10.0) -> None:
        """Wait until the screen shows `text` anywhere."""
        try:
            self.sim.wait_for(text, timeout)
        except TimeoutError:
            raise Unexpected(f"screen is {self.sim.screen.replace(chr(10), ' / ')!r}, expected {text!r}") from None

    def keys(self, text: str) -> None:
        self.sim.keys(text)

    def idle(self, timeout: float = 10.0) -> None:
        """Back to ENTER AMOUNT from a result screen."""
        if self.title() != "ENTER AMOUNT":
            self.keys("{ENTER}")
        self.wait_title("ENTER AMOUNT", timeout=timeout)

    def recover(self) -> None:
        """After an unexpected screen: cancel whatever is going on and get back to idle (a clean restart if
        the keypad cannot)."""
        for keys in ("{CANCEL}", "{CANCEL}", "{ENTER}"):
            try:
                self.keys(keys)
                self.wait_title("ENTER AMOUNT", timeout=5)
                return
            except (Unexpected, TimeoutError):
                continue
        log.warning("soak: the keypad could not bring the terminal back to idle; restarting it")
        self.restart(crash=False)

    def restart(self, crash: bool) -> None:
        self.restarts["power cut" if crash else "clean"] += 1
        self.sim.restart(crash=crash)
        self.wait_title("ENTER AMOUNT")
        if self.after_restart is not None:
            self.after_restart()

    # --- the simulator's world ----------------------------------------------------------------

    def print_expected(self, count: int, timeout: float = 10.0) -> None:
        """`count` more receipts must be cut (waits for them, so that printing never overlaps the next step)."""
        self.receipts_due += count
        try:
            self.sim.printer.wait_for_receipts(self.receipts_due, timeout)
        except TimeoutError as exc:
            self.receipts_due = len(self.sim.printer.decoder.receipts)
            raise Unexpected(str(exc)) from None

    def host_requests(self) -> int:
        return sum(1 for d, _ in self.sim.host.host_log if d == "request")

    def wait_request(self, before: int, timeout: float = 10.0) -> None:
        """Wait until the acquirer has received a request beyond the `before` it had."""
        deadline = time.monotonic() + timeout
        while self.host_requests() <= before:
            if time.monotonic() > deadline:
                raise Unexpected("the request never reached the acquirer")
            time.sleep(0.005)

    def clear_faults(self) -> None:
        self.sim.host.fault(None)
        self.sim.host.lie(None)
        self.sim.wallet.fault(None)
        self.sim.wallet.next_code("pay")

    def expect(self, kind: str, method: str, status: str, n: int = 1) -> None:
        self.expected[(kind, method, status)] += n

    # --- the journal --------------------------------------------------------------------------

    def new_rows(self) -> list[dict[str, Any]]:
        """Journal rows written since the last call (read-only, a connection of its own)."""
        path = self.sim.data_dir / "journal.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            db.row_factory = sqlite3.Row
            rows = [
                dict(r)
                for r in db.execute(
                    "SELECT id, kind, method, status, stan, amount, created_at FROM "
                    "transactions WHERE id > ? ORDER BY id",
                    (self._seen_row,),
                )
            ]
        finally:
            db.close()
        if rows:
            self._seen_row = rows[-1]["id"]
        return rows

    def note_sales(self) -> None:
        """Remember the sales approved by the last transaction (for voids and refunds later)."""
        for r in self.new_rows():
            if r["kind"] == "sale" and r["status"] == "approved":
                self.sales.append(Sale(r["stan"], r["amount"], r["method"], r["created_at"][:10]))

    def settled(self) -> None:
        """A settlement closed the batch: no sale before it can be voided."""
        for s in self.sales:
            s.voidable = False

    def quiet(self, methods: tuple[str, ...] = ("card", "wallet", "cash"), timeout: float = 240.0) -> int:
        """Wait until no journal row of these methods is pending, unknown or queued (reversals sent, lost answers
        resent, wallet orders reconciled); returns how many are still undecided at the timeout."""
        path = self.sim.data_dir / "journal.sqlite3"
        marks = ",".join("?" * len(UNDECIDED))
        meth = ",".join("?" * len(methods))
        deadline = time.monotonic() + timeout
        while True:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
            try:
                left = db.execute(
                    f"SELECT COUNT(*) FROM transactions WHERE status IN ({marks}) AND method IN ({meth})",
                    (*UNDECIDED, *methods),
                ).fetchone()[0]
            finally:
                db.close()
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    # --- amounts and cards --------------------------------------------------------------------

    def amount(self, low: int = 100, high: int = 50000) -> int:
        return self.rng.randint(low, high)

    def start_sale(self, amount: int, prompt: str = "SWIPE CARD") -> None:
        self.keys(f"{amount}{{ENTER}}")
        self.wait_text(prompt)

    def tap(self, name: str) -> None:
        """Hold a card in the field: one of the soak's own (SOAK_CARDS) or a catalog card."""
        if name in self.cards:
            self.sim.tap(profile=self.cards[name])
        else:
            self.sim.tap(name)


# --- card sales: swipe ----------------------------------------------------------------------------


def swipe_approved(t: Till) -> None:
    t.start_sale(t.amount())
    t.sim.swipe(t.rng.choice(SWIPE_APPROVE))
    t.sim.pin(PIN)
    t.wait_title("APPROVED")
    t.expect("sale", "card", "approved")
    t.print_expected(2)


def swipe_declined(t: Till) -> None:
    t.start_sale(t.amount())
    t.sim.swipe(t.rng.choice(SWIPE_DECLINE))
    t.sim.pin(PIN)
    t.wait_title("DECLINED")
    t.expect("sale", "card", "declined")
    t.print_expected(2)


def swipe_wrong_pin_then_right(t: Till) -> None:
    t.start_sale(t.amount())
    t.sim.swipe(t.rng.choice(SWIPE_APPROVE))
    t.sim.pin(WRONG_PIN)
    t.wait_text("WRONG PIN, TRY AGAIN")
    t.sim.pin(PIN)
    t.wait_title("APPROVED")
    t.expect("sale", "card", "declined")
    t.expect("sale", "card", "approved")
    t.print_expected(2)


def swipe_pin_never_matches(t: Till) -> None:
    """The issuer's PIN record does not match: 55 three times (or 75 once the card is blocked)."""
    t.start_sale(t.amount())
    t.sim.swipe("visa-wrong-pin")
    for _ in range(3):
        t.sim.pin(PIN)
        t.expect("sale", "card", "declined")
        if t.wait_title("WRONG PIN, TRY AGAIN", "DECLINED") == "DECLINED":
            break
    t.wait_title("DECLINED")
    t.print_expected(2)


def swipe_cancelled_at_pin(t: Till) -> None:
    t.start_sale(t.amount())
    t.sim.swipe(t.rng.choice(SWIPE_APPROVE))
    t.wait_text("ENTER PIN")
    t.keys("12{CANCEL}")
    t.wait_title("CANCELLED")


# --- card sales: contactless ----------------------------------------------------------------------


def tap_no_cvm(t: Till) -> None:
    t.start_sale(t.amount(100, CVM_LIMIT), "TAP OR SWIPE CARD")
    t.tap(t.rng.choice(TAP_APPROVE))
    t.wait_title("APPROVED", timeout=15)
    t.sim.remove_card()
    t.expect("sale", "card", "approved")
    t.print_expected(2)


def tap_online_pin(t: Till) -> None:
    t.start_sale(t.amount(CVM_LIMIT + 1, TAP_LIMIT // 10), "TAP OR SWIPE CARD")
    card = t.rng.choice(TAP_APPROVE)
    t.tap(card)
    t.wait_text("ENTER PIN", timeout=15)
    t.sim.remove_card()
    if t.rng.random() < 0.3:  # a wrong PIN needs a new tap (a new cryptogram)
        t.sim.pin(WRONG_PIN)
        t.wait_text("WRONG PIN, TAP AGAIN")
        t.expect("sale", "card", "declined")
        t.tap(card)
        t.wait_text("ENTER PIN", timeout=15)
        t.sim.remove_card()
    t.sim.pin(PIN)
    t.wait_title("APPROVED")
    t.expect("sale", "card", "approved")
    t.print_expected(2)


def tap_phone_cdcvm(t: Till) -> None:
    t.start_sale(t.amount(CVM_LIMIT + 1, TAP_LIMIT // 10), "TAP OR SWIPE CARD")
    t.tap("soak-phone")
    t.wait_title("APPROVED", timeout=15)
    t.sim.remove_card()
    t.expect("sale", "card", "approved")
    t.print_expected(2)


def tap_declined(t: Till) -> None:
    t.start_sale(t.amount(200, CVM_LIMIT), "TAP OR SWIPE CARD")
    t.tap(t.rng.choice(TAP_DECLINE))
    t.wait_title("DECLINED", timeout=15)
    t.sim.remove_card()
    t.expect("sale", "card", "declined")
    t.print_expected(2)


def tap_removed_early(t: Till) -> None:
    """Pulled away after two commands: PLEASE TAP AGAIN (a failed row), then a good tap."""
    t.start_sale(t.amount(100, CVM_LIMIT), "TAP OR SWIPE CARD")
    t.sim.tap("visa-tap-removed")
    t.wait_text("PLEASE TAP AGAIN", timeout=15)
    t.sim.remove_card()
    t.expect("sale", "card", "failed")
    t.tap(t.rng.choice(TAP_APPROVE))
    t.wait_title("APPROVED", timeout=15)
    t.sim.remove_card()
    t.expect("sale", "card", "approved")
    t.print_expected(2)


# --- wallets: the code on screen (主扫) -------------------------------------------------------------


def _show_code(t: Till, amount: int | None = None) -> str:
    t.start_sale(amount or t.amount())
    t.keys("{F1}")
    t.wait_text("SCAN TO PAY")
    return t.sim.display_qr


def qr_paid(t: Till) -> None:
    t.sim.wallet.pay(_show_code(t))
    t.wait_title("PAID")
    t.expect("sale", "wallet", "approved")
    t.print_expected(2)


def qr_never_paid(t: Till) -> None:
    """The code runs out (scanned or not); the order is closed, or left to expire when nobody scanned it."""
    qr = _show_code(t)
    scanned = t.rng.random() < 0.5
    if scanned:
        t.sim.wallet.scan(qr)
    t.wait_title("NOT PAID", timeout=t.sim.config.wallet.qr_timeout + 15)
    t.expect("sale", "wallet", "cancelled")


def qr_cancelled(t: Till) -> None:
    qr = _show_code(t)
    if t.rng.random() < 0.5:
        t.sim.wallet.scan(qr)
    t.keys("{CANCEL}")
    t.wait_title("NOT PAID")
    t.expect("sale", "wallet", "cancelled")


def qr_lying_query(t: Till) -> None:
    """Signed query answers that are not this order's (another order, another amount, an unknown status)
    are no answer; the terminal keeps asking and sees the payment."""
    lie = t.rng.choice(("other_order", "wrong_amount", "no_amount", "unknown_state"))
    t.sim.wallet.fault(lie, times=2, method="alipay.trade.query")
    qr = _show_code(t)
    t.sim.wallet.scan(qr)
    time.sleep(0.3)  # the lies are served to the first queries
    t.sim.wallet.pay(qr)
    t.wait_title("PAID", timeout=15)
    t.expect("sale", "wallet", "approved")
    t.print_expected(2)


def qr_close_retried(t: Till) -> None:
    """Cancel of a scanned code whose close fails with retry_flag Y: retried until closed."""
    qr = _show_code(t)
    t.sim.wallet.scan(qr)
    t.sim.wallet.fault("retry", times=1, method="alipay.trade.close")
    t.keys("{CANCEL}")
    t.wait_title("NOT PAID", timeout=15)
    t.expect("sale", "wallet", "cancelled")


# --- wallets: the customer's code (被扫) ------------------------------------------------------------


def _payment_code(t: Till) -> str:
    return "28" + "".join(str(t.rng.randrange(10)) for _ in range(16))


def _code_payment(t: Till, behaviour: str, title: str, status: str) -> None:
    t.sim.wallet.next_code(behaviour)
    t.start_sale(t.amount())
    t.sim.scan(_payment_code(t))
    t.wait_title(title, timeout=15)
    t.expect("sale", "wallet", status)
    if status == "approved":
        t.print_expected(2)


def code_paid(t: Till) -> None:
    _code_payment(t, "pay", "PAID", "approved")


def code_confirmed_in_app(t: Till) -> None:
    _code_payment(t, "confirm", "PAID", "approved")


def code_insufficient(t: Till) -> None:
    _code_payment(t, "insufficient", "PAYMENT FAILED", "declined")


def code_never_confirmed(t: Till) -> None:
    _code_payment(t, "never_confirm", "NOT PAID", "cancelled")


def code_payer_cancels(t: Till) -> None:
    _code_payment(t, "user_cancels", "NOT PAID", "cancelled")


def code_untrusted_answer(t: Till) -> None:
    """The pay answer cannot be believed (bad signature, broken body, HTTP 500): PAYMENT UNKNOWN, then
    reconciled — paid behind a forged or broken answer, nothing behind a 500."""
    fault = t.rng.choice(("bad_signature", "malformed", "http500", "unsigned", "wrong_amount", "other_order"))
    t.sim.wallet.fault(fault, method="alipay.trade.pay")
    t.start_sale(t.amount())
    t.sim.scan(_payment_code(t))
    t.wait_title("PAYMENT UNKNOWN", timeout=15)
    t.expect("sale", "wallet", "cancelled" if fault == "http500" else "approved")


# --- card faults ----------------------------------------------------------------------------------


def _faulted_swipe(t: Till) -> None:
    t.start_sale(t.amount())
    t.sim.swipe(t.rng.choice(SWIPE_APPROVE))
    t.sim.pin(PIN)


def host_no_answer(t: Till) -> None:
    """Timeout, dropped connection, garbled or late answer: NOT APPROVED, and the sale is reversed."""
    t.quiet(("card",))
    t.sim.host.fault(t.rng.choice(("timeout", "drop", "garble", "late")))
    _faulted_swipe(t)
    t.wait_title("NO HOST ANSWER", timeout=t.sim.config.timeouts.host + 10)
    t.expect("sale", "card", "reversed")
    t.expect("reversal", "card", "acknowledged")


def host_answers_twice(t: Till) -> None:
    t.quiet(("card",))
    t.sim.host.fault("twice")
    _faulted_swipe(t)
    t.wait_title("APPROVED")
    t.expect("sale", "card", "approved")
    t.print_expected(2)


def _lie_amount(request: dict[str, str], answer: dict[str, str]) -> list[dict[str, str]]:
    return [{**answer, "4": f"{max(1, int(answer.get('4', '1')) // 100):012d}"}]


def _lie_currency(request: dict[str, str], answer: dict[str, str]) -> list[dict[str, str]]:
    return [{**answer, "49": "840"}]


def _lie_no_amount(request: dict[str, str], answer: dict[str, str]) -> list[dict[str, str]]:
    return [{k: v for k, v in answer.items() if k != "4"}]


def host_lies(t: Till) -> None:
    """An approval whose amount (or currency) is not the request's is never an approval: reversed."""
    t.quiet(("card",))
    t.sim.host.lie(t.rng.choice((_lie_amount, _lie_amount, _lie_currency, _lie_no_amount)))
    _faulted_swipe(t)
    t.wait_title("BAD HOST ANSWER", timeout=t.sim.config.timeouts.host + 10)
    t.expect("sale", "card", "reversed")
    t.expect("reversal", "card", "acknowledged")


def cancel_while_host_asked(t: Till) -> None:
    t.quiet(("card",))
    t.sim.host.fault("timeout")
    before = t.host_requests()
    _faulted_swipe(t)
    t.wait_request(before)
    t.keys("{CANCEL}")
    t.wait_title("CANCELLED", timeout=t.sim.config.timeouts.host + 10)
    t.expect("sale", "card", "reversed")
    t.expect("reversal", "card", "acknowledged")


# --- back office ----------------------------------------------------------------------------------


def _manager(t: Till, choice: str) -> None:
    t.keys("{MENU}")
    t.wait_text("MANAGER PIN")
    t.keys(MANAGER_PIN + "{ENTER}")
    t.wait_text("4 SETTLEMENT")
    t.keys(choice)


def _voidable(t: Till) -> Sale | None:
    today = datetime.now().astimezone().date().isoformat()
    found = [s for s in t.sales if s.voidable and not s.refunded and s.day == today]
    return t.rng.choice(found) if found else None


def _refundable(t: Till, method: str | None = None) -> Sale | None:
    found = [s for s in t.sales if s.refunded < s.amount and (method is None or s.method == method)]
    return t.rng.choice(found) if found else None


def void(t: Till) -> bool:
    sale = _voidable(t)
    if sale is None:
        return False
    _manager(t, "1")
    t.keys(f"{sale.stan}{{ENTER}}")
    t.wait_text("ENTER TO CONFIRM")
    t.keys("{ENTER}")
    t.wait_title("VOID APPROVED", timeout=15)
    t.sales.remove(sale)
    t.expect("sale", sale.method, "approved", -1)
    t.expect("sale", sale.method, "voided")
    t.expect("void", sale.method, "approved")
    t.print_expected(2)
    return True


def _refund(t: Till, sale: Sale, amount: int, route: str) -> None:
    _manager(t, "2")
    t.keys(f"{sale.stan}{{ENTER}}")
    t.wait_text("REFUND TRACE")
    t.keys(f"{amount}{{ENTER}}")
    t.wait_text("2 CASH")
    t.keys("1" if route == "back" else "2")
    sale.refunded += amount
    sale.voidable = False


def refund(t: Till) -> bool:
    """Partial or full, back to the card or wallet, or cash from the till."""
    sale = _refundable(t)
    if sale is None:
        return False
    left = sale.amount - sale.refunded
    amount = left if t.rng.random() < 0.4 else t.rng.randint(1, left)
    route = "cash" if t.rng.random() < 0.3 else "back"
    _refund(t, sale, amount, route)
    if route == "cash":
        t.wait_title("CASH REFUND")
        t.expect("refund", "cash", "approved")
    else:
        t.wait_title("REFUND APPROVED", timeout=15)
        t.expect("refund", sale.method, "approved")
    t.print_expected(2)
    return True


def refund_answer_lost(t: Till) -> bool:
    """The card refund's answer is lost: WILL RETRY BY ITSELF, resent with the same key, credited once."""
    sale = _refundable(t, "card")
    if sale is None:
        return False
    t.quiet(("card",))
    t.sim.host.fault(t.rng.choice(("timeout", "drop")))
    _refund(t, sale, t.rng.randint(1, sale.amount - sale.refunded), "back")
    t.wait_text("WILL RETRY BY ITSELF", timeout=t.sim.config.timeouts.host + 10)
    t.expect("refund", "card", "approved")
    return True


def wallet_refund_answer_lost(t: Till) -> bool:
    sale = _refundable(t, "wallet")
    if sale is None:
        return False
    t.sim.wallet.fault("bad_signature", method="alipay.trade.refund")
    _refund(t, sale, t.rng.randint(1, sale.amount - sale.refunded), "back")
    # The terminal's own background resend of an earlier wallet refund may take the fault first.
    if t.wait_title("NO HOST ANSWER", "REFUND APPROVED", timeout=15) == "REFUND APPROVED":
        t.print_expected(2)
    t.expect("refund", "wallet", "approved")
    return True


def settlement(t: Till) -> None:
    """End of day with the host: in balance, always (the soak waits for reversals and resends first)."""
    t.quiet(("card",))
    _manager(t, "4")
    t.wait_title("SETTLED, IN BALANCE", timeout=15)
    t.settled()
    t.print_expected(1)


def todays_report(t: Till) -> None:
    _manager(t, "3")
    t.wait_title("REPORT PRINTED")
    t.print_expected(1)


# --- power cuts -----------------------------------------------------------------------------------


def power_cut_at_rest(t: Till) -> None:
    swipe_approved(t)
    t.restart(crash=True)


def power_cut_awaiting_card(t: Till) -> None:
    """The power goes while the reader looks for a card (its RF field on): nothing was sold."""
    t.start_sale(t.amount(100, CVM_LIMIT), "TAP OR SWIPE CARD")
    t.restart(crash=True)


def power_cut_while_host_asked(t: Till) -> None:
    """The request has reached the acquirer (which approves it and never answers); the power goes. At boot
    the sale is unknown and reversed."""
    t.quiet(("card",))
    t.sim.host.fault("timeout")
    before = t.host_requests()
    _faulted_swipe(t)
    t.wait_request(before)
    t.restart(crash=True)
    t.expect("sale", "card", "reversed")
    t.expect("reversal", "card", "acknowledged")


def power_cut_with_code_shown(t: Till) -> None:
    """Never scanned (expires, then cancelled), scanned (closed at boot), or paid before the terminal asked
    (kept at boot)."""
    qr = _show_code(t)
    what = t.rng.choice(("unscanned", "scanned", "paid"))
    if what == "scanned":
        t.sim.wallet.scan(qr)
    elif what == "paid":
        t.sim.wallet.pay(qr)
    t.restart(crash=True)
    t.expect("sale", "wallet", "approved" if what == "paid" else "cancelled")


def power_cut_during_refund(t: Till) -> bool:
    sale = _refundable(t, "card")
    if sale is None:
        return False
    t.quiet(("card",))
    t.sim.host.fault("timeout")
    before = t.host_requests()
    _refund(t, sale, t.rng.randint(1, sale.amount - sale.refunded), "back")
    t.wait_request(before)
    t.restart(crash=True)
    t.expect("refund", "card", "approved")
    return True


def clean_restart(t: Till) -> None:
    t.restart(crash=False)


# --- the mix --------------------------------------------------------------------------------------

Kind = Callable[[Till], Any]

# (kind, weight). A kind that needs an earlier sale (void, refund) returns False when there is none; the soak
# then runs an approved swipe instead.
MIX: tuple[tuple[Kind, float], ...] = (
    (swipe_approved, 16),
    (swipe_declined, 5),
    (swipe_wrong_pin_then_right, 3),
    (swipe_pin_never_matches, 1),
    (swipe_cancelled_at_pin, 1),
    (tap_no_cvm, 6),
    (tap_online_pin, 3),
    (tap_phone_cdcvm, 1),
    (tap_declined, 2),
    (tap_removed_early, 1),
    (qr_paid, 6),
    (qr_never_paid, 0.7),
    (qr_cancelled, 1.5),
    (qr_lying_query, 1),
    (qr_close_retried, 0.5),
    (code_paid, 6),
    (code_confirmed_in_app, 2),
    (code_insufficient, 1),
    (code_never_confirmed, 1),
    (code_payer_cancels, 1),
    (code_untrusted_answer, 1.5),
    (host_no_answer, 2),
    (host_answers_twice, 0.7),
    (host_lies, 1.5),
    (cancel_while_host_asked, 0.5),
    (void, 4),
    (refund, 6),
    (refund_answer_lost, 1),
    (wallet_refund_answer_lost, 0.7),
    (settlement, 0.5),
    (todays_report, 0.3),
    (power_cut_at_rest, 0.3),
    (power_cut_awaiting_card, 0.2),
    (power_cut_while_host_asked, 0.3),
    (power_cut_with_code_shown, 0.3),
    (power_cut_during_refund, 0.2),
    (clean_restart, 0.1),
)


def pick(rng: random.Random) -> Kind:
    kinds, weights = zip(*MIX, strict=True)
    return rng.choices(kinds, weights)[0]
