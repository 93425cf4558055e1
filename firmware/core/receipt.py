"""Receipt layout (pure): a finished sale, the shop and the time in; styled lines for the printer out."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from firmware.core.events import AuthResponse
from firmware.core.flow.common import DECLINE_TEXT
from firmware.core.items import BasketLine
from firmware.core.money import Currency, format_minor

# The CVMs (core/emv/cvm.py's names) after which a receipt says the PIN was verified.
PIN_CVMS = frozenset(
    {"online_pin", "offline_pin", "offline_enciphered_pin", "offline_pin_signature", "offline_enciphered_pin_signature"}
)
# As the receipt names each wallet.
WALLET_NAMES = {
    "alipay": "ALIPAY 支付宝",
    "wechat": "WECHAT PAY 微信支付",
    "unionpay": "UNIONPAY 云闪付",
    "aggregator": "聚合支付 LAKALA",
}


@dataclass(frozen=True)
class Line:
    """One printed line: text plus alignment and emphasis."""

    text: str
    align: str = "left"  # left | center | right
    bold: bool = False
    big: bool = False  # double height and width
    image: bytes = field(default=b"", repr=False)  # a picture printed as this line instead of text (PNG)


@dataclass(frozen=True)
class Receipt:
    """The lines of one ticket, cut after the last one; `qr` is printed as a QR symbol before the cut."""

    lines: tuple[Line, ...]
    qr: str = ""


@dataclass(frozen=True)
class Header:
    """What every receipt of this terminal states about the shop and the terminal."""

    merchant_name: str
    merchant_address: str
    terminal_id: str
    merchant_id: str
    currency: Currency
    language: str = "en"  # "en" or "zh" (Chinese with English)
    width: int = 32


# label -> Chinese label, used when language is "zh"
_ZH = {
    "MERCHANT COPY": "商户存根",
    "CUSTOMER COPY": "持卡人存根",
    "SALE": "消费",
    "MERCHANT ID": "商户号",
    "TERMINAL ID": "终端号",
    "CARD": "卡号",
    "ENTRY": "输入方式",
    "SWIPE": "刷卡",
    "DATE/TIME": "日期时间",
    "TRACE": "流水号",
    "RRN": "参考号",
    "AUTH CODE": "授权码",
    "AMOUNT": "金额",
    "APPROVED": "交易成功",
    "DECLINED": "交易失败",
    "PIN VERIFIED": "密码已验证",
    "NO SIGNATURE REQUIRED": "免签名",
    "THANK YOU": "谢谢惠顾",
    "RESPONSE": "应答码",
    "VOID": "撤销",
    "REFUND": "退货",
    "ORIGINAL TRACE": "原流水号",
    "REFUND TO": "退款方式",
    "TO CARD": "原路退回",
    "TO WALLET": "原路退回",
    "CASH": "现金",
    "CASHIER SIGNATURE": "收银员签名",
    "CARDHOLDER SIGNATURE": "持卡人签名",
    "CONTACTLESS": "非接",
    "CHIP": "插卡",
    "FALLBACK": "降级刷卡",
    "APP": "应用",
    "VERIFIED ON DEVICE": "设备已验证持卡人",
    "WALLET": "支付方式",
    "REFERENCE": "交易参考号",
    "TRADE NO": "交易号",
    "PAYER": "付款账户",
    "PAYMENT CODE": "付款码",
    "QR": "顾客扫码",
    "CODE": "扫顾客付款码",
    "ITEMS": "商品",
    "TAX INCL.": "其中税额",
    "REPRINT": "重打印",
}

_ENTRY = {
    "swipe": "SWIPE",
    "fallback": "FALLBACK",  # the stripe after the chip failed (801)
    "contactless": "CONTACTLESS",
    "chip": "CHIP",
    "qr": "QR",
    "code": "CODE",
}
_ROUTE = {"card": "CARD", "wallet": "WALLET", "cash": "CASH"}


@dataclass(frozen=True)
class ReceiptFacts:
    """What a transaction's receipt states (from its journal row: see receipt_facts)."""

    amount: int
    masked_pan: str  # the card, masked (first 6 / last 4); for a wallet sale the payer's account
    entry_mode: str
    response: AuthResponse
    stan: int
    kind: str = "SALE"  # SALE | VOID | REFUND
    route: str = ""  # for refunds: CARD | CASH
    original_stan: int | None = None
    cvm: str = "online_pin"  # none | online_pin | cdcvm
    aid: str = ""  # chip data for contactless receipts
    label: str = ""
    cryptogram: str = ""  # the first cryptogram (ARQC), as sent online
    tvr: str = ""  # contact chip: TVR and TSI as the transaction ended, the final cryptogram's type and value
    tsi: str = ""
    final_ac_type: str = ""  # "TC" | "AAC"
    final_ac: str = ""
    wallet: str = ""  # wallet payments (and payment codes sent to the acquirer): provider, order and trade numbers
    payer: str = "PAYER"  # what masked_pan is under a wallet: the payer's account, or the payment code it paid
    order_no: str = ""  # a card sale's reference (printed and as a QR code), or the wallet order number
    trade_no: str = ""
    signature: bytes = field(default=b"", repr=False)  # the cardholder's signature drawn on the screen (PNG)


def receipt_facts(row: Mapping[str, Any]) -> ReceiptFacts:
    """What a receipt states, from a journal row (Journal.receipt_row: with the original's trace): the same
    receipt whether printed at the sale, after the printer came back, after a power cut, or as a reprint."""
    kind, method = str(row["kind"]).upper(), row["method"]
    approved = row["status"] in ("approved", "voided")
    code = row["response_code"] or ("00" if approved else "05")
    response = AuthResponse(row["stan"], code, row["auth_code"], row["rrn"], row["terminal_id"])
    wallet_sale = kind == "SALE" and method == "wallet"
    # A payment code the acquirer took as a card: its sale, void and refunds (to the wallet or in cash) name the
    # wallet and the code, never a card.
    by_code = row["entry_mode"] == "code" and "card" in (method, row.get("original_method"))
    provider = row["provider"] or row.get("original_provider") or ""
    wallet = WALLET_NAMES.get(provider, provider.upper()) if wallet_sale or by_code else ""
    route = _ROUTE.get(method, "") if kind == "REFUND" else ""
    return ReceiptFacts(
        amount=row["amount"],
        masked_pan=row["payer"] if wallet_sale else row["masked_pan"],
        entry_mode=_ENTRY.get(row["entry_mode"], "SWIPE") if kind == "SALE" else "SWIPE",
        response=response,
        stan=row["stan"],
        kind=kind,
        route="WALLET" if route == "CARD" and by_code else route,  # back to the code's wallet
        original_stan=row.get("original_stan"),
        cvm="wallet" if wallet_sale else (row["cvm"] or "online_pin"),
        aid=row["aid"],
        label=row["app_label"],
        cryptogram=row["cryptogram"],
        tvr=row.get("tvr") or "",
        tsi=row.get("tsi") or "",
        final_ac_type=row.get("final_ac_type") or "",
        final_ac=row.get("final_ac") or "",
        wallet=wallet,
        payer="PAYMENT CODE" if by_code else "PAYER",
        order_no=row["order_no"] if kind == "SALE" else "",
        trade_no=row["wallet_trade_no"] if wallet_sale else "",
        signature=row.get("signature") or b"",
    )


def text_width(text: str) -> int:
    """Printed width in columns: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def _label(key: str, language: str) -> str:
    return f"{_ZH[key]} {key}" if language == "zh" and key in _ZH else key


def _pair(label: str, value: str, width: int) -> list[Line]:
    """'LABEL      value' on one line, or two lines when it does not fit."""
    gap = width - text_width(label) - text_width(value)
    if gap >= 1:
        return [Line(label + " " * gap + value)]
    return [Line(label), Line(value, align="right")]


def item_lines(lines: tuple[BasketLine, ...] | list[BasketLine], header: Header) -> list[Line]:
    """A basket on paper: each item's name, then 'qty x unit price' and the line amount; the tax inside."""
    w, cur = header.width, header.currency
    out = [Line(_label("ITEMS", header.language), bold=True)]
    for ln in lines:
        out.append(Line(ln.name))
        out += _pair(f"  {ln.quantity} x {format_minor(ln.unit_price, cur)}", format_minor(ln.amount, cur), w)
    tax = sum(ln.tax for ln in lines)
    if tax:
        out += _pair(_label("TAX INCL.", header.language), format_minor(tax, cur), w)
    return out


def sale_receipt(
    sale: ReceiptFacts,
    header: Header,
    copy: str,
    printed_at: datetime,
    basket: tuple[BasketLine, ...] = (),
    reprint: bool = False,
) -> Receipt:
    """The merchant ('MERCHANT COPY') or customer ('CUSTOMER COPY') copy of a finished sale, void or refund;
    a sale keyed by PLU lists its basket; a reprint says so at the top."""
    lang, w = header.language, header.width
    resp = sale.response
    lines = [Line(header.merchant_name, align="center", bold=True)]
    if header.merchant_address:
        lines.append(Line(header.merchant_address, align="center"))
    if reprint:
        lines.append(Line(_label("REPRINT", lang), align="center", bold=True))
    lines.append(Line(_label(copy, lang), align="center"))
    lines.append(Line("-" * w))
    lines += _pair(_label("MERCHANT ID", lang), header.merchant_id, w)
    lines += _pair(_label("TERMINAL ID", lang), header.terminal_id, w)
    if sale.wallet:
        lines += _pair(_label("WALLET", lang), sale.wallet, w)
        lines += _pair(_label(sale.payer, lang), sale.masked_pan or "-", w)
    else:
        lines += _pair(_label("CARD", lang), sale.masked_pan, w)
    if sale.kind == "SALE":
        lines += _pair(_label("ENTRY", lang), _label(sale.entry_mode, lang), w)
    if sale.aid:
        lines += _pair(_label("APP", lang), sale.label or "-", w)
        lines += _pair("AID", sale.aid, w)
        lines += _pair("ARQC", sale.cryptogram, w)
        if sale.tvr:  # a contact chip: what the terminal saw and the card's last word, as EMV receipts print
            lines += _pair("TVR", sale.tvr, w)
            lines += _pair("TSI", sale.tsi, w)
        if sale.final_ac_type and sale.final_ac:
            lines += _pair(sale.final_ac_type, sale.final_ac, w)
    lines += _pair(_label("DATE/TIME", lang), printed_at.strftime("%Y-%m-%d %H:%M:%S"), w)
    lines += _pair(_label("TRACE", lang), f"{sale.stan:06d}", w)
    if sale.original_stan is not None:
        lines += _pair(_label("ORIGINAL TRACE", lang), f"{sale.original_stan:06d}", w)
    if sale.order_no:
        lines += _pair(_label("REFERENCE", lang), sale.order_no, w)
    if sale.trade_no:
        lines += _pair(_label("TRADE NO", lang), sale.trade_no, w)
    if resp.rrn:
        lines += _pair(_label("RRN", lang), resp.rrn, w)
    if resp.approved and resp.auth_code:
        lines += _pair(_label("AUTH CODE", lang), resp.auth_code, w)
    lines.append(Line("-" * w))
    if basket:
        lines += item_lines(basket, header)
        lines.append(Line("-" * w))
    lines.append(Line(_label(sale.kind, lang), bold=True, big=sale.kind != "SALE"))
    if sale.route:
        route = {"CARD": "TO CARD", "WALLET": "TO WALLET"}.get(sale.route, "CASH")
        lines += _pair(_label("REFUND TO", lang), _label(route, lang), w)
    sign = "-" if sale.kind != "SALE" else ""
    amount = f"{header.currency.alpha} {sign}{format_minor(sale.amount, header.currency)}"
    lines += _pair(_label("AMOUNT", lang), amount, w)
    lines.append(Line("-" * w))
    if resp.approved:
        lines.append(Line(_label("APPROVED", lang), align="center", bold=True, big=True))
        if sale.kind == "SALE":
            if sale.cvm in PIN_CVMS:
                lines.append(Line(_label("PIN VERIFIED", lang), align="center"))
            elif sale.cvm == "cdcvm":
                lines.append(Line(_label("VERIFIED ON DEVICE", lang), align="center"))
            if "signature" not in sale.cvm:
                lines.append(Line(_label("NO SIGNATURE REQUIRED", lang), align="center"))
            elif copy == "MERCHANT COPY" and sale.signature:  # signed on the screen: the signature printed
                lines += [Line(""), Line(_label("CARDHOLDER SIGNATURE", lang)), Line("", image=sale.signature)]
                lines.append(Line("_" * w))
            elif copy == "MERCHANT COPY":  # the chip's CVM was signature: the cashier collects it here
                lines += [Line(""), Line(_label("CARDHOLDER SIGNATURE", lang)), Line(""), Line("_" * w)]
        elif copy == "MERCHANT COPY":
            lines += [Line(""), Line(_label("CASHIER SIGNATURE", lang)), Line(""), Line("_" * w)]
    else:
        lines.append(Line(_label("DECLINED", lang), align="center", bold=True, big=True))
        reason = DECLINE_TEXT.get(resp.response_code, "")
        lines += _pair(_label("RESPONSE", lang), f"{resp.response_code} {reason}".strip(), w)
    lines.append(Line(_label("THANK YOU", lang), align="center"))
    return Receipt(tuple(lines), qr=sale.order_no)
