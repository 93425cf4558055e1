"""The receipt printer's queue: receipts printed in order off the loop, kept ones waiting for paper and for
the printer to come back, and the journal's receipt marks following what really came out."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from drivers.printer import ReceiptPrinter
from firmware.config import Config
from firmware.core import reports
from firmware.core.receipt import Header, Line, Receipt, receipt_facts, sale_receipt
from firmware.errors import DeviceError, TerminalError
from firmware.records.journal import Journal

log = logging.getLogger(__name__)

PRINTER_RETRY = 3.0  # seconds between attempts while the printer has no paper or is gone


@dataclass(frozen=True)
class _PrintJob:
    """One receipt for the printer; `row` is marked printed when it is out; `keep` waits for the printer."""

    receipt: Receipt
    row: int | None = None
    keep: bool = True


class ReceiptDesk:
    """Queues receipts for the printer and prints them in order; says on screen what is wrong with it."""

    def __init__(
        self,
        printer: ReceiptPrinter,
        journal: Journal,
        header: Header,
        clock: Callable[[], datetime],
        spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]],
        problem: Callable[[str, str], None],
    ) -> None:
        self._printer, self._journal, self._header, self._clock = printer, journal, header, clock
        self._spawn, self._problem = spawn, problem
        self._jobs: deque[_PrintJob] = deque()
        self._task: asyncio.Task[Any] | None = None

    def queue(self, receipts: list[Receipt], row: int | None = None, keep: bool = True) -> None:
        """Queue receipts, each cut on its own; `row`'s receipt counts as printed when the last of them is
        out. Kept jobs wait while the printer has no paper or is gone; others are dropped."""
        for n, receipt in enumerate(receipts, start=1):
            self._jobs.append(_PrintJob(receipt, row if n == len(receipts) else None, keep))
        if self._task is None or self._task.done():
            self._task = self._spawn(self._print_all())

    async def _print_all(self) -> None:
        """Print queued jobs in order; on trouble say so on screen and try again every few seconds."""
        while self._jobs:
            job = self._jobs[0]
            try:
                await asyncio.to_thread(self._printer.print_receipts, [job.receipt])
            except DeviceError as exc:
                log.error("%s; %d receipts wait", exc, sum(j.keep for j in self._jobs))
                self._problem("printer", exc.screen)
                self._jobs = deque(j for j in self._jobs if j.keep)
                if self._jobs:
                    await asyncio.sleep(PRINTER_RETRY)
                continue
            self._jobs.popleft()
            self._problem("printer", "")
            if job.row is not None:
                try:
                    self._journal.mark_receipt(job.row, printed=True)
                except TerminalError as exc:
                    log.error("receipt of row %d printed but not marked: %s", job.row, exc)

    def both_copies(self, row: dict[str, Any], reprint: bool = False) -> list[Receipt]:
        """Both copies of a transaction's receipt, from its journal row (the same at the sale and later)."""
        facts = receipt_facts(row)
        lines = tuple(self._journal.lines_of(row["id"])) if row["kind"] == "sale" else ()
        at = datetime.fromisoformat(row["created_at"])
        return [
            sale_receipt(facts, self._header, copy, at, lines, reprint=reprint)
            for copy in ("MERCHANT COPY", "CUSTOMER COPY")
        ]

    def transaction(self, stan: int) -> None:
        """Print a finished transaction's receipts: marked due in the journal first, so that a power cut or a
        printer without paper cannot lose them (boot prints what is still due)."""
        row = self._journal.receipt_row(stan)
        if row is None:
            log.error("receipt: no transaction with trace %06d in the journal", stan)
            return
        try:
            self._journal.mark_receipt(row["id"], printed=False)
        except TerminalError as exc:
            log.error("receipt of row %d not marked due: %s", row["id"], exc)
        self.queue(self.both_copies(row), row["id"])

    def report(self, config: Config, today: date) -> None:
        """Queue today's X report: running totals, the method split, anomalies (nothing is closed)."""
        cur = config.terminal.currency
        report = reports.build(self._journal.figures(today.isoformat(), today.isoformat()), today, today, cur.alpha)
        found = reports.anomalies(
            self._journal.anomaly_rows(today.isoformat(), today.isoformat()), reports.rules_from(config), cur
        )
        lines = reports.as_text(report, cur, config.printer.width) + reports.anomalies_text(found, config.printer.width)
        header = [
            Line(config.merchant.name, align="center", bold=True),
            Line(f"TERMINAL {config.terminal.terminal_id}", align="center"),
            Line(self._clock().strftime("%Y-%m-%d %H:%M:%S"), align="center"),
        ]
        self.queue([Receipt(tuple(header + [Line(t) for t in lines]))])

    def reprint(self, stan: int, operator: str) -> str:
        """Queue a reprint (重打印) of trace `stan`'s receipt, or of the last one; the screen's answer."""
        row = self._journal.receipt_row(stan) if stan else self._journal.last_receipt_row()
        if row is None or row["receipt"] is None:
            return f"NO RECEIPT FOR {stan:06d}" if stan else "NO RECEIPT YET"
        self._journal.audit(
            operator or "cashier", "reprint", f"trace {row['stan']:06d} (row {row['id']})", self._clock()
        )
        self.queue(self.both_copies(row, reprint=True))
        return f"TRACE {row['stan']:06d} PRINTING"
