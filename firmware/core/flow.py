"""The sale flow as a pure state machine: step(state, event, cfg) -> (state, effects). No I/O, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Union

from typing import Any

from firmware.core.emv import ChipCard
from firmware.core.items import MAX_PLU, MAX_QTY, BasketLine, Item, line_for, total
from firmware.host.messages import AuthResponse
from firmware.core.money import Currency, format_minor
from firmware.security.pin import EncryptedPin
from firmware.core.track import MagCard
from firmware.wallets.alipay import classify_code

Card = Union[MagCard, ChipCard]

AMOUNT_DIGITS = 10          # at most 10 digits of minor units can be keyed

# --- events (inputs) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Key:
    """A logical keypad key: '0'..'9', ENTER, CANCEL, CLEAR, F1..F4, MENU."""

    name: str


@dataclass(frozen=True)
class Swiped:
    """A good magstripe read."""

    card: MagCard


@dataclass(frozen=True)
class BadRead:
    """A card read that failed; `reason` is for the log, never shown with card data."""

    reason: str


@dataclass(frozen=True)
class Tapped:
    """A contactless card is in the field; `session` is the reader's handle to talk to it."""

    session: Any


@dataclass(frozen=True)
class CardRead:
    """The contactless kernel finished: online authorization data for this card."""

    card: ChipCard


@dataclass(frozen=True)
class CardFailed:
    """A contactless read ended without usable data; `screen` tells the customer what to do."""

    screen: str
    reason: str


@dataclass(frozen=True)
class PinProgress:
    """The PIN pad holds `digits` digits now (for the stars on screen)."""

    digits: int


@dataclass(frozen=True)
class PinEntered:
    """The customer confirmed the PIN; only the encrypted block arrives here."""

    pin: EncryptedPin


@dataclass(frozen=True)
class PinFailed:
    """The PIN pad could not produce a block (key material missing or exhausted)."""

    screen: str


@dataclass(frozen=True)
class HostAnswered:
    """The acquirer answered (already journaled by the shell)."""

    response: AuthResponse
    stan: int
    reference: str = ""          # the sale's reference, printed and encoded on the receipt


@dataclass(frozen=True)
class HostFailed:
    """No usable answer. `sent` tells whether the request may have reached the host."""

    reason: str
    sent: bool
    stan: int | None = None
    title: str = ""                       # what the screen says instead of the default


@dataclass(frozen=True)
class TimerExpired:
    """The one flow timer ran out."""


@dataclass(frozen=True)
class Scanned:
    """The 2D scanner read a code (a customer's payment code, or a receipt's reference)."""

    code: str = field(repr=False)


@dataclass(frozen=True)
class OrderShown:
    """The wallet provider created the order; `payload` is the code to show."""

    payload: str
    order_no: str


@dataclass(frozen=True)
class WalletConfirming:
    """The payer must confirm in the app; the shell keeps asking the provider."""


@dataclass(frozen=True)
class WalletPaid:
    """The provider says the order is paid (journaled already)."""

    order_no: str
    trade_no: str
    payer: str
    stan: int
    entry: str                  # "QR" (customer scanned the terminal) | "CODE" (terminal scanned the customer)


@dataclass(frozen=True)
class WalletEnded:
    """The wallet payment did not happen (declined, closed, cancelled) or its fate is unknown for now."""

    state: str                  # failed | closed | unknown
    reason: str


@dataclass(frozen=True)
class Settled:
    """The settlement's outcome (the shell has printed the slip)."""

    outcome: str                 # in_balance | out_of_balance | failed
    detail: str = ""


@dataclass(frozen=True)
class OperatorChecked:
    """An operator PIN was checked: ok (and whose it is), or a short reason (wrong, locked)."""

    ok: bool
    notice: str = ""
    who: str = ""


@dataclass(frozen=True)
class OriginalSale:
    """What the journal knows of a sale that a void or refund would go against (no card data)."""

    id: int
    stan: int
    amount: int
    masked_pan: str
    method: str
    status: str
    created_at: str          # ISO 8601 local time
    batch: int
    refunded: int


@dataclass(frozen=True)
class OriginalFound:
    """The journal's answer to FindOriginal, with what decides whether a void is still possible."""

    sale: OriginalSale
    current_batch: int
    today: str               # YYYY-MM-DD, local


@dataclass(frozen=True)
class OriginalMissing:
    """No sale with that trace number."""

    notice: str


@dataclass(frozen=True)
class CashRefunded:
    """A cash refund was journaled."""

    stan: int


@dataclass(frozen=True)
class Refused:
    """The journal refused a void or refund (limits, state); nothing was sent."""

    notice: str


@dataclass(frozen=True)
class ItemFound:
    """The shell's answer to LookupItem: the catalogue's item with that PLU, or None."""

    code: str
    item: Item | None


@dataclass(frozen=True)
class Reprinted:
    """The shell's answer to Reprint: what the screen says (queued for the printer, or why not)."""

    notice: str


Event = Union[ItemFound, Reprinted, Key, Swiped, BadRead, Tapped, CardRead, CardFailed, PinProgress, PinEntered, PinFailed, HostAnswered, HostFailed, TimerExpired,
              OperatorChecked, OriginalFound, OriginalMissing, CashRefunded, Refused, Scanned, OrderShown,
              WalletConfirming, WalletPaid, WalletEnded, Settled]

# --- effects (outputs) ------------------------------------------------------------------------


@dataclass(frozen=True)
class Show:
    """Put these lines (and, when given, this QR code) on the display."""

    lines: tuple[str, ...]
    qr: str = ""


@dataclass(frozen=True)
class StartTimer:
    """(Re)start the flow timer; any earlier one is forgotten."""

    seconds: float


@dataclass(frozen=True)
class StopTimer:
    """Stop the flow timer."""


@dataclass(frozen=True)
class CollectPin:
    """Route digit/CLEAR/ENTER keys to the PIN pad; the PIN block will be bound to this PAN."""

    pan: str = field(repr=False)


@dataclass(frozen=True)
class EndPin:
    """Stop PIN collection and wipe what was typed."""


@dataclass(frozen=True)
class ReadCard:
    """Run the contactless kernel with the card in the field; the shell answers CardRead or CardFailed."""

    session: Any
    amount: int


@dataclass(frozen=True)
class ReleaseCard:
    """A card was tapped when no sale wanted it: let it go."""

    session: Any


@dataclass(frozen=True)
class Authorize:
    """Journal, then send a sale to the acquirer; the shell answers with HostAnswered/HostFailed."""

    amount: int
    card: Card
    pin: EncryptedPin | None


@dataclass(frozen=True)
class AbortAuthorization:
    """The cashier cancelled while the host was asked; the shell answers with one final host event."""


@dataclass(frozen=True)
class PrintReceipts:
    """Print merchant and customer copies of a finished sale, void or refund."""

    amount: int
    masked_pan: str
    entry_mode: str
    response: AuthResponse
    stan: int
    kind: str = "SALE"                 # SALE | VOID | REFUND
    route: str = ""                    # for refunds: CARD | CASH
    original_stan: int | None = None
    cvm: str = "online_pin"            # none | online_pin | cdcvm
    aid: str = ""                      # chip data for contactless receipts
    label: str = ""
    cryptogram: str = ""
    wallet: str = ""                   # wallet payments: provider, order and trade numbers
    order_no: str = ""
    trade_no: str = ""


@dataclass(frozen=True)
class StartQrOrder:
    """Create an order at the wallet provider and show its code; the shell answers OrderShown, then
    WalletPaid or WalletEnded when the provider says so."""

    amount: int


@dataclass(frozen=True)
class PayByCode:
    """Charge the customer's scanned payment code; the shell answers WalletPaid/WalletEnded
    (WalletConfirming first when the payer has to confirm in the app)."""

    amount: int
    code: str = field(repr=False)


@dataclass(frozen=True)
class EndWalletOrder:
    """Close (shown code) or cancel (scanned code) the open wallet order so that no payment lands unseen;
    the shell answers WalletEnded, or WalletPaid when the payment got there first."""

    reason: str


@dataclass(frozen=True)
class PrintCode:
    """Print the code on screen (for a customer who would rather scan paper)."""

    payload: str
    amount: int


@dataclass(frozen=True)
class Settle:
    """Settle the open batch with the acquirer (0500); the shell answers Settled."""


@dataclass(frozen=True)
class PrintReport:
    """Print today's sales report (X report: running totals, nothing closed)."""


@dataclass(frozen=True)
class CollectOperatorPin:
    """Route digit/CLEAR/ENTER keys to the operator PIN pad; the shell checks the PIN for `role` (or a
    higher one) and answers with OperatorChecked."""

    role: str = "manager"


@dataclass(frozen=True)
class FindOriginal:
    """Look up a sale by trace number, by the reference printed (and encoded as a QR code) on its receipt,
    or by date + amount + card last four; the shell answers OriginalFound or OriginalMissing."""

    stan: int = 0
    reference: str = ""
    date: str = ""                       # MMDD
    amount: int = 0
    last4: str = ""


@dataclass(frozen=True)
class SubmitFollowUp:
    """Journal and carry out a void or refund; the shell answers HostAnswered/HostFailed (card route),
    CashRefunded (cash route) or Refused."""

    kind: str                           # "void" | "refund"
    original_id: int
    amount: int
    route: str                          # "card" | "cash"


@dataclass(frozen=True)
class HoldBasket:
    """The amount is confirmed: these basket lines (none for a plain amount) belong to the payment that follows."""

    lines: tuple[BasketLine, ...]


@dataclass(frozen=True)
class LookupItem:
    """Find the catalogue item with this PLU (by the journal's index); the shell answers ItemFound."""

    code: str


@dataclass(frozen=True)
class Reprint:
    """Print a transaction's receipt again, marked as a reprint (重打印): the one with trace number `stan`,
    or the last one printed when `stan` is 0. The shell answers Reprinted."""

    stan: int = 0


Effect = Union[LookupItem, Reprint, Show, StartTimer, StopTimer, CollectPin, EndPin, ReadCard, ReleaseCard, Authorize, AbortAuthorization, PrintReceipts,
               CollectOperatorPin, FindOriginal, SubmitFollowUp, StartQrOrder, PayByCode, EndWalletOrder,
               PrintReport, Settle, PrintCode, HoldBasket]

# --- configuration and states ---------------------------------------------------------------


@dataclass(frozen=True)
class FlowConfig:
    """What the flow needs to know: currency, limits, timeouts (seconds), PIN tries."""

    currency: Currency
    min_amount: int = 1
    max_amount: int = 99_999_999
    amount_timeout: float = 60.0
    card_timeout: float = 60.0
    pin_timeout: float = 30.0
    result_timeout: float = 15.0
    pin_attempts: int = 3
    contactless_limit: int = 0       # largest amount offered for tapping; 0: no contactless reader
    wallet: str = ""                 # wallet provider name ("alipay"); "" for none
    qr_timeout: int = 120            # seconds a shown code stays valid
    items: bool = False              # the shop has an item catalogue: F3 keys items by PLU


@dataclass(frozen=True)
class ItemCode:
    """F3 at the amount screen: keying an item's PLU code for the basket."""

    basket: tuple[BasketLine, ...] = ()
    code: str = ""
    notice: str = ""
    looking: bool = False                 # LookupItem(code) is with the shell


@dataclass(frozen=True)
class ItemQty:
    """How many of the item just keyed (ENTER alone: one)."""

    basket: tuple[BasketLine, ...]
    item: Item
    quantity: int = 0
    notice: str = ""


@dataclass(frozen=True)
class Amount:
    """Keying an amount (0 is the idle screen)."""

    value: int = 0
    notice: str = ""
    basket: tuple[BasketLine, ...] = ()      # the lines keyed by PLU; value is then their total


@dataclass(frozen=True)
class AwaitCard:
    """Amount confirmed; waiting for a swipe."""

    amount: int
    notice: str = ""


@dataclass(frozen=True)
class WalletBusy:
    """A wallet request is with the provider (creating, charging, waiting for the payer, closing)."""

    amount: int
    text: str
    cancellable: bool = False


@dataclass(frozen=True)
class ShowingQR:
    """The code is on screen; the customer scans and pays; a countdown runs."""

    amount: int
    payload: str
    remaining: int


@dataclass(frozen=True)
class ReadingCard:
    """The contactless kernel is talking to the card."""

    amount: int


@dataclass(frozen=True)
class AwaitPin:
    """Card read; the customer types the PIN."""

    amount: int
    card: Card
    attempt: int = 1
    digits: int = 0
    notice: str = ""


@dataclass(frozen=True)
class Authorizing:
    """Request with the host; `cancelling` once the cashier pressed CANCEL."""

    amount: int
    card: Card
    attempt: int
    cancelling: bool = False


@dataclass(frozen=True)
class Result:
    """The outcome on screen until a key or the timer."""

    lines: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class OperatorPin:
    """An operator types their PIN: the manager to open the back-office menu, a cashier (F4) to sign in."""

    digits: int = 0
    purpose: str = "menu"            # "menu" | "signin"


@dataclass(frozen=True)
class Menu:
    """Back-office menu: void or refund."""


@dataclass(frozen=True)
class TraceEntry:
    """Keying the trace number (STAN) of the original sale (or scanning its receipt; F2 searches)."""

    kind: str                           # "void" | "refund"
    value: str = ""


@dataclass(frozen=True)
class SearchEntry:
    """Finding the original by date (MMDD), amount and the card's last four digits, one field at a time."""

    kind: str
    field: str = "date"                 # date | amount | last4
    value: str = ""
    date: str = ""
    amount: int = 0


@dataclass(frozen=True)
class Looking:
    """Waiting for the journal to find the original."""

    kind: str


@dataclass(frozen=True)
class ConfirmVoid:
    """Showing the sale to void; ENTER confirms."""

    sale: OriginalSale


@dataclass(frozen=True)
class RefundAmount:
    """Keying the refund amount (at most what is left of the sale)."""

    sale: OriginalSale
    value: int = 0
    notice: str = ""


@dataclass(frozen=True)
class RefundRoute:
    """Choosing where the money goes: back to the card, or cash from the till."""

    sale: OriginalSale
    amount: int


@dataclass(frozen=True)
class Submitting:
    """A void or refund is with the journal and, for the card route, the host."""

    kind: str
    sale: OriginalSale
    amount: int
    route: str


State = Union[SearchEntry, Amount, ItemCode, ItemQty, AwaitCard, WalletBusy, ShowingQR, ReadingCard, AwaitPin, Authorizing, Result, OperatorPin, Menu, TraceEntry, Looking,
              ConfirmVoid, RefundAmount, RefundRoute, Submitting]
BACK_OFFICE = (OperatorPin, Menu, TraceEntry, SearchEntry, Looking, ConfirmVoid, RefundAmount, RefundRoute, Submitting)

IDLE = Amount()
TERMINAL_ERROR = "terminal error"           # HostFailed.reason when the shell itself failed

# Response code -> second screen line for declines.
DECLINE_TEXT = {
    "05": "DO NOT HONOR",
    "14": "INVALID CARD NUMBER",
    "41": "LOST CARD",
    "43": "STOLEN CARD",
    "51": "INSUFFICIENT FUNDS",
    "54": "EXPIRED CARD",
    "55": "WRONG PIN",
    "57": "NOT PERMITTED",
    "61": "OVER LIMIT",
    "75": "PIN TRIES EXCEEDED",
    "82": "CARD AUTH FAILED",
    "91": "ISSUER UNAVAILABLE",
    "96": "SYSTEM ERROR",
}


def wants_tap(state: State, cfg: FlowConfig) -> bool:
    """True while the contactless reader should look for a card (RF field on)."""
    return isinstance(state, AwaitCard) and 0 < state.amount <= cfg.contactless_limit


def money(amount: int, cfg: FlowConfig) -> str:
    """'CNY 12.50' for the screen."""
    return f"{cfg.currency.alpha} {format_minor(amount, cfg.currency)}"


def render(state: State, cfg: FlowConfig) -> tuple[str, ...]:
    """The screen for a state."""
    if isinstance(state, Amount) and state.basket:
        last = state.basket[-1]
        lines = (f"{last.name} x{last.quantity}", "TOTAL " + money(state.value, cfg),
                 f"F3 ADD  ENTER PAY ({len(state.basket)})")
    elif isinstance(state, Amount):
        lines = ("ENTER AMOUNT", money(state.value, cfg))
    elif isinstance(state, ItemCode):
        lines = ("ITEM CODE (PLU)", state.code or "_") + \
            ((f"{len(state.basket)} LINES " + money(total(state.basket), cfg),) if state.basket else ())
    elif isinstance(state, ItemQty):
        lines = (state.item.name, money(state.item.price, cfg), f"QTY {state.quantity or 1}")
    elif isinstance(state, AwaitCard):
        lines = (money(state.amount, cfg), "TAP OR SWIPE CARD" if wants_tap(state, cfg) else "PLEASE SWIPE CARD")
    elif isinstance(state, ReadingCard):
        lines = (money(state.amount, cfg), "READING CARD...")
    elif isinstance(state, WalletBusy):
        lines = (money(state.amount, cfg), state.text)
    elif isinstance(state, ShowingQR):
        lines = (money(state.amount, cfg), f"SCAN TO PAY  {state.remaining // 60}:{state.remaining % 60:02d}",
                 "F2 PRINT CODE")
    elif isinstance(state, AwaitPin):
        lines = (money(state.amount, cfg), "ENTER PIN", "*" * state.digits or "_")
    elif isinstance(state, Authorizing):
        lines = (money(state.amount, cfg), "CANCELLING..." if state.cancelling else "PROCESSING...")
    elif isinstance(state, BACK_OFFICE):
        lines = _render_back_office(state, cfg)
    else:
        lines = state.lines
    notice = getattr(state, "notice", "")
    return (notice, *lines) if notice else lines


def enter(state: State, cfg: FlowConfig, *extra: Effect) -> tuple[State, list[Effect]]:
    """Move to `state`: its screen, its timer, plus `extra` effects first."""
    effects: list[Effect] = list(extra)
    effects.append(Show(render(state, cfg), state.payload if isinstance(state, ShowingQR) else ""))
    if isinstance(state, Amount):
        effects.append(StartTimer(cfg.amount_timeout) if state.value else StopTimer())
    elif isinstance(state, AwaitCard):
        effects.append(StartTimer(cfg.card_timeout))
    elif isinstance(state, AwaitPin):
        effects.append(StartTimer(cfg.pin_timeout))
    elif isinstance(state, ShowingQR):
        effects.append(StartTimer(1.0))    # the countdown
    elif isinstance(state, (Authorizing, Looking, Submitting, ReadingCard, WalletBusy)):
        effects.append(StopTimer())        # the journal and the host link own these waits
    elif isinstance(state, BACK_OFFICE + (ItemCode, ItemQty)):
        effects.append(StartTimer(cfg.amount_timeout))
    else:
        effects.append(StartTimer(cfg.result_timeout))
    return state, effects


def _result(lines: tuple[str, ...], cfg: FlowConfig, *extra: Effect) -> tuple[State, list[Effect]]:
    return enter(Result(lines), cfg, *extra)


def step(state: State, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    """Advance the flow by one event. Events that mean nothing in a state are ignored (no effects)."""
    if isinstance(event, Tapped) and not isinstance(state, AwaitCard):
        return state, [ReleaseCard(event.session)]          # a card no sale asked for
    if isinstance(state, Amount):
        return _basket(state, event, cfg) if state.basket else _amount(state, event, cfg)
    if isinstance(state, (ItemCode, ItemQty)):
        return _item_entry(state, event, cfg)
    if isinstance(state, AwaitCard):
        return _await_card(state, event, cfg)
    if isinstance(state, ReadingCard):
        return _reading_card(state, event, cfg)
    if isinstance(state, (WalletBusy, ShowingQR)):
        return _wallet(state, event, cfg)
    if isinstance(state, AwaitPin):
        return _await_pin(state, event, cfg)
    if isinstance(state, Authorizing):
        return _authorizing(state, event, cfg)
    if isinstance(state, BACK_OFFICE):
        return _back_office(state, event, cfg)
    return _shown_result(state, event, cfg)


def _amount(state: Amount, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    if isinstance(event, Key):
        k = event.name
        if k.isdigit() and len(k) == 1:
            if len(str(state.value)) >= AMOUNT_DIGITS:
                return enter(replace(state, notice="MAX DIGITS"), cfg)
            return enter(Amount(state.value * 10 + int(k)), cfg)
        if k == "CLEAR":
            return enter(Amount(state.value // 10), cfg)
        if k == "CANCEL":
            return enter(IDLE, cfg)
        if k == "MENU" and not state.value:
            return enter(OperatorPin(), cfg, CollectOperatorPin())
        if k == "F4" and not state.value:
            return enter(OperatorPin(purpose="signin"), cfg, CollectOperatorPin("cashier"))
        if k == "F2" and not state.value:
            return enter(Looking("reprint"), cfg, Reprint())        # 重打印: the last receipt again
        if k == "F3" and cfg.items:
            if state.value:
                return enter(replace(state, notice="CLEAR AMOUNT FIRST"), cfg)
            return enter(ItemCode(), cfg)
        if k == "ENTER" and state.value:
            if state.value < cfg.min_amount:
                return enter(Amount(state.value, "AMOUNT TOO LOW"), cfg)
            if state.value > cfg.max_amount:
                return enter(Amount(state.value, "AMOUNT TOO HIGH"), cfg)
            return enter(AwaitCard(state.value), cfg, HoldBasket(()))
    elif isinstance(event, TimerExpired) and state.value:
        return enter(IDLE, cfg)
    elif isinstance(event, (Swiped, BadRead)):
        return enter(replace(state, notice="ENTER AMOUNT FIRST"), cfg)
    return state, []


def _basket(state: Amount, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    """The amount screen once items are in the basket: F3 adds, CLEAR drops the last line, ENTER pays."""
    if isinstance(event, Key):
        k = event.name
        if k == "F3":
            return enter(ItemCode(state.basket), cfg)
        if k == "CLEAR":
            rest = state.basket[:-1]
            return enter(Amount(total(rest), basket=rest), cfg)
        if k == "CANCEL":
            return enter(IDLE, cfg)
        if k == "ENTER":
            if state.value < cfg.min_amount:
                return enter(replace(state, notice="AMOUNT TOO LOW"), cfg)
            return enter(AwaitCard(state.value), cfg, HoldBasket(state.basket))
        if k.isdigit():
            return enter(replace(state, notice="F3 ADDS AN ITEM"), cfg)
    elif isinstance(event, TimerExpired):
        return enter(IDLE, cfg)
    elif isinstance(event, (Swiped, BadRead)):
        return enter(replace(state, notice="PRESS ENTER FIRST"), cfg)
    return state, []


def _back_to_basket(basket: tuple[BasketLine, ...], cfg: FlowConfig) -> tuple[State, list[Effect]]:
    return enter(Amount(total(basket), basket=basket) if basket else IDLE, cfg)


def _item_entry(state: ItemCode | ItemQty, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    """PLU code, then quantity; each ENTER moves on, CLEAR steps back, CANCEL returns to the basket."""
    if isinstance(event, TimerExpired):
        return enter(IDLE, cfg)
    if isinstance(state, ItemCode) and state.looking:
        if isinstance(event, ItemFound) and event.code == state.code:
            if event.item is None:
                return enter(ItemCode(state.basket, "", notice=f"NO ITEM {state.code}"), cfg)
            return enter(ItemQty(state.basket, event.item), cfg)
        return state, []                  # an index lookup takes microseconds: keys wait for it
    if not isinstance(event, Key):
        return state, []
    k = event.name
    if k == "CANCEL":
        return _back_to_basket(state.basket, cfg)
    if isinstance(state, ItemCode):
        if k.isdigit() and len(k) == 1:
            if len(state.code) >= MAX_PLU:
                return enter(replace(state, notice="MAX DIGITS"), cfg)
            return enter(ItemCode(state.basket, state.code + k), cfg)
        if k == "CLEAR":
            return enter(ItemCode(state.basket, state.code[:-1]), cfg) if state.code else \
                _back_to_basket(state.basket, cfg)
        if k == "ENTER" and state.code:
            return replace(state, looking=True), [LookupItem(state.code)]
        return state, []
    if k.isdigit() and len(k) == 1:
        quantity = state.quantity * 10 + int(k)
        if quantity > MAX_QTY:
            return enter(replace(state, notice="MAX QUANTITY"), cfg)
        return enter(ItemQty(state.basket, state.item, quantity), cfg)
    if k == "CLEAR":
        return enter(ItemQty(state.basket, state.item, state.quantity // 10), cfg) if state.quantity else \
            enter(ItemCode(state.basket, state.item.plu), cfg)
    if k == "ENTER":
        basket = state.basket + (line_for(state.item, state.quantity or 1),)
        if total(basket) > cfg.max_amount:
            return enter(replace(state, notice="AMOUNT TOO HIGH"), cfg)
        return enter(Amount(total(basket), basket=basket), cfg)
    return state, []


def _await_card(state: AwaitCard, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    if isinstance(event, Swiped):
        return enter(AwaitPin(state.amount, event.card), cfg, CollectPin(event.card.pan))
    if isinstance(event, BadRead):
        return enter(replace(state, notice="READ ERROR, SWIPE AGAIN"), cfg)
    if isinstance(event, Tapped):
        if not wants_tap(state, cfg):
            return state, [ReleaseCard(event.session)]
        return enter(ReadingCard(state.amount), cfg, ReadCard(event.session, state.amount))
    if isinstance(event, CardFailed):
        return enter(replace(state, notice=event.screen), cfg)
    if isinstance(event, Scanned):
        kind = classify_code(event.code)
        if kind and kind == cfg.wallet:
            return enter(WalletBusy(state.amount, "PROCESSING..."), cfg, PayByCode(state.amount, event.code))
        notice = f"{kind.upper()} NOT SET UP" if kind else "CODE NOT SUPPORTED"
        return enter(replace(state, notice=notice), cfg)
    if isinstance(event, Key):
        if event.name == "F1" and cfg.wallet:
            return enter(WalletBusy(state.amount, "PREPARING QR CODE"), cfg, StartQrOrder(state.amount))
        if event.name == "CANCEL":
            return _result(("CANCELLED",), cfg)
        if event.name == "CLEAR":
            return enter(Amount(state.amount), cfg)
    elif isinstance(event, TimerExpired):
        return _result(("TIMEOUT", "NO CARD PRESENTED"), cfg)
    return state, []


WALLET_NAMES = {"alipay": "ALIPAY 支付宝", "wechat": "WECHAT PAY 微信支付"}


def _wallet(state: WalletBusy | ShowingQR, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    if isinstance(event, OrderShown) and isinstance(state, WalletBusy):
        return enter(ShowingQR(state.amount, event.payload, cfg.qr_timeout), cfg)
    if isinstance(event, WalletConfirming):
        return enter(WalletBusy(state.amount, "CONFIRM IN YOUR APP", cancellable=True), cfg)
    if isinstance(event, WalletPaid):
        resp = AuthResponse(stan=event.stan, response_code="00", auth_code="", rrn="", terminal_id="")
        receipt = PrintReceipts(state.amount, event.payer, event.entry, resp, event.stan, cvm="wallet",
                                wallet=WALLET_NAMES.get(cfg.wallet, cfg.wallet.upper()), order_no=event.order_no,
                                trade_no=event.trade_no)
        return _result(("PAID", money(state.amount, cfg), cfg.wallet.upper()), cfg, receipt)
    if isinstance(event, WalletEnded):
        title = {"failed": "PAYMENT FAILED", "closed": "NOT PAID", "unknown": "PAYMENT UNKNOWN"}[event.state]
        return _result((title, event.reason), cfg)
    cancel = isinstance(event, Key) and event.name == "CANCEL"
    if isinstance(state, ShowingQR):
        if isinstance(event, TimerExpired):
            if state.remaining > 1:
                return enter(replace(state, remaining=state.remaining - 1), cfg)
            return enter(WalletBusy(state.amount, "CODE EXPIRED, CLOSING"), cfg, EndWalletOrder("CODE EXPIRED"))
        if cancel:
            return enter(WalletBusy(state.amount, "CLOSING ORDER..."), cfg, EndWalletOrder("CANCELLED"))
        if isinstance(event, Key) and event.name == "F2":
            return state, [PrintCode(state.payload, state.amount)]
    elif cancel and state.cancellable:
        return enter(WalletBusy(state.amount, "CANCELLING..."), cfg, EndWalletOrder("CANCELLED"))
    return state, []


def _reading_card(state: ReadingCard, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    if isinstance(event, CardRead):
        card = event.card
        if card.cvm == "online_pin":
            return enter(AwaitPin(state.amount, card), cfg, CollectPin(card.pan))
        return enter(Authorizing(state.amount, card, 1), cfg, Authorize(state.amount, card, None))
    if isinstance(event, CardFailed):
        return enter(AwaitCard(state.amount, notice=event.screen), cfg)
    return state, []                      # the kernel takes milliseconds; CANCEL waits for it


def _receipt(state: Authorizing, resp: AuthResponse, stan: int, reference: str) -> PrintReceipts:
    card = state.card
    if isinstance(card, ChipCard):
        return PrintReceipts(state.amount, card.masked_pan, "CONTACTLESS", resp, stan, cvm=card.cvm, aid=card.aid,
                             label=card.label, cryptogram=card.cryptogram, order_no=reference)
    return PrintReceipts(state.amount, card.masked_pan, "SWIPE", resp, stan, order_no=reference)


def _await_pin(state: AwaitPin, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    if isinstance(event, PinProgress):
        return enter(replace(state, digits=event.digits, notice=""), cfg)
    if isinstance(event, PinEntered):
        nxt = Authorizing(state.amount, state.card, state.attempt)
        return enter(nxt, cfg, EndPin(), Authorize(state.amount, state.card, event.pin))
    if isinstance(event, PinFailed):
        return _result(("PIN PAD ERROR", event.screen), cfg, EndPin())
    if isinstance(event, Key) and event.name == "CANCEL":
        return _result(("CANCELLED",), cfg, EndPin())
    if isinstance(event, TimerExpired):
        return _result(("TIMEOUT", "NO PIN ENTERED"), cfg, EndPin())
    return state, []


def _authorizing(state: Authorizing, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    if isinstance(event, HostAnswered):
        resp = event.response
        receipt = _receipt(state, resp, event.stan, event.reference)
        if resp.approved:
            return _result(("APPROVED", money(state.amount, cfg), f"AUTH CODE {resp.auth_code}"), cfg, receipt)
        if resp.response_code == "55" and isinstance(state.card, ChipCard) and not state.cancelling:
            # A new PIN needs a new cryptogram: the card must be tapped again.
            return enter(AwaitCard(state.amount, notice="WRONG PIN, TAP AGAIN"), cfg)
        if resp.response_code == "55" and state.attempt < cfg.pin_attempts and not state.cancelling:
            retry = AwaitPin(state.amount, state.card, state.attempt + 1, notice="WRONG PIN, TRY AGAIN")
            return enter(retry, cfg, CollectPin(state.card.pan))
        reason = DECLINE_TEXT.get(resp.response_code, f"CODE {resp.response_code}")
        return _result(("DECLINED", reason), cfg, receipt)
    if isinstance(event, HostFailed):
        if event.reason == TERMINAL_ERROR:
            lines = ("TERMINAL ERROR", "NOT APPROVED")
        elif state.cancelling:
            lines = ("CANCELLED", "CHECK WITH HOST" if event.sent else "NOT CHARGED")
        elif event.sent:
            lines = (event.title or "NO HOST ANSWER", "NOT APPROVED")
        else:
            lines = (event.title or "HOST NOT AVAILABLE", "NOT CHARGED")
        return _result(lines, cfg)
    if isinstance(event, Key) and event.name == "CANCEL" and not state.cancelling:
        return enter(replace(state, cancelling=True), cfg, AbortAuthorization())
    return state, []


def _shown_result(state: Result, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    if isinstance(event, TimerExpired):
        return enter(IDLE, cfg)
    if isinstance(event, Key):
        if event.name.isdigit() and len(event.name) == 1:
            return _amount(IDLE, event, cfg)
        if event.name in ("ENTER", "CANCEL", "CLEAR"):
            return enter(IDLE, cfg)
    return state, []


# --- back office: void (撤销) and refund (退货) --------------------------------------------------

KIND_TITLE = {"void": "VOID", "refund": "REFUND", "settle": "SETTLEMENT", "reprint": "REPRINT"}


def _render_back_office(state: State, cfg: FlowConfig) -> tuple[str, ...]:
    if isinstance(state, OperatorPin):
        return ("CASHIER SIGN-IN PIN" if state.purpose == "signin" else "MANAGER PIN", "*" * state.digits or "_")
    if isinstance(state, Menu):
        return ("1 VOID  2 REFUND", "3 TODAY'S REPORT", "4 SETTLEMENT", "5 REPRINT", "CANCEL TO EXIT")
    if isinstance(state, TraceEntry) and state.kind == "reprint":
        return ("REPRINT 重打印", "TRACE NO.", state.value or "_", "ENTER ALONE: LAST")
    if isinstance(state, TraceEntry):
        return (KIND_TITLE[state.kind], "TRACE NO. OR SCAN", state.value or "_", "F2 SEARCH")
    if isinstance(state, SearchEntry):
        prompt = {"date": "DATE MMDD", "amount": "AMOUNT", "last4": "CARD LAST 4"}[state.field]
        shown = money(int(state.value or 0), cfg) if state.field == "amount" else (state.value or "_")
        return (f"{KIND_TITLE[state.kind]} SEARCH", prompt, shown)
    if isinstance(state, Looking):
        return (KIND_TITLE[state.kind], "SEARCHING...")
    if isinstance(state, ConfirmVoid):
        sale = state.sale
        return (f"VOID {money(sale.amount, cfg)}", sale.masked_pan, sale.created_at[:16].replace("T", " "),
                "ENTER TO CONFIRM")
    if isinstance(state, RefundAmount):
        sale = state.sale
        return (f"REFUND TRACE {sale.stan:06d}", f"PAID {money(sale.amount, cfg)}",
                f"LEFT {money(sale.amount - sale.refunded, cfg)}", f"AMOUNT {money(state.value, cfg)}")
    if isinstance(state, RefundRoute):
        back = "WALLET" if state.sale.method == "wallet" else "CARD"
        return (f"REFUND {money(state.amount, cfg)}", f"1 TO {back}  2 CASH")
    assert isinstance(state, Submitting)
    return (KIND_TITLE[state.kind], money(state.amount, cfg), "PROCESSING...")


def _back_office(state: State, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    cancel = isinstance(event, Key) and event.name == "CANCEL"
    if isinstance(state, Submitting):
        return _submitting(state, event, cfg)
    if cancel or isinstance(event, TimerExpired):
        lines = ("CANCELLED",) if cancel else ("TIMEOUT",)
        return _result(lines, cfg, EndPin()) if isinstance(state, OperatorPin) else _result(lines, cfg)
    if isinstance(state, OperatorPin):
        if isinstance(event, PinProgress):
            return enter(OperatorPin(event.digits, state.purpose), cfg)
        if isinstance(event, OperatorChecked):
            if event.ok and state.purpose == "signin":
                return _result(("SIGNED IN", event.who.upper()), cfg, EndPin())
            if event.ok:
                return enter(Menu(), cfg, EndPin())
            return _result(("ACCESS DENIED", event.notice), cfg, EndPin())
    elif isinstance(state, Menu) and isinstance(event, Key):
        if event.name in ("1", "2"):
            return enter(TraceEntry("void" if event.name == "1" else "refund"), cfg)
        if event.name == "3":
            return _result(("REPORT PRINTED",), cfg, PrintReport())
        if event.name == "4":
            return enter(Looking("settle"), cfg, Settle())
        if event.name == "5":
            return enter(TraceEntry("reprint"), cfg)
    elif isinstance(state, Looking) and isinstance(event, Reprinted):
        return _result(("REPRINT", event.notice), cfg)
    elif isinstance(state, TraceEntry) and state.kind == "reprint" and isinstance(event, Key):
        k = event.name
        if k.isdigit() and len(k) == 1 and len(state.value) < 6:
            return enter(replace(state, value=state.value + k), cfg)
        if k == "CLEAR":
            return enter(replace(state, value=state.value[:-1]), cfg)
        if k == "ENTER":
            return enter(Looking("reprint"), cfg, Reprint(int(state.value or 0)))
    elif isinstance(state, Looking) and isinstance(event, Settled):
        title = {"in_balance": "SETTLED, IN BALANCE", "out_of_balance": "OUT OF BALANCE",
                 "failed": "SETTLEMENT FAILED"}[event.outcome]
        return _result((title, event.detail), cfg)
    elif isinstance(state, TraceEntry) and isinstance(event, Key):
        k = event.name
        if k.isdigit() and len(k) == 1 and len(state.value) < 6:
            return enter(replace(state, value=state.value + k), cfg)
        if k == "CLEAR":
            return enter(replace(state, value=state.value[:-1]), cfg)
        if k == "ENTER" and state.value:
            return enter(Looking(state.kind), cfg, FindOriginal(stan=int(state.value)))
        if k == "F2":
            return enter(SearchEntry(state.kind), cfg)
    elif isinstance(state, TraceEntry) and state.kind != "reprint" and isinstance(event, Scanned):
        return enter(Looking(state.kind), cfg, FindOriginal(reference=event.code))
    elif isinstance(state, SearchEntry) and isinstance(event, Key):
        return _search(state, event.name, cfg)
    elif isinstance(state, Looking):
        if isinstance(event, OriginalMissing):
            return _result(("NOT FOUND", event.notice), cfg)
        if isinstance(event, OriginalFound):
            return _found(state.kind, event, cfg)
    elif isinstance(state, ConfirmVoid) and isinstance(event, Key) and event.name == "ENTER":
        sale = state.sale
        return enter(Submitting("void", sale, sale.amount, "card"), cfg,
                     SubmitFollowUp("void", sale.id, sale.amount, "card"))
    elif isinstance(state, RefundAmount) and isinstance(event, Key):
        k, left = event.name, state.sale.amount - state.sale.refunded
        if k.isdigit() and len(k) == 1 and len(str(state.value)) < AMOUNT_DIGITS:
            return enter(replace(state, value=state.value * 10 + int(k), notice=""), cfg)
        if k == "CLEAR":
            return enter(replace(state, value=state.value // 10, notice=""), cfg)
        if k == "ENTER" and state.value:
            if state.value > left:
                return enter(replace(state, notice="MORE THAN IS LEFT"), cfg)
            return enter(RefundRoute(state.sale, state.value), cfg)
    elif isinstance(state, RefundRoute) and isinstance(event, Key) and event.name in ("1", "2"):
        route = "card" if event.name == "1" else "cash"
        return enter(Submitting("refund", state.sale, state.amount, route), cfg,
                     SubmitFollowUp("refund", state.sale.id, state.amount, route))
    return state, []


def _search(state: SearchEntry, k: str, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    limit = {"date": 4, "amount": AMOUNT_DIGITS, "last4": 4}[state.field]
    if k.isdigit() and len(k) == 1 and len(state.value) < limit:
        return enter(replace(state, value=state.value + k), cfg)
    if k == "CLEAR":
        return enter(replace(state, value=state.value[:-1]), cfg)
    if k != "ENTER" or len(state.value) < (1 if state.field == "amount" else 4):
        return state, []
    if state.field == "date":
        month, day = int(state.value[:2]), int(state.value[2:])
        if not (1 <= month <= 12 and 1 <= day <= 31):
            return enter(replace(state, value=""), cfg)
        return enter(SearchEntry(state.kind, "amount", date=state.value), cfg)
    if state.field == "amount":
        return enter(SearchEntry(state.kind, "last4", date=state.date, amount=int(state.value)), cfg)
    return enter(Looking(state.kind), cfg, FindOriginal(date=state.date, amount=state.amount, last4=state.value))


def _found(kind: str, event: OriginalFound, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    sale = event.sale
    if sale.status != "approved":
        return _result(("NOT ALLOWED", f"SALE IS {sale.status.upper()}"), cfg)
    if kind == "refund":
        if sale.refunded >= sale.amount:
            return _result(("NOT ALLOWED", "ALREADY FULLY REFUNDED"), cfg)
        return enter(RefundAmount(sale), cfg)
    if sale.batch != event.current_batch or sale.created_at[:10] != event.today:
        return _result(("VOID NOT POSSIBLE", "SETTLED: USE REFUND"), cfg)
    if sale.refunded:
        return _result(("VOID NOT POSSIBLE", "ALREADY REFUNDED"), cfg)
    return enter(ConfirmVoid(sale), cfg)


def _submitting(state: Submitting, event: Event, cfg: FlowConfig) -> tuple[State, list[Effect]]:
    title = KIND_TITLE[state.kind]
    sale = state.sale
    if isinstance(event, HostAnswered):
        resp = event.response
        if not resp.approved:
            reason = DECLINE_TEXT.get(resp.response_code, f"CODE {resp.response_code}")
            return _result((f"{title} DECLINED", reason), cfg)
        route = ("WALLET" if sale.method == "wallet" else "CARD") if state.route == "card" else "CASH"
        receipt = PrintReceipts(state.amount, sale.masked_pan, "SWIPE", resp, event.stan, title,
                                route if state.kind == "refund" else "", sale.stan)
        return _result((f"{title} APPROVED", money(state.amount, cfg), f"AUTH CODE {resp.auth_code}"), cfg, receipt)
    if isinstance(event, CashRefunded):
        resp = AuthResponse(stan=event.stan, response_code="00", auth_code="", rrn="", terminal_id="")
        receipt = PrintReceipts(state.amount, sale.masked_pan, "SWIPE", resp, event.stan, "REFUND", "CASH", sale.stan)
        return _result(("CASH REFUND", money(state.amount, cfg), "PAY OUT FROM THE TILL"), cfg, receipt)
    if isinstance(event, Refused):
        return _result(("NOT ALLOWED", event.notice), cfg)
    if isinstance(event, HostFailed):
        if event.reason == TERMINAL_ERROR:
            return _result(("TERMINAL ERROR", "SEE THE JOURNAL"), cfg)
        if event.sent:
            return _result(("NO HOST ANSWER", "WILL RETRY BY ITSELF"), cfg)
        return _result((event.title or "HOST NOT AVAILABLE", "NOTHING SENT"), cfg)
    if isinstance(event, Key) and event.name == "CANCEL":
        return state, [Show(("PLEASE WAIT",) + render(state, cfg))]
    return state, []
