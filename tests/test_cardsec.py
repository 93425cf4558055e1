"""Card-data hygiene: masking, Luhn, and log redaction."""

from __future__ import annotations

import logging

import pytest

from firmware.core.pan import luhn_valid, mask, redact
from firmware.security.cardsec import RedactingFilter


def test_mask_first_six_last_four():
    assert mask("4242424242424242") == "424242******4242"
    assert mask("4012345678909") == "401234***8909"
    assert mask("123") == "***"


def test_luhn():
    assert luhn_valid("4242424242424242")
    assert not luhn_valid("4242424242424241")
    assert not luhn_valid("42424242a2424242")


def test_redact_pan_and_track_tail():
    line = "swipe ;4242424242424242=30121010000000000000? amount=1250 stan 000042 rrn 263300000001"
    out = redact(line)
    assert "4242424242424242" not in out and "3012101" not in out
    assert "424242******4242" in out
    assert "amount=1250" in out and "000042" in out and "263300000001" in out


def test_filter_rewrites_records(caplog):
    logger = logging.getLogger("test.redact")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.INFO, logger="test.redact"):
        logger.info("card %s", "5555555555554444")
    assert "5555555555554444" not in caplog.text
    assert "555555******4444" in caplog.text


def test_token_key_is_sealed_and_a_clear_one_migrates(tmp_path):
    from firmware.security.cardsec import load_token_key
    from firmware.security.keystore import KeyStore

    store = KeyStore(tmp_path / "keys")
    key = load_token_key(store)
    assert len(key) == 32 and load_token_key(store) == key  # made once, then kept
    assert key.hex() not in (tmp_path / "keys" / "card-token.sealed").read_text()
    legacy = tmp_path / "old" / "card_token.key"
    legacy.parent.mkdir()
    legacy.write_bytes(b"\x07" * 32)
    other = KeyStore(tmp_path / "keys2")
    assert load_token_key(other, legacy) == b"\x07" * 32 and not legacy.exists()
    assert load_token_key(other, legacy) == b"\x07" * 32


def test_only_ascii_digits_are_digits():
    from firmware.core.money import Currency, parse_major

    assert luhn_valid("4242424242424242") and not luhn_valid("４２４２４２４２４２４２４２４２")
    with pytest.raises(ValueError):
        parse_major("１２.５０", Currency.of("CNY"))
    assert parse_major("12.50", Currency.of("CNY")) == 1250
