"""The screen's words in every language the terminal speaks: one catalogue, English message ids to Chinese.

As with gettext, the code says a text in English (its message id: what `en` shows) and `say` looks it up in
the language of the shop or of the sale; a template's `{fields}` are filled in after the lookup. Texts that
other parts of the terminal hand to the screen (a device's trouble, a card or host error, the journal's refusal)
are message ids too, so the flow says them in the screen's language when it shows them (`say` with no fields
also matches them against the templates, and says the fields it knows). A text nobody translated, such as an
item name, a card's label or a wallet provider's own words, is shown as it is.

Adding a text is one line in ZH_CN: `"ENGLISH AS THE CODE SAYS IT": "中文",`. Chinese lines follow the
wording of Chinese POS terminals and of this terminal's bilingual receipts (firmware/core/receipt.py), and fit
a 20-column character display (a Chinese character takes two columns; tests/test_screentext.py checks it).
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache

EN = "en"
ZH_CN = "zh-CN"
LANGUAGES = (EN, ZH_CN)

# English message id -> Simplified Chinese. Grouped by where the flow shows them; fields in braces.
ZH_CN_TEXTS: dict[str, str] = {
    # --- amount and basket (firmware/core/flow/amount.py) ---
    "ENTER AMOUNT": "请输入金额",
    "MAX DIGITS": "位数已满",
    "AMOUNT TOO LOW": "金额过小",
    "AMOUNT TOO HIGH": "金额超限",
    "CLEAR AMOUNT FIRST": "请先清除金额",
    "ENTER AMOUNT FIRST": "请先输入金额",
    "PRESS ENTER FIRST": "请先按确认键",
    "F3 ADDS AN ITEM": "按F3添加商品",
    "TOTAL {amount}": "合计 {amount}",
    "F3 ADD  ENTER PAY ({lines})": "F3添加 确认付款({lines})",
    "ITEM CODE (PLU)": "请输入商品编码",
    "{lines} LINES {amount}": "{lines}项 {amount}",
    "NO ITEM {code}": "无此商品 {code}",
    "MAX QUANTITY": "数量已满",
    "QTY {quantity}": "数量 {quantity}",
    # --- a card payment (card.py, chip.py) ---
    "TAP OR SWIPE CARD": "请挥卡或刷卡",
    "PLEASE SWIPE CARD": "请刷卡",
    "USE CHIP READER": "请插卡",
    "READ ERROR, SWIPE AGAIN": "读卡失败 请重刷",
    "READING CARD...": "读卡中...",
    "CARD {masked}": "卡号 {masked}",
    "ENTER TO GO ON": "确认键继续",
    "CANCEL TO STOP": "取消键退出",
    "ENTER PIN": "请输入密码",
    "WRONG PIN, TRY AGAIN": "密码错误 请重输",
    "PAYMENT PIN NEEDED": "请输入支付密码",
    "WRONG PIN, TAP AGAIN": "密码错误 请重新挥卡",
    "WRONG PIN": "密码错误",
    "WRONG PIN, {tries} TRIES LEFT": "密码错误 还剩{tries}次",
    "LAST PIN TRY": "密码仅剩一次机会",
    "NO PIN? PRESS ENTER": "无密码请按确认",
    "SELECT APPLICATION": "请选择应用",
    "PIN PAD ERROR": "密码键盘故障",
    "NO PIN ENTERED": "未输入密码",
    "NO CARD PRESENTED": "未检测到卡片",
    "PROCESSING...": "处理中...",
    "AUTHORIZING...": "授权中...",
    "CANCELLING...": "正在取消...",
    "APPROVED": "交易成功",
    # the cardholder's signature (电子签名)
    "SIGN ON THE SCREEN": "请在屏幕上签名",
    "ENTER OK  CLEAR REDO": "确认键完成 清除键重签",
    "PLEASE SIGN FIRST": "请先签名",
    "SIGN MERCHANT COPY": "请在商户联签名",
    "SIGNING...": "签名中...",
    "AUTH CODE {code}": "授权码 {code}",
    "DECLINED": "交易失败",
    "CODE {code}": "应答码 {code}",
    "CANCELLED": "交易已取消",
    "TIMEOUT": "操作超时",
    "NOT APPROVED": "交易未成功",
    "NOT CHARGED": "未扣款",
    "CHECK WITH HOST": "请联系银行核实",
    "NO HOST ANSWER": "主机无应答",
    "HOST NOT AVAILABLE": "无法连接主机",
    "TERMINAL ERROR": "终端故障",
    # the issuer's reasons (response codes)
    "DO NOT HONOR": "发卡行不予承兑",
    "INVALID CARD NUMBER": "无效卡号",
    "LOST CARD": "挂失卡",
    "STOLEN CARD": "被窃卡",
    "INSUFFICIENT FUNDS": "余额不足",
    "EXPIRED CARD": "过期卡",
    "NOT PERMITTED": "不允许此交易",
    "OVER LIMIT": "超出金额限制",
    "PIN TRIES EXCEEDED": "密码错误次数超限",
    "CARD AUTH FAILED": "卡片认证失败",
    "ISSUER UNAVAILABLE": "发卡行不能操作",
    "SYSTEM ERROR": "系统故障",
    # what card readers, kernels and the host link say (drivers/, firmware/core/emv/, firmware/errors.py)
    "CARD ERROR": "读卡错误",
    "CARD ERROR, TRY ANOTHER CARD": "读卡错误 请换卡",
    "CARD ERROR, REINSERT": "读卡错误 请重新插卡",
    "CARD NOT SUPPORTED": "不支持此卡",
    "CARD REMOVED": "卡已拔出",
    "CARD DECLINED": "卡片拒绝交易",
    "DECLINED BY CARD": "卡片拒绝",
    "DECLINED BY TERMINAL": "终端拒绝",
    "INSERT CARD": "请插卡",
    "PLEASE TAP AGAIN": "请重新挥卡",
    "PRESENT ONE CARD": "请只出示一张卡",
    "SEE PHONE": "请查看手机",
    "TAP NOT AVAILABLE, SWIPE": "非接不可用 请刷卡",
    "CHIP READER ERROR": "IC卡读卡器故障",
    "HOST ERROR": "主机错误",
    "BAD HOST ANSWER": "主机应答有误",
    "PARTIAL APPROVAL": "部分批准 已冲正",
    "SIGN-ON FAILED": "签到失败",
    "KEY ERROR": "密钥错误",
    "CONFIG ERROR": "配置错误",
    "DEVICE ERROR": "设备故障",
    "UPDATE REFUSED": "拒绝更新",
    "ERROR": "错误",
    "PLEASE TRY AGAIN": "请重试",
    "EARLIER MESSAGES PENDING": "有待发送的交易",
    "WILL RETRY BY ITSELF": "将自动重试",
    # --- wallets (wallet.py; firmware/core/walletorder.py, firmware/wallets/) ---
    "ALIPAY": "支付宝",
    "WECHAT PAY": "微信支付",
    "WECHAT": "微信",
    "UNIONPAY": "银联",
    "ANY WALLET": "聚合码",
    "AGGREGATOR": "聚合支付",
    "AMOUNT OVER LIMIT": "金额超限",
    "ORDER EXPIRED": "订单已过期",
    "{wallet} NOT SET UP": "未开通{wallet}",
    "CODE NOT SUPPORTED": "不支持此码",
    "PREPARING QR CODE": "正在生成二维码",
    "SCAN TO PAY  {time}": "请扫码支付 {time}",
    "F2 PRINT CODE": "F2打印二维码",
    "CODE EXPIRED, CLOSING": "二维码过期 关闭中",
    "CODE EXPIRED": "二维码已过期",
    "CLOSING ORDER...": "正在关闭订单...",
    "CONFIRM IN YOUR APP": "请在手机上确认",
    "PAID": "支付成功",
    "PAYMENT FAILED": "支付失败",
    "NOT PAID": "未支付",
    "PAYMENT UNKNOWN": "支付结果未知",
    "WALLET NOT AVAILABLE": "钱包服务不可用",
    "CHECKING WITH WALLET": "正在查询支付结果",
    "CHECKING PAYMENT": "正在查询支付结果",
    "CUSTOMER DID NOT CONFIRM": "顾客未确认支付",
    "NEVER REACHED THE WALLET": "订单未送达钱包",
    "NEVER PAID; CODE EXPIRED": "未支付 二维码已过期",
    "REFUNDED TO PAYER": "已退回付款人",
    "INSUFFICIENT BALANCE": "余额不足",
    "BALANCE PAYMENT OFF": "余额支付未开通",
    "MERCHANT BALANCE LOW": "商户余额不足",
    "ORDER CLOSED": "订单已关闭",
    "ORDER NOT CREATED": "订单未创建",
    "ORDER NOT FOUND": "订单不存在",
    "ORDER NOT PAID": "订单未支付",
    "ORDER ALREADY PAID": "订单已支付",
    "ORDERPAID": "订单已支付",  # WeChat Pay's own code, as a close that found the order paid says it
    "ORDER STATE WRONG": "订单状态有误",
    "PAYER DAILY LIMIT": "超出付款人日限额",
    "PAYER MONTHLY LIMIT": "超出付款人月限额",
    "PAYER LIMIT": "超出付款人限额",
    "PAYER ACCOUNT BLOCKED": "付款账户受限",
    "PAYER MISMATCH": "付款人不符",
    "PAYMENT CANCELLED": "支付已取消",
    "PAYMENT CODE INVALID": "付款码无效",
    "PAYMENT CODE EXPIRED": "付款码已过期",
    "PAYMENT REFUSED": "支付被拒绝",
    "REFUND AMOUNT INVALID": "退款金额有误",
    "REFUND NOT ALLOWED": "不允许退款",
    "REFUND REFUSED": "退款被拒绝",
    "REFUND ABNORMAL": "退款异常",
    "REFUND CLOSED": "退款已关闭",
    "REFUND NOT FOUND": "退款不存在",
    "NO WALLET PROVIDER": "未配置钱包",
    # --- the back office (backoffice.py; the journal, the operators, the printer) ---
    "MANAGER PIN": "请输入主管密码",
    "CASHIER SIGN-IN PIN": "收银员签到密码",
    "SIGNED IN": "签到成功",
    "ACCESS DENIED": "无权操作",
    "WRONG OPERATOR PIN": "操作员密码错误",
    "MANAGER ONLY": "仅限主管",
    "CASHIER ONLY": "仅限收银员",
    "1 VOID  2 REFUND": "1撤销  2退货",
    "3 TODAY'S REPORT": "3当日报表",
    "4 SETTLEMENT": "4结算",
    "5 REPRINT": "5重打印",
    "CANCEL TO EXIT": "按取消键退出",
    "REPORT PRINTED": "报表已打印",
    "VOID": "撤销",
    "REFUND": "退货",
    "SETTLEMENT": "结算",
    "REPRINT": "重打印",
    "TRACE NO.": "流水号",
    "TRACE NO. OR SCAN": "输入流水号或扫码",
    "ENTER ALONE: LAST": "直接确认:上一笔",
    "F2 SEARCH": "F2查找",
    "{kind} SEARCH": "{kind}查找",
    "DATE MMDD": "日期(月日MMDD)",
    "AMOUNT": "金额",
    "CARD LAST 4": "卡号后四位",
    "SEARCHING...": "查找中...",
    "{kind} {amount}": "{kind} {amount}",
    "ENTER TO CONFIRM": "按确认键继续",
    "REFUND TRACE {trace}": "退货 流水号{trace}",
    "PAID {amount}": "原金额 {amount}",
    "LEFT {amount}": "可退 {amount}",
    "AMOUNT {amount}": "金额 {amount}",
    "1 TO CARD  2 CASH": "1原路退回  2现金",
    "1 TO WALLET  2 CASH": "1原路退回  2现金",
    "MORE THAN IS LEFT": "超过可退金额",
    "PLEASE WAIT": "请稍候",
    "{kind} APPROVED": "{kind}成功",
    "{kind} DECLINED": "{kind}失败",
    "CASH REFUND": "现金退货",
    "PAY OUT FROM THE TILL": "请从钱箱付现",
    "NOT ALLOWED": "不允许此操作",
    "SEE THE JOURNAL": "请查看交易流水",
    "NOTHING SENT": "未发送",
    "NOT FOUND": "未找到",
    "SALE IS DECLINED": "原交易失败",
    "SALE IS VOIDED": "原交易已撤销",
    "SALE IS REVERSED": "原交易已冲正",
    "SALE IS PENDING": "原交易处理中",
    "SALE IS FAILED": "原交易未完成",
    "SALE IS UNKNOWN": "原交易结果未知",
    "SALE IS CANCELLED": "原交易已取消",
    "ALREADY FULLY REFUNDED": "已全额退货",
    "ALREADY REFUNDED": "已有退货",
    "ALREADY REFUNDED OR VOIDED": "已退货或已撤销",
    "REFUNDS WOULD EXCEED": "退货金额将超出原交易",
    "SALE IS NOT APPROVED": "原交易未成功",
    "VOID NOT POSSIBLE": "无法撤销",
    "SETTLED: USE REFUND": "已结算 请用退货",
    "NO SUCH SALE": "无此交易",
    "TRACE {trace} UNKNOWN": "流水号{trace}不存在",
    "REFERENCE UNKNOWN": "参考号不存在",
    "SETTLED, IN BALANCE": "结算平账",
    "OUT OF BALANCE": "结算不平",
    "SETTLEMENT FAILED": "结算失败",
    "BATCH {batch}": "批次号 {batch}",
    "QUEUED FOR PRINTER": "已排队等待打印",
    "NO RECEIPT YET": "暂无小票",
    "NO RECEIPT FOR {trace}": "无流水号{trace}的小票",
    # --- devices and the journal under any screen (firmware/shell/terminal.py, drivers/, firmware/records/) ---
    "KEYPAD DISCONNECTED": "键盘已断开",
    "CARD READER DISCONNECTED": "刷卡器已断开",
    "SCANNER DISCONNECTED": "扫码器已断开",
    "PRINTER OFFLINE": "打印机离线",
    "TOUCH SCREEN ERROR": "触摸屏故障",
    "TOUCH DISCONNECTED": "触摸屏已断开",
    "PRINTER: NO PAPER": "打印机缺纸",
    "JOURNAL ERROR": "流水记录错误",
    "JOURNAL DAMAGED": "流水记录损坏",
    "JOURNAL MISSING": "流水记录丢失",
    "DISK FULL": "存储已满",
    "DISK READ-ONLY": "存储只读",
    "DISK NOT WRITABLE": "存储不可写",
    "STORAGE ERROR": "存储错误",
    "TERMINAL STOPPED": "终端已停止",
    "SEE LOG": "请查看日志",
}


def say(language: str, msgid: str, **fields: object) -> str:
    """`msgid` in `language`, its fields filled in. With no fields, a text made elsewhere from a template
    ("TRACE 000123 UNKNOWN") is said too, its fields in the language when the catalogue knows them."""
    if fields:
        text = ZH_CN_TEXTS.get(msgid, msgid) if language == ZH_CN else msgid
        return text.format(**fields)
    if language != ZH_CN:
        return msgid
    known = ZH_CN_TEXTS.get(msgid)
    if known is not None:
        return known
    for pattern, template in _templates():
        found = pattern.fullmatch(msgid)
        if found:
            return template.format(**{k: ZH_CN_TEXTS.get(v, v) for k, v in found.groupdict().items()})
    return msgid


@cache
def _templates() -> tuple[tuple[re.Pattern[str], str], ...]:
    """The catalogue's templates as patterns whose fields each match one word ("{kind} {amount}" excluded: it
    would match any two words)."""
    out = []
    for msgid, zh in ZH_CN_TEXTS.items():
        if "{" not in msgid or msgid.startswith("{kind} {"):
            continue
        parts = re.split(r"\{(\w+)\}", msgid)
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^ ]+)" for i, p in enumerate(parts))
        out.append((re.compile(regex), zh))
    return tuple(out)


def columns(text: str) -> int:
    """How many columns `text` takes on a character display: a wide (CJK) character takes two."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def clip(text: str, width: int) -> str:
    """`text` cut to at most `width` columns."""
    used, out = 0, []
    for c in text:
        used += columns(c)
        if used > width:
            break
        out.append(c)
    return "".join(out)


def wrap(line: str, width: int) -> list[str]:
    """`line` broken at spaces into rows of at most `width` columns where its words allow (a word wider than
    the display stays whole: `fits` tells)."""
    rows: list[str] = []
    for word in line.split():
        if rows and columns(rows[-1]) + 1 + columns(word) <= width:
            rows[-1] += " " + word
        else:
            rows.append(word)
    return rows or [""]


def fits(lines: tuple[str, ...], width: int, height: int) -> str | None:
    """None when the screen fits a display of `width` columns and `height` rows once wrapped at spaces, else
    what does not fit."""
    rows = [row for line in lines for row in wrap(line, width)]
    for row in rows:
        if columns(row) > width:
            return f"{row!r} takes {columns(row)} columns, the display has {width}"
    if len(rows) > height:
        return f"{len(rows)} rows, the display has {height}: {rows}"
    return None
