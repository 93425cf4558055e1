"""Hostile ISO 8583 answers, fuzzed: whatever bytes come back from a host (or a proxy), decoding and binding
them to the request ends in an answer or a CodecError — never another exception, and never an approval
that does not repeat the request's MTI pair, STAN, amount, currency, processing code, terminal and merchant."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware.errors import CodecError
from firmware.host import dialect
from firmware.host.dialect import AES_DUKPT, DEFAULT, MacCodec
from firmware.host.messages import (
    ECHOED,
    SaleRequest,
    bind,
    iso_to_response,
    iso_to_reversal_ack,
    iso_to_settlement,
    iso_to_signon,
    sale_to_iso,
)

FUZZ = settings(
    max_examples=400, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
REQUEST = sale_to_iso(
    SaleRequest(
        stan=7,
        amount=1250,
        currency_numeric="156",
        track2="4242424242424242=30121010",
        pin_block="",
        ksn="",
        terminal_id="SIM00001",
        merchant_id="102030405060708",
        local_time=NOW,
        utc_time=NOW,
    )
)
TRUE = {
    "t": "0210",
    "3": "000000",
    "4": "000000001250",
    "7": REQUEST["7"],
    "11": "000007",
    "37": "263360000002",
    "38": "123456",
    "39": "00",
    "41": "SIM00001",
    "42": "102030405060708",
    "49": "156",
}
PARSERS = (iso_to_response, iso_to_reversal_ack, iso_to_settlement, iso_to_signon)


def _outcome(raw: bytes, codec=DEFAULT):
    try:
        return iso_to_response(bind(REQUEST, codec.decode(raw)))
    except CodecError:
        return None


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(raw):
    assert _outcome(raw) is None or _outcome(raw).stan == 7
    for codec in (DEFAULT, AES_DUKPT):
        try:
            doc = codec.decode(raw)
        except CodecError:
            continue
        for parse in PARSERS:
            try:
                parse(doc)
            except CodecError:
                pass


fields = st.sampled_from(sorted(set(TRUE) | {"2", "35", "52", "53", "55", "60", "62", "64", "70", "90"}))
values = st.one_of(
    st.none(),
    st.text(alphabet="0123456789 AZaz", max_size=20),
    st.sampled_from(["000000000001", "840", "200000", "000006", "OTHER001", "0110", "0410", "10", "96", ""]),
)


@FUZZ
@given(st.dictionaries(fields, values, max_size=6))
def test_a_changed_true_answer_is_an_approval_only_when_it_still_matches(changes):
    doc = {k: v for k, v in {**TRUE, **changes}.items() if v is not None}
    try:
        raw = DEFAULT.encode(doc)
    except CodecError:
        return  # the codec would not even send this
    got = _outcome(raw)
    if got is not None and got.approved:
        back = DEFAULT.decode(raw)
        assert back["t"] == "0210" and back["11"] == REQUEST["11"]
        assert all(back.get(f) == REQUEST[f] for f in ECHOED["0200"] if f in REQUEST)


@FUZZ
@given(st.binary(min_size=1, max_size=200), st.integers(0, 10_000))
def test_flipped_bytes_of_a_maced_answer_are_no_answer(noise, where):
    key = bytes(range(16))
    codec = MacCodec(DEFAULT, "tdes", lambda: key)
    raw = bytearray(codec.encode(TRUE))
    pos = where % len(raw)
    raw[pos : pos + len(noise)] = noise
    if bytes(raw) == codec.encode(TRUE):
        return
    try:
        doc = codec.decode(bytes(raw))
    except CodecError:
        return
    assert doc == dialect.decode(bytes(raw))  # the MAC verified: the bytes say the same as before
    assert iso_to_response(bind(REQUEST, doc)).approved


def test_an_auth_code_padded_with_nuls_is_kept_without_them_and_a_control_character_is_no_answer():
    """An acquirer padding field 38 (or 37) with NULs: the padding is dropped, as spaces are, so no NUL reaches
    the journal, the receipt or the back office; a control character inside a field is no valid answer."""
    padded = iso_to_response(bind(REQUEST, {**TRUE, "38": "12\x00\x00\x00\x00", "37": "263360000002\x00"}))
    assert (padded.auth_code, padded.rrn, padded.approved) == ("12", "263360000002", True)
    for field, value in (("38", "12\x0734"), ("37", "2633\n0000002")):
        try:
            iso_to_response(bind(REQUEST, {**TRUE, field: value}))
        except CodecError as exc:
            assert f"field {field}" in str(exc)
        else:
            raise AssertionError(f"field {field} {value!r} was taken")
