"""Storing what a terminal forwards: one request's snapshots in one PostgreSQL transaction, in order.

Each snapshot is keyed by terminal id + row + version (the terminal's outbox seq). A transaction row replaces the
stored one only when its version is newer, so a snapshot sent twice is stored once and a sale later voided or
refunded ends as its latest state; basket lines never change; a settlement is keyed by its batch. The terminal
is the one its token names: every row it sends must be its own, or the whole request is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from office.errors import OfficeError

ENTITIES = ("transaction", "line", "settlement")
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

TXN_COLUMNS = (
    "terminal_id, id, version, kind, method, entry_mode, amount, currency, status, stan, masked_pan, response_code,"
    " auth_code, rrn, note, merchant_id, created_at, created_local, local_day, local_hour, updated_at, original_id,"
    " batch, provider, order_no, wallet_trade_no, payer, card_token, operator, chip_swiped, cvm, app_label"
)
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
    """A request carrying rows of another terminal (403); nothing of it was stored."""


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


def _fields(seq: int, body: Any, spec: dict[str, tuple[type, ...]]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadBatch(f"row {seq}: body must be an object")
    for name, kinds in spec.items():
        value = body.get(name)
        if type(value) not in kinds or (type(value) is str and "\x00" in value):
            raise BadBatch(f"row {seq}: {name} must be {' or '.join(k.__name__ for k in kinds)}")
    return body


def check(terminal_id: str, payload: Any) -> Batch:
    """The request as rows to store; BadBatch or NotYours (naming the row and field) otherwise."""
    if not isinstance(payload, dict) or not isinstance(payload.get("rows"), list):
        raise BadBatch("the request must be an object with a list of rows")
    if payload.get("terminal_id") != terminal_id:
        raise NotYours(f"the request names terminal {str(payload.get('terminal_id'))[:20]!r}, its token {terminal_id}")
    depth = payload.get("queue_depth", 0)
    if type(depth) is not int or depth < 0:
        raise BadBatch("queue_depth must be a count")
    txns, lines, settlements, last = [], [], [], 0
    for row in payload["rows"]:
        seq = row.get("seq") if isinstance(row, dict) else None
        if type(seq) is not int or seq <= last:
            raise BadBatch(f"after row {last}: every row needs a seq, each above the one before")
        last, entity, row_id = seq, row.get("entity"), row.get("row_id")
        if entity not in ENTITIES or type(row_id) is not int:
            raise BadBatch(f"row {seq}: entity must be one of {', '.join(ENTITIES)} and row_id a number")
        if entity == "transaction":
            txns.append(_txn(terminal_id, seq, row_id, _fields(seq, row.get("body"), TXN_FIELDS)))
        elif entity == "line":
            b = _fields(seq, row.get("body"), LINE_FIELDS)
            if b["transaction_id"] != row_id or b["quantity"] <= 0:
                raise BadBatch(f"row {seq}: a line of sale {row_id} must say so, with a quantity above 0")
            lines.append(
                (terminal_id, row_id, b["line_no"], seq, b["plu"], b["name"], b["quantity"], b["unit_price"])
                + (b["tax_rate_bp"],)
            )
        else:
            b = _fields(seq, row.get("body"), SETTLEMENT_FIELDS)
            if b["batch"] != row_id:
                raise BadBatch(f"row {seq}: settlement of batch {row_id} must say so")
            settlements.append(
                (terminal_id, row_id, seq, b["created_at"], b["debits"], b["debit_amount"], b["credits"])
                + (b["credit_amount"], b["host_debits"], b["host_debit_amount"], b["host_credits"])
                + (b["host_credit_amount"], b["response_code"], bool(b["in_balance"]))
            )
    return Batch(terminal_id, depth, last, len(payload["rows"]), txns, lines, settlements)


def _txn(terminal_id: str, seq: int, row_id: int, b: dict[str, Any]) -> tuple[Any, ...]:
    if b["terminal_id"] != terminal_id:
        raise NotYours(f"row {seq} is terminal {b['terminal_id'][:20]!r}'s, the token is {terminal_id}'s")
    if b["id"] != row_id:
        raise BadBatch(f"row {seq}: transaction {row_id} must say so")
    if b["masked_pan"] and not _MASKED.fullmatch(b["masked_pan"]):
        raise BadBatch(f"row {seq}: masked_pan is not masked (first 6 / last 4 at most): refused")
    try:
        created = datetime.fromisoformat(b["created_at"])
        day, hour = date.fromisoformat(b["created_at"][:10]), int(b["created_at"][11:13])
    except ValueError:
        raise BadBatch(f"row {seq}: created_at is not an ISO 8601 time") from None
    if created.tzinfo is None:
        raise BadBatch(f"row {seq}: created_at has no UTC offset")
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


async def store(conn: Any, batch: Batch) -> None:
    """Store a checked batch and note the terminal's contact, in one transaction (psycopg AsyncConnection)."""
    async with conn.transaction():
        async with conn.cursor() as cur:
            if batch.txns:
                await cur.executemany(_TXN_UPSERT, batch.txns)
            if batch.lines:
                await cur.executemany(_LINE_INSERT, batch.lines)
            if batch.settlements:
                await cur.executemany(_SETTLEMENT_UPSERT, batch.settlements)
            await cur.execute(
                "UPDATE terminals SET last_contact = now(), queue_depth = GREATEST(%s - %s, 0),"
                " last_seq = GREATEST(last_seq, %s), received = received + %s WHERE terminal_id = %s",
                (batch.queue_depth, batch.count, batch.last_seq, batch.count, batch.terminal_id),
            )
