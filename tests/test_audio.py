"""Spoken prompts: what each screen says (a pure table), a click and never a digit for PIN keys, and espeak-ng's
real speech for a whole sale played through the Speaker's own thread."""

from __future__ import annotations

import io
import logging
import threading
import wave

import pytest

from conftest import sim_config
from display_packages import (
    display_packages,  # noqa: F401 - a fixture
    espeak,  # noqa: F401 - a fixture
)
from drivers.audio import CLICK, Speaker, Utterance, aplay, click_wav, espeak_wav, language, spoken_amount, utterance
from firmware.config import AudioConfig
from hwsim import Simulator

PIN_PROMPT = ("CNY 12.50", "ENTER PIN")


# --- what is said: pure -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "lines", "said"),
    [
        ((), ("ENTER AMOUNT", "CNY 0.00"), None),  # the cashier's screen: an amount alone is not said
        (
            ("ENTER AMOUNT", "CNY 12.50"),
            ("CNY 12.50", "TAP OR SWIPE CARD", "F1 ALIPAY  F2 WECHAT PAY"),
            Utterance("12 yuan 50 fen, please tap, insert or swipe your card"),
        ),
        (("CNY 12.50", "TAP OR SWIPE CARD"), (*PIN_PROMPT, "_"), Utterance("12 yuan 50 fen, please enter your PIN")),
        ((*PIN_PROMPT, "_"), (*PIN_PROMPT, "*"), CLICK),  # a PIN key: a click
        ((*PIN_PROMPT, "***"), (*PIN_PROMPT, "****"), CLICK),
        ((*PIN_PROMPT, "****"), (*PIN_PROMPT, "_"), CLICK),  # CLEAR is a key too
        (("MANAGER PIN", "_"), ("MANAGER PIN", "*"), CLICK),
        ((*PIN_PROMPT, "****"), ("CNY 12.50", "PROCESSING..."), Utterance("12 yuan 50 fen, processing, please wait")),
        (
            ("CNY 12.50", "PROCESSING..."),
            ("APPROVED", "CNY 12.50", "AUTH CODE 169871"),
            Utterance("approved, 12 yuan 50 fen"),  # the auth code is not read out
        ),
        (("CNY 12.50", "PROCESSING..."), ("DECLINED", "INSUFFICIENT FUNDS"), Utterance("declined")),
        (("ENTER AMOUNT", "CNY 0.01"), ("ENTER AMOUNT", "CNY 0.12"), None),  # keying an amount: not each digit
        (("1 VOID  2 REFUND",), ("REFUND", "TRACE NO.", "000123"), None),  # nothing known: silence
        ((), ("请输入密码", "¥12.50", "_"), Utterance("请输入密码，12元50分", "zh")),
        ((), ("交易成功 APPROVED", "¥0.05"), Utterance("交易成功，0元5分", "zh")),
        ((), ("交易失败", "余额不足"), Utterance("交易失败", "zh")),
        ((), ("SCAN TO PAY 扫码支付", "CNY 8.00"), Utterance("请扫码支付，8元", "zh")),
    ],
)
def test_what_a_screen_says(previous, lines, said):
    assert utterance(previous, lines) == said


def test_amounts_are_said_in_words_of_the_currency():
    assert spoken_amount("CNY 1,234.05", "en") == "1234 yuan 5 fen"
    assert spoken_amount("￥3.00", "zh") == "3元"
    assert spoken_amount("USD 3.50", "en") == "3.50 USD"
    assert spoken_amount("ENTER PIN", "en") == spoken_amount("****", "en") == spoken_amount("1234", "en") == ""


def test_the_language_is_the_screens():
    assert language(("APPROVED", "CNY 1.00")) == "en"
    assert language(("交易成功", "CNY 1.00")) == "zh"


def test_no_pin_screen_ever_speaks_a_digit():
    """Whatever a PIN screen shows for the digits typed (it shows asterisks), nothing derived from it is said."""
    for shown in ("_", "*", "**", "***", "****", "*****", "******", "************"):
        for previous in ((), ("CNY 12.50", "TAP OR SWIPE CARD"), (*PIN_PROMPT, "_"), (*PIN_PROMPT, "**")):
            said = utterance(previous, (*PIN_PROMPT, shown))
            assert said is not None
            assert said.click or said.text == "12 yuan 50 fen, please enter your PIN"


# --- sound ----------------------------------------------------------------------------------------------------------


def frames(wav: bytes) -> tuple[int, bytes]:
    with wave.open(io.BytesIO(wav)) as w:
        return w.getframerate(), w.readframes(w.getnframes())


def test_the_click_is_short_and_not_silent():
    rate, pcm = frames(click_wav())
    assert 0 < len(pcm) // 2 < rate // 20 and any(pcm)  # under 50 ms, with sound in it


def test_espeak_speaks_english_and_chinese_to_a_wav(espeak):  # noqa: F811 - the fixture imported above
    for text, voice in (("please enter your PIN", "en-us"), ("请输入密码", "cmn")):
        rate, pcm = frames(espeak_wav(text, voice, 150))
        assert len(pcm) // 2 > rate // 2, text  # over half a second of speech
        assert max(abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)) > 1000


def test_a_missing_voice_is_logged_and_nothing_breaks(espeak, caplog):  # noqa: F811 - the fixture imported above
    played: list[bytes] = []
    speaker = Speaker(AudioConfig(enabled=True, voice_en="nosuchvoice"), play=played.append)
    try:
        with caplog.at_level(logging.ERROR, "drivers.audio"):
            speaker.heard(("APPROVED", "CNY 1.00"))
            speaker.drain()
        assert (
            "audio: cannot speak: espeak-ng failed" in caplog.text
            and "voice does not exist" in caplog.text
            and played == []
        )
    finally:
        speaker.close()


def test_aplay_plays_on_the_configured_device(display_packages):  # noqa: F811 - the fixture imported above
    aplay("null")(click_wav())  # ALSA's null device: aplay runs for real, the sound goes nowhere
    with pytest.raises(OSError, match="aplay failed"):
        aplay("no-such-device")(click_wav())


# --- a whole sale, spoken ---------------------------------------------------------------------------------------------


class Recorder:
    """The sound card for the test: keeps the WAVs the Speaker plays, and the texts it handed to espeak-ng."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.played: list[bytes] = []
        self.threads: set[str] = set()

    def synthesize(self, text: str, voice: str, speed: int) -> bytes:
        self.texts.append(text)
        return espeak_wav(text, voice, speed)

    def play(self, wav: bytes) -> None:
        self.threads.add(threading.current_thread().name)
        self.played.append(wav)


def test_a_pin_sale_is_spoken_with_clicks_for_the_pin_and_never_its_digits(espeak, tmp_path):  # noqa: F811
    pin = "1234"  # the test card's; the amount (50.50) shares no digit with it
    recorder = Recorder()
    speaker = Speaker(AudioConfig(enabled=True), play=recorder.play, synthesize=recorder.synthesize)
    try:
        with Simulator(tmp_path / "data", sim_config(host=2.0), late_delay=3.0) as sim:
            sim.display.listen(speaker.heard)
            sim.keys("5050{ENTER}")
            sim.wait_for("TAP OR SWIPE")
            sim.swipe("visa-approve")
            sim.wait_for("ENTER PIN")
            speaker.drain()  # the prompt is spoken before the customer types (stale speech would be dropped)
            sim.pin(pin)
            sim.wait_for("APPROVED")
            speaker.drain()
    finally:
        speaker.close()
    assert not any(d in text for text in recorder.texts for d in pin)
    assert recorder.texts[:2] == [
        "50 yuan 50 fen, please tap, insert or swipe your card",
        "50 yuan 50 fen, please enter your PIN",
    ]
    assert recorder.texts[-1] == "approved, 50 yuan 50 fen"
    click = click_wav()
    assert recorder.played.count(click) == len(pin)  # one click per PIN key (ENTER leaves the screen)
    assert recorder.threads == {"speaker"}  # played from the Speaker's thread, never the firmware's loop
    spoken = b"".join(frames(w)[1] for w in recorder.played if w != click)
    assert len(spoken) > 0
    for digit in pin:  # the digits' own sound is nowhere in what was played
        assert frames(espeak_wav(digit, "en-us", 150))[1][4000:8000] not in spoken
