"""PIN entry: collects keypad digits for one card; only an ISO 9564 format-0 block under DUKPT leaves."""

from __future__ import annotations

import psec.pinblock

from firmware.core.events import EncryptedPin
from firmware.security import dukpt_aes
from firmware.security.dukpt import DukptKey, tdes_ecb_encrypt

DIGITS = frozenset("0123456789")


class PinEntry:
    """Digits in, count out; `encrypt` turns the digits into an EncryptedPin and forgets them.

    The digits live in a bytearray that is zeroed on clear, on encrypt and on cancel; they are never
    logged, displayed or returned in the clear.
    """

    def __init__(self, min_len: int = 4, max_len: int = 12) -> None:
        self._digits = bytearray()
        self.min_len, self.max_len = min_len, max_len

    def __repr__(self) -> str:
        return f"PinEntry(<{len(self._digits)} digits>)"

    @property
    def count(self) -> int:
        """How many digits are entered (what the screen shows as '*')."""
        return len(self._digits)

    @property
    def complete(self) -> bool:
        """True when enough digits are in to accept ENTER."""
        return self.min_len <= len(self._digits) <= self.max_len

    def press(self, key: str) -> None:
        """Take a digit or CLEAR (deletes the last digit); other keys are the caller's business."""
        if key in DIGITS and len(self._digits) < self.max_len:
            self._digits.append(ord(key))
        elif key == "CLEAR" and self._digits:
            self._digits[-1] = 0
            del self._digits[-1]

    def wipe(self) -> None:
        """Zero and drop the collected digits."""
        for i in range(len(self._digits)):
            self._digits[i] = 0
        self._digits.clear()

    def take(self) -> str:
        """The digits as text, wiped here (for an operator PIN, which is hashed, not enciphered)."""
        try:
            return self._digits.decode()
        finally:
            self.wipe()

    def encrypt_aes(self, pan: str, initial_key: bytes, key_id: bytes, counter: int) -> EncryptedPin:
        """ISO 9564 format 4 under the AES DUKPT PIN key for `counter`; wipes the digits."""
        try:
            key = dukpt_aes.pin_key(initial_key, key_id, counter)
            block = psec.pinblock.encipher_pinblock_iso_4(key, self._digits.decode(), pan)
        finally:
            self.wipe()
        return EncryptedPin(block=block.hex().upper(), ksn=dukpt_aes.ksn(key_id, counter).hex().upper())

    def encrypt_session(self, pan: str, scheme: str, pin_key: bytes) -> EncryptedPin:
        """Under the sign-on PIN key: format 0 by TDES (scheme "tdes") or format 4 by AES ("aes"); wipes."""
        try:
            if scheme == "aes":
                block = psec.pinblock.encipher_pinblock_iso_4(pin_key, self._digits.decode(), pan)
            else:
                clear = psec.pinblock.encode_pinblock_iso_0(self._digits.decode(), pan)
                block = tdes_ecb_encrypt(pin_key, clear)
        finally:
            self.wipe()
        return EncryptedPin(block=block.hex().upper(), ksn="")

    def encrypt(self, pan: str, key: DukptKey, counter: int) -> EncryptedPin:
        """Build the format-0 block for `pan`, encrypt it under the DUKPT PIN key for `counter`, wipe."""
        try:
            clear = psec.pinblock.encode_pinblock_iso_0(self._digits.decode(), pan)
            block, ksn = key.encrypt_pin_block(clear, counter)
        finally:
            self.wipe()
        return EncryptedPin(block=block.hex().upper(), ksn=ksn.hex().upper())
