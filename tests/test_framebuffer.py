"""The framebuffer display driver: pixel packing, rotation, stride, geometry from sysfs, the layout (the amount large,
the QR code in whole pixels with its quiet zone), CJK glyphs, redrawing only on change, and its config keys."""

from __future__ import annotations

import logging
import struct
import tomllib

import pytest
import zxingcpp
from PIL import Image, ImageChops, ImageFont

from conftest import SIM_TOML
from display_packages import display_packages  # noqa: F401 - a fixture
from drivers.framebuffer import (
    BAND,
    DEFAULT_FONT,
    QUIET_ZONE,
    Fonts,
    Framebuffer,
    FramebufferDisplay,
    Geometry,
    Renderer,
    ScreenInfo,
    fit,
    kernel_screeninfo,
    open_display,
    pack,
    parse_screeninfo,
    qr_image,
    read_geometry,
    rotate,
    unpack,
    upright,
)
from firmware.config import DisplayConfig, parse
from firmware.errors import ConfigError, DeviceError
from hwsim.framebuffer import SimFramebuffer

ALIPAY_URL = "https://qr.alipay.com/bax08861ybyvmxqb9ghm0005"  # the shape precreate answers


@pytest.fixture
def cjk_font(display_packages):  # noqa: F811 - the fixture imported above
    assert Fonts().cjk, f"tools/system-packages display installed no {DEFAULT_FONT}"


@pytest.fixture
def fb():
    made: list[SimFramebuffer] = []

    def make(width: int = 320, height: int = 240, bpp: int = 16, pad: int = 0) -> SimFramebuffer:
        made.append(SimFramebuffer(width, height, bpp, pad))
        return made[-1]

    yield make
    for f in made:
        f.close()


def display_on(sim_fb: SimFramebuffer, rotation: int = 0) -> FramebufferDisplay:
    cfg = DisplayConfig(kind="framebuffer", device=str(sim_fb.device), rotation=rotation, width=24)
    return open_display(cfg, sim_fb.sysfs)


def pixel(image: Image.Image, color: tuple[int, int, int]) -> tuple[int, ...]:
    """`color` as a 16 bpp panel shows it (RGB565 drops the low bits)."""
    return unpack(pack(Image.new("RGB", (1, 1), color), 16), Geometry(1, 1, 16, 2)).getpixel((0, 0))


# --- packing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("color", "rgb565", "xrgb8888"),
    [
        ((255, 0, 0), b"\x00\xf8", b"\x00\x00\xff\x00"),
        ((0, 255, 0), b"\xe0\x07", b"\x00\xff\x00\x00"),
        ((0, 0, 255), b"\x1f\x00", b"\xff\x00\x00\x00"),
        ((255, 255, 255), b"\xff\xff", b"\xff\xff\xff\x00"),
        ((0, 0, 0), b"\x00\x00", b"\x00\x00\x00\x00"),
        ((0x10, 0x20, 0x40), b"\x08\x11", b"\x40\x20\x10\x00"),  # R 00010 G 001000 B 01000 = 0x1108
        ((0x87, 0x65, 0x43), b"\x28\x83", b"\x43\x65\x87\x00"),  # R 10000 G 011001 B 01000 = 0x8328
    ],
)
def test_pixels_are_packed_as_the_panel_reads_them(color, rgb565, xrgb8888):
    image = Image.new("RGB", (2, 1), color)
    assert pack(image, 16) == rgb565 * 2
    assert pack(image, 32) == xrgb8888 * 2


def test_unpacking_gives_back_what_was_packed():
    raw = bytes(range(256)) * 4  # 512 RGB565 pixels, every byte value in both halves
    assert pack(unpack(raw, Geometry(32, 16, 16, 64)), 16) == raw
    image = Image.frombytes("RGB", (16, 16), bytes(range(256)) * 3)
    assert unpack(pack(image, 32), Geometry(16, 16, 32, 64)).tobytes() == image.tobytes()


def pixels(image: Image.Image) -> list[tuple[int, ...]]:
    return [image.getpixel((x, y)) for y in range(image.height) for x in range(image.width)]


def test_rows_keep_the_kernels_stride(fb):
    sim_fb = fb(40, 30, 16, pad=12)  # some drivers pad each row
    frame = Framebuffer(sim_fb.device, read_geometry(sim_fb.device, sim_fb.sysfs))
    image = Image.new("RGB", (40, 30), (255, 255, 255))
    image.putpixel((39, 29), (255, 0, 0))
    frame.write(image)
    raw = sim_fb.raw()
    assert raw[29 * 92 + 39 * 2 : 29 * 92 + 40 * 2] == b"\x00\xf8"  # stride 40*2+12: the last visible pixel
    assert raw[29 * 92 + 80 : 30 * 92] == bytes(12)  # the padding is left alone
    assert frame.read().tobytes() == image.tobytes()
    frame.close()


# --- rotation ------------------------------------------------------------------------------------------------------


def test_rotation_turns_the_picture_clockwise():
    a, b = (255, 0, 0), (0, 0, 255)
    image = Image.new("RGB", (2, 1))
    image.putdata([a, b])  # a on the left, b on the right
    assert pixels(rotate(image, 90)) == [a, b]  # a on top (left goes up when turned clockwise)
    assert rotate(image, 90).size == (1, 2)
    assert pixels(rotate(image, 270)) == [b, a]
    assert pixels(rotate(image, 180)) == [b, a]
    for r in (0, 90, 180, 270):
        assert pixels(upright(rotate(image, r), r)) == [a, b]


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_a_rotated_panel_gets_the_title_band_on_its_turned_top(fb, rotation):
    sim_fb = fb(320, 240, 16)
    display = display_on(sim_fb, rotation)
    try:
        display.show(("ENTER AMOUNT", "CNY 0.00"))
        assert display.settle()
        panel = display.framebuffer.read()  # as the panel holds it, not turned back
        band = pixel(panel, BAND)
        # the upright picture's top edge: at the panel's top (0), right (90), bottom (180) or left (270)
        edge = {0: (160, 2), 90: (317, 120), 180: (160, 237), 270: (2, 120)}[rotation]
        opposite = {0: (160, 237), 90: (2, 120), 180: (160, 2), 270: (317, 120)}[rotation]
        assert panel.getpixel(edge) == band and panel.getpixel(opposite) != band
        assert display.screenshot().size == ((240, 320) if rotation in (90, 270) else (320, 240))
    finally:
        display.close()


# --- geometry and errors -------------------------------------------------------------------------------------------


def test_geometry_comes_from_sysfs_and_size_can_be_overridden(fb):
    sim_fb = fb(480, 320, 32)
    assert read_geometry(sim_fb.device, sim_fb.sysfs) == Geometry(480, 320, 32, 1920)
    assert read_geometry(sim_fb.device, sim_fb.sysfs, (400, 300)) == Geometry(400, 300, 32, 1920)
    with pytest.raises(DeviceError, match="does not fit"):
        read_geometry(sim_fb.device, sim_fb.sysfs, (800, 480))


def var_screeninfo(xres: int, yres: int, vyres: int, bpp: int, red: int, blue: int) -> bytes:
    """A `struct fb_var_screeninfo` as the kernel fills it (40 __u32; only what the driver reads set)."""
    fields = [xres, yres, xres, vyres, 0, 0, bpp, 0, red, 5, 0, 5, 6, 0, blue, 5, 0] + [0] * 23
    return struct.pack("=40I", *fields)


def test_the_kernels_visible_size_and_colour_order_win_over_the_virtual_size():
    rgb = parse_screeninfo(var_screeninfo(480, 320, 640, 16, red=11, blue=0))  # panning: twice as tall
    assert rgb == ScreenInfo(xres=480, yres=320, red_offset=11, blue_offset=0)
    assert fit("/dev/fb1", (480, 640), 16, 960, rgb, None) == Geometry(480, 320, 16, 960, bgr=False)
    bgr = parse_screeninfo(var_screeninfo(320, 240, 240, 16, red=0, blue=11))
    assert fit("/dev/fb1", (320, 240), 16, 640, bgr, None).bgr
    assert fit("/dev/fb1", (480, 640), 16, 960, None, None) == Geometry(480, 640, 16, 960)  # sysfs alone
    assert fit("/dev/fb1", (480, 640), 16, 960, rgb, (400, 300)).height == 300  # [display] size wins


def test_a_file_standing_in_for_a_framebuffer_has_no_kernel_screeninfo(fb, tmp_path):
    assert kernel_screeninfo(fb().device) is None  # a regular file: the ioctl fails, sysfs is used
    assert kernel_screeninfo(tmp_path / "none") is None


@pytest.mark.parametrize("bpp", [16, 32])
def test_a_bgr_panel_gets_red_and_blue_swapped(bpp):
    image = Image.new("RGB", (1, 1), (255, 0, 0))
    assert pack(image, bpp, bgr=True) == pack(Image.new("RGB", (1, 1), (0, 0, 255)), bpp)
    back = unpack(pack(image, bpp, bgr=True), Geometry(1, 1, bpp, bpp // 8, bgr=True))
    assert back.getpixel((0, 0)) == (255, 0, 0)


def test_a_missing_or_unsupported_framebuffer_is_a_clear_error(fb, tmp_path):
    with pytest.raises(DeviceError, match="cannot read the geometry of /dev/fb7"):
        read_geometry("/dev/fb7", tmp_path)
    sim_fb = fb(320, 240, 16)
    (sim_fb.sysfs / "fb0" / "bits_per_pixel").write_text("24\n")
    with pytest.raises(DeviceError, match="24 bits per pixel; only 16"):
        read_geometry(sim_fb.device, sim_fb.sysfs)
    with pytest.raises(DeviceError, match="cannot open"):
        Framebuffer(tmp_path / "no-such-fb", Geometry(320, 240, 16, 640))


def test_a_32_bpp_panel_shows_the_screen(fb):
    sim_fb = fb(480, 320, 32)
    display = display_on(sim_fb)
    try:
        display.show(("APPROVED", "CNY 12.50"))
        shot = display.screenshot()
        expected = display.renderer.render(display.lines)
        assert ImageChops.difference(shot, expected).getbbox() is None  # XRGB8888 keeps every bit
    finally:
        display.close()


# --- redrawing -----------------------------------------------------------------------------------------------------


def test_only_a_changed_screen_is_drawn(fb):
    display = display_on(fb())
    try:
        display.show(("ENTER AMOUNT", "CNY 0.00"))
        assert display.settle()
        display.show(("ENTER AMOUNT", "CNY 0.00"))
        assert display.settle()
        assert display.draws == 1
        display.show(("ENTER AMOUNT", "CNY 0.01"))
        assert display.settle()
        assert display.draws == 2
        display.show(("ENTER AMOUNT", "CNY 0.01"), qr=ALIPAY_URL)  # the same words with a code is a change
        assert display.settle()
        assert display.draws == 3
    finally:
        display.close()


# --- layout ----------------------------------------------------------------------------------------------------------


def ink_bands(image: Image.Image) -> list[tuple[int, int]]:
    """The (top, bottom) rows of each horizontal stretch of dark pixels."""
    gray = image.convert("L")
    data, w = gray.tobytes(), gray.width
    rows = [min(data[y * w : (y + 1) * w]) < 128 for y in range(gray.height)]
    bands, start = [], None
    for y, inked in enumerate([*rows, False]):
        if inked and start is None:
            start = y
        elif not inked and start is not None:
            bands.append((start, y))
            start = None
    return bands


def test_the_amount_is_drawn_large():
    image = Renderer((480, 320), Fonts()).render(("CNY 12.50", "ENTER PIN", "**"))
    (a_top, a_bottom), (p_top, p_bottom), *_ = ink_bands(image)
    assert a_bottom - a_top > 1.5 * (p_bottom - p_top)


@pytest.mark.parametrize("size", [(480, 320), (320, 240), (240, 320), (800, 480)])
def test_the_qr_code_has_whole_pixel_modules_and_its_quiet_zone(size):
    renderer = Renderer(size, Fonts())
    lines = ("SCAN TO PAY", "CNY 12.50", "F2 PRINT CODE")
    image = renderer.render(lines, ALIPAY_URL)
    [found] = zxingcpp.read_barcodes(image)
    assert found.text == ALIPAY_URL
    modules = qr_image(ALIPAY_URL).width  # with the quiet zone
    left, top, right, bottom = renderer.figure_box(lines)
    scale = min(right - left, bottom - top) // modules
    assert scale >= 4, f"{scale} px per module on {size}"  # ~0.6 mm modules on a 3.5-inch 480x320 panel
    code = image.crop((left, top, right, bottom)).convert("L")
    dark = code.point(lambda v: 255 if v < 128 else 0).getbbox()
    assert dark is not None
    x0, y0, x1, y1 = dark
    assert x1 - x0 == y1 - y0 == (modules - 2 * QUIET_ZONE) * scale  # every module `scale` pixels
    quiet = QUIET_ZONE * scale
    around = code.crop((max(x0 - quiet, 0), max(y0 - quiet, 0), x1 + quiet, y1 + quiet))
    assert around.size == (x1 - x0 + 2 * quiet,) * 2  # the quiet zone fits in the box ...
    inner = Image.new("L", around.size, 255)
    inner.paste(code.crop(dark), (quiet, quiet))
    assert ImageChops.difference(around, inner).getbbox() is None  # ... and is all white


def test_a_long_line_is_made_smaller_to_fit():
    renderer = Renderer((320, 240), Fonts())
    image = renderer.render(("TITLE", "A VERY LONG LINE OF TEXT THAT WOULD NOT FIT"))
    gray = image.convert("L")
    assert gray.getpixel((0, 120)) == 255 and gray.getpixel((319, 120)) == 255  # both ends inside the screen


def test_another_figure_can_take_the_codes_place():
    """A later screen (a signature pad) draws its own picture where a QR code would go."""
    renderer = Renderer((480, 320), Fonts())
    figure = Image.new("RGB", (100, 100), (255, 0, 0))
    image = renderer.render(("SIGN HERE",), figure=figure)
    left, top, right, bottom = renderer.figure_box(("SIGN HERE",))
    assert image.getpixel(((left + right) // 2, (top + bottom) // 2)) == (255, 0, 0)


# --- fonts -----------------------------------------------------------------------------------------------------------


def glyph(font: ImageFont.FreeTypeFont | ImageFont.ImageFont, char: str) -> bytes:
    return bytes(font.getmask(char))


def test_chinese_is_drawn_with_real_glyphs_not_boxes(cjk_font):
    font = Fonts().at(32)
    notdef = glyph(font, "\U000f0000")  # a private-use code point no font has: its .notdef box
    for char in "请输入密码交易成功扫码支付":
        mask = glyph(font, char)
        assert any(mask) and mask != notdef, char


def test_a_chinese_screen_renders_through_the_driver(fb, cjk_font):
    display = display_on(fb(480, 320, 16))
    try:
        display.show(("交易成功 APPROVED", "¥12.50", "请取走卡片"))
        shot = display.screenshot()
        assert len(ink_bands(shot)) >= 2  # the amount and the prompt below the band
        band = shot.crop((0, 0, 480, display.renderer.title_px * 2))
        assert len(band.getcolors(maxcolors=4096) or ()) > 2  # white glyphs on the band's colour
    finally:
        display.close()


def test_a_missing_font_is_said_and_the_screen_still_draws(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "drivers.framebuffer"):
        fonts = Fonts(tmp_path / "no-such-font.ttc")
    assert not fonts.cjk
    assert "no-such-font.ttc not found" in caplog.text and "fonts-wqy-microhei" in caplog.text
    image = Renderer((320, 240), fonts).render(("ENTER AMOUNT", "CNY 0.00"))
    assert len(ink_bands(image)) >= 1


# --- config ----------------------------------------------------------------------------------------------------------


def config(extra: str):
    """config/sim.toml with its [display] and [audio] sections replaced by `extra` (TOML)."""
    doc = tomllib.loads(SIM_TOML.read_text(encoding="utf-8"))
    doc.pop("display", None)
    doc.update(tomllib.loads(extra))
    return parse(doc, "t.toml", SIM_TOML.parent)


def test_display_config_defaults_to_the_console():
    cfg = config("")
    assert cfg.display.kind == "console" and cfg.display.device == "/dev/fb0" and cfg.display.rotation == 0
    assert cfg.display.font.endswith("wqy-microhei.ttc") and cfg.display.size is None
    assert cfg.audio.enabled is False


def test_display_config_takes_the_framebuffer_keys():
    cfg = config('[display]\nkind = "framebuffer"\ndevice = "/dev/fb1"\nsize = "320x240"\nrotation = 270\n')
    assert (cfg.display.kind, cfg.display.device, cfg.display.size, cfg.display.rotation) == (
        "framebuffer",
        "/dev/fb1",
        (320, 240),
        270,
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[display]\nkind = "lcd"', 'kind: must be "console" or "framebuffer"'),
        ("[display]\nrotation = 45", "rotation: must be 0, 90, 180 or 270"),
        ('[display]\nrotation = "90"', "rotation: expected an integer"),
        ('[display]\nsize = "480*320"', 'size: must be "WIDTHxHEIGHT" pixels'),
        ('[display]\nsize = "10x9000"', "size: 10x9000: each side must be 32 to 4096 pixels"),
        ('[display]\ndevice = ""', "device: must not be empty"),
        ('[display]\nfonts = "x"', "fonts: unknown key"),
        ('[audio]\nvoice_zh = "cmn; rm -rf"', "voice_zh: must be an espeak-ng voice name"),
        ("[audio]\nspeed = 1000", "speed: must be between 80 and 450"),
        ('[audio]\nenabled = "yes"', "enabled: expected true or false"),
    ],
)
def test_bad_display_and_audio_keys_are_named(extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("*", r"\*")):
        config(extra)


def test_run_with_a_framebuffer_that_is_not_there_says_so(tmp_path, capsys):
    from firmware.shell.cli import main

    text = SIM_TOML.read_text(encoding="utf-8")
    assert '[display]\nkind = "console"' in text and 'data_dir = "data/sim"' in text
    text = text.replace('[display]\nkind = "console"', '[display]\nkind = "framebuffer"\ndevice = "/dev/fb-none"')
    toml = tmp_path / "t.toml"
    toml.write_text(text.replace('data_dir = "data/sim"', f'data_dir = "{tmp_path / "data"}"'), encoding="utf-8")
    assert main(["run", "--config", str(toml)]) == 1
    err = capsys.readouterr().err
    assert "display: cannot read the geometry of /dev/fb-none from /sys/class/graphics/fb-none" in err
