"""The harness keeps a bounded history (receipts, printer bytes, host messages) so that a soak measures the firmware."""

from __future__ import annotations

from hwsim.acquirer import KEEP_MESSAGES, Acquirer
from hwsim.printer import KEEP_RECEIPTS, EscposDecoder
from hwsim.simulator import SIM_BDK


def test_receipts_beyond_the_bound_are_counted_not_kept():
    decoder = EscposDecoder()
    done = sum(decoder.feed(f"RECEIPT {n}\n".encode() + b"\x1dV\x00") for n in range(KEEP_RECEIPTS + 25))
    assert done == decoder.cut() == KEEP_RECEIPTS + 25  # every cut counted, also once the bound is reached
    assert len(decoder.receipts) == KEEP_RECEIPTS and decoder.dropped == 25
    assert decoder.receipts[0] == "RECEIPT 25" and decoder.receipts[-1] == f"RECEIPT {KEEP_RECEIPTS + 24}"


def test_host_log_keeps_the_newest_messages():
    host = Acquirer(SIM_BDK)
    for n in range(KEEP_MESSAGES + 3):
        host._log("request", str(n).encode())
    assert len(host.host_log) == KEEP_MESSAGES and host.host_log_dropped == 3
    assert host.host_log[0] == ("request", b"3") and host.host_log[-1] == ("request", str(KEEP_MESSAGES + 2).encode())
