"""The imperative shell: one asyncio loop that feeds device and host events to the flow and performs its effects."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from drivers.display import Display
from drivers.hid import InputDevice, read_keypad, read_magstripe, read_scanner
from drivers.nfc import NfcReader
from drivers.printer import ReceiptPrinter
from drivers.touch import read_touch
from firmware.config import Config
from firmware.core import effects, events, flow, reports
from firmware.core.emv import CardError, ChipCard, KernelParams, kernel, reversal_fields
from firmware.core.events import AuthResponse
from firmware.core.flow import common, states
from firmware.core.paycode import CodeCard
from firmware.core.receipt import Header, Line, Receipt
from firmware.core.reports import BatchTotals
from firmware.core.screentext import say
from firmware.core.track import MagCard
from firmware.errors import (
    AnswerMismatch,
    CodecError,
    HostError,
    JournalError,
    SignOnError,
    TerminalError,
)
from firmware.host.dialect import DIALECTS, Dialect, MacCodec
from firmware.host.link import HostLink
from firmware.host.messages import (
    ENTRY_CODES,
    SaleRequest,
    bind,
    icc_hex,
    iso_to_response,
    sale_to_iso,
)
from firmware.host.outbox import Outbox
from firmware.host.signon import Session
from firmware.records.journal import FollowUp, Journal, NewSale, QueuedSettlement
from firmware.security.cardsec import card_token, load_token_key
from firmware.security.keystore import KeyStore
from firmware.security.operators import OperatorGate
from firmware.shell import watchdog
from firmware.shell.forwarder import office_forwarder
from firmware.shell.pinpad import PinPad, initial_keys
from firmware.shell.printing import ReceiptDesk
from firmware.shell.signature import signature_png
from firmware.wallets.keycheck import CheckedKeys
from firmware.wallets.providers import make_wallets

if TYPE_CHECKING:
    from drivers.chip import ChipReader
    from firmware.shell.chipdesk import ChipDesk
    from firmware.wallets.desk import WalletDesk

log = logging.getLogger(__name__)

RECONNECT_DELAY = 2.0
DEVICE_MISSING = {
    "keypad": "KEYPAD DISCONNECTED",
    "magstripe": "CARD READER DISCONNECTED",
    "scanner": "SCANNER DISCONNECTED",
}  # said under the screen while the device is away
# Keys that reach the flow while the PIN pad takes the digits: CANCEL, and the customer's language key.
_PAST_PIN_PAD = ("CANCEL", flow.LANGUAGE_KEY)
RETRY_MAX = 300.0  # seconds: the longest pause between outbox retries ([timeouts] retry doubles to it)


@dataclass
class Devices:
    """What the shell drives: openers for the input devices (so it can reopen them), printer, display."""

    open_keypad: Callable[[], InputDevice]
    open_magstripe: Callable[[], InputDevice]
    printer: ReceiptPrinter
    display: Display
    open_scanner: Callable[[], InputDevice] | None = None
    open_touch: Callable[[], InputDevice] | None = None  # the touch panel the cardholder signs on ([touch])


@dataclass(frozen=True)
class _TimerFired:
    generation: int


@dataclass(frozen=True)
class _Booted:
    """What exists only once the terminal has booted: opened by `Terminal._boot` from the config and the
    journal, closed by its shutdown (or let go of by `abandon()`)."""

    stopping: asyncio.Event  # stop() sets it: run() leaves its loop
    journal: Journal
    token_key: bytes  # keys the card tokens in the journal
    pinpad: PinPad  # card PINs (DUKPT initial keys from [pin] or the key store) and operator PINs
    session: Session | None  # the day's session keys, with a [keys] scheme
    dialect: Dialect | MacCodec  # the host's dialect, MAC-wrapped under the session keys
    outbox: Outbox
    wallet: WalletDesk | None  # with a [wallet] provider
    nfc: NfcReader | None  # with a [contactless] device; run() starts it
    notifier: watchdog.Notifier | None  # systemd's notify socket, when run under it
    receipts: ReceiptDesk  # the printer's queue
    chip: ChipReader | None  # with a [chip] reader; run() starts it


def local_now() -> datetime:
    """Wall-clock time in the local zone, for journal stamps and receipts."""
    return datetime.now().astimezone()


class Terminal:
    """Boots (journal recovery), runs the event loop until stop(), and performs the flow's effects."""

    def __init__(self, config: Config, devices: Devices, clock: Callable[[], datetime] = local_now) -> None:
        self.config = config
        self.devices = devices
        self._clock = clock
        t = config.terminal
        # A wallet key's RSA check once per key, not at every boot (the list beside the key store)
        self._wallet_providers = make_wallets(config, clock, CheckedKeys(t.data_dir / "keys" / "checked-keys"))
        self.flow_cfg = flow.FlowConfig(
            currency=t.currency,
            min_amount=t.min_amount,
            max_amount=t.max_amount,
            amount_timeout=config.timeouts.amount,
            card_timeout=config.timeouts.card,
            pin_timeout=config.timeouts.pin,
            result_timeout=config.timeouts.result,
            contactless_limit=config.contactless.transaction_limit if config.contactless.device else 0,
            chip_reader=config.chip is not None,
            fallback=config.emv.fallback,
            wallets=tuple(self._wallet_providers),
            qr_timeout=config.wallet.qr_timeout,
            language=t.language,
            confirm_card=t.confirm_card,
            width=config.display.width,
            **_touch_settings(config),
            **_acquirer_codes(config),
        )
        self.header = Header(
            config.merchant.name,
            config.merchant.address,
            t.terminal_id,
            t.merchant_id,
            t.currency,
            config.printer.language,
            config.printer.width,
        )
        self._host = HostLink(config.host)
        self._after_boot: _Booted | None = None  # run() boots; see _booted
        self.till = flow.Till()  # the flow's state and who is signed in: the core decides, the shell keeps it
        self._queue: asyncio.Queue[events.Event | _TimerFired] = asyncio.Queue()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_gen = 0
        self._auth_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wallet_task: asyncio.Task[Any] | None = None
        self._chip_task: asyncio.Task[Any] | None = None
        self._chipdesk: ChipDesk | None = None  # see _chip_desk
        self._flushing = False  # a _keep_flushing task is running
        self._at_once: deque[events.Event] = deque()  # events answering an effect, handled before the next
        self._journal_trouble = "JOURNAL ERROR"  # the screen text of the journal's last refusal

    # --- lifecycle ------------------------------------------------------------------------

    @property
    def _booted(self) -> _Booted:
        """What boot opened (the methods that run only after boot reach it here)."""
        if self._after_boot is None:
            raise TerminalError("the terminal has not booted: run() opens the journal and the keys first")
        return self._after_boot

    @property
    def _wallet(self) -> WalletDesk:
        """The wallet desk (the flow asks for wallet payments only when a wallet provider is configured)."""
        wallet = self._booted.wallet
        if wallet is None:
            raise TerminalError("no wallet provider configured")
        return wallet

    @property
    def journal(self) -> Journal | None:
        """The journal, once run() has booted on it."""
        return self._after_boot.journal if self._after_boot is not None else None

    @property
    def _session(self) -> Session | None:
        """The sign-on session, once booted with a [keys] scheme (tests make it forget the day's keys)."""
        return self._after_boot.session if self._after_boot is not None else None

    def _boot(self) -> tuple[_Booted, list[dict[str, Any]]]:
        """Open what the terminal runs on, and the receipts still due. The journal first, then the key store
        and the keys in it, then the journal's recovery: a journal that cannot be trusted stops the terminal
        here (the screen says so, the log says why). Then what is wired on them: the operator gate, the
        sign-on session and its MAC-wrapped dialect, the outbox, the wallet desk, the contactless reader (not
        started yet) and systemd's notify socket."""
        data_dir = self.config.terminal.data_dir
        journal: Journal | None = None
        try:
            journal = Journal(data_dir / "journal.sqlite3")
            keystore = KeyStore(data_dir / "keys")
            token_key = load_token_key(keystore, data_dir / "keys" / "card_token.key")
            keys = initial_keys(self.config.pin, keystore)
            journal.recover(self._clock())
            due = journal.receipts_due()
        except TerminalError as exc:
            # Nothing is sold on a journal that cannot be trusted; the screen says so, the log says why.
            log.critical("terminal cannot start: %s", exc)
            lang = self.flow_cfg.language
            self.devices.display.show(tuple(say(lang, text) for text in (exc.screen, "TERMINAL STOPPED", "SEE LOG")))
            if journal is not None:
                journal.close()
            raise
        try:
            ops = self.config.operators
            session, dialect = self._host_session(keystore, journal)
            outbox = Outbox(
                journal,
                self._host,
                self.config,
                self._clock,
                dialect,
                session.ensure if session else None,
                self._settled,
            )
            wallet = None
            if self._wallet_providers:
                from firmware.wallets.desk import WalletDesk  # only with a wallet: its modules cost boot time

                wallet = WalletDesk(self._wallet_providers, journal, self.config, self._clock, self.post, self._spawn)
            nfc = None
            if self.config.contactless.device:
                nfc = NfcReader(self.config.contactless.device, asyncio.get_running_loop(), self.post)
            pinpad = PinPad(
                self.config,
                journal,
                keys,
                session,
                OperatorGate(ops.hashes, ops.max_failures, ops.lockout, journal, ops.cashiers),
                self._clock,
                self.post,
                self._spawn,
            )
            booted = _Booted(
                stopping=asyncio.Event(),
                journal=journal,
                token_key=token_key,
                pinpad=pinpad,
                session=session,
                dialect=dialect,
                outbox=outbox,
                wallet=wallet,
                nfc=nfc,
                notifier=watchdog.from_environment(),
                receipts=ReceiptDesk(
                    self.devices.printer, journal, self.header, self._clock, self._spawn, self._device_problem
                ),
                chip=self._chip_reader(),
            )
        except BaseException:
            journal.close()  # nobody else holds it yet
            raise
        return booted, due

    def _chip_desk(self, booted: _Booted) -> ChipDesk:
        """The desk that runs the contact kernel for an inserted card: made at boot with a [chip] reader (run()),
        else only should a chip card ever come (a terminal without a chip reader never loads the kernel)."""
        if self._chipdesk is None:
            # the contact kernel and ODA: memory a terminal without a chip reader does not need
            from firmware.shell.chipdesk import ChipDesk

            journal = booted.journal
            self._chipdesk = ChipDesk(
                self.config,
                booted.pinpad,
                self._clock,
                self.post,
                self._send_sale,
                self._answered,
                self._record,
                lambda: self._spawn(self._keep_flushing()),
                lambda amount, reason: self._journal_failed_read(amount, reason, "chip"),
                journal.chip_result,
            )
        return self._chipdesk

    def _chip_reader(self) -> ChipReader | None:
        """The contact chip reader with a [chip] section (not started yet), else None."""
        if self.config.chip is None:
            return None
        from drivers.chip import ChipReader  # only with a chip reader: pyscard and PC/SC's library cost memory

        return ChipReader(self.config.chip.reader, asyncio.get_running_loop(), self.post)

    def _host_session(self, keystore: KeyStore, journal: Journal) -> tuple[Session | None, Dialect | MacCodec]:
        """The sign-on session and the host's dialect, MAC-wrapped under the session keys when [keys] has a
        scheme; without one, no session and the plain dialect."""
        plain = DIALECTS[self.config.host.dialect]
        if not self.config.keys.scheme:
            return None, plain
        t = self.config.terminal
        session = Session(
            self.config.keys.scheme,
            keystore,
            self._host,
            plain,
            journal,
            t.terminal_id,
            t.merchant_id,
            self.config.timeouts.host,
            self._clock,
        )
        return session, MacCodec(plain, self.config.keys.scheme, session.mac_key, session.invalidate)

    async def run(self) -> None:
        """Boot, then process events until stop() is called."""
        booted, due = self._boot()
        self._after_boot = booted
        forwarder = office_forwarder(self.config, booted.journal)  # [office]: the journal to the back office
        if forwarder is not None:
            self._spawn(forwarder.run())
        self._spawn(self._keep_flushing())  # what a crash or an outage left for the host
        self._spawn(
            self._input_loop(
                "keypad", self.devices.open_keypad, lambda dev: read_keypad(dev, self.config.keypad.keys, self.post)
            )
        )
        self._spawn(
            self._input_loop("magstripe", self.devices.open_magstripe, lambda dev: read_magstripe(dev, self.post))
        )
        if self.devices.open_scanner is not None:
            self._spawn(
                self._input_loop("scanner", self.devices.open_scanner, lambda dev: read_scanner(dev, self.post))
            )
        self._start_touch()
        if booted.wallet is not None:
            self._spawn(booted.wallet.reconcile())  # orders a crash or an outage left open
        if booted.nfc is not None:
            booted.nfc.start()
        if booted.chip is not None:
            self._chip_desk(booted)
            booted.chip.start()
        self._enter(flow.IDLE)
        for row in due:  # a power cut or an empty printer kept them from paper
            log.info("receipt of trace %06d is still due: printing it", row["stan"])
            booted.receipts.queue(booted.receipts.both_copies(row), row["id"])
        log.info("terminal %s ready", self.config.terminal.terminal_id)
        if booted.notifier is not None:  # under systemd (Type=notify, WatchdogSec=)
            booted.notifier.notify(f"READY=1\nSTATUS=terminal {self.config.terminal.terminal_id} ready")
            self._spawn(booted.notifier.keep_alive())
        getter = asyncio.ensure_future(self._queue.get())
        stopper = asyncio.ensure_future(booted.stopping.wait())
        try:
            while True:
                await asyncio.wait({getter, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper.done():
                    break
                try:
                    self._dispatch(getter.result())
                finally:
                    self._queue.task_done()
                getter = asyncio.ensure_future(self._queue.get())
        except asyncio.CancelledError:
            await self._shutdown()
            raise
        finally:
            getter.cancel()
            stopper.cancel()
        # Not in `finally`: a power cut (the loop simply stops) must not run a clean shutdown.
        await self._shutdown()

    async def settle(self) -> None:
        """Wait until every event handed in so far, and those its callbacks hand in, has been handled."""
        for _ in range(3):
            for _ in range(5):
                await asyncio.sleep(0)  # let device reader callbacks deliver what they already read
            await self._queue.join()

    def stop(self) -> None:
        """Ask run() to finish (clean shutdown)."""
        if self._after_boot is not None:
            self._after_boot.stopping.set()

    def abandon(self) -> None:
        """Let go of what the OS takes back from a process that dies (the journal's file, the card reader's
        thread, the printer's port) without flushing, recording or telling anyone. Only for an in-process
        imitation of a power cut, after its loop stopped dead (the simulator's); a real one needs nothing. (Closing
        the journal lets SQLite checkpoint its write-ahead log, which a real power cut does not; recovery from a
        WAL left behind is what the kill harness's real SIGKILLs test.)"""
        booted = self._after_boot
        if booted is not None:
            if booted.nfc is not None:
                booted.nfc.stop()
            if booted.chip is not None:
                booted.chip.stop()
            booted.pinpad.close()
            booted.journal.close()
        self.devices.printer.close()

    async def _shutdown(self) -> None:
        booted = self._booted  # run() reaches its loop only once booted
        if booted.notifier is not None:
            booted.notifier.notify("STOPPING=1")
        if self._timer is not None:
            self._timer.cancel()
        booted.pinpad.close()
        while self._tasks:  # a task ending may start another (a slip to print): again
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.devices.printer.close)
        if booted.nfc is not None:
            booted.nfc.stop()
        if booted.chip is not None:
            await asyncio.to_thread(booted.chip.stop)  # joins its threads: up to a second
        booted.journal.close()
        if booted.notifier is not None:
            booted.notifier.close()
        log.info("terminal stopped")

    def _spawn(self, coro: Any, fallback: Any = None) -> asyncio.Task[Any]:
        """Run `coro` as a task. When the flow waits for its answer, `fallback` is the event posted
        should it fail unexpectedly (a full disk, a bug): the screen moves on instead of waiting forever."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda t: self._task_done(t, fallback))
        return task

    def _task_done(self, task: asyncio.Task[Any], fallback: Any) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("terminal: background task failed", exc_info=task.exception())
            if fallback is not None:
                self.post(fallback)

    async def _input_loop(
        self, what: str, opener: Callable[[], InputDevice], reader: Callable[[InputDevice], Any]
    ) -> None:
        """Open an input device and read it; when it fails or goes away, retry until it is back."""
        reported = False
        while True:
            device = None
            try:
                device = opener()
                if reported:
                    log.info("%s: device is back", what)
                reported = False
                self._device_problem(what, "")
                await reader(device)
                return
            except (OSError, TerminalError) as exc:
                self._device_problem(what, DEVICE_MISSING.get(what, f"{what.upper()} DISCONNECTED"))
                if not reported:
                    log.error("%s: %s; retrying every %g s", what, exc, RECONNECT_DELAY)
                    reported = True
            finally:
                if device is not None:
                    try:
                        device.close()
                    except OSError:
                        pass
            await asyncio.sleep(RECONNECT_DELAY)

    # --- events ---------------------------------------------------------------------------

    def post(self, event: events.Event | _TimerFired) -> None:
        """Hand an event to the loop (call from the loop's thread)."""
        self._queue.put_nowait(event)

    def _dispatch(self, event: events.Event | _TimerFired) -> None:
        """Handle one event; whatever goes wrong, the loop lives on and the screen says something useful."""
        try:
            self._dispatch_one(event)
            while self._at_once:  # answers the shell had at once come before the next key
                self._dispatch_one(self._at_once.popleft())
        except Exception:
            self._at_once.clear()
            log.exception(
                "terminal: event %s failed in %s; back to idle", type(event).__name__, type(self.state).__name__
            )
            self._booted.pinpad.end()
            self._enter(states.Result(("ERROR", "PLEASE TRY AGAIN")))

    def _dispatch_one(self, posted: events.Event | _TimerFired) -> None:
        event: events.Event | None
        if isinstance(posted, _TimerFired):
            event = events.TimerExpired() if posted.generation == self._timer_gen else None
        elif isinstance(posted, (events.ChipReaderFailed, events.ChipReaderReady)):
            event = events.DeviceTrouble("chip", posted.screen if isinstance(posted, events.ChipReaderFailed) else "")
        elif isinstance(posted, events.Key) and self._booted.pinpad.armed and posted.name not in _PAST_PIN_PAD:
            event = self._booted.pinpad.key(posted.name)  # digits stay in the PIN pad
        else:
            event = posted
        if event is None:
            return
        started = time.monotonic()
        before = type(self.state).__name__
        try:
            self.till, todo = flow.advance(self.till, event, self.flow_cfg)
        except Exception:
            log.exception("flow: step failed on %s in %s; back to idle", type(event).__name__, before)
            self._enter(states.Result(("ERROR", "PLEASE TRY AGAIN")), effects.EndPin())
            todo = []
        self._perform(todo)
        nfc = self._booted.nfc
        if nfc is not None:
            nfc.set_polling(flow.wants_tap(self.state, self.flow_cfg))
        log.debug(
            "flow: %s + %s -> %s [%s] %.1f ms",
            before,
            type(event).__name__,
            type(self.state).__name__,
            ", ".join(type(e).__name__ for e in todo),
            (time.monotonic() - started) * 1000,
        )

    def _enter(self, state: flow.State, *extra: effects.Effect) -> None:
        """Put the flow in `state` (boot, or after a failure), with its screen and timer."""
        self.till, todo = flow.put(self.till, state, self.flow_cfg, *extra)
        self._perform(todo)

    @property
    def state(self) -> flow.State:
        """Where the flow stands (read-only; the flow moves it)."""
        return self.till.state

    async def _sign_on_quietly(self, session: Session) -> None:
        try:
            await session.ensure()
        except SignOnError as exc:
            log.warning("%s", exc)

    # --- effects --------------------------------------------------------------------------

    def _perform(self, todo: list[effects.Effect]) -> None:
        for eff in todo:
            try:
                self._perform_one(eff)
            except Exception:
                log.exception("terminal: effect %s failed", type(eff).__name__)

    def _perform_one(self, eff: effects.Effect) -> None:
        if isinstance(eff, effects.Show):
            self._show(eff.lines, eff.qr, eff.strokes)
        elif isinstance(eff, effects.StartTimer):
            self._set_timer(eff.seconds)
        elif isinstance(eff, effects.StopTimer):
            self._set_timer(None)
        elif isinstance(eff, effects.CollectPin):
            self._booted.pinpad.arm_card(eff.pan)
            session = self._booted.session
            if session is not None:
                # Renew the day's keys while the customer types, so the PIN key and the MAC key agree.
                self._spawn(self._sign_on_quietly(session))
        elif isinstance(eff, effects.CollectOperatorPin):
            self._booted.pinpad.arm_operator(eff.role)
        elif isinstance(eff, effects.EndPin):
            self._booted.pinpad.end()
        elif isinstance(eff, effects.FindOriginal):
            self._find_original(eff)
        elif isinstance(eff, effects.SubmitFollowUp):
            self._auth_task = self._spawn(self._follow_up(eff), events.HostFailed(common.TERMINAL_ERROR, sent=True))
        elif isinstance(eff, effects.StartQrOrder):
            self._wallet_task = self._spawn(
                self._wallet.qr_order(eff.amount, eff.lines, eff.operator, eff.provider),
                events.WalletEnded("unknown", "TERMINAL ERROR"),
            )
        elif isinstance(eff, effects.PayByCode):
            self._wallet_task = self._spawn(
                self._wallet.code_payment(eff.amount, eff.code, eff.lines, eff.operator, eff.provider),
                events.WalletEnded("unknown", "TERMINAL ERROR"),
            )
        elif isinstance(eff, effects.EndWalletOrder):
            if self._wallet_task is not None:
                self._wallet_task.cancel()
            self._spawn(self._wallet.end_order(eff.reason), events.WalletEnded("unknown", "TERMINAL ERROR"))
        elif isinstance(eff, effects.StartChip):
            self._chip_task = self._spawn(
                self._chip_desk(self._booted).run(eff),
                events.CardFailed("CARD ERROR, TRY ANOTHER CARD", "terminal error"),
            )
        elif isinstance(eff, effects.AnswerChip):
            self._chip_desk(self._booted).answer(eff.choice)
        elif isinstance(eff, effects.AbortChip):
            if self._chip_task is not None and not self._chip_task.done():
                self._chip_task.cancel()
        elif isinstance(eff, effects.ReadCard):
            self._spawn(self._read_card(eff), events.CardFailed("CARD ERROR, TRY ANOTHER CARD", "terminal error"))
        elif isinstance(eff, effects.ReleaseCard):
            eff.session.close()
        elif isinstance(eff, effects.Authorize):
            self._auth_task = self._spawn(self._authorize(eff), events.HostFailed(common.TERMINAL_ERROR, sent=True))
        elif isinstance(eff, effects.AbortAuthorization):
            if self._auth_task is not None and not self._auth_task.done():
                self._auth_task.cancel()
        elif isinstance(eff, effects.PrintReceipts):
            self._booted.receipts.transaction(eff.stan)
        elif isinstance(eff, effects.CheckCatalogue):
            self._at_once.append(events.CatalogueChecked(self._booted.journal.has_items()))  # one EXISTS query
        elif isinstance(eff, effects.LookupItem):
            self._at_once.append(events.ItemFound(eff.code, self._booted.journal.item(eff.code)))
        elif isinstance(eff, effects.Reprint):
            try:
                notice = self._booted.receipts.reprint(eff.stan, eff.operator)
            except TerminalError as exc:
                log.error("reprint: %s", exc)
                notice = exc.screen
            self.post(events.Reprinted(notice))
        elif isinstance(eff, effects.PrintReport):
            self._spawn(self._print_report(eff.operator))
        elif isinstance(eff, effects.PrintCode):
            lines = (
                Line(self.config.merchant.name, align="center", bold=True),
                Line(f"{common.money(eff.amount, self.flow_cfg)}", align="center", big=True),
                Line("SCAN TO PAY 扫码支付", align="center"),
            )
            self._booted.receipts.queue([Receipt(lines, qr=eff.payload)], keep=False)  # useless later: not kept
        elif isinstance(eff, (effects.AwaitSignature, effects.KeepSignature, effects.NoSignature)):
            self._signature(eff)
        elif isinstance(eff, effects.Settle):
            self._auth_task = self._spawn(self._settle(eff.operator), events.Settled("failed", "TERMINAL ERROR"))
        else:
            raise TypeError(f"unknown effect {eff!r}")

    def _set_timer(self, seconds: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_gen += 1
        if seconds is not None:
            gen = self._timer_gen
            self._timer = asyncio.get_running_loop().call_later(seconds, self.post, _TimerFired(gen))

    async def _authorize(self, eff: effects.Authorize) -> None:
        """Flush pending reversals, journal the sale as pending, exchange it, journal the outcome, tell the flow."""
        sent = await self._send_sale(eff)
        if sent is not None:
            self._answered(*sent)

    async def _send_sale(self, eff: effects.Authorize) -> tuple[int, int, AuthResponse] | None:
        """Flush what the host must hear first, journal the sale as pending, exchange it: (row, STAN, answer),
        or None when it ended without an answer that counts (journaled, reversed if need be, the flow told)."""
        try:
            self._booted.journal.check_room()
            queue_empty = await self._flush_before_sending()
            now = self._clock()
            row, stan = self._booted.journal.begin_sale(self._new_sale(eff, now), now)
        except asyncio.CancelledError:
            self.post(events.HostFailed("cancelled before sending", sent=False))
            return None
        except JournalError as exc:
            log.error("sale refused before anything was sent: %s", exc)
            self.post(events.HostFailed(str(exc), sent=False, title=exc.screen))
            return None
        if not queue_empty:
            note = self._booted.outbox.blocked_by
            self._record(row, "failed", note=note)
            self.post(events.HostFailed(note, sent=False, stan=stan, title=self._booted.outbox.blocked_screen))
            return None
        sent = False
        try:
            request = self._sale_request(eff, stan, now)
            message = self._booted.dialect.encode(request)
            sent = True
            response = await self._host.exchange(
                message,
                self.config.timeouts.host,
                lambda raw: iso_to_response(bind(request, self._booted.dialect.decode(raw))),
            )
        except (asyncio.CancelledError, HostError, CodecError) as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            reason = "cancelled while the host was asked" if cancelled else str(exc)
            maybe_sent = exc.sent if isinstance(exc, HostError) else sent
            if not cancelled:
                log.warning("sale stan %06d: %s", stan, reason)
            # 'unknown' queues a reversal in the same database transaction; send it now.
            self._record(row, "unknown" if maybe_sent else "failed", note=reason)
            title = exc.screen if isinstance(exc, AnswerMismatch) else ""
            self.post(events.HostFailed(reason, sent=maybe_sent, stan=stan, title=title))
            if maybe_sent:
                self._spawn(self._keep_flushing())
            return None
        return row, stan, response

    def _answered(self, row: int, stan: int, response: AuthResponse, note: str = "") -> None:
        """Journal the host's answer to a sale, then tell the flow (an answer the journal cannot take is
        reversed: the customer is told NOT APPROVED)."""
        outcome = "approved" if response.approved else "declined"
        if not self._record(
            row,
            outcome,
            note=note,
            response_code=response.response_code,
            auth_code=response.auth_code,
            rrn=response.rrn,
        ):
            # The host answered, the journal cannot say so: the customer is told NOT APPROVED and an approval
            # is reversed as soon as the journal can take it (Outbox.unwritten); nothing new goes out before.
            log.error(
                "sale stan %06d: response %s could not be journaled; it will be reversed", stan, response.response_code
            )
            self.post(
                events.HostFailed(
                    "the outcome could not be journaled", sent=True, stan=stan, title=self._journal_trouble
                )
            )
            self._spawn(self._keep_flushing())
            return
        log.info("sale stan %06d: response %s", stan, response.response_code)
        self.post(events.HostAnswered(response, stan, self._booted.journal.cvm_of(row)))

    def _new_sale(self, eff: effects.Authorize, now: datetime) -> NewSale:
        """The journal's pending row for a card sale: masked PAN, card token and the chip's facts, no card data.
        A payment code sent in place of a card names its wallet and gets no token (a one-time code links
        nothing); its CVM is the payer's PIN when one was entered, else none."""
        t = self.config.terminal
        chip = eff.card if isinstance(eff.card, ChipCard) else None
        code = eff.card if isinstance(eff.card, CodeCard) else None
        if code is not None:
            cvm = "online_pin" if eff.pin else "none"
        else:
            cvm = chip.cvm if chip else ""
        return NewSale(
            method="card",
            entry_mode=self._entry_mode(eff),
            amount=eff.amount,
            currency=t.currency.alpha,
            masked_pan=eff.card.masked_pan,
            terminal_id=t.terminal_id,
            merchant_id=t.merchant_id,
            transmitted_at=now.astimezone(UTC).strftime("%m%d%H%M%S"),
            card_token="" if code else card_token(self._booted.token_key, eff.card.pan),
            lines=eff.lines,
            operator=eff.operator,
            chip_swiped=isinstance(eff.card, MagCard) and eff.card.service_code[:1] in ("2", "6"),
            cvm=cvm,
            aid=chip.aid if chip else "",
            app_label=chip.label if chip else "",
            cryptogram=chip.cryptogram if chip else "",
            provider=code.wallet if code else "",
            reversal_icc=icc_hex(reversal_fields(chip.icc)) if chip else "",
        )

    def _entry_mode(self, eff: effects.Authorize) -> str:
        """How the card came: "chip", "contactless", "code" (a payment code in place of a card), "fallback" (a
        chip card's stripe where the terminal has a chip reader: the flow lets it through only after the chip
        failed and the config allows fallback), else "swipe"."""
        if isinstance(eff.card, ChipCard):
            return "chip" if eff.card.kernel == "contact" else "contactless"
        if isinstance(eff.card, CodeCard):
            return "code"
        chip_card = eff.card.service_code[:1] in ("2", "6")
        return "fallback" if chip_card and self.config.chip else "swipe"

    def _sale_request(self, eff: effects.Authorize, stan: int, now: datetime) -> dict[str, str]:
        """The 0200 for a card sale (field 7 the same moment the journal's row says it was transmitted); a payment
        code goes as the PAN (field 2) with no track."""
        t = self.config.terminal
        card = eff.card
        entry = self._entry_mode(eff)
        extra: dict[str, str] = {"entry_mode": ENTRY_CODES[entry]}
        if isinstance(card, ChipCard):
            extra["icc_data"] = icc_hex(card.icc)
        if isinstance(card, CodeCard):
            extra["pan"] = card.pan
        else:
            extra["track2"] = card.track2
        return sale_to_iso(
            SaleRequest(
                stan=stan,
                amount=eff.amount,
                currency_numeric=t.currency.numeric,
                pin_block=eff.pin.block if eff.pin else "",
                ksn=eff.pin.ksn if eff.pin else "",
                terminal_id=t.terminal_id,
                merchant_id=t.merchant_id,
                local_time=now,
                utc_time=now.astimezone(UTC),
                **extra,
            )
        )

    def _record(self, row: int, status: str, *, note: str = "", **answer: str) -> bool:
        """Journal a row's outcome; when the journal refuses (disk full, read-only, I/O error) hand it to the
        outbox to write later — an approval as 'unknown', so that it is reversed — and return False."""
        try:
            self._booted.journal.finish(row, status, self._clock(), note=note[:200], **answer)
            return True
        except TerminalError as exc:
            log.error("journal row %d: cannot record %s: %s", row, status, exc)
            self._journal_trouble = exc.screen
            later = "unknown" if status in ("approved", "unknown") else status
            self._booted.outbox.unwritten(row, later, f"{status} not journaled ({exc.screen}); {note}".strip("; "))
            return False

    async def _flush_before_sending(self) -> bool:
        """Flush the outbox before something new goes to the host; when what holds it up ends within twice the
        host timeout (a reversal answered 25 that counts in a moment), wait for that and flush once more: the
        screen says PROCESSING a few seconds longer instead of HOST NOT AVAILABLE (CANCEL still cancels)."""
        outbox = self._booted.outbox
        if await outbox.flush():
            return True
        due = outbox.due_in
        if due is None or due > 2 * self.config.timeouts.host:
            return False
        await asyncio.sleep(due + 0.05)
        return await outbox.flush()

    async def _keep_flushing(self, wait_first: bool = False) -> None:
        """Send what the outbox holds, again and again with pauses from [timeouts] retry doubling up to
        RETRY_MAX, until it is empty (one at a time); at once, unless `wait_first` (a flush just failed).
        When the outbox knows when its reason to wait ends (a reversal's 25 that counts once the sale is old
        enough), it is asked again then instead."""
        if self._flushing:
            return
        self._flushing = True
        delay = self.config.timeouts.retry
        try:
            if wait_first:
                due = self._booted.outbox.due_in
                await asyncio.sleep(due + 0.05 if due is not None and due < delay else delay)
            while not await self._booted.outbox.flush():
                due = self._booted.outbox.due_in  # e.g. a "no such sale yet" that counts in a few seconds
                if due is not None and due < delay:
                    await asyncio.sleep(due + 0.05)
                    continue
                await asyncio.sleep(delay)
                delay = min(delay * 2, max(RETRY_MAX, self.config.timeouts.retry))
        finally:
            self._flushing = False

    async def _read_card(self, eff: effects.ReadCard) -> None:
        """Run the contactless kernel against the card in the field; journal a read that fails."""
        session = eff.session
        t = self.config.terminal
        c = self.config.contactless
        params = KernelParams(
            amount=eff.amount,
            currency_numeric=t.currency.numeric,
            country_numeric=c.country,
            today=self._clock().date(),
            unpredictable=secrets.token_bytes(4),
            supported_aids=c.aids,
            cvm_limit=c.cvm_limit,
            floor_limit=c.floor_limit,
            tac_denial=c.tac_denial,
            tac_online=c.tac_online,
            tac_default=c.tac_default,
        )
        started = time.monotonic()
        steps = kernel(params)
        try:
            apdu = next(steps)
            while True:
                apdu = steps.send(await session.transceive(apdu))
        except StopIteration as done:
            card: ChipCard = done.value
            log.info(
                "contactless: %s read in %.0f ms, %d APDUs, CVM %s",
                card.masked_pan,
                (time.monotonic() - started) * 1000,
                card.apdus,
                card.cvm,
            )
            self.post(events.CardRead(card))
        except CardError as exc:
            log.warning("contactless: %s", exc)
            self._journal_failed_read(eff.amount, str(exc))
            self.post(events.CardFailed(exc.screen, str(exc)))
        finally:
            steps.close()
            session.close()

    def _journal_failed_read(self, amount: int, reason: str, entry: str = "contactless") -> None:
        t = self.config.terminal
        row, _ = self._booted.journal.begin_sale(
            NewSale("card", entry, amount, t.currency.alpha, "", t.terminal_id, t.merchant_id), self._clock()
        )
        self._booted.journal.finish(row, "failed", self._clock(), note=f"card read: {reason}"[:200])

    def _find_original(self, eff: effects.FindOriginal) -> None:
        row = self._booted.journal.find_sale(
            eff.stan, eff.reference, eff.date, eff.amount, eff.last4, today=self._clock().date()
        )
        if row is None:
            what = "REFERENCE" if eff.reference else ("NO SUCH SALE" if eff.date else f"TRACE {eff.stan:06d}")
            self.post(events.OriginalMissing(f"{what} UNKNOWN" if not eff.date else what))
            return
        sale = events.OriginalSale(
            id=row["id"],
            stan=row["stan"],
            amount=row["amount"],
            masked_pan=row["masked_pan"],
            method=row["method"],
            status=row["status"],
            created_at=row["created_at"],
            batch=row["batch"],
            refunded=row["refunded"],
            entry_mode=row["entry_mode"],
        )
        self.post(events.OriginalFound(sale, self._booted.journal.current_batch(), self._clock().date().isoformat()))

    async def _follow_up(self, eff: effects.SubmitFollowUp) -> None:
        """Journal a void or refund (the journal enforces the limits), then send it (card or wallet) or finish
        it (cash)."""
        f = await self._begin_follow_up(eff)
        if f is None:
            return
        try:
            self._booted.journal.audit(
                eff.operator or "manager",
                eff.kind,
                f"{eff.route} {eff.amount} against sale {eff.original_id} (row {f.id})",
                self._clock(),
            )
            if eff.route == "cash":
                self._booted.journal.finish(f.id, "approved", self._clock(), note="cash paid out at the till")
                self.post(events.CashRefunded(f.stan))
                return
        except TerminalError as exc:  # nothing has left the till or the terminal
            log.error("%s %d: %s", eff.kind, f.id, exc)
            self._booted.outbox.unwritten(f.id, "failed", f"not done: {exc.screen}")
            self.post(events.Refused(exc.screen))
            return
        if eff.route == "wallet":
            await self._wallet_follow_up(f)
        else:
            await self._card_follow_up(f)

    async def _begin_follow_up(self, eff: effects.SubmitFollowUp) -> FollowUp | None:
        """The void or refund journaled pending, or None when it is refused (the flow told why)."""
        try:
            self._booted.journal.check_room()
        except JournalError as exc:
            log.error("%s refused before anything was done: %s", eff.kind, exc)
            self.post(events.Refused(exc.screen))
            return None
        if eff.route != "cash" and not await self._flush_before_sending():
            self.post(events.HostFailed("the host has not yet heard earlier messages", sent=False))
            return None
        now = self._clock()
        original = self._booted.journal.row(eff.original_id) or {}
        if eff.kind == "void" and original.get("batch") != self._booted.journal.current_batch():
            # The flush above may have sent a queued settlement: the sale's batch is closed now.
            self.post(events.Refused("SETTLED: USE REFUND"))
            return None
        try:
            return self._booted.journal.begin_follow_up(
                eff.kind,
                eff.original_id,
                eff.amount,
                eff.route,  # the flow chose the way back: the card, the payer's wallet, or cash
                secrets.token_hex(16),
                now.astimezone(UTC).strftime("%m%d%H%M%S"),
                now,
                operator=eff.operator,
            )
        except TerminalError as exc:
            log.warning("%s of sale %d: %s", eff.kind, eff.original_id, exc)
            self.post(events.Refused(exc.screen))  # the journal's own rule (REFUSALS), or what went wrong
            return None

    async def _wallet_follow_up(self, f: FollowUp) -> None:
        wallet = self._booted.wallet
        if wallet is None:
            self._record(f.id, "failed", note="no wallet provider configured")
            self.post(events.Refused("NO WALLET PROVIDER"))
            return
        outcome = await wallet.refund(f)
        self.post(outcome)
        if isinstance(outcome, events.HostFailed):
            self._spawn(wallet.reconcile())  # resend at once (same request number)

    async def _card_follow_up(self, f: FollowUp) -> None:
        try:
            response = await self._booted.outbox.exchange_follow_up(f)
        except (HostError, CodecError) as exc:
            sent = exc.sent if isinstance(exc, HostError) else True
            log.warning("%s stan %06d: %s", f.kind, f.stan, exc)
            # 'unknown' keeps it in the outbox: resent with the same STAN and key until the host answers.
            self._record(f.id, "unknown" if sent else "failed", note=str(exc))
            self.post(events.HostFailed(str(exc), sent=sent, stan=f.stan))
            if sent:
                self._spawn(self._keep_flushing())
            return
        try:
            self._booted.outbox.record(f, response)
        except TerminalError as exc:  # resent later: the host answers it the same
            log.error("%s stan %06d: answer %s not journaled: %s", f.kind, f.stan, response.response_code, exc)
            self._booted.outbox.unwritten(f.id, "unknown", f"answer {response.response_code} not journaled")
            self.post(events.HostFailed(str(exc), sent=True, stan=f.stan))
            self._spawn(self._keep_flushing())
            return
        self.post(events.HostAnswered(response, f.stan))

    async def _settle(self, operator: str) -> None:
        """Queue the open batch's settlement (its 0500 and totals, kept until answered), then let the outbox
        send it after whatever the host must hear first; `_settled` records the answer and prints the slip."""
        try:
            self._booted.journal.check_room()
            # Lost voids and refunds first: the totals are taken once the host has heard everything else.
            if not await self._flush_before_sending():
                self.post(events.Settled("failed", "EARLIER MESSAGES PENDING"))
                self._spawn(self._keep_flushing(wait_first=True))
                return
            queued = self._booted.journal.begin_settlement(self._clock())
            self._booted.journal.audit(
                operator or "manager", "settlement asked", f"batch {queued.batch}", self._clock()
            )
        except TerminalError as exc:
            log.error("settlement refused before anything was sent: %s", exc)
            self.post(events.Settled("failed", exc.screen))
            return
        if not await self._booted.outbox.flush():
            self.post(events.Settled("failed", "WILL RETRY BY ITSELF"))  # the queued 0500 goes out again
            self._spawn(self._keep_flushing(wait_first=True))
            return
        log.info("settlement of batch %d answered", queued.batch)

    def _settled(self, q: QueuedSettlement, rc: str, host: BatchTotals | None) -> None:
        """A queued settlement was answered and recorded (now, or at boot): audit, slip, screen."""
        t = self.config.terminal
        in_balance = rc == "00"
        mine = BatchTotals(q.debits, q.debit_amount, q.credits, q.credit_amount)
        try:
            self._booted.journal.audit("manager", "settlement", f"batch {q.batch}: {rc}", self._clock())
        except TerminalError as exc:
            log.error("settlement of batch %d not audited: %s", q.batch, exc)
        lines = reports.settlement_text(q.batch, mine, host, in_balance, t.currency, self.config.printer.width)
        self._booted.receipts.queue([Receipt(tuple(Line(x) for x in lines))])
        self.post(events.Settled("in_balance" if in_balance else "out_of_balance", f"BATCH {q.batch:06d}"))

    async def _print_report(self, operator: str) -> None:
        """The X report (today's running totals and anomalies) on paper, audited under who asked."""
        today = self._clock().date()
        self._booted.journal.audit(operator or "manager", "report", today.isoformat(), self._clock())
        self._booted.receipts.report(self.config, today)

    # --- what the screen says: the flow's lines, then any device that is missing ---------------------

    def _show(self, lines: tuple[str, ...], qr: str = "", strokes: Any = ()) -> None:
        if strokes:
            self.devices.display.show(lines, qr, strokes)  # a signature being drawn
        else:
            self.devices.display.show(lines, qr)

    def _device_problem(self, device: str, screen: str) -> None:
        """Say (screen text) or clear ("") what is wrong with a device: the flow keeps it under every screen."""
        self.post(events.DeviceTrouble(device, screen))

    # --- the cardholder's signature on the touch screen -------------------------------------------------

    def _start_touch(self) -> None:
        """Read the touch panel ([touch]) as the other input devices are read: reopened when it comes back."""
        touch, opener = self.config.touch, self.devices.open_touch
        if touch is None or opener is None:
            return
        self._spawn(
            self._input_loop("touch", opener, lambda dev: read_touch(dev, touch.width, touch.height, self.post))
        )

    def _signature(self, eff: effects.AwaitSignature | effects.KeepSignature | effects.NoSignature) -> None:
        """The signature's journal side: the receipt due while the cardholder signs (a power cut then still
        prints it, with the paper line), the drawn signature kept with the sale, or why there is none."""
        journal = self._booted.journal
        if isinstance(eff, effects.AwaitSignature):
            row = journal.receipt_row(eff.stan)
            if row is not None:
                journal.mark_receipt(row["id"], printed=False)
            return
        now = self._clock()
        if isinstance(eff, effects.KeepSignature):
            png = signature_png(eff.strokes, eff.width, eff.height)
            kept = journal.keep_signature(eff.stan, png, "signed on screen", now)
            log.info("sale stan %06d: signature kept (%d strokes, %d bytes)", eff.stan, len(eff.strokes), len(png))
        else:
            kept = journal.keep_signature(eff.stan, None, eff.reason, now)
            log.warning(
                "sale stan %06d: no signature on the screen (%s): the merchant copy is signed", eff.stan, eff.reason
            )
        if kept is None:
            log.error("signature: no sale with trace %06d in the journal", eff.stan)


def _acquirer_codes(config: Config) -> dict[str, Any]:
    """The flow's settings for payment codes the acquirer takes in place of a card ([unionpay] via = "acquirer")."""
    up = config.unionpay
    if up is None or up.via != "acquirer":
        return {}
    return {"acquirer_codes": ("unionpay",), "code_pin_above": up.pin_above}


def _touch_settings(config: Config) -> dict[str, Any]:
    """The flow's view of [touch]: the screen's size to sign on, and how long signing may take."""
    if config.touch is None:
        return {}
    return {"touch": (config.touch.width, config.touch.height), "sign_timeout": config.touch.timeout}
