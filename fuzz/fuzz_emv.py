"""atheris target: the contactless kernel (firmware.core.emv.kernel) against a card whose every answer may be
the simulated card's real one, the real one with one data object replaced by fuzzer bytes, or fuzzer bytes;
and BER-TLV decoding (tlv_items) on the raw input.

Invariant: the kernel ends in a ChipCard or CardError (any TerminalError subclass of it), nothing else."""

from __future__ import annotations

from datetime import date

import _harness  # noqa: F401 - sys.path first
import atheris

with atheris.instrument_imports(include=["firmware"]):
    from firmware.core.emv import CardError, KernelParams, kernel, tlv_items
from hwsim.emvcard import CardApplet, contactless_catalog

PROFILES = list(contactless_catalog().values())
PARAMS = KernelParams(
    amount=1250,
    currency_numeric="156",
    country_numeric="156",
    today=date(2026, 11, 26),
    unpredictable=bytes.fromhex("52BF4585"),
    supported_aids=("A0000000031010", "A0000000041010"),
    cvm_limit=10000,
)


CARD_TAGS = [
    "6F",
    "84",
    "A5",
    "BF0C",
    "61",
    "4F",
    "50",
    "87",
    "9F38",
    "80",
    "77",
    "82",
    "94",
    "57",
    "5F24",
    "5F25",
    "5F34",
    "8C",
    "9F26",
    "9F27",
    "9F36",
    "9F10",
    "9F6C",
    "9F0E",
    "70",
]


def rewrite(data: bytes, tag: str, value: bytes) -> bytes:
    """BER-TLV `data` with every `tag`, at any depth, holding `value` (lengths re-encoded): deep states that
    random bytes almost never reach, such as a PDOL asking for more than a command carries."""
    out = b""
    for t, v in tlv_items(data):
        if t == tag:
            v = value
        elif bytes.fromhex(t)[0] & 0x20:  # constructed: look inside
            try:
                v = rewrite(v, tag, value)
            except CardError:
                pass
        n = len(v)
        out += (
            bytes.fromhex(t)
            + (bytes([n]) if n < 128 else b"\x81" + bytes([n]) if n < 256 else b"\x82" + n.to_bytes(2, "big"))
            + v
        )
    return out


def test_one_input(data: bytes) -> None:
    try:
        tlv_items(data)
    except CardError:
        pass
    fdp = atheris.FuzzedDataProvider(data)
    applet = CardApplet(PROFILES[fdp.ConsumeIntInRange(0, len(PROFILES) - 1)])

    def answer(apdu: bytes) -> bytes:
        try:
            real = applet.process(apdu)
        except ValueError:  # the simulated card's own checks; a real card says 6700
            real = b"\x67\x00"
        how = fdp.ConsumeIntInRange(0, 3) if fdp.remaining_bytes() else 0
        if how == 1:  # one data object lies, the rest is well-formed
            tag = CARD_TAGS[fdp.ConsumeIntInRange(0, len(CARD_TAGS) - 1)]
            try:
                return rewrite(real[:-2], tag, fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))) + real[-2:]
            except CardError:
                return real
        if how == 2:
            return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
        return real

    steps = kernel(PARAMS)
    try:
        apdu = next(steps)
        for _ in range(2000):  # an AFL can name at most 63 x 255 records; stop long before
            apdu = steps.send(answer(apdu))
    except (StopIteration, CardError):
        pass


if __name__ == "__main__":
    _harness.run(test_one_input)
