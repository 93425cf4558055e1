"""Reports from the journal: totals, the split by payment method, sales by hour, and a CSV export.

The journal does the counting (SQL aggregation over indexed columns); this module only lays the
figures out as text, CSV or JSON. Amounts stay integer minor units until they are printed.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from firmware.core.money import Currency, format_minor
from firmware.core.receipt import text_width

METHOD_NAMES = {
    ("card", "swipe"): "card swipe",
    ("card", "contactless"): "card contactless",
    ("card", "chip"): "card chip",
    ("card", "fallback"): "card fallback (chip failed)",
    ("wallet", "qr"): "wallet (code shown)",
    ("wallet", "code"): "wallet (code scanned)",
    ("card", "code"): "wallet (code scanned, acquirer)",  # a payment code the acquirer took in place of a card
}
# Each wallet counted apart in the split.
PROVIDER_NAMES = {"alipay": "alipay", "wechat": "wechat pay", "unionpay": "unionpay", "aggregator": "aggregator"}


@dataclass(frozen=True)
class BatchTotals:
    """What a batch moved through the acquirer: sales are debits to cardholders, refunds credits."""

    debits: int = 0
    debit_amount: int = 0
    credits: int = 0
    credit_amount: int = 0

    @property
    def net(self) -> int:
        """Debits less credits, minor units."""
        return self.debit_amount - self.credit_amount


@dataclass(frozen=True)
class MethodLine:
    """One payment method's approved sales."""

    method: str
    count: int
    amount: int
    share_permille: int  # of the sales amount, in tenths of a percent (integer arithmetic)


@dataclass(frozen=True)
class ItemLine:
    """One item's sold quantity and revenue in the period."""

    plu: str
    name: str
    quantity: int
    amount: int


@dataclass(frozen=True)
class OperatorLine:
    """What one operator rang up: approved sales and refunds ("" is nobody signed in)."""

    operator: str
    sales_count: int
    sales_amount: int
    refund_count: int
    refund_amount: int


@dataclass(frozen=True)
class Report:
    """Everything a period report says."""

    first_day: str
    last_day: str
    currency: str
    sales_count: int
    sales_amount: int
    refund_count: int
    refund_amount: int
    void_count: int
    void_amount: int
    declined_count: int
    methods: list[MethodLine] = field(default_factory=list)
    by_hour: dict[int, tuple[int, int]] = field(default_factory=dict)  # hour -> (count, amount)
    items_by_quantity: list[ItemLine] = field(default_factory=list)
    items_by_revenue: list[ItemLine] = field(default_factory=list)
    operators: list[OperatorLine] = field(default_factory=list)

    @property
    def net_amount(self) -> int:
        """Sales less refunds (voided sales are not in the sales)."""
        return self.sales_amount - self.refund_amount


def method_name(method: str, entry: str, provider: str = "") -> str:
    """A line of the method split: "card swipe", "alipay (code shown)", "wechat pay (code scanned)"."""
    name = METHOD_NAMES.get((method, entry), f"{method} {entry}")
    if provider and (method == "wallet" or entry == "code"):  # each wallet apart (through the acquirer too)
        name = name.replace("wallet", PROVIDER_NAMES.get(provider, provider), 1)
    return name


def build(figures: dict[str, Any], first: date, last: date, currency: str) -> Report:
    """Turn the journal's aggregates into a Report (pure)."""
    sales_amount = figures["sales"][1]
    methods = []
    for (method, entry, provider), (count, amount) in sorted(figures["methods"].items()):
        share = (amount * 1000 + sales_amount // 2) // sales_amount if sales_amount else 0
        name = method_name(method, entry, provider)
        methods.append(MethodLine(name, count, amount, share))
    best = figures.get("best", {})
    operators = [OperatorLine(op, *v) for op, v in sorted(figures.get("operators", {}).items())]
    (sales_count, _), (refund_count, refund_amount), (void_count, void_amount) = (
        figures["sales"],
        figures["refunds"],
        figures["voids"],
    )
    return Report(
        first.isoformat(),
        last.isoformat(),
        currency,
        sales_count,
        sales_amount,
        refund_count,
        refund_amount,
        void_count,
        void_amount,
        figures["declined"],
        methods,
        dict(figures["by_hour"]),
        [ItemLine(*x) for x in best.get("by_quantity", [])],
        [ItemLine(*x) for x in best.get("by_revenue", [])],
        operators,
    )


def _fit(text: str, width: int) -> str:
    """`text` cut to `width` printed columns (CJK characters take two)."""
    out, used = "", 0
    for ch in text:
        w = text_width(ch)
        if used + w > width:
            break
        out, used = out + ch, used + w
    return out


def as_text(r: Report, cur: Currency, width: int = 32, top: int = 5) -> list[str]:
    """The report as printed lines: 32 columns for 58 mm paper, 48 for 80 mm (CJK counted double)."""

    def money(v: int) -> str:
        return f"{cur.alpha} {format_minor(v, cur)}"

    def pair(label: str, value: str) -> list[str]:
        if text_width(label) + text_width(value) + 1 > width:
            return [_fit(label, width), value.rjust(width)]
        return [label + " " * (width - text_width(label) - text_width(value)) + value]

    period = r.first_day if r.first_day == r.last_day else f"{r.first_day}..{r.last_day}"
    lines = [
        "SALES REPORT 销售报表".center(width - 4),
        *pair("PERIOD", period),
        "-" * width,
        *pair(f"SALES ({r.sales_count})", money(r.sales_amount)),
        *pair(f"REFUNDS ({r.refund_count})", "-" + money(r.refund_amount)),
        *pair("NET", money(r.net_amount)),
        *pair(f"VOIDED ({r.void_count})", money(r.void_amount)),
        *pair("DECLINED", str(r.declined_count)),
        "-" * width,
        "BY PAYMENT METHOD",
    ]
    for m in r.methods:
        lines += pair(
            f" {m.method} ({m.count})", f"{m.share_permille // 10}.{m.share_permille % 10}%  {money(m.amount)}"
        )
    if r.by_hour:
        lines += ["-" * width, "BY HOUR"]
        for hour, (count, amount) in sorted(r.by_hour.items()):
            lines += pair(f" {hour:02d}:00 ({count})", money(amount))

    def quantity(i: ItemLine) -> str:
        return f"x{i.quantity}"

    def revenue(i: ItemLine) -> str:
        return money(i.amount)

    for title, items, value in (
        ("BEST SELLERS BY QUANTITY", r.items_by_quantity, quantity),
        ("BEST SELLERS BY REVENUE", r.items_by_revenue, revenue),
    ):
        if items:
            lines += ["-" * width, title]
            for item in items[:top]:
                shown = value(item)
                lines += pair(" " + _fit(item.name, width - text_width(shown) - 2), shown)
    if any(o.operator for o in r.operators):
        lines += ["-" * width, "BY OPERATOR"]
        for o in r.operators:
            lines += pair(f" {o.operator or 'not signed in'} ({o.sales_count})", money(o.sales_amount))
            if o.refund_count:
                lines += pair(f"   refunds ({o.refund_count})", "-" + money(o.refund_amount))
    return lines


def rules_from(config: Any) -> AnomalyRules:
    """Anomaly thresholds from a Config: its [reports] section, its CVM limit and largest amount."""
    start, _, end = config.reports.opening_hours.partition("-")
    return AnomalyRules(
        config.reports.refund_share_percent,
        config.reports.declines_per_card,
        (int(start), int(end)),
        (config.contactless.cvm_limit, config.terminal.max_amount),
        config.reports.just_under_count,
        config.reports.fallback_per_card,
    )


def as_json(r: Report, found: list[Anomaly] | None = None) -> str:
    """The report as JSON (amounts in minor units)."""
    data = asdict(r)
    data["anomalies"] = [asdict(a) for a in found or []]
    data["net_amount"] = r.net_amount
    data["by_hour"] = {f"{h:02d}": {"count": c, "amount": a} for h, (c, a) in sorted(r.by_hour.items())}
    data["operators"] = {o.operator: {k: v for k, v in asdict(o).items() if k != "operator"} for o in r.operators}
    return json.dumps(data, ensure_ascii=False, indent=2)


EXPORT_COLUMNS = (
    "id",
    "created_at",
    "kind",
    "method",
    "entry_mode",
    "status",
    "amount",
    "currency",
    "stan",
    "reference",
    "masked_pan",
    "auth_code",
    "rrn",
    "provider",
    "wallet_trade_no",
    "original_id",
    "response_code",
)


# What a spreadsheet takes for the start of a formula (OWASP, "CSV injection"), with the full-width forms
# that an input method types and some spreadsheets accept too.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_DECIMAL = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def spreadsheet_safe(value: Any) -> Any:
    """A CSV cell no spreadsheet will run: text that starts like a formula gets a leading single quote
    (OWASP's advice, so `=cmd|' /C calc'!A0` shows as text); numbers, and decimals like -12.50, stay as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _DECIMAL.fullmatch(value):
        return "'" + value
    return value


class _SafeWriter:
    """csv.writer whose every cell goes through spreadsheet_safe."""

    def __init__(self, out: io.StringIO) -> None:
        self._writer = csv.writer(out)

    def writerow(self, row: Sequence[Any]) -> None:
        self._writer.writerow([spreadsheet_safe(v) for v in row])


def as_csv(rows: list[dict[str, Any]]) -> str:
    """One line per transaction with a header; amounts as decimals in their currency; text cells escaped
    against formula injection (spreadsheet_safe)."""
    out = io.StringIO()
    writer = _SafeWriter(out)
    writer.writerow(EXPORT_COLUMNS)
    for row in rows:
        cur = Currency.of(row["currency"])
        values = {**row, "amount": format_minor(row["amount"], cur), "reference": row.get("order_no", "")}
        writer.writerow(["" if values.get(c) is None else values.get(c, "") for c in EXPORT_COLUMNS])
    return out.getvalue()


def report_csv(r: Report, cur: Currency) -> str:
    """The report's figures as CSV (one line per figure), for spreadsheets; text cells escaped (spreadsheet_safe)."""
    out = io.StringIO()
    writer = _SafeWriter(out)
    writer.writerow(["figure", "count", "amount", "currency"])
    writer.writerow(["sales", r.sales_count, format_minor(r.sales_amount, cur), cur.alpha])
    writer.writerow(["refunds", r.refund_count, format_minor(r.refund_amount, cur), cur.alpha])
    writer.writerow(["net", "", format_minor(r.net_amount, cur), cur.alpha])
    writer.writerow(["voided", r.void_count, format_minor(r.void_amount, cur), cur.alpha])
    writer.writerow(["declined", r.declined_count, "", ""])
    for m in r.methods:
        writer.writerow([f"method: {m.method}", m.count, format_minor(m.amount, cur), cur.alpha])
    for hour, (count, amount) in sorted(r.by_hour.items()):
        writer.writerow([f"hour {hour:02d}", count, format_minor(amount, cur), cur.alpha])
    for item in r.items_by_revenue:
        writer.writerow([f"item {item.plu} {item.name}", item.quantity, format_minor(item.amount, cur), cur.alpha])
    for o in r.operators:
        writer.writerow(
            [f"operator {o.operator or '-'}: sales", o.sales_count, format_minor(o.sales_amount, cur), cur.alpha]
        )
        writer.writerow(
            [f"operator {o.operator or '-'}: refunds", o.refund_count, format_minor(o.refund_amount, cur), cur.alpha]
        )
    return out.getvalue()


def settlement_text(
    batch: int, mine: BatchTotals, host: BatchTotals | None, in_balance: bool, cur: Currency, width: int = 32
) -> list[str]:
    """The settlement slip: the terminal's totals and, when they differ, the host's beside them."""

    def money(v: int) -> str:
        return format_minor(v, cur)

    lines = [
        "SETTLEMENT 结算".center(width - 2),
        f"BATCH {batch:06d}",
        "-" * width,
        f"{'':12}{'TERMINAL':>10}{'HOST':>10}"[:width],
    ]
    host = host or BatchTotals()
    for label, a, b in (
        ("SALES #", str(mine.debits), str(host.debits)),
        ("SALES", money(mine.debit_amount), money(host.debit_amount)),
        ("REFUNDS #", str(mine.credits), str(host.credits)),
        ("REFUNDS", money(mine.credit_amount), money(host.credit_amount)),
        ("NET", money(mine.net), money(host.net)),
    ):
        lines.append(f"{label:<12}{a:>10}{b:>10}"[:width])
    lines += ["-" * width, ("IN BALANCE 平账" if in_balance else "OUT OF BALANCE 不平").center(width - 2)]
    return lines


@dataclass(frozen=True)
class AnomalyRules:
    """Thresholds for the records worth a second look."""

    refund_share_percent: int = 20  # refunds above this share of the sales amount
    declines_per_card: int = 3  # this many declines of one card (by token) in the period
    opening: tuple[int, int] = (8, 22)  # sales outside [open, close) local hours
    limits: tuple[int, ...] = ()  # amounts a fraudster stays just under (CVM limit, max amount)
    just_under_count: int = 3  # this many sales within 5 % below one of the limits
    fallback_per_card: int = 2  # this many swipes of one chip card's stripe (fallback)
    fallbacks: int = 1  # this many sales by the stripe after the chip failed (entry mode 801), whatever the card


@dataclass(frozen=True)
class Anomaly:
    """One rule that fired, with the transactions behind it (journal ids)."""

    rule: str
    detail: str
    ids: tuple[int, ...]


def anomalies(rows: list[dict[str, Any]], rules: AnomalyRules, cur: Currency) -> list[Anomaly]:
    """Apply the rules to the period's sales and refunds (pure)."""
    found: list[Anomaly] = []
    sales = [r for r in rows if r["kind"] == "sale" and r["status"] == "approved"]
    refunds = [r for r in rows if r["kind"] == "refund" and r["status"] == "approved"]
    sold, refunded = sum(r["amount"] for r in sales), sum(r["amount"] for r in refunds)
    if refunds and refunded * 100 > rules.refund_share_percent * sold:
        share = refunded * 100 // sold if sold else 100
        found.append(
            Anomaly(
                "refund share",
                f"refunds {format_minor(refunded, cur)} are {share}% of sales",
                tuple(r["id"] for r in refunds),
            )
        )
    declines: dict[str, list[int]] = {}
    for r in rows:
        if r["kind"] == "sale" and r["status"] == "declined" and r["card_token"]:
            declines.setdefault(r["card_token"], []).append(r["id"])
    for ids in declines.values():
        if len(ids) >= rules.declines_per_card:
            masked = next(r["masked_pan"] for r in rows if r["id"] == ids[0])
            found.append(Anomaly("declines on one card", f"{len(ids)} declines of {masked}", tuple(ids)))
    start, end = rules.opening
    late = [r["id"] for r in sales if not start <= int(r["created_at"][11:13]) < end]
    if late:
        found.append(
            Anomaly("outside opening hours", f"{len(late)} sales outside {start:02d}:00-{end:02d}:00", tuple(late))
        )
    swiped: dict[str, list[int]] = {}
    for r in rows:
        if r["kind"] == "sale" and r.get("chip_swiped") and r["card_token"]:
            swiped.setdefault(r["card_token"], []).append(r["id"])
    for ids in swiped.values():
        if len(ids) >= rules.fallback_per_card:
            masked = next(r["masked_pan"] for r in rows if r["id"] == ids[0])
            found.append(
                Anomaly(
                    "fallback swipes of a chip card",
                    f"{len(ids)} swipes of chip card {masked} (a copied stripe?)",
                    tuple(ids),
                )
            )
    fell_back = [r for r in rows if r["kind"] == "sale" and r["entry_mode"] == "fallback"]
    if fell_back and len(fell_back) >= rules.fallbacks:
        cards = sum(1 for r in rows if r["kind"] == "sale" and r["method"] == "card" and r["status"] != "failed")
        approved = sum(1 for r in fell_back if r["status"] == "approved")
        found.append(
            Anomaly(
                "fallbacks from chip",
                f"{len(fell_back)} of {cards} card sales sent by stripe after a chip failed (801), {approved} approved",
                tuple(r["id"] for r in fell_back),
            )
        )
    cash_back = [r["id"] for r in refunds if r["method"] == "cash" and r.get("original_method") in ("card", "wallet")]
    if cash_back:
        found.append(
            Anomaly(
                "refund not to the paying card",
                f"{len(cash_back)} cash refunds of card or wallet sales",
                tuple(cash_back),
            )
        )
    for limit in rules.limits:
        near = [r["id"] for r in sales if limit * 95 // 100 <= r["amount"] < limit]
        if len(near) >= rules.just_under_count:
            found.append(
                Anomaly("just under a limit", f"{len(near)} sales just under {format_minor(limit, cur)}", tuple(near))
            )
    return found


def anomalies_text(found: list[Anomaly], width: int = 32) -> list[str]:
    """The anomalies section of a printed or text report."""
    if not found:
        return ["-" * width, "NOTHING UNUSUAL"]
    lines = ["-" * width, "WORTH A LOOK"]
    for a in found:
        lines.append(f"* {a.rule}")
        lines.append(f"  {a.detail}")
        lines.append(f"  rows {', '.join(str(i) for i in a.ids)}"[:width])
    return lines


# --- charts -----------------------------------------------------------------------------------------

CHART_BAR = (37, 99, 235)
CHART_INK = (20, 20, 20)
METHOD_COLOURS = ((37, 99, 235), (16, 185, 129), (245, 158, 11), (239, 68, 68), (139, 92, 246), (100, 116, 139))


def charts(r: Report, cur: Currency) -> dict[str, bytes]:
    """PNG charts of a report: sales by hour (bars, 0-23 h) and the payment-method split (one stacked bar with
    a legend). Labels are ASCII: Pillow's built-in font has no CJK glyphs."""
    from PIL import Image, ImageDraw  # deferred: only the report command draws

    out: dict[str, bytes] = {}
    width, height, left, bottom, top = 720, 360, 60, 40, 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((left, 12), f"Sales by hour, {r.first_day}..{r.last_day} ({cur.alpha})", fill=CHART_INK)
    peak = max((a for _, a in r.by_hour.values()), default=0)
    plot_h, slot = height - top - bottom, (width - left - 20) // 24
    draw.line((left, height - bottom, width - 20, height - bottom), fill=CHART_INK)
    for hour in range(24):
        x = left + hour * slot
        amount = r.by_hour.get(hour, (0, 0))[1]
        if amount and peak:
            bar = max(1, amount * plot_h // peak)
            draw.rectangle((x + 3, height - bottom - bar, x + slot - 3, height - bottom - 1), fill=CHART_BAR)
        if hour % 3 == 0:
            draw.text((x + 2, height - bottom + 6), f"{hour:02d}", fill=CHART_INK)
    draw.text((4, top - 4), format_minor(peak, cur), fill=CHART_INK)
    out["sales-by-hour.png"] = _png(img)

    img = Image.new("RGB", (width, 80 + 22 * max(1, len(r.methods))), "white")
    draw = ImageDraw.Draw(img)
    draw.text((20, 12), f"Payment methods, {r.first_day}..{r.last_day} ({cur.alpha})", fill=CHART_INK)
    x, bar_w = 20, width - 40
    for i, m in enumerate(r.methods):
        span = m.amount * bar_w // r.sales_amount if r.sales_amount else 0
        colour = METHOD_COLOURS[i % len(METHOD_COLOURS)]
        draw.rectangle((x, 36, x + span, 60), fill=colour)
        x += span
        y = 72 + 22 * i
        draw.rectangle((20, y, 34, y + 14), fill=colour)
        draw.text(
            (42, y + 2),
            f"{m.method}: {m.count} sales, {format_minor(m.amount, cur)}, "
            f"{m.share_permille // 10}.{m.share_permille % 10}%",
            fill=CHART_INK,
        )
    out["method-split.png"] = _png(img)
    return out


def _png(img: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
