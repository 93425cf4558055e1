"""The screen in two languages: every screen the pure flow can show, found by driving it through its states, is
said in English and in Chinese from the one catalogue and fits the display; amounts, the customer's language
key, and the card read shown to the customer (never more than the masked number)."""

from __future__ import annotations

import ast
import re
from collections import deque
from dataclasses import replace
from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.core import flow
from firmware.core.cardface import CardFace, holder_name
from firmware.core.effects import Show
from firmware.core.emv import ChipCard
from firmware.core.events import (
    AuthResponse,
    BadRead,
    CardFailed,
    CardRead,
    CashRefunded,
    CatalogueChecked,
    ChipAsks,
    ChipInserted,
    ChipRemoved,
    ChipWorking,
    DeviceTrouble,
    EncryptedPin,
    HostAnswered,
    HostFailed,
    ItemFound,
    Key,
    OperatorChecked,
    OrderShown,
    OriginalFound,
    OriginalMissing,
    OriginalSale,
    PinEntered,
    PinFailed,
    PinProgress,
    Refused,
    Reprinted,
    Scanned,
    Settled,
    Swiped,
    Tapped,
    TimerExpired,
    Touched,
    WalletConfirming,
    WalletEnded,
    WalletPaid,
)
from firmware.core.flow import IDLE, LANGUAGE_KEY, FlowConfig, Till
from firmware.core.flow.states import AwaitCard, AwaitPin, ConfirmCard, Result, State
from firmware.core.items import Item
from firmware.core.money import Currency, format_amount
from firmware.core.screentext import EN, ZH_CN, ZH_CN_TEXTS, columns, fits, say, wrap
from firmware.core.track import parse_swipe

ROOT = Path(__file__).resolve().parent.parent
WIDTH = 20  # [display] width's default: the console display's columns
# Rows a screen may take once wrapped: the console display has no limit; 10 is what a 480x320 panel shows at
# 32 pixels a row, the tallest budget this test holds every screen to (device lines under it not counted).
HEIGHT = 10

CNY = Currency.of("CNY")
PAN = "4761739001010010"
SWIPE = parse_swipe(f"%B{PAN}^smith/john q.mr^3012101000000000?;{PAN}=30121010000000000000?")
CHIP_SWIPE = parse_swipe(";6250941006528599=30122010000000000000?")  # service code 2..: has a chip


def chip_card(cvm: str, name: str = "zhang/san", label: str = "visa credit") -> ChipCard:
    return ChipCard(
        pan=PAN,
        track2=f"{PAN}D30122010000000000000",
        psn="01",
        aid="A0000000031010",
        label=label,
        cvm=cvm,
        cid=0x80,
        cryptogram="1A2B3C4D5E6F7081",
        icc={"9F26": "1A2B3C4D5E6F7081"},
        name=name,
    )


def answer(code: str) -> HostAnswered:
    return HostAnswered(AuthResponse(7, code, "123456" if code == "00" else "", "000000000007", "T1"), 7)


SALE = OriginalSale(7, 7, 1250, "476173******0010", "card", "approved", "2026-12-03T10:00:00", 1, 0)
FACE = CardFace("476173******0010", "wang/fang", "unionpay debit")

# The events the flow meets, one or two of each kind (data in lower case: upper-case ASCII left on a Chinese
# screen is then a text nobody translated). Texts other parts of the terminal send are checked on their own
# below (test_every_text_the_terminal_hands_the_screen_is_in_the_catalogue_and_fits).
EVENTS = [
    *(Key(k) for k in ("0", "1", "2", "3", "4", "5", "ENTER", "CANCEL", "CLEAR", "F1", "F2", "F3", "F4", "MENU")),
    Swiped(SWIPE),
    Swiped(CHIP_SWIPE),
    BadRead("noise"),
    Tapped("rf"),
    ChipInserted("chip"),
    CardRead(chip_card("online_pin")),
    CardRead(chip_card("none", name="", label="")),
    CardFailed("PLEASE TAP AGAIN", "moved"),
    CardFailed("DECLINED BY CARD", "aac", declined=True),
    PinProgress(4),
    PinEntered(EncryptedPin("0011223344556677", "FFFF9876543210E00001")),
    PinFailed("TERMINAL ERROR"),
    answer("00"),
    answer("51"),
    answer("55"),
    answer("Q7"),
    HostFailed("timeout", sent=True),
    HostFailed("refused", sent=False, title="HOST NOT AVAILABLE"),
    HostFailed("terminal error", sent=False),
    TimerExpired(),
    ChipAsks("choose", ("visa credit", "visa debit")),
    ChipAsks("pin", offline=True, tries_left=1, bypass=True, face=FACE),
    ChipAsks("pin", offline=False, tries_left=2, retry=True, face=FACE),
    ChipWorking("AUTHORIZING..."),
    ChipRemoved(),
    Scanned("281234567890123456"),
    Scanned("134567890123456789"),
    Scanned("not a code"),
    OrderShown("https://qr.alipay.com/bax1", "o1"),
    WalletConfirming(""),
    WalletPaid("o1", "t1", "p***", 8, "QR"),
    WalletEnded("failed", "INSUFFICIENT BALANCE"),
    WalletEnded("closed", "ORDER CLOSED"),
    WalletEnded("unknown", "TERMINAL ERROR"),
    OperatorChecked(True, "", "王芳"),
    OperatorChecked(False, "WRONG OPERATOR PIN"),
    CatalogueChecked(True),
    ItemFound("1", Item("1", "apple", 350)),
    ItemFound("1", None),
    OriginalFound(SALE, 1, "2026-12-03"),
    OriginalFound(replace(SALE, status="voided"), 1, "2026-12-03"),
    OriginalFound(replace(SALE, batch=0, method="wallet"), 1, "2026-12-03"),
    OriginalMissing("TRACE 000001 UNKNOWN"),
    Reprinted("QUEUED FOR PRINTER"),
    Settled("in_balance", "BATCH 000001"),
    Settled("failed", "EARLIER MESSAGES PENDING"),
    Refused("ALREADY REFUNDED OR VOIDED"),
    CashRefunded(9),
    DeviceTrouble("printer", "PRINTER: NO PAPER"),
    DeviceTrouble("printer", ""),
    replace(answer("00"), cvm="signature"),  # then the cardholder signs on the touch screen
    Touched(((1, 40, 60), (1, 90, 120))),
]

ALLOWED_LATIN = {"IC", "MMDD"}  # words Chinese terminals write in Latin letters (IC卡, the date's format)


def config(language: str, confirm_card: bool) -> FlowConfig:
    return FlowConfig(
        currency=CNY,
        min_amount=1,
        max_amount=99_999,
        contactless_limit=100_000,
        chip_reader=True,
        wallets=("alipay", "wechat"),
        qr_timeout=2,
        touch=(480, 320),
        language=language,
        confirm_card=confirm_card,
    )


def explore(cfg: FlowConfig, limit: int = 2500) -> tuple[set[type], list[tuple[str, State, tuple[str, ...], str]]]:
    """Every till reachable from idle with EVENTS, breadth first (at most `limit` tills): the state types met
    and each screen shown, with the event and the state that showed it and the language it is in."""
    # Tills told apart by their shape: their repr (a chip card's ICC data is a dict, so no hash) with numbers
    # (but 0) as '#', so that 10 digit keys do not make 10 amounts to explore each further.
    seen: set[str] = {shape(Till())}
    todo = deque([Till()])
    types: set[type] = {type(IDLE)}
    screens: list[tuple[str, State, tuple[str, ...], str]] = []
    while todo and len(seen) < limit:
        till = todo.popleft()
        for event in EVENTS:
            after, effects = flow.advance(till, event, cfg)
            for eff in effects:
                if isinstance(eff, Show):
                    screens.append((type(event).__name__, after.state, eff.lines, flow.spoken(after, cfg).language))
            types.add(type(after.state))
            if shape(after) not in seen:
                seen.add(shape(after))
                todo.append(after)
    return types, screens


def shape(till: Till) -> str:
    return re.sub(r"[1-9]\d*", "#", repr(till))  # 0 stays: an empty amount is not a keyed one


def untranslated(line: str) -> list[str]:
    return [w for w in re.findall(r"[A-Z]{2,}", line) if w not in ALLOWED_LATIN]


@pytest.mark.parametrize("confirm_card", [False, True])
def test_every_screen_the_flow_shows_is_said_in_both_languages_and_fits_the_display(confirm_card):
    for language in (EN, ZH_CN):
        types, screens = explore(config(language, confirm_card))
        states = set(get_args(State)) - (set() if confirm_card else {ConfirmCard})
        assert types == states, f"not reached: {states - types}"
        assert len(screens) > 1000
        assert {lang for *_, lang in screens} == {EN, ZH_CN}  # the customer's key was pressed too
        for event, state, lines, shown in screens:
            problem = fits(lines, WIDTH, HEIGHT)
            assert problem is None, f"{language}: {type(state).__name__} after {event}: {problem}"
            if shown == ZH_CN:
                left = [w for line in lines for w in untranslated(line)]
                assert not left, f"not in the catalogue: {left} on {lines} ({type(state).__name__} after {event})"
                assert PAN not in "".join(lines)


def test_a_chinese_screen_is_the_english_one_said_in_chinese():
    """The same state drawn in both languages: as many lines, and every English text has a Chinese one."""
    _, screens = explore(config(EN, False), limit=1500)
    zh = config(ZH_CN, False)
    for _, state, *_ in screens:
        if isinstance(state, Result):
            continue  # its lines were said when the outcome came, in the sale's language (amounts formatted then)
        english, chinese = flow.render(state, config(EN, False)), flow.render(state, zh)
        assert len(english) == len(chinese)
        for en_line, zh_line in zip(english, chinese, strict=True):
            if untranslated(en_line):  # a text (not a number, a name or a code)
                assert zh_line != en_line, f"{en_line!r} has no Chinese in {type(state).__name__}"


# --- texts other parts of the terminal hand the screen -------------------------------------------------------

# Calls whose string arguments are screen texts (errors, events, wallet results), and keywords that name one.
_CARRIERS = {
    "CardFailed",
    "PinFailed",
    "Refused",
    "OriginalMissing",
    "Reprinted",
    "ChipWorking",
    "WalletConfirming",
    "Settled",
    "WalletEnded",
    "OperatorChecked",
    "DeviceTrouble",
    "WalletResult",
    "end_order",
}
_KEYWORDS = {"screen", "title", "text", "notice"}
_SHAPE = re.compile(r"[A-Z][A-Z0-9 ,.:;?!/'()-]*[A-Z.)]")


def handed_texts() -> set[str]:
    """The screen texts in firmware/ and drivers/ outside the flow: constants passed to the events and errors
    that carry them, `screen` defaults of the error classes, and the tables of device and wallet texts."""
    found: set[str] = set()
    files = [*ROOT.glob("firmware/**/*.py"), *ROOT.glob("drivers/*.py")]
    for path in files:
        if "flow" in path.parts or path.name in ("cli.py", "doctor.py", "admin.py", "devicetest.py", "update.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            texts: list[ast.expr] = []
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                texts += [k.value for k in node.keywords if k.arg in _KEYWORDS]
                if name in _CARRIERS:
                    texts += node.args
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = {getattr(t, "id", getattr(t, "attr", "")) for t in targets}
                if names & {"screen", "READER_DOWN", "TWO_CARDS", "CARD_MUTE", "DEVICE_MISSING", "_PAY_FAILURES"}:
                    value = node.value
                    texts += value.values if isinstance(value, ast.Dict) else [value] if value else []
            for expr in texts:
                for part in ast.walk(expr):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        if _SHAPE.fullmatch(part.value):
                            found.add(part.value)
    return found


def test_every_text_the_terminal_hands_the_screen_is_in_the_catalogue_and_fits():
    texts = handed_texts()
    assert {"JOURNAL DAMAGED", "PRINTER: NO PAPER", "CARD NOT SUPPORTED", "KEYPAD DISCONNECTED"} <= texts
    assert {"INSUFFICIENT BALANCE", "TAP NOT AVAILABLE, SWIPE", "DECLINED BY TERMINAL"} <= texts
    missing = sorted(t for t in texts if say(ZH_CN, t) == t)
    assert not missing, f"add these to ZH_CN_TEXTS in firmware/core/screentext.py: {missing}"
    for text in texts:
        for said in (text, say(ZH_CN, text)):
            assert fits((said,), WIDTH, 3) is None, said


def test_the_catalogue_itself_fits_and_says_every_field():
    for msgid, zh in ZH_CN_TEXTS.items():
        assert set(re.findall(r"\{(\w+)\}", msgid)) == set(re.findall(r"\{(\w+)\}", zh)), msgid
        for text in (msgid, zh):
            shown = re.sub(r"\{amount\}", "¥99999.99", text)  # an amount as wide as a large one
            shown = re.sub(r"\{\w+\}", "000000", shown)  # a trace number, a code
            assert all(columns(word) <= WIDTH for word in shown.split()), text
        assert not untranslated(re.sub(r"\{\w+\}", "", zh)), zh


NOT_TEXTS = {"ENTER", "CANCEL", "CLEAR", "MENU", "IDLE", "TABLE"}  # key names; names in __all__


def test_the_flow_says_no_text_the_catalogue_does_not_have():
    """Every screen text written in firmware/core/flow/ (a string, or an f-string's words) is a message id of
    the catalogue: the English of each is there with its Chinese, nowhere else."""
    ids = {re.sub(r"\{\w+\}", "{}", msgid) for msgid in ZH_CN_TEXTS}
    missing = []
    for path in sorted((ROOT / "firmware" / "core" / "flow").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
                if re.search(r"[A-Z]{2,}", text) and text not in ids:
                    missing.append(f"{path.name}:{node.lineno} f{text!r}")
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and _SHAPE.fullmatch(node.value):
                if node.value not in ZH_CN_TEXTS and node.value not in NOT_TEXTS:
                    missing.append(f"{path.name}:{node.lineno} {node.value!r}")
    assert not missing, f"screen texts not in firmware/core/screentext.py: {missing}"


# --- say, amounts, names ------------------------------------------------------------------------------------


def test_say_looks_texts_up_fills_fields_and_knows_texts_made_from_templates():
    assert say(EN, "ENTER PIN") == "ENTER PIN" and say(ZH_CN, "ENTER PIN") == "请输入密码"
    assert say(ZH_CN, "AUTH CODE {code}", code="123456") == "授权码 123456"
    assert say(ZH_CN, "AUTH CODE 123456") == "授权码 123456"  # as an outcome line says it
    assert say(ZH_CN, "ALIPAY NOT SET UP") == "未开通支付宝"  # the field itself said in Chinese
    assert say(ZH_CN, "VOID DECLINED") == "撤销失败"
    assert say(ZH_CN, "apple x2") == "apple x2"  # an item line: not a text of the catalogue
    assert say(ZH_CN, "THE WALLET'S OWN WORDS") == "THE WALLET'S OWN WORDS"


def test_amounts_follow_the_language():
    assert format_amount(1250, CNY, EN) == "CNY 12.50"
    assert format_amount(1250, CNY, ZH_CN) == "¥12.50"
    assert format_amount(-1250, CNY, ZH_CN) == "-¥12.50"
    assert format_amount(5, CNY, ZH_CN) == "¥0.05"
    assert format_amount(1250, Currency.of("USD"), ZH_CN) == "USD 12.50"  # only the yuan has its sign
    assert format_amount(1250, Currency.of("JPY"), EN) == "JPY 1250"
    with pytest.raises(TypeError):
        format_amount(12.5, CNY, EN)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("raw", "en", "zh"),
    [
        ("SMITH/JOHN Q.MR", "JOHN Q SMITH", "SMITH JOHN Q"),
        ("ZHANG/SAN", "SAN ZHANG", "ZHANG SAN"),
        ("  LEE /  ANN  ", "ANN LEE", "LEE ANN"),
        ("CARDHOLDER", "CARDHOLDER", "CARDHOLDER"),
        (" /", "", ""),
        ("", "", ""),
    ],
)
def test_the_holders_name_reads_as_people_read_it(raw, en, zh):
    assert holder_name(raw, EN) == en and holder_name(raw, ZH_CN) == zh


def test_wrap_breaks_at_spaces_by_columns():
    assert wrap("F3 ADD  ENTER PAY (12)", 20) == ["F3 ADD ENTER PAY", "(12)"]
    assert wrap("密码错误 还剩2次", 10) == ["密码错误", "还剩2次"]
    assert fits(("一二三四五六七八九十一",), 20, 4) is not None  # 22 columns
    assert fits(("一二三四五六七八九十",), 20, 4) is None


# --- the card read, shown to the customer ----------------------------------------------------------------------


def screen_of(effects) -> tuple[str, ...]:
    return next(e.lines for e in reversed(effects) if isinstance(e, Show))


@pytest.mark.parametrize("language", [EN, ZH_CN])
def test_a_swiped_card_shows_its_number_and_name_on_the_pin_screen(language):
    till = Till(AwaitCard(1250))
    till, effects = flow.advance(till, Swiped(SWIPE), config(language, False))
    lines = screen_of(effects)
    assert isinstance(till.state, AwaitPin)
    assert "476173******0010" in lines and PAN not in "".join(lines)
    assert ("john q smith" if language == EN else "smith john q") in lines
    assert ("CNY 12.50" if language == EN else "¥12.50") in lines
    assert ("ENTER PIN" if language == EN else "请输入密码") in lines


def test_a_tapped_card_is_confirmed_first_when_the_shop_wants_it():
    cfg = config(ZH_CN, True)
    till, effects = flow.advance(Till(flow.states.ReadingCard(1250)), CardRead(chip_card("none")), cfg)
    assert isinstance(till.state, ConfirmCard)
    assert screen_of(effects) == ("¥12.50", "visa credit", "476173******0010", "zhang san", "确认键继续", "取消键退出")
    going, effects = flow.advance(till, Key("ENTER"), cfg)
    assert type(going.state).__name__ == "Authorizing" and any(type(e).__name__ == "Authorize" for e in effects)
    stopped, effects = flow.advance(till, Key("CANCEL"), cfg)
    assert stopped.state == Result(("CANCELLED", "NOT CHARGED")) and not any(
        type(e).__name__ == "Authorize" for e in effects
    )
    # a card that wants a PIN: ENTER leads to the PIN screen, which then stays short
    till, _ = flow.advance(Till(flow.states.ReadingCard(1250)), CardRead(chip_card("online_pin")), cfg)
    till, effects = flow.advance(till, Key("ENTER"), cfg)
    assert isinstance(till.state, AwaitPin) and screen_of(effects) == ("¥12.50", "请输入密码", "_")


@given(
    name=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters="^%?;"), max_size=26),
    label=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16),
    amount=st.integers(1, 99_999),
    language=st.sampled_from([EN, ZH_CN]),
    confirm=st.booleans(),
)
@settings(max_examples=150, deadline=None, derandomize=True, database=None)  # the same examples every run
def test_any_name_and_label_a_card_carries_fit_and_never_bring_the_number(name, label, amount, language, confirm):
    cfg = config(language, confirm)
    read = CardRead(chip_card("online_pin", name, label))
    till, effects = flow.advance(Till(flow.states.ReadingCard(amount)), read, cfg)
    lines = screen_of(effects)
    assert fits(lines, WIDTH, HEIGHT) is None
    assert PAN not in "".join(lines) and "476173******0010" in lines


def test_the_card_face_keeps_the_name_out_of_repr():
    face = CardFace("476173******0010", "SMITH/JOHN", "VISA")
    assert "SMITH" not in repr(face) and "SMITH" not in repr(chip_card("none", name="SMITH/JOHN"))


# --- the customer's language key ---------------------------------------------------------------------------------


def test_the_language_key_switches_the_sale_and_the_shop_language_comes_back_when_it_ends():
    cfg = config(EN, False)
    till, _ = flow.advance(Till(AwaitCard(1250)), Key(LANGUAGE_KEY), cfg)
    assert till.language == ZH_CN and till.state == AwaitCard(1250)
    till, effects = flow.advance(till, Swiped(SWIPE), cfg)
    assert "请输入密码" in screen_of(effects) and "¥12.50" in screen_of(effects)
    till, effects = flow.advance(till, Key(LANGUAGE_KEY), cfg)  # and back, at the PIN screen
    assert till.language == "" and "ENTER PIN" in screen_of(effects)
    till, _ = flow.advance(till, Key(LANGUAGE_KEY), cfg)
    till, _ = flow.advance(till, PinEntered(EncryptedPin("00", "11")), cfg)
    till, effects = flow.advance(till, answer("00"), cfg)
    assert screen_of(effects) == ("交易成功", "¥12.50", "授权码 123456") and till.language == ZH_CN
    till, effects = flow.advance(till, Key("ENTER"), cfg)  # the sale is over
    assert till == Till(IDLE) and screen_of(effects) == ("ENTER AMOUNT", "CNY 0.00")


def test_the_language_key_is_the_cashiers_sign_in_key_at_idle_and_does_nothing_mid_amount():
    cfg = config(ZH_CN, False)
    till, _ = flow.advance(Till(), Key(LANGUAGE_KEY), cfg)
    assert type(till.state).__name__ == "OperatorPin" and till.language == ""
    till, effects = flow.advance(Till(flow.states.Amount(1250)), Key(LANGUAGE_KEY), cfg)
    assert till == Till(flow.states.Amount(1250)) and effects == []


def test_device_lines_follow_the_language_on_screen():
    cfg = config(EN, False)
    till, _ = flow.advance(Till(AwaitCard(1250)), DeviceTrouble("printer", "PRINTER: NO PAPER"), cfg)
    till, effects = flow.advance(till, Key(LANGUAGE_KEY), cfg)
    assert screen_of(effects)[-1] == "打印机缺纸"


# --- configuration ---------------------------------------------------------------------------------------------


def test_the_shops_language_and_card_confirmation_are_read_and_checked(tmp_path):
    from firmware.config import load
    from firmware.errors import ConfigError

    sim_toml = ROOT / "config" / "sim.toml"
    text = sim_toml.read_text(encoding="utf-8")
    assert load(sim_toml).terminal.language == EN and not load(sim_toml).terminal.confirm_card
    anchor = 'currency = "CNY"'
    assert anchor in text
    path = tmp_path / "t.toml"
    path.write_text(text.replace(anchor, anchor + '\nlanguage = "zh-CN"\nconfirm_card = true', 1), encoding="utf-8")
    cfg = load(path)
    assert cfg.terminal.language == ZH_CN and cfg.terminal.confirm_card
    for bad, message in [
        ('language = "zh"', '[terminal] language: must be "en" (English) or "zh-CN" (Simplified Chinese)'),
        ('confirm_card = "yes"', "[terminal] confirm_card: expected"),
    ]:
        path.write_text(text.replace(anchor, anchor + "\n" + bad, 1), encoding="utf-8")
        with pytest.raises(ConfigError) as exc:
            load(path)
        assert message in str(exc.value)


def test_with_four_wallets_f4_at_the_card_screen_shows_the_fourth_code_and_switches_language_elsewhere():
    """F4 is the customer's language key, but a shop with four wallets shows the fourth one's code on F4 at the
    card screen (F1-F4 in config order): there the wallet wins; on the PIN screen F4 still switches language."""
    cfg = replace(config(EN, False), wallets=("alipay", "wechat", "unionpay", "aggregator"))
    till, _ = flow.advance(Till(state=AwaitCard(1250)), Key(LANGUAGE_KEY), cfg)
    assert till.language == "" and type(till.state).__name__ == "WalletBusy" and till.state.provider == "aggregator"
    three = replace(cfg, wallets=("alipay", "wechat", "unionpay"))
    till, _ = flow.advance(Till(state=AwaitCard(1250)), Key(LANGUAGE_KEY), three)
    assert till.language == ZH_CN and isinstance(till.state, AwaitCard)
