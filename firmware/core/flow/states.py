"""The flow's states: where a sale, a wallet payment or a back-office task stands between two events.

One vocabulary for every activity, because activities hand over to each other (amount entry to a card
payment, a payment to its result); the transitions, screens and timers of each state live in its
activity's module (amount, card, wallet, backoffice) and the dispatcher's table (firmware/core/flow/__init__.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from firmware.core.cardface import CardFace
from firmware.core.events import Card, FollowUpKind, OriginalSale, Payout, Task
from firmware.core.items import BasketLine, Item


@dataclass(frozen=True)
class ItemCode:
    """F3 at the amount screen: keying an item's PLU code for the basket."""

    basket: tuple[BasketLine, ...] = ()
    code: str = ""
    notice: str = ""
    looking: bool = False  # LookupItem(code) is with the shell


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
    basket: tuple[BasketLine, ...] = ()  # the lines keyed by PLU; value is then their total


@dataclass(frozen=True)
class AwaitCard:
    """Amount confirmed; waiting for a swipe."""

    amount: int
    notice: str = ""
    basket: tuple[BasketLine, ...] = ()  # the lines being paid for (none for a keyed amount)
    chip_failed: bool = False  # the chip could not be read: its stripe is the fallback (where allowed)


@dataclass(frozen=True)
class WalletBusy:
    """A wallet request is with the provider (creating, charging, waiting for the payer, closing)."""

    amount: int
    text: str
    cancellable: bool = False
    provider: str = ""  # the wallet the order is with


@dataclass(frozen=True)
class ShowingQR:
    """The code is on screen; the customer scans and pays; a countdown runs."""

    amount: int
    payload: str
    remaining: int
    provider: str = ""


@dataclass(frozen=True)
class ReadingCard:
    """The contactless kernel is talking to the card."""

    amount: int
    basket: tuple[BasketLine, ...] = ()


@dataclass(frozen=True)
class ConfirmCard:
    """Card read (`[terminal] confirm_card`): the screen shows it and the amount; ENTER goes on, CANCEL stops."""

    amount: int
    card: Card
    basket: tuple[BasketLine, ...] = ()


@dataclass(frozen=True)
class AwaitPin:
    """Card read; the customer types the PIN."""

    amount: int
    card: Card
    attempt: int = 1
    digits: int = 0
    notice: str = ""
    basket: tuple[BasketLine, ...] = ()


@dataclass(frozen=True)
class Authorizing:
    """Request with the host; `cancelling` once the cashier pressed CANCEL."""

    amount: int
    card: Card
    attempt: int
    cancelling: bool = False
    basket: tuple[BasketLine, ...] = ()


@dataclass(frozen=True)
class ChipReading:
    """A chip card is in and the contact kernel runs (the shell drives it); `text` says what it is doing."""

    amount: int
    basket: tuple[BasketLine, ...] = ()
    text: str = "READING CARD..."
    cancelling: bool = False


@dataclass(frozen=True)
class ChipChoosing:
    """The card has several applications: the cardholder picks one by its number."""

    amount: int
    options: tuple[str, ...]
    basket: tuple[BasketLine, ...] = ()


@dataclass(frozen=True)
class ChipPin:
    """The contact kernel waits for a PIN: checked by the card (`offline`) or by the issuer."""

    amount: int
    offline: bool
    tries_left: int | None = None
    retry: bool = False
    bypass: bool = False
    digits: int = 0
    basket: tuple[BasketLine, ...] = ()
    face: CardFace | None = None  # the card as the screen shows it


@dataclass(frozen=True)
class Signing:
    """An approved sale whose cardholder verifies by signature signs on the touch screen: `strokes` so far
    (each the touch's number and its points), until ENTER keeps them, CLEAR starts again, CANCEL or the timer
    leaves the signature to the paper copy. The approval (amount, auth code) is said in the screen's language
    when drawn: the customer's language key works while signing."""

    stan: int
    amount: int
    auth_code: str
    strokes: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = ()
    notice: str = ""


@dataclass(frozen=True)
class Result:
    """The outcome on screen until a key or the timer."""

    lines: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class OperatorPin:
    """An operator types their PIN: the manager to open the back-office menu, a cashier (F4) to sign in."""

    digits: int = 0
    purpose: Literal["menu", "signin"] = "menu"


@dataclass(frozen=True)
class Menu:
    """Back-office menu: void or refund."""


@dataclass(frozen=True)
class TraceEntry:
    """Keying the trace number (STAN) of the original sale (or scanning its receipt; F2 searches)."""

    kind: Literal["void", "refund", "reprint"]
    value: str = ""


@dataclass(frozen=True)
class SearchEntry:
    """Finding the original by date (MMDD), amount and the card's last four digits, one field at a time."""

    kind: FollowUpKind
    field: Literal["date", "amount", "last4"] = "date"
    value: str = ""
    date: str = ""
    amount: int = 0


@dataclass(frozen=True)
class Looking:
    """Waiting for the shell: the journal finding the original, the reprint, or the settlement."""

    kind: Task


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

    kind: FollowUpKind
    sale: OriginalSale
    amount: int
    route: Payout


State = (
    # amount.py
    Amount
    | ItemCode
    | ItemQty
    | Result
    # card.py
    | AwaitCard
    | ReadingCard
    | ConfirmCard
    | AwaitPin
    | Authorizing
    # chip.py
    | ChipReading
    | ChipChoosing
    | ChipPin
    # sign.py
    | Signing
    # wallet.py
    | WalletBusy
    | ShowingQR
    # backoffice.py
    | OperatorPin
    | Menu
    | TraceEntry
    | SearchEntry
    | Looking
    | ConfirmVoid
    | RefundAmount
    | RefundRoute
    | Submitting
)

IDLE = Amount()


@dataclass(frozen=True)
class Till:
    """What outlives a single sale: where the flow stands, who signed in at the till (F4, named on every sale),
    who last opened the back office (named on every void, refund, report and settlement), what is wrong with
    the devices (a line each under every screen until it is fine again), and the language the customer chose
    for the sale on screen."""

    state: State = IDLE
    cashier: str = ""
    manager: str = ""
    problems: tuple[tuple[str, str], ...] = ()  # (device, what the screen says is wrong with it)
    language: str = ""  # the sale's language when the customer switched it (LANGUAGE_KEY); "": the shop's
