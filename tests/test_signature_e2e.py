"""The cardholder signs on the simulated touch screen after a chip sale whose CVM is signature: the signature
is printed on the merchant copy as a raster image (decoded from the printer's bytes and compared with the
strokes) and kept with the sale in the journal; CANCEL or no touch screen leave it to the paper copy."""

from __future__ import annotations

import dataclasses
import io
import math
import sqlite3

import pytest
from PIL import Image

from conftest import sim_config, wait_until
from firmware.config import ChipConfig
from firmware.core.flow.sign import TEXT
from hwsim import Simulator

STROKES = [[(40, 200), (120, 120), (200, 220), (280, 100)], [(300, 250), (420, 250)]]
PRINT_SCALE = 384 / 480  # the 480-pixel-wide drawing on 384 dots of 58 mm paper (32 columns x 12 dots)


def chip_sim(tmp_path, touch: bool) -> Simulator:
    cfg = dataclasses.replace(sim_config(host=2.0), chip=ChipConfig(reader="hwsim chip slot"))
    return Simulator(tmp_path / "data", cfg, touch=touch)


def signature_sale(sim: Simulator) -> None:
    sim.keys("2500{ENTER}")
    sim.wait_for("CARD")
    sim.insert("visa-chip-sda-signature")


def signatures(sim: Simulator) -> list[tuple[int, bytes | None, str]]:
    db = sqlite3.connect(sim.data_dir / "journal.sqlite3")
    try:
        return list(db.execute("SELECT transaction_id, png, note FROM signatures"))
    finally:
        db.close()


def distance(p: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    """From point p to segment a-b."""
    (px, py), (ax, ay), (bx, by) = p, a, b
    dx, dy = bx - ax, by - ay
    t = 0.0 if dx == dy == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - ax - t * dx, py - ay - t * dy)


def segments(scale: float) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    out = []
    for stroke in STROKES:
        pts = [(x * scale, y * scale) for x, y in stroke]
        out += list(zip(pts, pts[1:], strict=False)) or [(pts[0], pts[0])]
    return out


def assert_drawn(black: set[tuple[int, int]], scale: float) -> None:
    """Dots along every stroke, none far from one."""
    segs = segments(scale)
    for a, b in segs:
        for i in range(11):
            x, y = a[0] + (b[0] - a[0]) * i / 10, a[1] + (b[1] - a[1]) * i / 10
            assert any(abs(x - bx) <= 3 and abs(y - by) <= 3 for bx, by in black), f"nothing drawn near {x, y}"
    far = [p for p in black if min(distance(p, a, b) for a, b in segs) > 4]
    assert not far, f"{len(far)} dots away from the strokes, e.g. {far[:3]}"


@pytest.mark.usefixtures("pcscd")
def test_a_signature_drawn_on_the_screen_prints_on_the_merchant_copy_and_stays_with_the_sale(tmp_path):
    with chip_sim(tmp_path, touch=True) as sim:
        signature_sale(sim)
        sim.wait_for(TEXT["sign"])
        assert not sim.printer.receipts  # nothing printed before the signature
        sim.sign(STROKES)
        assert sim.display.strokes == tuple(tuple(s) for s in STROKES)  # drawn live, as signed
        shot = sim.screen_image().convert("L")  # ... and on the pixel panel, in the screen's own pixels
        ink = {(x, y) for x in range(480) for y in range(320) if shot.getpixel((x, y)) < 64}
        for stroke in STROKES:
            for x, y in stroke:
                assert any(abs(x - ix) <= 2 and abs(y - iy) <= 2 for ix, iy in ink), f"no ink at {x, y} on the panel"
        sim.keys("{ENTER}")
        merchant, customer = sim.wait_for_receipts(2)[-2:]
        assert "CARDHOLDER SIGNATURE" in merchant and "[image]" in merchant and "[image]" not in customer
        [(width, rows)] = sim.printer.images(len(sim.printer.receipts) - 2)
        assert width == 384 and len(rows) == round(320 * PRINT_SCALE)
        assert_drawn({(x, y) for y, row in enumerate(rows) for x in row}, PRINT_SCALE)
        [sale] = [r for r in sim.journal() if r["kind"] == "sale"]
        assert sale["status"] == "approved"
        [(row_id, png, note)] = signatures(sim)
        assert (row_id, note) == (sale["id"], "signed on screen")
        image = Image.open(io.BytesIO(png))
        assert (image.mode, image.size) == ("1", (480, 320)) and len(png) < 4096  # small, 1-bit
        px = image.load()
        assert_drawn({(x, y) for x in range(480) for y in range(320) if px[x, y] == 0}, 1.0)


@pytest.mark.usefixtures("pcscd")
def test_clear_starts_again_and_cancel_leaves_the_paper_line_with_the_sale_approved(tmp_path):
    with chip_sim(tmp_path, touch=True) as sim:
        signature_sale(sim)
        sim.wait_for(TEXT["sign"])
        sim.sign([[(10, 10), (50, 50)]])
        sim.keys("{CLEAR}")
        assert sim.display.strokes == ()
        sim.keys("{CANCEL}")
        sim.wait_for(TEXT["paper"])
        merchant, _ = sim.wait_for_receipts(2)[-2:]
        assert "CARDHOLDER SIGNATURE" in merchant and "[image]" not in merchant and "____" in merchant
        [sale] = [r for r in sim.journal() if r["kind"] == "sale"]
        assert sale["status"] == "approved"
        assert signatures(sim) == [(sale["id"], None, "cancelled")]


@pytest.mark.usefixtures("pcscd")
def test_without_a_touch_screen_the_cashier_is_told_to_collect_the_signature(tmp_path):
    with chip_sim(tmp_path, touch=False) as sim:
        signature_sale(sim)
        sim.wait_for(TEXT["paper"])
        merchant, _ = sim.wait_for_receipts(2)[-2:]
        assert "CARDHOLDER SIGNATURE" in merchant and "[image]" not in merchant
        assert signatures(sim) == []
        with pytest.raises(ValueError, match="no touch screen"):
            sim.sign(STROKES)


@pytest.mark.usefixtures("pcscd")
def test_a_power_cut_while_signing_still_prints_the_receipts_with_the_paper_line(tmp_path):
    with chip_sim(tmp_path, touch=True) as sim:
        signature_sale(sim)
        sim.wait_for(TEXT["sign"])
        sim.sign([[(10, 10), (50, 50)]])
        sim.restart(crash=True)
        merchant, customer = sim.wait_for_receipts(2)[-2:]
        assert "CARDHOLDER SIGNATURE" in merchant and "[image]" not in merchant and "APPROVED" in customer
        wait_until(lambda: [r["receipt"] for r in sim.journal() if r["kind"] == "sale"] == [1], what="marked printed")
        assert [r["status"] for r in sim.journal() if r["kind"] == "sale"] == ["approved"]
