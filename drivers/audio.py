"""Spoken prompts for customers who cannot read the screen: what a screen says, in its language, spoken by
espeak-ng to the board's audio output (aplay); a neutral click for each key on a PIN screen, never the keys."""

from __future__ import annotations

import io
import logging
import math
import queue
import re
import subprocess
import threading
import wave
from collections.abc import Callable
from dataclasses import dataclass

from firmware.config import AudioConfig

log = logging.getLogger(__name__)

# What is spoken for a screen that shows a prompt: (text on screen, English, Chinese). Only these phrases and the
# amount are ever spoken; nothing else on a screen (and nothing a key typed) reaches the speech.
PHRASES: tuple[tuple[str, str, str], ...] = (
    ("ENTER PIN", "please enter your PIN", "请输入密码"),
    ("输入密码", "please enter your PIN", "请输入密码"),
    ("TAP OR SWIPE", "please tap, insert or swipe your card", "请挥卡、插卡或刷卡"),
    ("刷卡", "please tap, insert or swipe your card", "请挥卡、插卡或刷卡"),
    ("INSERT CARD", "please insert your card", "请插卡"),
    ("REMOVE CARD", "please remove your card", "请取卡"),
    ("SCAN TO PAY", "please scan the code to pay", "请扫码支付"),
    ("扫码支付", "please scan the code to pay", "请扫码支付"),
    ("PROCESSING", "processing, please wait", "正在处理，请稍候"),
    ("处理中", "processing, please wait", "正在处理，请稍候"),
    ("APPROVED", "approved", "交易成功"),
    ("交易成功", "approved", "交易成功"),
    ("DECLINED", "declined", "交易失败"),
    ("交易失败", "declined", "交易失败"),
    ("CANCELLED", "cancelled", "交易已取消"),
    ("已取消", "cancelled", "交易已取消"),
)
_AMOUNT = re.compile(r"(?:([A-Z]{3}) ?|([¥￥]) ?)(-?)([0-9][0-9,]*)(?:\.([0-9]+))?")
_MASK = re.compile(r"\*+|_")  # what a PIN screen shows for the digits typed so far
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")
_YUAN = ("CNY", "¥", "￥")


@dataclass(frozen=True)
class Utterance:
    """Something to say: a phrase in a language ("en" or "zh"), or a click (text "")."""

    text: str
    language: str = "en"

    @property
    def click(self) -> bool:
        return not self.text


CLICK = Utterance("")


def language(lines: tuple[str, ...]) -> str:
    """The screen's language: "zh" when it shows Chinese characters, else "en"."""
    return "zh" if any(_CJK.search(line) for line in lines) else "en"


def spoken_amount(line: str, lang: str) -> str:
    """An amount line said aloud ("CNY 12.50" is "12 yuan 50 fen", "12元50分"); "" if the line is not one."""
    m = _AMOUNT.fullmatch(line.strip())
    if m is None:
        return ""
    code, sign, minus, whole, cents = m[1], m[2], m[3], m[4].replace(",", ""), (m[5] or "").lstrip("0")
    if (code or sign) in _YUAN:
        if lang == "zh":
            return f"{'负' if minus else ''}{whole}元" + (f"{cents}分" if cents else "")
        return f"{'minus ' if minus else ''}{whole} yuan" + (f" {cents} fen" if cents else "")
    return f"{minus}{whole}" + (f".{m[5]}" if m[5] else "") + f" {code}"


def _prompt(lines: tuple[str, ...]) -> tuple[str, ...]:
    """The lines that make a screen what it is: without the amount and the PIN mask, which change as keys go."""
    return tuple(line for line in lines if not _AMOUNT.fullmatch(line.strip()) and not _MASK.fullmatch(line.strip()))


def _pin_screen(lines: tuple[str, ...]) -> bool:
    return any(_MASK.fullmatch(line.strip()) for line in lines) and any("PIN" in x or "密码" in x for x in lines)


def utterance(previous: tuple[str, ...], lines: tuple[str, ...]) -> Utterance | None:
    """What to say when the screen changes from `previous` to `lines`: a click when only a PIN screen's mask
    changed (a key was pressed), nothing when only the amount being keyed changed, else the screen's known
    prompts and its amount in the screen's language (None when it shows no known prompt)."""
    if _prompt(previous) == _prompt(lines) and previous:
        return CLICK if _pin_screen(lines) and _pin_screen(previous) else None
    lang = language(lines)
    parts: list[str] = []
    for line in lines:
        said = spoken_amount(line, lang)
        if said:
            parts.append(said)
            continue
        for shown, en, zh in PHRASES:
            phrase = zh if lang == "zh" else en
            if shown in line and phrase not in parts:
                parts.append(phrase)
                break
    if not any(phrase in parts for _, en, zh in PHRASES for phrase in (en, zh)):
        return None  # an amount alone (the cashier keying it) is not said
    return Utterance(("，" if lang == "zh" else ", ").join(parts), lang)


def espeak_wav(text: str, voice: str, speed: int) -> bytes:
    """`text` spoken by espeak-ng, as a WAV file's bytes."""
    done = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "--stdout", text], capture_output=True, timeout=30, check=False
    )
    if done.returncode != 0 or not done.stdout:
        raise OSError(f"espeak-ng failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def click_wav(rate: int = 22050) -> bytes:
    """A short neutral click (a 2 kHz tick fading out over 12 ms) as a WAV file's bytes."""
    n = rate * 12 // 1000
    samples = b"".join(
        int(12000 * math.exp(-i / (n / 5)) * math.sin(2 * math.pi * 2000 * i / rate)).to_bytes(2, "little", signed=True)
        for i in range(n)
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples)
    return out.getvalue()


def aplay(device: str) -> Callable[[bytes], None]:
    """A player that sends WAV bytes to ALSA's aplay (on `device`, or the default output when "")."""
    argv = ["aplay", "-q", *(["-D", device] if device else []), "-"]

    def play(wav: bytes) -> None:
        done = subprocess.run(argv, input=wav, capture_output=True, timeout=60, check=False)
        if done.returncode != 0:
            raise OSError(f"aplay failed ({done.returncode}): {done.stderr.decode(errors='replace').strip()}")

    return play


class Speaker:
    """Listens to a Display and speaks its prompts from its own thread (the firmware's loop never waits for
    sound); a screen change while earlier speech is still queued replaces that speech, clicks all play."""

    def __init__(
        self,
        cfg: AudioConfig,
        play: Callable[[bytes], None] | None = None,
        synthesize: Callable[[str, str, int], bytes] = espeak_wav,
    ) -> None:
        self.cfg = cfg
        self._play = play or aplay(cfg.device)
        self._synthesize = synthesize
        self._click = click_wav()
        self._previous: tuple[str, ...] = ()
        self._queue: queue.Queue[Utterance | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="speaker", daemon=True)
        self._thread.start()

    def heard(self, lines: tuple[str, ...]) -> None:
        """A Display listener: queue what the new screen says (called from the firmware's thread)."""
        said = utterance(self._previous, lines)
        self._previous = lines
        if said is not None:
            self._queue.put(said)

    def drain(self) -> None:
        """Wait until everything queued so far has been played (tests, shutdown)."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._say(item)
            finally:
                self._queue.task_done()

    def _say(self, item: Utterance) -> None:
        if not item.click and any(q is not None and not q.click for q in list(self._queue.queue)):
            return  # a newer screen's speech is waiting: this one is stale
        try:
            if item.click:
                self._play(self._click)
            else:
                voice = self.cfg.voice_zh if item.language == "zh" else self.cfg.voice_en
                self._play(self._synthesize(item.text, voice, self.cfg.speed))
        except (OSError, subprocess.SubprocessError) as exc:
            log.error("audio: cannot speak: %s", exc)
