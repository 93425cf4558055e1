"""Benchmark: APDUs and terminal-side time of a typical chip sale (contact kernel against the simulated card,
in-process, no pcscd): UnionPay debit with DDA and online PIN, and Mastercard with CDA and enciphered PIN.
The host's answer is made outside the timed kernel steps. Run: .venv/bin/python bench/chip_kernel.py"""

from __future__ import annotations

import statistics
import sys
import time
import tomllib
import warnings
from datetime import date
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[1] / "hw-sim")]

from firmware.core.emv.contact import (  # noqa: E402
    ChooseApplication,
    ContactParams,
    GoOnline,
    OfflinePin,
    OnlineAnswer,
    OnlinePin,
    contact_kernel,
)
from firmware.core.emv.data import encode_tlv  # noqa: E402
from firmware.core.emv.oda import ca_keys_from_doc  # noqa: E402
from hwsim.emvcard import chip_catalog, cryptogram_scheme  # noqa: E402
from hwsim.emvchip import ChipApplet  # noqa: E402
from hwsim.emvpki import TestPki  # noqa: E402

warnings.filterwarnings("ignore")


def sale(applet: ChipApplet, params: ContactParams) -> tuple[int, float, float]:
    """(APDUs, kernel seconds, card seconds) of one sale."""
    p = applet.profile
    scheme = cryptogram_scheme(p.kernel, p.imk_ac, p.pan, p.psn)
    kernel_time = card_time = 0.0
    steps = contact_kernel(params)
    t0 = time.perf_counter()
    request = next(steps)
    kernel_time += time.perf_counter() - t0
    while True:
        t1 = time.perf_counter()
        if isinstance(request, bytes):
            answer = applet.process(request)
            card_time += time.perf_counter() - t1
        elif isinstance(request, GoOnline):
            arqc = bytes.fromhex(request.card.icc["9F26"])
            answer = OnlineAnswer("00", encode_tlv("91", scheme.generate_arpc(arqc, b"00") + b"00"))
        elif isinstance(request, OfflinePin):
            answer = "1234"
        elif isinstance(request, (OnlinePin, ChooseApplication)):
            answer = True if isinstance(request, OnlinePin) else 1
        t2 = time.perf_counter()
        try:
            request = steps.send(answer)
        except StopIteration as done:
            kernel_time += time.perf_counter() - t2
            assert done.value.approved
            return done.value.apdus, kernel_time, card_time
        kernel_time += time.perf_counter() - t2


def main() -> None:
    pki = TestPki()
    for rid in ("A000000003", "A000000004", "A000000333"):
        pki.ca(rid, 0x92)
    params = ContactParams(
        amount=12500,
        currency_numeric="156",
        country_numeric="156",
        today=date(2026, 11, 26),
        unpredictable=b"\x52\xbf\x45\x85",
        supported_aids=("A0000000031010", "A0000000041010", "A000000333010101"),
        ca_keys=ca_keys_from_doc(tomllib.loads(pki.ca_file_text())),
        pin_padding=bytes(range(256)),
    )
    catalog = chip_catalog()
    for card_id in ("unionpay-debit-chip", "mc-chip-cda"):
        applet = ChipApplet(catalog[card_id], pki)
        sale(applet, params)  # warm: keys made, imports done
        runs = [sale(applet, params) for _ in range(30)]
        apdus = runs[0][0]
        kernel_ms = statistics.median(r[1] for r in runs) * 1000
        card_ms = statistics.median(r[2] for r in runs) * 1000
        print(f"{card_id}: {apdus} APDUs, kernel {kernel_ms:.1f} ms (median of 30), simulated card {card_ms:.1f} ms")


if __name__ == "__main__":
    main()
