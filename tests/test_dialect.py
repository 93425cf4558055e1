"""The default ISO 8583 dialect and the message mapping: byte-exact encoding, strict response checks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from firmware.errors import CodecError
from firmware.host import dialect
from firmware.host.link import frame
from firmware.host.messages import SaleRequest, iso_to_response, sale_to_iso

REQ = SaleRequest(
    stan=42,
    amount=1250,
    currency_numeric="156",
    track2="4242424242424242=30121010000000000000",
    pin_block="1B9C1845EB993A7A",
    ksn="FFFF9876543210E00001",
    terminal_id="SIM00001",
    merchant_id="102030405060708",
    local_time=datetime(2026, 11, 26, 21, 5, 9),
    utc_time=datetime(2026, 11, 26, 13, 5, 9, tzinfo=UTC),
)


def test_sale_request_bytes():
    raw = dialect.encode(sale_to_iso(REQ))
    expected = (
        b"0200"
        + b"3238040020C09800"  # MTI, primary bitmap: 3 4 7 11 12 13 22 35 41 42 49 52 53
        + b"000000"
        + b"000000001250"
        + b"1126130509"
        + b"000042"
        + b"210509"
        + b"1126"
        + b"021"
        + b"37"
        + b"4242424242424242=30121010000000000000"
        + b"SIM00001"
        + b"102030405060708"
        + b"156"
        + b"1B9C1845EB993A7A"
        + b"FFFF9876543210E00001"
    )
    assert raw == expected


def test_field_53_carries_twenty_digits_and_round_trips():
    doc = sale_to_iso(REQ)
    decoded = dialect.decode(dialect.encode(doc))
    assert decoded["53"] == "FFFF9876543210E00001"
    assert decoded == doc
    assert dialect.SPEC["53"]["max_len"] == 20


def test_encode_leaves_the_callers_dict_alone():
    doc = sale_to_iso(REQ)
    before = dict(doc)
    dialect.encode(doc)
    assert doc == before


def test_length_header():
    assert frame(b"abc") == b"\x00\x03abc"


def test_decode_error_names_field():
    raw = dialect.encode(sale_to_iso(REQ))
    with pytest.raises(CodecError, match="field"):
        dialect.decode(raw[:40])


def test_amount_must_fit():
    import dataclasses

    with pytest.raises(CodecError):
        sale_to_iso(dataclasses.replace(REQ, amount=10**12))


def _response(**fields):
    doc = {"t": "0210", "11": "000042", "37": "263300000001", "38": "123456", "39": "00", "41": "SIM00001"}
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def test_response_mapping():
    resp = iso_to_response(dialect.decode(dialect.encode(_response())))
    assert (resp.stan, resp.response_code, resp.auth_code, resp.rrn, resp.approved) == (
        42,
        "00",
        "123456",
        "263300000001",
        True,
    )
    declined = iso_to_response(_response(**{"39": "51", "38": None}))
    assert not declined.approved and declined.auth_code == ""


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"t": "0110"}, "MTI"),
        ({"39": None}, "field 39"),
        ({"11": None}, "field 11"),
        ({"38": None}, "authorization code"),
        ({"39": "0"}, "response code"),
    ],
)
def test_bad_responses(fields, reason):
    with pytest.raises(CodecError, match=reason):
        iso_to_response(_response(**fields))
