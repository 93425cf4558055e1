"""ANSI X9.24-1 TDES DUKPT against the standard's published vectors, and ISO 9564 format-0 PIN blocks."""

from __future__ import annotations

import psec.pinblock
import pytest

from firmware.errors import KeyMaterialError
from firmware.security import dukpt
from firmware.security.pin import PinEntry

BDK = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
KSN = bytes.fromhex("FFFF9876543210E00000")
IPEK = bytes.fromhex("6AC292FAA1315B4D858AB3A3D7D5933A")
PAN = "4012345678909"

# (counter, current key, encrypted PIN block for PIN 1234 / PAN 4012345678909), ANSI X9.24-1 Annex A.
VECTORS = [
    (0x000001, "042666B49184CFA368DE9628D0397BC9", "1B9C1845EB993A7A"),
    (0x000002, "C46551CEF9FD24B0AA9AD834130D3BC7", "10A01C8D02C69107"),
    (0x000003, "0DF3D9422ACA56E547676D07AD6BADFA", "18DC07B94797B466"),
    (0x000004, "279C0F6AEED0BE652B2C733E1383AE91", "0BC79509D5645DF7"),
    (0x000010, "59598DCBD9BD94C094165CE453585F57", "D5D9638559EF53D6"),
    (0x0FF800, "F9CDFEBF4F5B1D9EB3EC12454527E176", "33365F5CC6F23C35"),
]


def test_ipek_from_bdk():
    assert dukpt.derive_ipek(BDK, KSN) == IPEK


@pytest.mark.parametrize("counter, key, block", VECTORS)
def test_transaction_keys_and_pin_blocks(counter, key, block):
    ksn = dukpt.with_counter(KSN, counter)
    assert dukpt.derive_key(IPEK, ksn).hex().upper() == key
    clear = psec.pinblock.encode_pinblock_iso_0("1234", PAN)
    assert clear.hex().upper() == "041274EDCBA9876F"
    enc, used_ksn = dukpt.DukptKey(IPEK, KSN).encrypt_pin_block(clear, counter)
    assert enc.hex().upper() == block
    assert used_ksn == ksn


def test_pin_key_variant():
    ksn = dukpt.with_counter(KSN, 1)
    assert dukpt.pin_key(IPEK, ksn).hex().upper() == "042666B49184CF5C68DE9628D0397B36"


def test_host_side_decrypts_what_the_terminal_encrypted():
    entry = PinEntry()
    for d in "987654":
        entry.press(d)
    pin = entry.encrypt(PAN, dukpt.DukptKey(IPEK, KSN), 7)
    ksn = bytes.fromhex(pin.ksn)
    key = dukpt.pin_key(dukpt.derive_ipek(BDK, ksn), ksn)
    clear = dukpt.tdes_ecb_decrypt(key, bytes.fromhex(pin.block))
    assert psec.pinblock.decode_pinblock_iso_0(clear, PAN) == "987654"
    assert entry.count == 0  # digits wiped after encryption


def test_counter_skips_values_with_more_than_ten_one_bits():
    assert dukpt.next_counter(0) == 1
    assert dukpt.next_counter(0x3FE) == 0x3FF  # ten one-bits is still valid
    assert dukpt.next_counter(0x3FF) == 0x400  # 0x400 has one bit: plain increment
    c = 0x7FE  # ten one-bits
    nxt = dukpt.next_counter(c)
    assert bin(nxt).count("1") <= 10 and nxt > c
    assert nxt == 0x800


def test_counter_exhaustion_is_an_error():
    with pytest.raises(KeyMaterialError):
        dukpt.next_counter(0x1FF800)


def test_bad_ksn_length():
    with pytest.raises(KeyMaterialError):
        dukpt.derive_key(IPEK, b"\x00" * 9)


def test_pin_entry_clear_and_limits():
    entry = PinEntry(min_len=4, max_len=6)
    for d in "12345678":
        entry.press(d)
    assert entry.count == 6 and entry.complete
    entry.press("CLEAR")
    entry.press("CLEAR")
    entry.press("CLEAR")
    assert entry.count == 3 and not entry.complete
    assert "1" not in repr(entry)
