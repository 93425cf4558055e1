"""Screenshots of every screen the flow shows, read back from the simulated framebuffer the real driver draws on:
each one is the driver's rendering of the screen at that moment, and a QR code decodes from its pixels.

Parametrised over the shop's language: LANGUAGES maps a language to the config it needs and the words each screen
is waited for by. Set COUNTERTOP_SCREENSHOTS=folder to keep the PNGs."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image, ImageChops

from conftest import sim_config
from drivers.framebuffer import Geometry, pack, unpack
from firmware.core.screentext import ZH_CN, say
from hwsim import Simulator


@dataclasses.dataclass(frozen=True)
class Language:
    """What a language changes for this test: config sections replaced (section -> {key: value}) and the text
    each screen is recognised by."""

    config: dict[str, dict[str, object]]
    marks: dict[str, str]
    waits: dict[str, str]


ENGLISH_MARKS = {
    "idle": "ENTER AMOUNT",
    "amount": "12.50",
    "card": "TAP OR SWIPE",
    "wallet": "SCAN TO PAY",
    "pin": "ENTER PIN",
    "processing": "PROCESSING",
    "approved": "APPROVED",
    "declined": "DECLINED",
    "menu": "1 VOID",
}
OTHER_MARKS = {"cancelled": "CANCELLED"}  # waited for, not photographed
# The Chinese marks are the catalogue's own texts, so a change of wording there cannot leave this test behind.
CHINESE_MARKS = {
    **{name: say(ZH_CN, mark) for name, mark in ENGLISH_MARKS.items()},
    "amount": "12.50",
    "card": say(ZH_CN, "TAP OR SWIPE CARD"),
    "wallet": say(ZH_CN, "SCAN TO PAY  {time}", time="").strip(),
    "processing": say(ZH_CN, "PROCESSING..."),
    "menu": say(ZH_CN, "1 VOID  2 REFUND"),
}
LANGUAGES = {
    "en": Language({}, ENGLISH_MARKS, OTHER_MARKS),
    "zh": Language({"terminal": {"language": ZH_CN}}, CHINESE_MARKS, {"cancelled": say(ZH_CN, "CANCELLED")}),
}


def configured(language: Language):
    cfg = sim_config(host=2.0)
    for section, values in language.config.items():
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(getattr(cfg, section), **values)})
    return cfg


def as_the_panel_shows(image: Image.Image) -> Image.Image:
    """An RGB image through the simulated 16 bpp panel's RGB565."""
    return unpack(pack(image, 16), Geometry(image.width, image.height, 16, image.width * 2))


class Shots:
    """Takes screenshots of a running simulator, checking each against the driver's rendering of the screen."""

    def __init__(self, sim: Simulator, folder: Path, language: str, marks: dict[str, str]) -> None:
        self.sim, self.folder, self.language, self.marks = sim, folder, language, marks
        self.taken: dict[str, Image.Image] = {}

    def take(self, name: str) -> Image.Image:
        self.sim.wait_for(self.marks[name])
        image = self.sim.screen_image()
        lines, qr = self.sim.display.lines, self.sim.display.qr  # the screen stays until a key or the host moves it
        assert self.marks[name] in "\n".join(lines)
        expected = as_the_panel_shows(self.sim.panel().renderer.render(lines, qr))
        assert ImageChops.difference(image, expected).getbbox() is None, f"{name}: the panel shows another screen"
        assert image.size == (480, 320) and len(image.getcolors(maxcolors=1 << 16) or ()) > 1, name
        path = self.sim.screenshot(self.folder / f"{self.language}-{name}.png")
        assert Image.open(path).size == image.size
        self.taken[name] = image
        return image


@pytest.fixture
def folder(tmp_path):
    kept = os.environ.get("COUNTERTOP_SCREENSHOTS")
    path = Path(kept) if kept else tmp_path / "screens"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.parametrize("lang", sorted(LANGUAGES))
def test_every_screen_of_the_flow_on_the_pixel_display(lang, tmp_path, folder):
    language = LANGUAGES[lang]
    with Simulator(tmp_path / "data", configured(language), late_delay=3.0) as sim:
        shots = Shots(sim, folder, lang, language.marks)
        shots.take("idle")
        sim.keys("1250")
        shots.take("amount")
        sim.keys("{ENTER}")
        shots.take("card")

        sim.keys("{F1}")  # the Alipay code
        code = shots.take("wallet")
        found = zxingcpp.read_barcodes(code)
        assert [f.text for f in found] == [sim.display_qr] and sim.display_qr
        assert found[0].format == zxingcpp.BarcodeFormat.QRCode
        sim.keys("{CANCEL}")
        sim.wait_for(language.waits["cancelled"])
        sim.keys("{ENTER}")

        sim.keys("1250{ENTER}")
        sim.wait_for(language.marks["card"])
        sim.swipe("visa-approve")
        sim.wait_for(language.marks["pin"])
        sim.keys("12")
        sim.wait_for("**")
        shots.take("pin")
        assert sim.display.lines[-1] == "**"  # the PIN screen shows asterisks, never digits
        sim.host.hold()
        try:
            sim.keys("34{ENTER}")
            shots.take("processing")
        finally:
            sim.host.release()
        shots.take("approved")
        sim.keys("{ENTER}")

        sim.wait_for(language.marks["idle"])
        sim.keys("1250{ENTER}")
        sim.wait_for(language.marks["card"])
        sim.swipe("visa-insufficient")
        sim.pin("1234")
        shots.take("declined")
        sim.keys("{ENTER}")

        sim.wait_for(language.marks["idle"])
        sim.keys("{MENU}8888{ENTER}")
        shots.take("menu")
        sim.keys("{CANCEL}")

    assert sorted(shots.taken) == sorted(language.marks)
    distinct = {shot.tobytes() for shot in shots.taken.values()}
    assert len(distinct) == len(shots.taken)  # every screen looks different
    assert sorted(p.name for p in folder.glob(f"{lang}-*.png")) == sorted(f"{lang}-{n}.png" for n in language.marks)


def test_the_console_simulator_saves_the_pixel_screen(tmp_path):
    import io

    from hwsim.console import interactive

    typed = io.StringIO("screenshot\nscreenshot\nquit\n")
    out = io.StringIO()
    assert interactive(sim_config(), tmp_path / "data", inp=typed, out=out) == 0
    first, second = tmp_path / "data" / "screen-1.png", tmp_path / "data" / "screen-2.png"
    assert f"saved {first}" in out.getvalue() and f"saved {second}" in out.getvalue()
    for path in (first, second):
        picture = Image.open(path).convert("L")
        assert picture.size == (480, 320) and picture.getextrema() == (0, 255)  # the panel's size, with ink
