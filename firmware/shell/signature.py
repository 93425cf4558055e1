"""The cardholder's signature as a picture: strokes drawn into a small 1-bit PNG, kept in the journal and
printed on the merchant copy (drivers/printer.py fits it to the paper)."""

from __future__ import annotations

import io

PEN = 3  # pixels: the drawn line's width on the screen's scale
Strokes = tuple[tuple[tuple[int, int], ...], ...]


def signature_png(strokes: Strokes, width: int, height: int) -> bytes:
    """The strokes (display pixels, each a polyline; a single point is a dot) drawn black on white in a
    `width` x `height` 1-bit picture, as PNG."""
    from PIL import Image, ImageDraw  # noqa: PLC0415 - deferred: only when someone has signed

    image = Image.new("1", (width, height), 1)
    draw = ImageDraw.Draw(image)
    r = PEN // 2
    for stroke in strokes:
        if len(stroke) > 1:
            draw.line(list(stroke), fill=0, width=PEN, joint="curve")
        for x, y in stroke:  # round ends and joins, and a tap's dot
            draw.ellipse((x - r, y - r, x + r, y + r), fill=0)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()
