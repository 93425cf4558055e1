"""Offline data authentication checked against a real Visa test card's certificates (Visa test CA key 94) and the
CVM list rules, one table each."""

from __future__ import annotations

import hashlib
from datetime import date

import pytest

from firmware.core.emv import cvm as cv
from firmware.core.emv.oda import (
    CaKey,
    OdaError,
    PublicKey,
    ca_key_checksum,
    ca_keys_from_doc,
    find_ca_key,
    recover,
    recover_issuer_key,
    verify_dda,
)

# Public test data: the Visa test CA public key A000000003 index 94 (1984 bits, exponent 3) with its published
# check sum, and the issuer certificate, ICC certificate (ICC key remainder) and signed dynamic application data
# of the Visa test card 4761739001010119, as recorded in openemv/emv-utils' tests (tests/emv_rsa_test.c).
CA94 = bytes.fromhex(
    "ACD2B12302EE644F3F835ABD1FC7A6F62CCE48FFEC622AA8EF062BEF6FB8BA8BC68BBF6AB5870EED579BC3973E121303D34841A796D6"
    "DCBC41DBF9E52C4609795C0CCF7EE86FA1D5CB041071ED2C51D2202F63F1156C58A92D38BC60BDF424E1776E2BC9648078A03B36FB55"
    "4375FC53D57C73F5160EA59F3AFC5398EC7B67758D65C9BFF7828B6B82D4BE124A416AB7301914311EA462C19F771F31B3B57336000D"
    "FF732D3B83DE07052D730354D297BEC72871DCCF0E193F171ABA27EE464C6A97690943D59BDABB2A27EB71CEEBDAFA1176046478FD62"
    "FEC452D5CA393296530AA3F41927ADFE434A2DF2AE3054F8840657A26E0FC617"
)
CA94_CHECKSUM = "C4A3C43CCF87327D136B804160E47D43B60E6E0F"
ISSUER_CERT = bytes.fromhex(
    "665CD65C20DEAE638C7320EA011E5E2B33FC5070FF7D153D74FE9A01ABFF0B9587B3779C524577F8A57C19923B39CD3F5CCDD457D360"
    "DC2619CDBB94328777BB905E1CB79E280458F60C8C5593EFD22D6385512B11B7F2EAFE1184CF9066B9B47A0BF832045066359AE46547"
    "3D31B9F830A6DE7D88E969CB456033F8073BEC512205920E3DEA773D3E36E1F46C2E8BDDC423FB675CA1710A3D0A06E9C7570919735"
    "190BD6ED65BD5EF92C0416BFE4094EA96A218013838EF337151A8BE7222DCF0717399553C4DDA16EBABB2DD386A07BDF313D970C132"
    "4CAAB885067691E3EE5E5D8B912799BD53C8E1830237E9EC0A9254D80B2BD3622C"
)
ICC_CERT = bytes.fromhex(
    "A6CDB529A1D8CB538E19A277764C633F3C2F468A6A7CC3B5EF3F5B9838B7900316A627927569F679EAE367E10160D7A1E08D9F20399F"
    "8B6FFE77A564B108DD924458A89D966C980D1E52A0093CA1CFA44CB3FCCF102632A799486B409C34C1F6A3DCC3C1C0EE1C0F6E1EA7A3"
    "3C1CDAEA9852AAA4B954D429C9EEDBF8803D6D159CAB6B8DCAB0694B5850D5F3C4014B45ABCB5B8F69BFC647D94F9E0039439A2D5584"
    "DEAD27729C894615F62AE7AC8216"
)
ICC_REMAINDER = bytes.fromhex("4DD8A50B21B9CBF62BFAD4BB3F4CF6B5239F3FD23F8B93E96C84C9CE67DFD70359153855A8F735CAFBE5")
SDAD = bytes.fromhex(
    "7207EF0CB50E15CCA221CB77E81B7BCE11730216436CC828F0A9D72A16BCF1A0B736768308CDD816872457CE835AF450BD6378F17A45"
    "C0861DB8D61208F1C394FD08F1719492F281970A424546A564FD825C83CEE6F8F4987EFC431A641248C6466296CBAE8ED35CE0286A58"
    "10792B0E99E575BBDBEA8F6979165097A3C6851A12022E5B7A6F0A8AC41E794E6AF0CACF700BD7E045E103A62294F074E7E55A82FC9E"
    "E7E8B8711A5D524667361941C1C9"
)
PAN = "4761739001010119"
CA = PublicKey(CA94, b"\x03")


def test_the_published_ca_key_check_sum():
    assert ca_key_checksum("A000000003", 0x94, CA).hex().upper() == CA94_CHECKSUM
    doc = {"key": [{"rid": "A000000003", "index": "94", "modulus": CA94.hex(), "exponent": "03"}]}
    assert ca_keys_from_doc({"key": [{**doc["key"][0], "checksum": CA94_CHECKSUM}]})[0].key == CA
    with pytest.raises(ValueError, match="checksum does not match"):
        ca_keys_from_doc({"key": [{**doc["key"][0], "checksum": "00" * 20}]})


def test_real_issuer_certificate_recovers_and_checks():
    card = {"90": ISSUER_CERT, "9F32": b"\x03", "92": b""}
    issuer = recover_issuer_key(card, CA, PAN, date(2031, 12, 31))
    assert issuer.size == 176 and issuer.modulus.hex().upper().startswith("DDD9039ACC0BB00E8D6C1A11BD78C055")
    with pytest.raises(OdaError, match="expired"):  # the certificate runs to 12/31
        recover_issuer_key(card, CA, PAN, date(2032, 1, 1))
    with pytest.raises(OdaError, match="does not match the PAN"):
        recover_issuer_key(card, CA, "5413330089020011", date(2030, 1, 1))
    with pytest.raises(OdaError, match="hash"):  # a changed exponent changes the hashed data
        recover_issuer_key({**card, "9F32": b"\x01"}, CA, PAN, date(2030, 1, 1))
    tampered = ISSUER_CERT[:-1] + bytes([ISSUER_CERT[-1] ^ 1])
    with pytest.raises(OdaError):
        recover_issuer_key({**card, "90": tampered}, CA, PAN, date(2030, 1, 1))


def test_real_signed_dynamic_data_verifies_over_the_ddol_data():
    issuer = recover_issuer_key({"90": ISSUER_CERT, "9F32": b"\x03"}, CA, PAN, date(2030, 1, 1))
    r = recover(ICC_CERT, issuer, 0x04)
    assert r[2:12].hex().upper() == PAN + "FFFF" and r[12:14].hex() == "1222" and r[19] == 176
    icc = PublicKey(r[21 : 21 + 176 - 42] + ICC_REMAINDER, b"\x03")
    assert verify_dda(SDAD, icc, bytes.fromhex("7FBC4049")) == bytes.fromhex("00AE")  # ICC dynamic number
    with pytest.raises(OdaError, match="hash"):
        verify_dda(SDAD, icc, bytes.fromhex("7FBC4048"))


def test_ca_key_lookup():
    keys = (CaKey("A000000003", 0x94, CA, date(2030, 12, 31)),)
    assert find_ca_key(keys, "A0000000031010", b"\x94", date(2030, 12, 31)) == CA
    with pytest.raises(OdaError, match="no CA public key A000000003 92"):
        find_ca_key(keys, "A0000000031010", b"\x92", date(2030, 1, 1))
    with pytest.raises(OdaError, match="expired"):
        find_ca_key(keys, "A0000000031010", b"\x94", date(2031, 1, 1))
    assert hashlib.sha1(b"").digest()  # hashlib is the core's (tests/test_layers.py allows it)


CTX = cv.CvmContext(12500, "156", b"\x01\x56", "00", frozenset({cv.PLAIN_PIN, cv.ONLINE_PIN, cv.SIGNATURE}))


@pytest.mark.parametrize(
    "condition, amount, currency, expected",
    [
        (0x00, 12500, "0156", True),
        (0x03, 12500, "0156", True),  # online PIN is supported
        (0x06, 12500, "0156", False),  # under X (X = 10000)
        (0x07, 12500, "0156", True),  # over X
        (0x08, 12500, "0156", True),  # under Y (Y = 20000)
        (0x09, 12500, "0156", False),
        (0x07, 12500, "0840", False),  # not in the application currency: the amount conditions do not hold
        (0x05, 12500, "0156", False),  # cashback
        (0x0A, 12500, "0156", False),  # RFU: not understood, does not hold
    ],
)
def test_cvm_conditions(condition, amount, currency, expected):
    cvm = cv.parse_cvm_list(bytes.fromhex("00002710" + "00004E20" + "0203"))
    ctx = cv.CvmContext(amount, "156", bytes.fromhex(currency), "00", CTX.supported)
    assert cv.condition_met(condition, cv.ONLINE_PIN, cvm, ctx) is expected


def test_cvm_list_parsing_and_first_applicable():
    cvm = cv.parse_cvm_list(bytes.fromhex("0000000000000000" + "4403" + "4103" + "5E03" + "1F00"))
    assert cvm.rules[0] == cv.CvmRule(cv.ENC_PIN, 0x03, True) and cvm.rules[0].code == b"\x44\x03"
    assert cv.first_applicable(cvm, CTX) == (cv.CvmRule(cv.SIGNATURE, 0x03, True), False)  # offline PIN skipped
    with pytest.raises(Exception, match="malformed"):
        cv.parse_cvm_list(bytes.fromhex("00000000000000001F"))
    assert cv.results(None, cv.RESULT_FAILED) == b"\x3f\x00\x01"
