"""A card whose first GENERATE AC answer (format 2) carries extra tags that overwrite what the kernel
read earlier. After the host approved, only CardError may come out of the kernel (the chip desk reverses only then)."""

from __future__ import annotations

import pytest

from firmware.core.emv.data import CardError, encode_tlv, tlv_items
from test_emv_contact import Host, applet, params, pki, run  # noqa: F401


def gac_with(extra: dict[str, bytes], which: int = 1):
    class Card:
        def __init__(self, chip):
            self.chip, self.gacs = chip, 0

        def process(self, apdu):
            real = self.chip.process(apdu)
            if apdu[:2] != b"\x80\xae":
                return real
            self.gacs += 1
            if self.gacs != which:
                return real
            body, sw = real[:-2], real[-2:]
            items = tlv_items(body)
            tag, value = items[0]
            if tag == "80":
                inner = {"9F27": value[:1], "9F36": value[1:3], "9F26": value[3:11], "9F10": value[11:]}
            else:
                inner = dict(tlv_items(value))
            inner.update(extra)
            return encode_tlv("77", b"".join(encode_tlv(t, v) for t, v in inner.items())) + sw

    return Card


@pytest.mark.parametrize("extra", [{"82": b""}, {"8D": b"\x9f"}, {"5F24": b""}, {"57": b"\x12"}, {"9F27": b"\xff"}])
@pytest.mark.parametrize("card_id", ["unionpay-debit-chip", "visa-chip-dda", "mc-chip-cda"])
def test_gac1_overwrites_only_card_error(pki, card_id, extra):  # noqa: F811
    chip = applet(pki, card_id)
    try:
        out, _ = run(gac_with(extra)(chip), params(pki), pins=("1234",) * 4, host=Host(chip.profile))
    except CardError:
        return
    assert out is not None


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

TAGS = [
    "82",
    "8D",
    "8C",
    "9F27",
    "9F36",
    "5A",
    "57",
    "5F24",
    "5F34",
    "9F4B",
    "9F26",
    "9F10",
    "8E",
    "94",
    "9F07",
    "5F28",
    "9F0D",
    "9F0E",
    "9F0F",
    "9F46",
    "91",
    "9F14",
    "9F23",
    "9F2D",
    "8F",
    "90",
]


class RobustHost(Host):
    def answer(self, request):
        try:
            return super().answer(request)
        except (ValueError, KeyError):
            from firmware.core.emv.contact import OnlineAnswer

            return OnlineAnswer("00", encode_tlv("91", bytes(8) + b"00"))


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(
    st.sampled_from(["unionpay-debit-chip", "visa-chip-dda", "mc-chip-cda", "visa-chip-sda-signature"]),
    st.dictionaries(st.sampled_from(TAGS), st.binary(max_size=12), min_size=1, max_size=3),
    st.sampled_from([1, 2]),
)
def test_gac_extra_tags_fuzz(pki, card_id, extra, which):  # noqa: F811
    if extra.get("82", b"x") == b"":
        return  # the known IndexError (finding 1)
    chip = applet(pki, card_id)
    try:
        out, _ = run(gac_with(extra, which)(chip), params(pki), pins=("1234",) * 4, host=RobustHost(chip.profile))
    except CardError:
        return
    assert out is not None


@pytest.mark.parametrize("card_id", ["unionpay-debit-chip", "visa-chip-dda"])
def test_rc_11_is_an_approval_for_the_terminal_too(pki, card_id):  # noqa: F811
    """11 (approved, VIP) moves money: the terminal counts it approved (AuthResponse.approved), so whatever the
    card then says, the chip desk either journals the approval or reverses it (ChipOutcome.reversal)."""
    from firmware.core.events import AuthResponse

    chip = applet(pki, card_id)
    out, _ = run(chip, params(pki), pins=("1234",) * 4, host=Host(chip.profile, rc="11"))
    assert AuthResponse(1, "11", "123456", "R", "T").approved
    assert out.approved or out.reversal
