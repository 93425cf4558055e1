"""What the flow asks of the shell: screens, timers, PIN pad, card reader, host, wallets, printer, journal.

Each effect names the event(s) the shell answers with, when it answers at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from firmware.core.events import Card, EncryptedPin, FollowUpKind, Payout
from firmware.core.items import BasketLine


@dataclass(frozen=True)
class Show:
    """Put these lines (and, when given, this QR code, and the strokes of a signature being drawn) on the
    display."""

    lines: tuple[str, ...]
    qr: str = ""
    strokes: tuple[tuple[tuple[int, int], ...], ...] = ()  # display pixels, each stroke a polyline


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
class StartChip:
    """Run the contact kernel with the inserted card; its questions come back as ChipAsks, its end as
    HostAnswered / HostFailed (it went online) or CardFailed (it could not)."""

    session: Any
    amount: int
    lines: tuple[BasketLine, ...] = ()
    operator: str = ""  # who the journal and the audit trail name (stamped by flow.advance)


@dataclass(frozen=True)
class AnswerChip:
    """The cardholder's answer to ChipAsks("choose"): the application's number (1..n), or None to cancel."""

    choice: int | None


@dataclass(frozen=True)
class AbortChip:
    """Stop the contact transaction (CANCEL, the card taken out while the kernel waited for the cardholder);
    the shell answers CardFailed, or HostFailed when a request had gone out."""

    reason: str


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
    lines: tuple[BasketLine, ...] = ()  # the basket paid for, journaled with the sale
    operator: str = ""  # who the journal and the audit trail name (stamped by flow.advance)


@dataclass(frozen=True)
class AbortAuthorization:
    """The cashier cancelled while the host was asked; the shell answers with one final host event."""


@dataclass(frozen=True)
class PrintReceipts:
    """Print the merchant and customer copies of the finished sale, void or refund with trace number `stan`.
    What they state comes from its journal row (core/receipt.py: receipt_facts), so the receipt is the same
    whether printed now, after the printer came back, after a power cut, or as a reprint."""

    stan: int


@dataclass(frozen=True)
class StartQrOrder:
    """Create an order at the wallet provider and show its code; the shell answers OrderShown, then
    WalletPaid or WalletEnded when the provider says so."""

    amount: int
    lines: tuple[BasketLine, ...] = ()
    operator: str = ""  # who the journal and the audit trail name (stamped by flow.advance)
    provider: str = ""  # whose code: "alipay", "wechat"


@dataclass(frozen=True)
class PayByCode:
    """Charge the customer's scanned payment code; the shell answers WalletPaid/WalletEnded
    (WalletConfirming first when the payer has to confirm in the app)."""

    amount: int
    code: str = field(repr=False)
    lines: tuple[BasketLine, ...] = ()
    operator: str = ""  # who the journal and the audit trail name (stamped by flow.advance)
    provider: str = ""  # the wallet the code belongs to (core/paycode.py)


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

    operator: str = ""  # who the journal and the audit trail name (stamped by flow.advance)


@dataclass(frozen=True)
class PrintReport:
    """Print today's sales report (X report: running totals, nothing closed)."""

    operator: str = ""  # who the journal and the audit trail name (stamped by flow.advance)


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
    date: str = ""  # MMDD
    amount: int = 0
    last4: str = ""


@dataclass(frozen=True)
class SubmitFollowUp:
    """Journal and carry out a void or refund; the shell answers HostAnswered/HostFailed (card route),
    CashRefunded (cash route) or Refused."""

    kind: FollowUpKind
    original_id: int
    amount: int
    route: Payout
    operator: str = ""  # who the journal and the audit trail name (stamped by flow.advance)


@dataclass(frozen=True)
class CheckCatalogue:
    """Does the shop have an item catalogue now (an import counts without a restart)? The shell answers
    CatalogueChecked."""


@dataclass(frozen=True)
class LookupItem:
    """Find the catalogue item with this PLU (by the journal's index); the shell answers ItemFound."""

    code: str


@dataclass(frozen=True)
class Reprint:
    """Print a transaction's receipt again, marked as a reprint (重打印): the one with trace number `stan`,
    or the last one printed when `stan` is 0. The shell answers Reprinted."""

    stan: int = 0
    operator: str = ""  # who the journal and the audit trail name (stamped by flow.advance)


@dataclass(frozen=True)
class AwaitSignature:
    """The approved sale `stan` waits for the cardholder's signature on the screen: its receipt is due now, so
    that a power cut while signing still prints it (with the paper signature line)."""

    stan: int


@dataclass(frozen=True)
class KeepSignature:
    """Keep the signature drawn for sale `stan` with it in the journal (a small 1-bit PNG, printed on the
    merchant copy); `width` x `height` is the drawing area the strokes are in."""

    stan: int
    strokes: tuple[tuple[tuple[int, int], ...], ...]
    width: int
    height: int


@dataclass(frozen=True)
class NoSignature:
    """Sale `stan` (approved: it stays approved) got no signature on the screen (`reason`: cancelled, timeout,
    no touch screen); the journal says so and the cashier collects it on the merchant copy."""

    stan: int
    reason: str


Effect = (
    CheckCatalogue
    | StartChip
    | AnswerChip
    | AbortChip
    | LookupItem
    | Reprint
    | Show
    | StartTimer
    | StopTimer
    | CollectPin
    | EndPin
    | ReadCard
    | ReleaseCard
    | Authorize
    | AbortAuthorization
    | PrintReceipts
    | CollectOperatorPin
    | FindOriginal
    | SubmitFollowUp
    | StartQrOrder
    | PayByCode
    | EndWalletOrder
    | PrintReport
    | Settle
    | PrintCode
    | AwaitSignature
    | KeepSignature
    | NoSignature
)
