"""Benchmark: the framebuffer display's time per screen (layout + Pillow drawing + RGB565/XRGB8888 packing + the
write into the framebuffer) on a 480x320 panel, with and without a QR code, and resident memory with the font loaded.

    .venv/bin/python bench/display_render.py [rounds] [--bpp 16|32] [--size 480x320] [--font PATH]

Targets (issue 16): under 10 ms per screen, under 30 ms with a QR code. Each screen is drawn `rounds` times
through the real driver's draw path into a memory-backed file laid out as the framebuffer (in /dev/shm); the
median and the worst are printed. The memory figures are the process's resident set (VmRSS) at start, with the
driver imported, with the font opened at the three sizes a screen uses, and after drawing every screen.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

ALIPAY = "https://qr.alipay.com/bax08861ybyvmxqb9ghm0005"
WECHAT = "weixin://wxpay/bizpayurl?pr=AbCdEfGhIjK"
SCREENS: dict[str, tuple[tuple[str, ...], str]] = {
    "idle": (("ENTER AMOUNT", "CNY 0.00"), ""),
    "card": (("CNY 12.50", "TAP OR SWIPE CARD", "F1 ALIPAY  F2 WECHAT PAY"), ""),
    "pin": (("CNY 12.50", "ENTER PIN", "****"), ""),
    "approved": (("APPROVED", "CNY 12.50", "AUTH CODE 169871"), ""),
    "menu": (("1 VOID  2 REFUND", "3 TODAY'S REPORT", "4 SETTLEMENT", "5 REPRINT", "CANCEL TO EXIT"), ""),
    "chinese": (("交易成功 APPROVED", "¥12.50", "请取走卡片 PLEASE TAKE YOUR CARD"), ""),
    "alipay QR": (("CNY 12.50", "SCAN TO PAY  2:00", "F2 PRINT CODE"), ALIPAY),
    "wechat QR": (("CNY 12.50", "SCAN TO PAY  2:00", "F2 PRINT CODE"), WECHAT),
}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    start = rss_mb()
    from drivers.framebuffer import DEFAULT_FONT, Fonts, Framebuffer, Geometry, Renderer, rotate

    imported = rss_mb()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("rounds", type=int, nargs="?", default=200)
    p.add_argument("--bpp", type=int, choices=(16, 32), default=16)
    p.add_argument("--size", default="480x320")
    p.add_argument("--rotation", type=int, choices=(0, 90, 180, 270), default=0)
    p.add_argument("--font", default=DEFAULT_FONT)
    args = p.parse_args()
    width, height = (int(x) for x in args.size.split("x"))

    fonts = Fonts(args.font)
    canvas = (height, width) if args.rotation in (90, 270) else (width, height)
    renderer = Renderer(canvas, fonts)
    for px in (renderer.title_px, renderer.text_px, renderer.amount_px):
        fonts.at(px)
    loaded = rss_mb()
    geometry = Geometry(width, height, args.bpp, width * args.bpp // 8)
    tmp = tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    device = Path(tmp.name) / "fb0"  # a memory-backed file laid out as the framebuffer
    device.write_bytes(bytes(geometry.bytes))
    frame = Framebuffer(device, geometry)
    try:
        print(f"{width}x{height} at {args.bpp} bpp, rotation {args.rotation}, font {fonts.path} (CJK: {fonts.cjk})")
        print(
            f"resident memory: {start:.1f} MB at start, {imported:.1f} MB with the driver (Pillow) imported, "
            f"{loaded:.1f} MB with the font loaded at 3 sizes"
        )
        for name, (lines, qr) in SCREENS.items():
            frame.write(rotate(renderer.render(lines, qr), args.rotation))  # warm: glyph caches, segno import
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                frame.write(rotate(renderer.render(lines, qr), args.rotation))
                times.append((time.perf_counter() - t0) * 1000)
            target = 30 if qr else 10
            median, worst = statistics.median(times), max(times)
            verdict = "ok" if median < target else "OVER"
            print(f"  {name:10} median {median:6.2f} ms  worst {worst:6.2f} ms  (target < {target} ms: {verdict})")
        print(f"resident memory after drawing: {rss_mb():.1f} MB")
    finally:
        frame.close()
        tmp.cleanup()


if __name__ == "__main__":
    main()
