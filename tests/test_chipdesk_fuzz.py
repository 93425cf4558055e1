"""The chip desk against a card and a host that lie, in-process (no pcscd). Invariant: run() never
raises, and once the host answered, the sale is either answered (journaled) or marked unknown and reversed."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import sim_config
from firmware.core import effects, events
from firmware.core.emv.data import encode_tlv
from firmware.shell.chipdesk import ChipDesk
from hwsim.emvcard import chip_catalog, cryptogram_scheme
from hwsim.emvchip import ChipApplet
from hwsim.emvpki import TestPki
from test_emv_contact import garbled

CATALOG = chip_catalog()


class FakePad:
    def __init__(self, loop):
        self.loop = loop

    def arm_chip(self, offline, bypass, pan, give):
        value = "1234" if offline else events.EncryptedPin("00" * 8, "FFFF0000000000000001")
        self.loop.call_soon(give, value)

    def end(self):
        pass


def build(tmp, pki_dir):
    pki = TestPki(pki_dir)
    for rid in ("A000000003", "A000000004", "A000000333"):
        pki.ca(rid, 0x92)
    keys = tmp / "ca.toml"
    keys.write_text(pki.ca_file_text())
    cfg = sim_config()
    cfg = dataclasses.replace(cfg, emv=dataclasses.replace(cfg.emv, ca_keys=str(keys)))
    return cfg, pki


@settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.sampled_from(["unionpay-debit-chip", "visa-chip-dda", "mc-chip-cda", "visa-chip-sda-signature"]),
    st.data(),
)
def test_chip_desk_survives_lies(tmp_path_factory, card_id, data):
    tmp = tmp_path_factory.mktemp("d")
    cfg, pki = build(tmp, tmp / "pki")
    applet = ChipApplet(CATALOG[card_id], pki)
    calls: list = []
    online = {"done": False}

    class Session:
        async def transceive(self, apdu):
            real = applet.process(apdu)
            return garbled(data, real, truth=2, max_size=80) if online["done"] else real

        def close(self):
            pass

    async def send_sale(eff):
        online["done"] = True
        p = applet.profile
        icc_kind = data.draw(st.sampled_from(["arpc", "arpc", "garbage_hex", "empty"]))
        rc = data.draw(st.sampled_from(["00", "00", "05", "51"]))
        icc = ""
        if icc_kind == "arpc":
            scheme = cryptogram_scheme(p.kernel, p.imk_ac, p.pan, p.psn)
            arqc = bytes.fromhex(eff.card.icc["9F26"])
            icc = encode_tlv("91", scheme.generate_arpc(arqc, rc.encode()) + rc.encode()).hex().upper()
        elif icc_kind == "garbage_hex":
            icc = data.draw(st.binary(max_size=40)).hex()
        elif icc_kind == "not_hex":
            icc = data.draw(st.text(max_size=6))
        return 7, 42, events.AuthResponse(42, rc, "123456" if rc == "00" else "", "R", "T", icc)

    async def main():
        loop = asyncio.get_running_loop()
        desk = ChipDesk(
            cfg,
            FakePad(loop),
            datetime.now,
            lambda e: calls.append(("post", e)),
            send_sale,
            lambda row, stan, resp, note="": calls.append(("answered", row, resp.response_code)),
            lambda row, status, **kw: calls.append(("record", row, status)) or True,
            lambda: calls.append(("reverse",)),
            lambda amount, reason: calls.append(("failed_read", reason)),
        )
        await desk.run(effects.StartChip(Session(), 2500))

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        asyncio.run(main())  # must not raise
    if online["done"]:
        kinds = [c[0] for c in calls]
        assert "answered" in kinds or ("record" in kinds and "reverse" in kinds), calls
