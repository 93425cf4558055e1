"""A pixel display on a Linux framebuffer (/dev/fbN: HDMI/DSI panels, SPI TFTs through fbtft/tinydrm): each screen
drawn with Pillow (a CJK font, the amount large, the QR code as real pixels) and written as RGB565 or XRGB8888."""

from __future__ import annotations

import fcntl
import logging
import mmap
import os
import re
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFont

from drivers.display import Display, Strokes, qr_symbol
from firmware.config import DisplayConfig
from firmware.errors import DeviceError

log = logging.getLogger(__name__)

SYSFS_GRAPHICS = Path("/sys/class/graphics")
DEFAULT_FONT = DisplayConfig.font  # Debian fonts-wqy-microhei
ROTATIONS = (0, 90, 180, 270)
FBIOGET_VSCREENINFO = 0x4600  # linux/fb.h
_VSCREENINFO_SIZE = 160  # sizeof(struct fb_var_screeninfo): 40 __u32
INK = (0, 0, 0)  # a signature's strokes
QUIET_ZONE = 4  # modules of white around a QR code (ISO/IEC 18004)
BACKGROUND, INK, BAND, BAND_INK = (255, 255, 255), (0, 0, 0), (24, 48, 96), (255, 255, 255)
# A line that is only an amount ("CNY 12.50", "¥12.50", "12.50 CNY"): drawn large.
_AMOUNT = re.compile(r"(?:[A-Z]{3} ?|[¥￥$€£] ?)-?[0-9][0-9,]*(?:\.[0-9]+)?|-?[0-9][0-9,]*\.[0-9]+(?: [A-Z]{3})?")
_FONT_STEP = 0.85  # a line too wide for its font is tried again this much smaller


@dataclass(frozen=True)
class Geometry:
    """A framebuffer's visible size in pixels, bits per pixel, bytes per row (the kernel's stride), and whether
    its pixels hold blue in the high bits and red in the low ones (a BGR panel)."""

    width: int
    height: int
    bpp: int
    stride: int
    bgr: bool = False

    @property
    def bytes(self) -> int:
        return self.stride * self.height


@dataclass(frozen=True)
class ScreenInfo:
    """What FBIOGET_VSCREENINFO tells that sysfs does not: the visible resolution (the virtual one can be taller,
    for panning) and where red and blue sit in a pixel."""

    xres: int
    yres: int
    red_offset: int
    blue_offset: int


def parse_screeninfo(raw: bytes) -> ScreenInfo:
    """The start of `struct fb_var_screeninfo` (linux/fb.h, all __u32): xres, yres, xres_virtual, yres_virtual,
    xoffset, yoffset, bits_per_pixel, grayscale, then red, green, blue as {offset, length, msb_right}."""
    fields = struct.unpack_from("=17I", raw)
    return ScreenInfo(xres=fields[0], yres=fields[1], red_offset=fields[8], blue_offset=fields[14])


def kernel_screeninfo(device: str | Path) -> ScreenInfo | None:
    """The kernel's FBIOGET_VSCREENINFO answer for `device`, or None where it has none (a file standing in for a
    framebuffer, a device that cannot be opened: opening it to draw says why)."""
    try:
        fd = os.open(device, os.O_RDONLY)
    except OSError:
        return None
    try:
        return parse_screeninfo(fcntl.ioctl(fd, FBIOGET_VSCREENINFO, bytes(_VSCREENINFO_SIZE)))
    except OSError:
        return None
    finally:
        os.close(fd)


def read_geometry(device: str | Path, sysfs: Path = SYSFS_GRAPHICS, size: tuple[int, int] | None = None) -> Geometry:
    """The geometry of `device`: bits per pixel, stride and virtual size from sysfs (`<sysfs>/fbN/{bits_per_pixel,
    stride,virtual_size}`), the visible size and colour order from FBIOGET_VSCREENINFO where the device answers it;
    `size` overrides the visible size."""
    node = sysfs / Path(device).name
    try:
        vw, vh = (int(x) for x in (node / "virtual_size").read_text().strip().split(","))
        bpp = int((node / "bits_per_pixel").read_text())
        stride = int((node / "stride").read_text())
    except (OSError, ValueError) as exc:
        raise DeviceError(f"display: cannot read the geometry of {device} from {node}: {exc}") from exc
    return fit(str(device), (vw, vh), bpp, stride, kernel_screeninfo(device), size)


def fit(
    device: str, virtual: tuple[int, int], bpp: int, stride: int, info: ScreenInfo | None, size: tuple[int, int] | None
) -> Geometry:
    """The geometry to draw in, from what sysfs and the kernel said; refuses what cannot be drawn."""
    if bpp not in (16, 32):
        raise DeviceError(f"display: {device} has {bpp} bits per pixel; only 16 (RGB565) and 32 (XRGB8888) are drawn")
    vw, vh = virtual
    width, height = size or ((info.xres, info.yres) if info else virtual)
    if not (0 < width <= vw and 0 < height <= vh) or stride < width * bpp // 8:
        raise DeviceError(f"display: {width}x{height} does not fit {device} ({vw}x{vh}, stride {stride})")
    return Geometry(width, height, bpp, stride, bgr=info is not None and info.red_offset < info.blue_offset)


def pack(image: Image.Image, bpp: int, bgr: bool = False) -> bytes:
    """An RGB image as framebuffer pixels, row after row: 16 bpp is RGB565 little-endian (R in the top five bits),
    32 bpp XRGB8888 little-endian (bytes B, G, R, X); `bgr` swaps red and blue (BGR565, XBGR8888)."""
    r, g, b = image.split()
    if bgr:
        r, b = b, r
    if bpp == 32:
        return (Image.merge("RGB", (r, g, b)) if bgr else image).tobytes("raw", "BGRX")
    # RGB565 LE: low byte GGGBBBBB, high byte RRRRRGGG; the parts of each byte never overlap, so adding is OR.
    high = ImageChops.add(r.point(lambda v: v & 0xF8), g.point(lambda v: v >> 5))
    low = ImageChops.add(g.point(lambda v: (v & 0x1C) << 3), b.point(lambda v: v >> 3))
    return Image.merge("LA", (low, high)).tobytes()


def unpack(data: bytes, geometry: Geometry) -> Image.Image:
    """Framebuffer pixels (with the kernel's stride) as an RGB image: what the panel shows."""
    size, stride = (geometry.width, geometry.height), geometry.stride
    if geometry.bpp == 32:
        raw = "RGBX" if geometry.bgr else "BGRX"
    else:
        raw = "RGB;16" if geometry.bgr else "BGR;16"  # Pillow's names for BGR565 and RGB565, little-endian
    return Image.frombuffer("RGB", size, data, "raw", raw, stride, 1).convert("RGB")  # raw RGBX gives four bands


class Framebuffer:
    """A framebuffer device (or any file laid out like one) mapped into memory."""

    def __init__(self, device: str | Path, geometry: Geometry) -> None:
        self.device, self.geometry = str(device), geometry
        try:
            fd = os.open(self.device, os.O_RDWR)
        except OSError as exc:
            raise DeviceError(f"display: cannot open {device}: {exc.strerror}") from exc
        try:
            self._map = mmap.mmap(fd, geometry.bytes, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except (OSError, ValueError) as exc:
            raise DeviceError(f"display: cannot map {geometry.bytes} bytes of {device}: {exc}") from exc
        finally:
            os.close(fd)

    def write(self, image: Image.Image) -> None:
        """Put an RGB image of the framebuffer's size on screen."""
        g = self.geometry
        data, row = pack(image, g.bpp, g.bgr), g.width * g.bpp // 8
        if row == g.stride:
            self._map[: len(data)] = data
            return
        for y in range(g.height):
            self._map[y * g.stride : y * g.stride + row] = data[y * row : (y + 1) * row]

    def read(self) -> Image.Image:
        """What the framebuffer holds now, as an RGB image."""
        return unpack(self._map[: self.geometry.bytes], self.geometry)

    def close(self) -> None:
        self._map.close()


class Fonts:
    """One TrueType/OpenType font (a CJK one: wqy-microhei, Noto CJK) at the sizes asked for, loaded once each;
    without that font file, Pillow's own font, which has no CJK glyphs (said once in the log)."""

    def __init__(self, path: str | Path = DEFAULT_FONT) -> None:
        self.path = str(path)
        self.cjk = Path(self.path).is_file()
        if not self.cjk:
            log.warning(
                "display: font %s not found (Debian: apt-get install fonts-wqy-microhei); using Pillow's built-in "
                "font, which draws Chinese as empty boxes",
                self.path,
            )
        self._sizes: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}

    def at(self, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        """The font at `size` pixels."""
        font = self._sizes.get(size)
        if font is None:
            try:
                font = ImageFont.truetype(self.path, size) if self.cjk else ImageFont.load_default(size)
            except OSError as exc:
                raise DeviceError(f"display: cannot load the font {self.path}: {exc}") from exc
            self._sizes[size] = font
        return font


def qr_image(payload: str) -> Image.Image:
    """The QR code for `payload`, one pixel per module, with its quiet zone (mode "L", black on white)."""
    matrix = qr_symbol(payload).matrix
    n = len(matrix) + 2 * QUIET_ZONE
    pixels = bytearray(b"\xff" * (n * n))
    for y, row in enumerate(matrix, QUIET_ZONE):
        start = y * n + QUIET_ZONE
        pixels[start : start + len(row)] = bytes(0 if dark else 255 for dark in row)
    return Image.frombytes("L", (n, n), bytes(pixels))


class Renderer:
    """Lays out a screen on a canvas: the first line a title band (unless it is the amount), a line that is only
    an amount large, the rest centred below; a QR code (or another figure, such as a signature pad) beside the
    text on a wide screen and under it on a tall one, a QR code scaled by a whole number of pixels per module."""

    def __init__(self, size: tuple[int, int], fonts: Fonts) -> None:
        self.size, self.fonts = size, fonts
        w, h = size
        unit = min(h, w * 3 // 4)  # type sizes follow the shorter side (a 4:3 canvas's height)
        self.title_px, self.text_px, self.amount_px = max(12, unit // 10), max(12, unit // 11), max(18, unit // 5)

    def _has_title(self, lines: tuple[str, ...]) -> bool:
        return bool(lines) and not _AMOUNT.fullmatch(lines[0])  # an amount first stays large, with no band

    def _rows(self, lines: tuple[str, ...]) -> list[tuple[str, int, int]]:
        """The lines under the title band: (text, font size, row height) each."""
        body = lines[1:] if self._has_title(lines) else lines
        sizes = [self.amount_px if _AMOUNT.fullmatch(line) else self.text_px for line in body]
        return [(line, px, int(px * 1.4)) for line, px in zip(body, sizes, strict=True)]

    def _top(self, lines: tuple[str, ...]) -> int:
        return (self.title_px * 2 if self._has_title(lines) else 0) + self.text_px // 2

    def figure_box(self, lines: tuple[str, ...]) -> tuple[int, int, int, int]:
        """Where a figure goes (left, top, right, bottom) on a screen of `lines`: on a wide screen a square on
        the right under the title, on a tall one the space under the text."""
        w, h = self.size
        if w > h:
            side = min(h - (self.title_px * 2 if self._has_title(lines) else 0), w * 3 // 5)
            return w - side, h - side, w, h
        top = self._top(lines) + sum(height for _, _, height in self._rows(lines))
        side = max(min(w, h - top), 0)
        return (w - side) // 2, h - side, (w + side) // 2, h

    def render(self, lines: tuple[str, ...], qr: str = "", figure: Image.Image | None = None) -> Image.Image:
        """The screen as an RGB image of the canvas size; `figure` is drawn where a QR code would be."""
        w, h = self.size
        image = Image.new("RGB", self.size, BACKGROUND)
        draw = ImageDraw.Draw(image)
        if qr:
            figure = qr_image(qr)
        box = self.figure_box(lines) if figure is not None else None
        text_right = box[0] if box is not None and w > h else w
        if self._has_title(lines):
            band = self.title_px * 2
            draw.rectangle((0, 0, w, band - 1), fill=BAND)
            self._line(draw, lines[0], self.title_px, (0, 0, w, band), BAND_INK)
        y = self._top(lines)
        for line, px, height in self._rows(lines):
            self._line(draw, line, px, (0, y, text_right, y + height), INK)
            y += height
        if figure is not None and box is not None:
            self._figure(image, figure, box, crisp=bool(qr))
        return image

    def _line(self, draw: ImageDraw.ImageDraw, text: str, px: int, box: tuple[int, int, int, int], ink: tuple) -> None:
        """One line centred in `box`, made smaller until it fits the box's width."""
        left, top, right, bottom = box
        room = right - left - 8
        font = self.fonts.at(px)
        while draw.textlength(text, font=font) > room and px > 10:
            px = int(px * _FONT_STEP)
            font = self.fonts.at(px)
        x = left + (right - left) // 2
        draw.text((x, (top + bottom) // 2), text, font=font, fill=ink, anchor="mm")

    @staticmethod
    def _figure(image: Image.Image, figure: Image.Image, box: tuple[int, int, int, int], crisp: bool) -> None:
        """Paste `figure` into `box`: a QR code scaled by the largest whole number of pixels per module that fits
        (every module the same size, the quiet zone kept), any other figure scaled to fit."""
        left, top, right, bottom = box
        side = min(right - left, bottom - top)
        if crisp:
            scale = side // figure.width
            if scale < 2:
                log.warning(
                    "display: QR code of %d modules gets %d px per module: too small to scan", figure.width, scale
                )
            scaled = figure.resize((figure.width * max(scale, 1),) * 2, Image.Resampling.NEAREST).convert("RGB")
        else:
            scaled = figure.copy()
            scaled.thumbnail((right - left, bottom - top))
            scaled = scaled.convert("RGB")
        image.paste(scaled, (left + (right - left - scaled.width) // 2, top + (bottom - top - scaled.height) // 2))


def rotate(image: Image.Image, rotation: int) -> Image.Image:
    """The upright picture turned `rotation` degrees clockwise, as it goes into a panel mounted that way."""
    turn = {0: None, 90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}
    step = turn[rotation]
    return image if step is None else image.transpose(step)


def upright(image: Image.Image, rotation: int) -> Image.Image:
    """A panel's picture turned back: what a customer sees on a panel mounted `rotation` degrees clockwise."""
    return rotate(image, (360 - rotation) % 360)


class FramebufferDisplay(Display):
    """A Display drawn on a framebuffer by its own thread: `show` returns at once, the thread draws the newest
    screen (a screen equal to the one drawn is not drawn again)."""

    def __init__(
        self, framebuffer: Framebuffer, fonts: Fonts, rotation: int = 0, width: int = 20, name: str = "display"
    ) -> None:
        super().__init__(width)
        if rotation not in ROTATIONS:
            raise DeviceError(f"display: rotation must be one of {ROTATIONS}, got {rotation}")
        self.framebuffer, self.rotation = framebuffer, rotation
        g = framebuffer.geometry
        canvas = (g.height, g.width) if rotation in (90, 270) else (g.width, g.height)
        self.renderer = Renderer(canvas, fonts)
        self.draws = 0  # screens drawn (a screen shown again unchanged is not drawn)
        self._wanted: tuple[tuple[str, ...], str, Strokes] | None = None
        self._drawn: tuple[tuple[str, ...], str, Strokes] | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def show(self, lines: tuple[str, ...], qr: str = "", strokes: Strokes = ()) -> None:
        super().show(lines, qr, strokes)
        with self._cond:
            self._wanted = (self.lines, self.qr, self.strokes)
            self._cond.notify_all()

    def settle(self, timeout: float = 5.0) -> bool:
        """Wait until the screen last shown is on the framebuffer; False if it is not after `timeout` s."""
        with self._cond:
            return self._cond.wait_for(lambda: self._wanted == self._drawn or self._closed, timeout)

    def screenshot(self) -> Image.Image:
        """What the framebuffer holds, turned upright (as the customer sees it), once the last screen is drawn."""
        self.settle()
        return upright(self.framebuffer.read(), self.rotation)

    def close(self) -> None:
        """Stop drawing and unmap the framebuffer."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(5)
        self.framebuffer.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or self._wanted != self._drawn)
                if self._closed:
                    return
                wanted = self._wanted
            if wanted is not None:
                self._draw(*wanted)
            with self._cond:
                self._drawn = wanted
                self._cond.notify_all()

    def _draw(self, lines: tuple[str, ...], qr: str, strokes: Strokes) -> None:
        try:
            picture = self.renderer.render(lines, qr)
            if strokes:  # a signature being drawn: the ink over the screen, in the screen's own pixels
                ink = ImageDraw.Draw(picture)
                for stroke in strokes:
                    if len(stroke) == 1:
                        ink.point(stroke, fill=INK)
                    else:
                        ink.line(stroke, fill=INK, width=3, joint="curve")
            picture = rotate(picture, self.rotation)
            self.framebuffer.write(picture)
            self.draws += 1
        except (OSError, ValueError, DeviceError) as exc:
            log.error("display: cannot draw the screen on %s: %s", self.framebuffer.device, exc)
        except Exception:  # the drawing thread must outlive a bad screen: the next one may draw
            log.exception("display: drawing a screen failed")


def open_display(cfg: DisplayConfig, sysfs: Path = SYSFS_GRAPHICS) -> FramebufferDisplay:
    """The framebuffer display `[display]` describes: its device, size, rotation and font."""
    geometry = read_geometry(cfg.device, sysfs, cfg.size or None)
    log.info(
        "display: %s, %dx%d at %d bpp, rotated %d",
        cfg.device,
        geometry.width,
        geometry.height,
        geometry.bpp,
        cfg.rotation,
    )
    return FramebufferDisplay(Framebuffer(cfg.device, geometry), Fonts(cfg.font), cfg.rotation, cfg.width)
