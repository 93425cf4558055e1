"""ANSI X9.24-3-2017 AES DUKPT and ISO 9564 format-4 PIN blocks against the standards' published vectors."""

from __future__ import annotations

import psec.pinblock
import pytest

from firmware.errors import KeyMaterialError
from firmware.security import dukpt_aes

BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")
KEY_ID = bytes.fromhex("1234567890123456")
INITIAL = bytes.fromhex("1273671EA26AC29AFA4D1084127652A1")

# counter -> (intermediate derivation key, PIN encryption key, format-4 block for PIN 1234 / PAN 4111111111111111)
VECTORS = {
    1: ("4F21B565BAD9835E112B6465635EAE44", "AF8CB133A78F8DC2D1359F18527593FB", "A912150391AB65A67E52883D81CE2D15"),
    2: ("2F34D68DE10F68D38091A73B9E7C437C", "D30BDC73EC9714B000BEC66BDB7B6D09", "52A00503BD34BA1383F6A7EE9FE2547F"),
    3: ("031504E530365CF81264238540518318", "7D69F01F3B45449F62C7816ECE723268", "A5A27E82B43A9A866A93D7ABE89CEF93"),
    8: ("718EE6CF0B27E53D5F7AF99C4D8146A2", "4D9DF3FBEE3448FC3E676D04320A90F5", "8308BB857C17F390369F761F8EB358FA"),
}
PIN_FIELD = bytes.fromhex("441234AAAAAAAAAA2F69ADDE2E9E7ACE")  # random fill fixed by the vector
PAN = "4111111111111111"


def test_initial_key():
    assert dukpt_aes.initial_key(BDK, KEY_ID) == INITIAL


@pytest.mark.parametrize("counter", sorted(VECTORS))
def test_transaction_keys_and_format4_blocks(counter):
    derivation, pin, block = VECTORS[counter]
    assert dukpt_aes.derivation_key(INITIAL, KEY_ID, counter).hex().upper() == derivation
    key = dukpt_aes.pin_key(INITIAL, KEY_ID, counter)
    assert key.hex().upper() == pin
    pan_field = psec.pinblock.encode_pan_field_iso_4(PAN)
    assert pan_field.hex().upper() == "44111111111111111000000000000000"
    assert dukpt_aes.format4_block(key, PIN_FIELD, pan_field).hex().upper() == block
    # psec's own format-4 code (random fill) round-trips under the same key.
    assert psec.pinblock.decipher_pinblock_iso_4(key, bytes.fromhex(block), PAN) == "1234"
    assert (
        psec.pinblock.decipher_pinblock_iso_4(key, psec.pinblock.encipher_pinblock_iso_4(key, "9876", PAN), PAN)
        == "9876"
    )


def test_ksn_and_counter_rules():
    assert dukpt_aes.ksn(KEY_ID, 1).hex().upper() == "123456789012345600000001"
    assert dukpt_aes.next_counter(0xFFFE) == 0xFFFF  # 16 one-bits is allowed
    assert bin(dukpt_aes.next_counter(0xFFFF)).count("1") <= 16
    with pytest.raises(KeyMaterialError):
        dukpt_aes.derivation_key(INITIAL, KEY_ID, 0)
    with pytest.raises(KeyMaterialError):
        dukpt_aes.initial_key(BDK[:8], KEY_ID)
