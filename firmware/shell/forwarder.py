"""The forwarder: sends the journal's outbox to the back office, oldest first, in a task of the terminal's loop
whose blocking work (SQLite, HTTPS) runs in one thread of its own, so a slow or absent back office never
delays a sale.

Each request carries up to `[office] batch` snapshots in order, each keyed by terminal id + row + version (its
outbox `seq`); the back office stores them in one transaction and acknowledges the last seq, and only then are
they deleted here. A request whose answer is lost is sent again as it was: the back office keeps each version
once. The outbox is written by the journal's own transactions, so it survives whatever the journal survives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from firmware.config import Config, OfficeConfig
from firmware.errors import TerminalError
from firmware.records.forwardq import ForwardQueue, Pending
from firmware.records.journal import Journal

if TYPE_CHECKING:
    import http.client

log = logging.getLogger(__name__)

API_PATH = "/api/v1/journal"
RESEND_MAX = 100  # rows the back office may ask for again in one answer, and versions said missing in one request


class _NoAnswer(Exception):
    """The back office could not be reached, refused the request, or answered something that is not its answer."""


class _Refused(_NoAnswer):
    """The back office answered and refused the request (4xx): nothing moves until someone acts on the reason."""


def office_forwarder(config: Config, journal: Journal) -> Forwarder | None:
    """Forwarding on or off in the journal as [office] says; the forwarder to run when it is on. A journal that
    cannot say so now is logged and left as it was: the back office never keeps the terminal from selling."""
    try:
        journal.set_forwarding(bool(config.office.url))
    except TerminalError as exc:
        log.error("office: forwarding not set %s: %s", "on" if config.office.url else "off", exc)
        return None
    if not config.office.url:
        return None
    return Forwarder(config.office, config.terminal.terminal_id, journal.path)


class OfficeLink:
    """One HTTPS connection to the back office, kept open between requests (blocking: the forwarder's thread)."""

    def __init__(self, cfg: OfficeConfig, terminal_id: str) -> None:
        url = urllib.parse.urlsplit(cfg.url)
        self._tls = url.scheme == "https"
        self._host, self._port = url.hostname or "", url.port or (443 if self._tls else 80)
        self._cfg, self._terminal_id = cfg, terminal_id
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        import http.client  # here: a terminal without [office] never loads it (with the email package it brings)

        if self._conn is None:
            if self._tls:
                ctx = ssl.create_default_context(cafile=self._cfg.ca_file or None)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._cfg.timeout, context=ctx)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._cfg.timeout)
        return self._conn

    def _token(self) -> str:
        try:
            token = Path(self._cfg.token_file).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise _NoAnswer(f"[office] token_file {self._cfg.token_file}: {exc}") from None
        if not token:
            raise _NoAnswer(f"[office] token_file {self._cfg.token_file} is empty")
        return token

    def post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload` as JSON; the answer's JSON. _NoAnswer for anything but a 200 with a JSON object."""
        import http.client  # see _connect

        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self._token()}"}
        for fresh in (self._conn is None, True):  # a kept connection the server closed meanwhile: once more, anew
            try:
                conn = self._connect()
                conn.request("POST", API_PATH, body, headers)
                answer = conn.getresponse()
                raw = answer.read()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if fresh:
                    raise _NoAnswer(f"back office {self._host}:{self._port} not reached: {exc}") from None
        if answer.status != 200:
            self.close()
            why = f"back office answered {answer.status}: {raw[:300].decode('utf-8', 'replace')}"
            raise (_Refused if 400 <= answer.status < 500 else _NoAnswer)(why)
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self.close()
            raise _NoAnswer("back office answered something that is not JSON")
        return data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Forwarder:
    """Runs in the terminal's loop (`run`); everything that blocks goes to its own thread."""

    def __init__(self, cfg: OfficeConfig, terminal_id: str, journal_path: Path) -> None:
        self._cfg, self._terminal_id, self._path = cfg, terminal_id, journal_path
        self._stopped = False  # set when run() ends: a reply that comes after is not acted on
        self.sent = 0  # snapshots the back office has acknowledged since boot
        # versions the back office asked for again that the journal does not hold: said in the next request
        self._missing: list[int] = []

    async def run(self) -> None:
        """Send what waits, then look again every `interval` seconds (and say hello every `heartbeat`); after a
        failed contact wait 1 s, doubling up to `retry_max`. Ends only when cancelled."""
        loop = asyncio.get_running_loop()
        worker = ThreadPoolExecutor(1, thread_name_prefix="office-forwarder")
        link = OfficeLink(self._cfg, self._terminal_id)
        queue: ForwardQueue | None = None
        pause, last_contact, down, said = 1.0, float("-inf"), False, ""
        try:
            while True:
                try:
                    if queue is None:
                        queue = await loop.run_in_executor(worker, ForwardQueue, self._path)
                    rows = await loop.run_in_executor(worker, queue.oldest, self._cfg.batch)
                    if not rows and time.monotonic() - last_contact < self._cfg.heartbeat:
                        await asyncio.sleep(self._cfg.interval)
                        continue
                    await loop.run_in_executor(worker, self._exchange, link, queue, rows)
                except (_NoAnswer, Exception) as exc:  # noqa: BLE001 - the forwarder never stops the terminal
                    if str(exc) != said:  # each new reason once (a refusal waits for someone to act: an error)
                        level = logging.ERROR if isinstance(exc, _Refused) else logging.WARNING
                        log.log(level, "office: cannot forward (%s); trying again, up to every %.0f s", exc, pause)
                        said = str(exc)
                    down = True
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, self._cfg.retry_max)
                    continue
                if down:
                    log.info("office: back office reached again")
                pause, last_contact, down, said = 1.0, time.monotonic(), False, ""
                if len(rows) < self._cfg.batch:
                    await asyncio.sleep(self._cfg.interval)
        finally:
            self._stopped = True
            if queue is not None:
                worker.submit(queue.close)
            worker.submit(link.close)
            worker.shutdown(wait=False)

    def _exchange(self, link: OfficeLink, queue: ForwardQueue, rows: list[Pending]) -> None:
        """One request (blocking): the snapshots and the queue's depth; delete what the answer acknowledges."""
        payload: dict[str, Any] = {
            "terminal_id": self._terminal_id,
            "queue_depth": queue.depth(),
            "rows": [r.wire() for r in rows],
        }
        journal = queue.identity()
        if journal:
            payload["journal"] = journal
        if self._missing:
            payload["missing"] = self._missing[:RESEND_MAX]
        answer = link.post(payload)
        acked = answer.get("acknowledged")
        # The answer must be this request's: this terminal, and the last snapshot sent (0 when none was).
        expected = rows[-1].seq if rows else 0
        if answer.get("terminal_id") != self._terminal_id or type(acked) is not int or acked != expected:
            link.close()
            raise _NoAnswer(f"the back office's answer is not this request's: {str(answer)[:200]}")
        for row in answer.get("set_aside") or ():  # stored here still; the back office says why it would not
            if isinstance(row, dict):
                log.error(
                    "office: the back office did not take row %s: %s", row.get("seq"), str(row.get("reason"))[:300]
                )
        if rows and not self._stopped:
            queue.acknowledge(acked)
            self.sent += len(rows)
        self._missing = self._missing[RESEND_MAX:]
        if not self._stopped:
            self._resend(queue, answer.get("resend"))

    def _resend(self, queue: ForwardQueue, asked: Any) -> None:
        """Queue anew the rows the back office set aside and its owner asked for again (the answer's "resend"):
        each as the journal holds it now, unless a newer version already waits; one the journal does not hold is
        named in the next request ("missing"), so the back office stops asking."""
        if not isinstance(asked, list):
            return
        for row in asked[:RESEND_MAX]:
            if not isinstance(row, dict):
                continue
            seq, entity, row_id, line_no = row.get("seq"), row.get("entity"), row.get("row_id"), row.get("line_no")
            if type(seq) is not int or type(row_id) is not int or type(line_no) is not int or type(entity) is not str:
                continue
            if min(seq, row_id, line_no) < 0:
                continue
            if queue.requeue(seq, entity, row_id, line_no):
                log.info(
                    "office: the back office asked again for %s %d (set aside as version %d): queued",
                    entity,
                    row_id,
                    seq,
                )
            else:
                log.error(
                    "office: the back office asked again for %s %d, which this journal does not hold", entity, row_id
                )
                if seq not in self._missing:
                    self._missing.append(seq)
