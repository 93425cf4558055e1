"""Storing what a terminal forwards: one request's snapshots in one PostgreSQL transaction, in order.

Each snapshot is keyed by terminal id + row + version (the terminal's outbox seq). A transaction row replaces the
stored one only when its version is newer, so a snapshot sent twice is stored once and a sale later voided or
refunded ends as its latest state; basket lines never change; a settlement is keyed by its batch, a sale's
signature (a small PNG, never card data) by its sale. The terminal
is the one its token names: every row it sends must be its own, or the whole request is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from office.errors import OfficeError

ENTITIES = ("transaction", "line", "settlement", "signature")
MAX_PNG = 64 << 10  # the largest signature image taken (the terminal's are a few KiB: 1 bit a dot, compressed)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_MASKED = re.compile(r"[0-9]{0,6}\*+[0-9]{0,4}")  # first 6 / last 4 at most: the only card number a row may hold

# The snapshot's fields and their JSON types (None: may be null), as firmware/records/schema.py writes them.
TXN_FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("id", "amount", "stan", "batch", "chip_swiped"), (int,)),
    "original_id": (int, type(None)),
    **dict.fromkeys(
        (
            "kind",
            "method",
            "entry_mode",
            "currency",
            "status",
            "masked_pan",
            "response_code",
            "auth_code",
            "rrn",
            "note",
            "terminal_id",
            "merchant_id",
            "created_at",
            "updated_at",
            "provider",
            "order_no",
            "wallet_trade_no",
            "payer",
            "card_token",
            "operator",
            "cvm",
            "app_label",
        ),
        (str,),
    ),
}
LINE_FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("transaction_id", "line_no", "quantity", "unit_price", "tax_rate_bp"), (int,)),
    **dict.fromkeys(("plu", "name"), (str,)),
}
SETTLEMENT_FIELDS: dict[str, tuple[type, ...]] = {
    **dict.fromkeys(("batch", "debits", "debit_amount", "credits", "credit_amount", "in_balance"), (int,)),
    **dict.fromkeys(("host_debits", "host_debit_amount", "host_credits", "host_credit_amount"), (int, type(None))),
    **dict.fromkeys(("created_at", "response_code"), (str,)),
}
SIGNATURE_FIELDS: dict[str, tuple[type, ...]] = {
    "transaction_id": (int,),
    "png_hex": (str, type(None)),  # None: none was drawn (the note says why; the paper copy was signed)
    **dict.fromkeys(("note", "created_at"), (str,)),
}

# The range each number may take, as the terminal's journal and ISO 8583 write it (and the column holds): a value
# outside is a bad row, never a database error. Amounts: 12 digits, as field 4 carries.
_INT4 = 2**31 - 1
_MONEY = 999_999_999_999
_ROW_ID = 2**62
BOUNDS: dict[str, tuple[int, int]] = {
    "id": (1, _ROW_ID),
    "original_id": (1, _ROW_ID),
    "transaction_id": (1, _ROW_ID),
    "amount": (1, _MONEY),
    "stan": (0, 999_999),
    "batch": (0, 999_999),
    "chip_swiped": (0, 1),
    "line_no": (0, _INT4),
    "quantity": (1, _INT4),
    "unit_price": (0, _MONEY),
    "tax_rate_bp": (0, 10_000),
    "debits": (0, _INT4),
    "credits": (0, _INT4),
    "host_debits": (0, _INT4),
    "host_credits": (0, _INT4),
    "debit_amount": (0, _ROW_ID),
    "credit_amount": (0, _ROW_ID),
    "host_debit_amount": (0, _ROW_ID),
    "host_credit_amount": (0, _ROW_ID),
    "in_balance": (0, 1),
}
MAX_RESEND = 100  # rows asked for again in one answer (and versions a terminal may say it lacks in one request)
NUL_STAND_IN = "\ufffd"  # PostgreSQL text cannot hold NUL: a host's or wallet's NUL is kept as U+FFFD

TXN_COLUMNS = (
    "terminal_id, id, version, kind, method, entry_mode, amount, currency, status, stan, masked_pan, response_code,"
    " auth_code, rrn, note, merchant_id, created_at, created_local, local_day, local_hour, updated_at, original_id,"
    " batch, provider, order_no, wallet_trade_no, payer, card_token, operator, chip_swiped, cvm, app_label"
)
_ORIGINAL = TXN_COLUMNS.replace(" ", "").split(",").index("original_id")
_BATCH = TXN_COLUMNS.replace(" ", "").split(",").index("batch")
_TXN_UPSERT = (
    f"INSERT INTO txns ({TXN_COLUMNS}) VALUES ({', '.join(['%s'] * 32)})"
    " ON CONFLICT (terminal_id, id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in TXN_COLUMNS.replace(" ", "").split(",")[2:])
    + " WHERE txns.version < EXCLUDED.version"
)
_LINE_INSERT = (
    "INSERT INTO sale_lines (terminal_id, transaction_id, line_no, version, plu, name, quantity, unit_price,"
    " tax_rate_bp) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)
_SIGNATURE_UPSERT = (
    "INSERT INTO signatures (terminal_id, transaction_id, version, png, note, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (terminal_id, transaction_id) DO UPDATE SET version = EXCLUDED.version, png = EXCLUDED.png,"
    " note = EXCLUDED.note, created_at = EXCLUDED.created_at WHERE signatures.version < EXCLUDED.version"
)
_SETTLEMENT_UPSERT = (
    "INSERT INTO settlements (terminal_id, batch, version, created_at, debits, debit_amount, credits, credit_amount,"
    " host_debits, host_debit_amount, host_credits, host_credit_amount, response_code, in_balance)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (terminal_id, batch) DO UPDATE SET"
    " version = EXCLUDED.version, created_at = EXCLUDED.created_at, debits = EXCLUDED.debits,"
    " debit_amount = EXCLUDED.debit_amount, credits = EXCLUDED.credits, credit_amount = EXCLUDED.credit_amount,"
    " host_debits = EXCLUDED.host_debits, host_debit_amount = EXCLUDED.host_debit_amount,"
    " host_credits = EXCLUDED.host_credits, host_credit_amount = EXCLUDED.host_credit_amount,"
    " response_code = EXCLUDED.response_code, in_balance = EXCLUDED.in_balance"
    " WHERE settlements.version < EXCLUDED.version"
)


class BadBatch(OfficeError):
    """A request the back office cannot take as it is (400); nothing of it was stored."""


class NotYours(OfficeError):
    """A request sent in another terminal's name (403); nothing of it was stored."""


class BadRow(OfficeError):
    """One row the back office will not store (a value out of range, an unmasked card number, another terminal's
    row): set aside with its reason and acknowledged, so the rows after it still arrive; the terminal's journal
    keeps it, and the owner's page says how many were set aside and why."""


@dataclass(frozen=True)
class SetAside:
    """A row not stored: its place in the terminal's queue, what it was, and why (never its body)."""

    seq: int
    entity: str
    row_id: int
    reason: str
    line_no: int = 0  # a basket line's number (its row_id is its sale's)


@dataclass(frozen=True)
class Resend:
    """A row set aside that the owner asked for again: the terminal queues it anew from its journal (`seq` is the
    terminal's own version of the row set aside; line_no 0 for a line: every line of the sale)."""

    seq: int
    entity: str
    row_id: int
    line_no: int

    def wire(self) -> dict[str, Any]:
        return {"seq": self.seq, "entity": self.entity, "row_id": self.row_id, "line_no": self.line_no}


@dataclass(frozen=True)
class Batch:
    """A checked request: rows by kind, each a tuple of column values in order."""

    terminal_id: str
    queue_depth: int
    last_seq: int
    count: int
    txns: list[tuple[Any, ...]]
    lines: list[tuple[Any, ...]]
    settlements: list[tuple[Any, ...]]
    set_aside: list[SetAside]
    journal: int | None = None  # the terminal journal's identity (None: firmware that does not send one)
    signatures: list[tuple[Any, ...]] = field(default_factory=list)
    arrived: list[tuple[str, int, int, int]] = field(default_factory=list)  # (entity, row_id, line_no, seq) of each
    missing: list[int] = field(default_factory=list)  # versions asked for again that the terminal's journal lacks


def _fields(seq: int, body: Any, spec: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    """The body's fields checked against `spec` and BOUNDS; a NUL in a text is kept as U+FFFD."""
    if not isinstance(body, dict):
        raise BadRow(f"row {seq}: body must be an object")
    out = dict(body)
    for name, kinds in spec.items():
        value = body.get(name)
        if type(value) not in kinds:
            raise BadRow(f"row {seq}: {name} must be {' or '.join(k.__name__ for k in kinds)}")
        if type(value) is str and "\x00" in value:
            out[name] = value.replace("\x00", NUL_STAND_IN)
        elif type(value) is int and name in BOUNDS:
            low, high = BOUNDS[name]
            if not low <= value <= high:
                raise BadRow(f"row {seq}: {name} {value} is outside {low}..{high}")
    return out


def check(terminal_id: str, payload: Any) -> Batch:
    """The request as rows to store and rows set aside (BadRow: each with its reason); the whole request is
    refused only when it cannot be read in order (BadBatch) or is sent in another terminal's name (NotYours)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise BadBatch("the request must be an object with a list of rows")
    if payload.get("terminal_id") != terminal_id:
        raise NotYours(f"the request names terminal {str(payload.get('terminal_id'))[:20]!r}, its token {terminal_id}")
    depth = payload.get("queue_depth", 0)
    if type(depth) is not int or not 0 <= depth <= _ROW_ID:
        raise BadBatch("queue_depth must be a count")
    journal = payload.get("journal")
    if journal is not None and (type(journal) is not int or not 0 < journal < 2**63):
        raise BadBatch("journal must be the journal's identity, a positive number")
    missing = payload.get("missing", [])
    if (
        not isinstance(missing, list)
        or len(missing) > MAX_RESEND
        or any(type(m) is not int or not 0 < m <= _ROW_ID for m in missing)
    ):
        raise BadBatch(f"missing must be a list of at most {MAX_RESEND} versions")
    batch = Batch(terminal_id, depth, 0, len(payload["rows"]), [], [], [], [], journal, missing=missing)
    last = 0
    for row in payload["rows"]:
        seq = row.get("seq") if isinstance(row, dict) else None
        if type(seq) is not int or seq <= last or seq > _ROW_ID:
            raise BadBatch(f"after row {last}: every row needs a seq, each above the one before")
        last, entity, row_id = seq, row.get("entity"), row.get("row_id")
        line_no = row.get("line_no") if entity == "line" and type(row.get("line_no")) is int else 0
        line_no = line_no if 0 <= line_no <= _ROW_ID else 0
        if entity in ENTITIES and type(row_id) is int and 0 <= row_id <= _ROW_ID:
            batch.arrived.append((entity, row_id, line_no, seq))
        try:
            _row(terminal_id, seq, entity, row_id, row.get("body"), batch)
        except BadRow as exc:
            batch.set_aside.append(
                SetAside(seq, str(entity)[:20], row_id if type(row_id) is int else 0, str(exc)[:300], line_no)
            )
    return replace(batch, last_seq=last)


def _row(terminal_id: str, seq: int, entity: Any, row_id: Any, body: Any, batch: Batch) -> None:
    """One row checked into `batch`'s lists; BadRow otherwise."""
    if entity not in ENTITIES or type(row_id) is not int or not 0 <= row_id <= _ROW_ID:
        raise BadRow(f"row {seq}: entity must be one of {', '.join(ENTITIES)} and row_id a number")
    if entity == "transaction":
        batch.txns.append(_txn(terminal_id, seq, row_id, _fields(seq, body, TXN_FIELDS)))
    elif entity == "line":
        b = _fields(seq, body, LINE_FIELDS)
        if b["transaction_id"] != row_id:
            raise BadRow(f"row {seq}: a line of sale {row_id} must say so")
        if _sale_set_aside(batch, row_id):
            raise BadRow(f"row {seq}: a line of sale {row_id}, which was set aside")
        batch.lines.append(
            (terminal_id, row_id, b["line_no"], seq, b["plu"], b["name"], b["quantity"], b["unit_price"])
            + (b["tax_rate_bp"],)
        )
    elif entity == "signature":
        b = _fields(seq, body, SIGNATURE_FIELDS)
        if b["transaction_id"] != row_id:
            raise BadRow(f"row {seq}: the signature of sale {row_id} must say so")
        if _sale_set_aside(batch, row_id):
            raise BadRow(f"row {seq}: the signature of sale {row_id}, which was set aside")
        png = None if b["png_hex"] is None else _png(seq, b["png_hex"])
        batch.signatures.append((terminal_id, row_id, seq, png, b["note"], b["created_at"]))
    else:
        b = _fields(seq, body, SETTLEMENT_FIELDS)
        if b["batch"] != row_id:
            raise BadRow(f"row {seq}: settlement of batch {row_id} must say so")
        batch.settlements.append(
            (terminal_id, row_id, seq, b["created_at"], b["debits"], b["debit_amount"], b["credits"])
            + (b["credit_amount"], b["host_debits"], b["host_debit_amount"], b["host_credits"])
            + (b["host_credit_amount"], b["response_code"], bool(b["in_balance"]))
        )


def _sale_set_aside(batch: Batch, row_id: int) -> bool:
    return any(r.entity == "transaction" and r.row_id == row_id for r in batch.set_aside)


def _png(seq: int, text: str) -> bytes:
    """A signature image from its hex: a PNG (its signature bytes first) of at most MAX_PNG bytes; BadRow otherwise."""
    if len(text) > 2 * MAX_PNG:
        raise BadRow(f"row {seq}: the signature image is over {MAX_PNG} bytes")
    try:
        png = bytes.fromhex(text)
    except ValueError:
        raise BadRow(f"row {seq}: the signature image is not hex") from None
    if not png.startswith(PNG_MAGIC):
        raise BadRow(f"row {seq}: the signature image is not a PNG")
    return png


def _txn(terminal_id: str, seq: int, row_id: int, b: dict[str, Any]) -> tuple[Any, ...]:
    if b["terminal_id"] != terminal_id:
        raise BadRow(f"row {seq} is terminal {b['terminal_id'][:20]!r}'s, not {terminal_id}'s (its id changed?)")
    if b["id"] != row_id:
        raise BadRow(f"row {seq}: transaction {row_id} must say so")
    if b["masked_pan"] and not _MASKED.fullmatch(b["masked_pan"]):
        raise BadRow(f"row {seq}: masked_pan is not masked (first 6 / last 4 at most): not stored")
    try:
        created = datetime.fromisoformat(b["created_at"])
        day, hour = date.fromisoformat(b["created_at"][:10]), int(b["created_at"][11:13])
    except ValueError:
        raise BadRow(f"row {seq}: created_at is not an ISO 8601 time") from None
    if created.tzinfo is None:
        raise BadRow(f"row {seq}: created_at has no UTC offset")
    return (
        terminal_id,
        row_id,
        seq,
        b["kind"],
        b["method"],
        b["entry_mode"],
        b["amount"],
        b["currency"],
        b["status"],
        b["stan"],
        b["masked_pan"],
        b["response_code"],
        b["auth_code"],
        b["rrn"],
        b["note"],
        b["merchant_id"],
        created,
        b["created_at"],
        day,
        hour,
        b["updated_at"],
        b["original_id"],
        b["batch"],
        b["provider"],
        b["order_no"],
        b["wallet_trade_no"],
        b["payer"],
        b["card_token"],
        b["operator"],
        bool(b["chip_swiped"]),
        b["cvm"],
        b["app_label"],
    )


class ReplacedJournal(OfficeError):
    """The terminal sends from another journal than the one the back office has its rows from (409): its storage
    was replaced, and its new rows would take the old ones' ids. Nothing is stored or acknowledged until the
    owner takes the new journal (`countertop office terminal ID --new-journal`)."""


async def store(conn: Any, batch: Batch) -> list[Resend]:
    """Store a checked batch, note the rows set aside and the terminal's contact, in one transaction (psycopg
    AsyncConnection); the rows set aside the owner has asked for again, for the answer. The terminal's row is locked
    first, so two requests of one terminal (a retry racing the request it repeats) are stored one after the other.
    ReplacedJournal, storing nothing, for another journal."""
    async with conn.transaction():
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT journal_id, id_offset, seq_offset, batch_offset, EXISTS (SELECT 1 FROM set_aside_rows a"
                " WHERE a.terminal_id = t.terminal_id AND a.superseded_seq IS NULL AND a.seq > t.seq_offset)"
                " FROM terminals t WHERE terminal_id = %s FOR UPDATE",
                (batch.terminal_id,),
            )
            known, ids, seqs, batches, open_rows = await cur.fetchone()
            if batch.journal is not None and known is None:
                await cur.execute(
                    "UPDATE terminals SET journal_id = %s WHERE terminal_id = %s", (batch.journal, batch.terminal_id)
                )
            elif batch.journal is not None and known != batch.journal:
                raise ReplacedJournal(
                    f"terminal {batch.terminal_id} sends from a new journal ({batch.journal}, the books hold"
                    f" {known}'s rows): its storage was replaced? Take it with: countertop office terminal"
                    f" {batch.terminal_id} --new-journal"
                )
            if batch.txns:
                await cur.executemany(_TXN_UPSERT, [_shifted_txn(t, ids, seqs, batches) for t in batch.txns])
            if batch.lines:
                await cur.executemany(_LINE_INSERT, [(t, i + ids, n, v + seqs, *r) for t, i, n, v, *r in batch.lines])
            if batch.signatures:
                await cur.executemany(
                    _SIGNATURE_UPSERT, [(t, i + ids, v + seqs, *r) for t, i, v, *r in batch.signatures]
                )
            if batch.settlements:
                await cur.executemany(
                    _SETTLEMENT_UPSERT, [(t, b + batches, v + seqs, *r) for t, b, v, *r in batch.settlements]
                )
            if batch.set_aside:
                await cur.executemany(
                    "INSERT INTO set_aside_rows (terminal_id, seq, entity, row_id, line_no, reason)"
                    " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [
                        (batch.terminal_id, r.seq + seqs, r.entity, r.row_id, r.line_no, r.reason)
                        for r in batch.set_aside
                    ],
                )
                last = batch.set_aside[-1]
                await cur.execute(
                    "UPDATE terminals SET last_refusal = %s, last_refusal_at = now() WHERE terminal_id = %s",
                    (last.reason, batch.terminal_id),
                )
            else:  # taken whole: a refusal before this one is over (the rows set aside stay counted)
                await cur.execute("UPDATE terminals SET last_refusal = '' WHERE terminal_id = %s", (batch.terminal_id,))
            await cur.execute(
                "UPDATE terminals SET last_contact = now(), queue_depth = GREATEST(%s - %s, 0),"
                " last_seq = GREATEST(last_seq, %s), received = received + %s WHERE terminal_id = %s",
                (batch.queue_depth, batch.count, batch.last_seq, batch.count, batch.terminal_id),
            )
            if not (open_rows or batch.set_aside):  # nothing set aside to follow: the usual request
                return []
            return await _asked_again(cur, batch, seqs)


async def _asked_again(cur: Any, batch: Batch, seqs: int) -> list[Resend]:
    """The set-aside rows' bookkeeping for one request (in its transaction): a row set aside is over once a later
    version of it arrives (stored, or set aside again: that one is then the row not taken); the versions the
    terminal says its journal lacks are noted; what the owner asked for again and is still not here is returned
    (sales before their lines and signatures).
    Only the terminal's present journal's rows (above its version offset) can be asked for."""
    if batch.arrived:
        await cur.execute(
            "WITH x AS (SELECT * FROM unnest(%(e)s::text[], %(r)s::bigint[], %(l)s::integer[], %(s)s::bigint[])"
            " AS x (entity, row_id, line_no, seq)),"
            " newer AS (SELECT a.seq AS aside, MAX(x.seq) AS seq FROM set_aside_rows a JOIN x ON x.entity = a.entity"
            " AND x.row_id = a.row_id AND (x.line_no = a.line_no OR a.line_no = 0) AND x.seq > a.seq"
            " WHERE a.terminal_id = %(t)s AND a.superseded_seq IS NULL AND a.seq > %(o)s GROUP BY a.seq)"
            " UPDATE set_aside_rows a SET superseded_seq = newer.seq FROM newer"
            " WHERE a.terminal_id = %(t)s AND a.seq = newer.aside",
            {
                "e": [a[0] for a in batch.arrived],
                "r": [a[1] for a in batch.arrived],
                "l": [a[2] for a in batch.arrived],
                "s": [a[3] + seqs for a in batch.arrived],
                "t": batch.terminal_id,
                "o": seqs,
            },
        )
    if batch.missing:
        await cur.execute(
            "UPDATE set_aside_rows SET missing_at = now() WHERE terminal_id = %s AND seq = ANY(%s) AND seq > %s"
            " AND superseded_seq IS NULL AND retry_asked_at IS NOT NULL",
            (batch.terminal_id, [m + seqs for m in batch.missing], seqs),
        )
    await cur.execute(
        "SELECT seq - %(o)s, entity, row_id, line_no FROM set_aside_rows WHERE terminal_id = %(t)s"
        " AND superseded_seq IS NULL AND seq > %(o)s AND retry_asked_at IS NOT NULL"
        " AND (missing_at IS NULL OR missing_at < retry_asked_at) ORDER BY entity <> 'transaction', seq LIMIT %(n)s",
        {"t": batch.terminal_id, "o": seqs, "n": MAX_RESEND},
    )
    return [Resend(*row) for row in await cur.fetchall()]


def _shifted_txn(row: tuple[Any, ...], ids: int, seqs: int, batches: int) -> tuple[Any, ...]:
    """A transaction row with a taken-over journal's offsets: its id, version, original id and batch moved past
    the rows the books hold from the terminal's earlier journals."""
    shifted = list(row)
    shifted[1] += ids
    shifted[2] += seqs
    shifted[_BATCH] += batches
    if shifted[_ORIGINAL] is not None:
        shifted[_ORIGINAL] += ids
    return tuple(shifted)


async def refused(conn: Any, terminal_id: str, reason: str) -> None:
    """Note a refused request on the terminal's row: it was heard from, and why nothing was stored."""
    await conn.execute(
        "UPDATE terminals SET last_contact = now(), last_refusal = %s, last_refusal_at = now() WHERE terminal_id = %s",
        (reason[:300], terminal_id),
    )
