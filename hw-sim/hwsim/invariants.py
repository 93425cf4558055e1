"""What must hold between a terminal's journal and the world around it, whatever happened to the terminal.

Each check reads the journal file (read-only), the acquirer simulator's ledger and host log, the wallet
gateway's orders and the receipts the printer cut, and returns findings (empty when all is well):

- `journal-integrity`: the journal opens and `PRAGMA integrity_check` says ok (`integrity()` checks a
  copy of the files as a power cut left them, so the check itself recovers nothing);
- `boot`: the terminal boots again on the data the kill left (and shows its idle screen);
- `host-vs-journal`: every sale the acquirer approved and that was neither reversed nor voided is an
  approved card sale in the journal and vice versa; voids agree; refunds per sale add up on both sides;
- `wallet-vs-journal`: every order the gateway marked paid is an approved (or voided) wallet sale in the
  journal, every approved wallet sale was paid, and wallet refunds add up on both sides;
- `charged-once`: no two standing charges (acquirer approvals not undone, paid wallet orders not
  refunded in full) of the same amount — the kill harness gives every customer a distinct amount;
- `stan-unique`: among the messages the acquirer received from one terminal, a STAN repeats only when
  the same message is sent again: a reversal's retries (0400 then 0401s, same original in field 90) and
  a lost void's or refund's resends (same idempotency key in field 48) and an unanswered settlement's
  resends (same batch in field 60, same totals) keep their STAN, as firmware/host/outbox.py does; a sale
  (0200, processing code 000000) or sign-on STAN is never reused, and no two kinds of message share one;
- `ksn-unique`: no DUKPT KSN (field 53) is used for two PIN blocks;
- `receipt-truth`: no receipt says APPROVED (交易成功) for a transaction whose journal row is not approved
  (a sale later voided was approved); a receipt's trace number names its row;
- `settled`: no row stays pending, unknown or queued (checked by the caller once the terminal has had
  time to send its reversals and reconcile its wallet orders).
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import iso8583

from .acquirer import SPEC, SPEC_AES

INVARIANTS = (
    "journal-integrity",
    "boot",
    "host-vs-journal",
    "wallet-vs-journal",
    "charged-once",
    "stan-unique",
    "ksn-unique",
    "receipt-truth",
    "settled",
)
UNDECIDED = ("pending", "unknown", "queued")
_TRACE = re.compile(r"^(?:流水号 )?TRACE\s+(\d{6})\s*$", re.MULTILINE)
_KIND = re.compile(r"^(?:消费 |撤销 |退货 )?(SALE|VOID|REFUND)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Finding:
    """One broken invariant: which, and what the journal and the world said."""

    invariant: str
    detail: str


def integrity(path: Path) -> str:
    """'ok', or what is wrong, for the journal as it lies on disk (with its WAL), checked on a copy."""
    if not path.exists():
        return "ok"  # never created: nothing to be inconsistent
    with tempfile.TemporaryDirectory(prefix="hwsim-integrity-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        try:
            db = sqlite3.connect(copy)
            try:
                result = [r[0] for r in db.execute("PRAGMA integrity_check")]
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            return f"cannot open: {exc}"
    return "ok" if result == ["ok"] else "; ".join(result)[:500]


def journal_rows(path: Path) -> list[dict[str, Any]]:
    """The journal's rows with `refunded`, read on a read-only connection of its own."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM transaction_summary ORDER BY id")]
    finally:
        db.close()


def counter(path: Path, name: str) -> int | None:
    """A journal counter's value (e.g. the open batch), read-only; None when unset."""
    if not path.exists():
        return None
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        row = db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])
    except sqlite3.OperationalError:
        return None  # no counters table yet
    finally:
        db.close()


def _brief(row: dict[str, Any]) -> str:
    return (
        f"row {row['id']} {row['kind']}/{row['method']}/{row['entry_mode']} stan {row['stan']} amount "
        f"{row['amount']} status {row['status']} rc {row['response_code'] or '-'} note {row['note'][:60]!r}"
    )


def host_vs_journal(ledger: list[dict[str, Any]], rows: list[dict[str, Any]], terminal_id: str) -> list[Finding]:
    """The acquirer's approvals, voids and refunds against the journal's card rows."""
    out: list[Finding] = []
    mine = [e for e in ledger if e.get("terminal_id") == terminal_id]
    cards = {r["stan"]: r for r in rows if r["kind"] == "sale" and r["method"] == "card"}
    charged = {
        e["stan"]: e
        for e in mine
        if e["kind"] == "sale" and e["response_code"] == "00" and not e["reversed"] and not e["voided"]
    }
    recorded = {s: r for s, r in cards.items() if r["status"] == "approved"}
    for stan in sorted(set(charged) - set(recorded)):
        row = cards.get(stan)
        out.append(
            Finding(
                "host-vs-journal",
                f"the acquirer charged stan {stan} amount {charged[stan]['amount']} "
                f"(rrn {charged[stan]['rrn']}); journal: "
                f"{_brief(row) if row else 'no such sale'}",
            )
        )
    for stan in sorted(set(recorded) - set(charged)):
        entries = [e for e in mine if e["kind"] == "sale" and e["stan"] == stan]
        out.append(
            Finding(
                "host-vs-journal",
                f"journal {_brief(recorded[stan])} is approved; the acquirer: {entries or 'never saw it'}",
            )
        )
    for stan in sorted(set(charged) & set(recorded)):
        if charged[stan]["amount"] != recorded[stan]["amount"]:
            out.append(
                Finding(
                    "host-vs-journal",
                    f"stan {stan}: the acquirer charged {charged[stan]['amount']}, the "
                    f"journal approved {_brief(recorded[stan])}",
                )
            )
    voided_host = {e["stan"] for e in mine if e["kind"] == "sale" and e["voided"]}
    voided_journal = {s for s, r in cards.items() if r["status"] == "voided"}
    if voided_host != voided_journal:
        out.append(
            Finding(
                "host-vs-journal",
                f"voided at the acquirer {sorted(voided_host)}, in the journal {sorted(voided_journal)}",
            )
        )
    for row in cards.values():
        if not row["rrn"]:
            continue
        host = sum(
            e["amount"]
            for e in mine
            if e["kind"] == "refund"
            and e.get("original_rrn") == row["rrn"].rjust(12, "0")
            and e["response_code"] == "00"
        )
        journal = sum(
            r["amount"]
            for r in rows
            if r["kind"] == "refund"
            and r["method"] == "card"
            and r["original_id"] == row["id"]
            and r["status"] == "approved"
        )
        if host != journal:
            out.append(
                Finding("host-vs-journal", f"sale {_brief(row)}: the acquirer refunded {host}, the journal {journal}")
            )
    return out


def _minor(amount: str) -> int:
    return int(Decimal(amount) * 100)


def wallet_vs_journal(orders: dict[str, Any], rows: list[dict[str, Any]]) -> list[Finding]:
    """The gateway's orders against the journal's wallet rows."""
    out: list[Finding] = []
    sales = {r["order_no"]: r for r in rows if r["kind"] == "sale" and r["method"] == "wallet"}
    for no, order in orders.items():
        row = sales.get(no)
        if order.state == "paid" and (row is None or row["status"] not in ("approved", "voided")):
            out.append(
                Finding(
                    "wallet-vs-journal",
                    f"order {no} ({order.kind}, {order.amount}) is paid; journal: "
                    f"{_brief(row) if row else 'no such sale'}",
                )
            )
    for no, row in sales.items():
        order = orders.get(no)
        if row["status"] in ("approved", "voided") and (order is None or order.state != "paid"):
            out.append(
                Finding(
                    "wallet-vs-journal",
                    f"journal {_brief(row)} but the gateway says {order.state if order else 'no such order'}",
                )
            )
        elif order is not None and row["status"] in ("approved", "voided") and _minor(order.amount) != row["amount"]:
            out.append(Finding("wallet-vs-journal", f"order {no} is for {order.amount}; journal {_brief(row)}"))
        if order is not None:
            paid_back = sum(_minor(a) for a in order.refunds.values())
            journal = sum(
                r["amount"]
                for r in rows
                if r["kind"] in ("refund", "void")
                and r["method"] == "wallet"
                and r["original_id"] == row["id"]
                and r["status"] == "approved"
            )
            if paid_back != journal:
                out.append(
                    Finding(
                        "wallet-vs-journal",
                        f"order {no}: the gateway refunded {paid_back}, the journal {journal} ({_brief(row)})",
                    )
                )
    return out


def charged_once(ledger: list[dict[str, Any]], orders: dict[str, Any], terminal_id: str) -> list[Finding]:
    """Standing charges grouped by amount: each customer (a distinct amount) pays at most once."""
    charges: dict[int, list[str]] = {}
    for e in ledger:
        if (
            e.get("terminal_id") == terminal_id
            and e["kind"] == "sale"
            and e["response_code"] == "00"
            and not e["reversed"]
            and not e["voided"]
        ):
            charges.setdefault(e["amount"], []).append(f"card stan {e['stan']} rrn {e['rrn']}")
    for no, order in orders.items():
        refunded = sum(_minor(a) for a in order.refunds.values())
        if order.state == "paid" and refunded < _minor(order.amount):
            charges.setdefault(_minor(order.amount), []).append(f"wallet order {no}")
    return [
        Finding("charged-once", f"amount {amount} charged {len(what)} times: {', '.join(what)}")
        for amount, what in sorted(charges.items())
        if len(what) > 1
    ]


@dataclass
class MessageBook:
    """The acquirer's received messages, decoded once each, for the STAN and KSN rules."""

    dialect: str = "default"
    _seen: int = 0
    _by_stan: dict[tuple[str, str], list[tuple[str, tuple[str, ...]]]] = field(default_factory=dict)
    _ksns: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def feed(self, host_log: list[tuple[str, bytes]]) -> list[Finding]:
        """Take in the requests logged since the last call; returns every finding so far."""
        spec = SPEC_AES if self.dialect == "aes-dukpt" else SPEC
        for direction, raw in host_log[self._seen :]:
            self._seen += 1
            if direction != "request":
                continue
            try:
                doc, _ = iso8583.decode(raw, spec)
            except iso8583.DecodeError:
                continue  # the acquirer refused it too
            self._stan(doc)
            if "52" in doc and doc.get("53"):
                ksn = doc["53"]
                self._ksns[ksn] = self._ksns.get(ksn, 0) + 1
                if self._ksns[ksn] == 2:
                    self.findings.append(Finding("ksn-unique", f"KSN {ksn} used for two PIN blocks"))
        return list(self.findings)

    def _stan(self, doc: dict[str, str]) -> None:
        mti, stan, tid = doc.get("t", ""), doc.get("11", ""), doc.get("41", "").strip()
        if mti in ("0400", "0401"):
            identity: tuple[str, ...] = ("reversal", doc.get("90", ""), doc.get("4", ""))
        elif mti == "0200" and doc.get("3") in ("020000", "200000"):
            identity = ("follow-up", doc.get("3", ""), doc.get("48", ""), doc.get("4", ""), doc.get("90", ""))
        elif mti == "0500":  # a queued settlement is resent as it was until answered
            identity = ("settlement", doc.get("60", ""), *(doc.get(f, "") for f in ("74", "76", "86", "88")))
        else:
            identity = ("once", mti, doc.get("3", ""), doc.get("4", ""), doc.get("7", ""))
        earlier = self._by_stan.setdefault((tid, stan), [])
        if earlier and (identity[0] == "once" or any(i != identity for _, i in earlier)):
            self.findings.append(
                Finding(
                    "stan-unique",
                    f"terminal {tid} stan {stan}: {mti} {identity[1:]} after {[(m, i[1:]) for m, i in earlier]}",
                )
            )
        earlier.append((mti, identity))


def receipt_truth(receipts: Iterable[str], rows: list[dict[str, Any]]) -> list[Finding]:
    """Each receipt that says approved names (by trace number) a row that is approved (or a voided sale)."""
    out: list[Finding] = []
    by_stan: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_stan.setdefault(r["stan"], []).append(r)
    for text in receipts:
        trace, kind = _TRACE.search(text), _KIND.search(text)
        if trace is None or kind is None:
            continue  # settlement slips, reports, printed codes
        approved = "APPROVED" in text
        candidates = [r for r in by_stan.get(int(trace.group(1)), []) if r["kind"] == kind.group(1).lower()]
        if not approved:
            continue
        if not candidates:
            out.append(
                Finding(
                    "receipt-truth",
                    f"an APPROVED {kind.group(1)} receipt with trace {trace.group(1)} names no such row",
                )
            )
            continue
        row = candidates[-1]
        ok = row["status"] == "approved" or (row["kind"] == "sale" and row["status"] == "voided")
        if not ok:
            out.append(Finding("receipt-truth", f"an APPROVED {kind.group(1)} receipt for {_brief(row)}"))
    return out


def unsettled(rows: list[dict[str, Any]]) -> list[Finding]:
    """Rows still without a final outcome."""
    return [Finding("settled", f"still {r['status']}: {_brief(r)}") for r in rows if r["status"] in UNDECIDED]
