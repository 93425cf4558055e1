"""What happens to the terminal, as the flow sees it: keys, cards, PINs, host and wallet answers, the journal's replies.

The vocabulary the drivers and the shell share with the pure flow (firmware/core/flow/): drivers turn device input
into these events; the shell turns the outcome of an effect into one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from firmware.core.cardface import CardFace
from firmware.core.emv import ChipCard
from firmware.core.items import Item
from firmware.core.paycode import CodeCard
from firmware.core.track import MagCard

Card = MagCard | ChipCard | CodeCard  # a payment code sent to the acquirer in place of a card is one too

# The kinds of things, spelt out so that a checker sees a misspelt one.
FollowUpKind = Literal["void", "refund"]  # what goes against an earlier sale
Task = Literal["void", "refund", "settle", "reprint"]  # what the back office is busy with
Payout = Literal["card", "wallet", "cash"]  # where a void's or refund's money goes: back the way it came, or cash
WalletEntry = Literal["QR", "CODE"]  # the customer scanned the terminal's code / the other way
WalletEnd = Literal["failed", "closed", "unknown"]
SettleOutcome = Literal["in_balance", "out_of_balance", "failed"]


@dataclass(frozen=True)
class EncryptedPin:
    """An enciphered PIN block and the KSN that names its key, both as upper-case hex."""

    block: str = field(repr=False)
    ksn: str


@dataclass(frozen=True)
class AuthResponse:
    """The acquirer's answer: response code, and on approval an auth code; RRN always when given."""

    stan: int
    response_code: str
    auth_code: str
    rrn: str
    terminal_id: str
    icc: str = field(default="", repr=False)  # field 55 of the answer (chip: the ARPC, issuer scripts), hex

    @property
    def approved(self) -> bool:
        """Response code 00, or 11 (approved, VIP): the money moved."""
        return self.response_code in ("00", "11")


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
class ChipInserted:
    """A card is in the chip reader, powered and connected; `session` is the reader's handle to talk to it."""

    session: Any


@dataclass(frozen=True)
class DeviceTrouble:
    """What is wrong with a device (a reader unplugged, the printer without paper), for a line under whatever
    the flow shows; `screen` "" when it is fine again."""

    device: str
    screen: str


@dataclass(frozen=True)
class ChipAsks:
    """The contact kernel needs the cardholder: to choose an application (`options`), or a PIN (`offline`: the
    card checks it; `tries_left` from the card; `retry` after a wrong one; `bypass`: ENTER alone means no PIN)."""

    what: Literal["choose", "pin"]
    options: tuple[str, ...] = ()
    offline: bool = False
    tries_left: int | None = None
    retry: bool = False
    bypass: bool = False
    face: CardFace | None = None  # for a PIN: the card as the screen shows it


@dataclass(frozen=True)
class ChipWorking:
    """The contact kernel goes on by itself (after the cardholder answered): what the screen says meanwhile."""

    text: str = "PROCESSING..."


@dataclass(frozen=True)
class ChipRemoved:
    """The card left the chip reader."""


@dataclass(frozen=True)
class ChipReaderReady:
    """The chip reader is there and watched (at start, and again after a failure)."""

    reader: str


@dataclass(frozen=True)
class ChipReaderFailed:
    """The chip reader cannot be used (pcscd not running, reader absent or unplugged); `screen` says what to do.
    A card session open then is over too (its transceive raises ChipReaderError); no ChipRemoved follows."""

    screen: str
    reason: str


@dataclass(frozen=True)
class CardRead:
    """The contactless kernel finished: online authorization data for this card."""

    card: ChipCard


@dataclass(frozen=True)
class CardFailed:
    """A card read (contactless, or a chip that does not answer) ended without usable data; `screen` says what to do.
    `declined`: the chip itself declined the sale offline (no read failure: no fallback to the stripe)."""

    screen: str
    reason: str
    declined: bool = False


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
    """The acquirer answered (already journaled by the shell). `cvm`: how the cardholder was verified, where
    the card said ("signature" in it: the cardholder signs after an approval)."""

    response: AuthResponse
    stan: int
    cvm: str = ""


@dataclass(frozen=True)
class HostFailed:
    """No usable answer. `sent` tells whether the request may have reached the host."""

    reason: str
    sent: bool
    stan: int | None = None
    title: str = ""  # what the screen says instead of the default


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
    """The payer must confirm in the app (or the provider is still finding out: `text` says so); the shell
    keeps asking the provider."""

    text: str = ""


@dataclass(frozen=True)
class WalletPaid:
    """The provider says the order is paid (journaled already)."""

    order_no: str
    trade_no: str
    payer: str
    stan: int
    entry: WalletEntry


@dataclass(frozen=True)
class WalletEnded:
    """The wallet payment did not happen (declined, closed, cancelled) or its fate is unknown for now."""

    state: WalletEnd
    reason: str


@dataclass(frozen=True)
class Settled:
    """The settlement's outcome (the shell has printed the slip)."""

    outcome: SettleOutcome
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
    created_at: str  # ISO 8601 local time
    batch: int
    refunded: int
    entry_mode: str = ""  # "code": a payment code the acquirer took as a card (its money goes back to the wallet)


@dataclass(frozen=True)
class OriginalFound:
    """The journal's answer to FindOriginal, with what decides whether a void is still possible."""

    sale: OriginalSale
    current_batch: int
    today: str  # YYYY-MM-DD, local


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
class CatalogueChecked:
    """The shell's answer to CheckCatalogue: whether any item can be keyed by PLU."""

    exists: bool


@dataclass(frozen=True)
class ItemFound:
    """The shell's answer to LookupItem: the catalogue's item with that PLU, or None."""

    code: str
    item: Item | None


@dataclass(frozen=True)
class Reprinted:
    """The shell's answer to Reprint: what the screen says (queued for the printer, or why not)."""

    notice: str


@dataclass(frozen=True)
class Touched:
    """Fingers on the touch screen since the last report: (stroke, x, y) in display pixels; a new stroke
    number is a finger put down anew (one number per touch, never reused while the terminal runs)."""

    points: tuple[tuple[int, int, int], ...]


Event = (
    CatalogueChecked
    | ItemFound
    | Reprinted
    | Key
    | Swiped
    | BadRead
    | Tapped
    | ChipInserted
    | DeviceTrouble
    | ChipAsks
    | ChipWorking
    | ChipRemoved
    | ChipReaderReady
    | ChipReaderFailed
    | CardRead
    | CardFailed
    | PinProgress
    | PinEntered
    | PinFailed
    | HostAnswered
    | HostFailed
    | TimerExpired
    | OperatorChecked
    | OriginalFound
    | OriginalMissing
    | CashRefunded
    | Refused
    | Scanned
    | OrderShown
    | WalletConfirming
    | WalletPaid
    | WalletEnded
    | Settled
    | Touched
)
