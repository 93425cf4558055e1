"""ISO/IEC 7813 track parsing: good swipes, malformed swipes, and properties over arbitrary input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.core.pan import luhn_valid
from firmware.core.track import parse_swipe
from firmware.errors import CardReadError

T1 = "%B4242424242424242^TEST/CARD^30121010000000000000000?"
T2 = ";4242424242424242=30121010000000000000?"


def test_both_tracks():
    card = parse_swipe(T1 + T2)
    assert card.pan == "4242424242424242"
    assert card.expiry == "3012"
    assert card.service_code == "101"
    assert card.name == "TEST/CARD"
    assert card.track2 == "4242424242424242=30121010000000000000"
    assert card.masked_pan == "424242******4242"


def test_track2_alone_and_track1_error_marker():
    assert parse_swipe(T2).pan == "4242424242424242"
    assert parse_swipe("%E?" + T2).name == ""


def test_card_data_stays_out_of_repr():
    text = repr(parse_swipe(T1 + T2))
    assert "4242424242424242" not in text and "3012" not in text and "TEST/CARD" not in text


@pytest.mark.parametrize(
    "swipe, reason",
    [
        ("", "empty"),
        (T1, "track 2 missing"),  # half the card: track 1 only
        (";4242424242424242=3012101000", "unexpected characters"),  # no end sentinel
        ("4242424242424242=30121010000000000000?", "unexpected characters"),  # no start sentinel
        (";4242424242424242=30121010000000000000?xyz", "unexpected characters"),
        (";4242424242424241=30121010000000000000?", "Luhn"),
        (";4242424242424242=30131010000000000000?", "expiry month"),
        (";42424242=30121010000000000000?", "track 2 malformed"),  # too short a PAN
        (";4242424242424242D30121010000000000000?", "track 2 malformed"),
        ("%B4000000000000002^X/Y^30121010000?" + T2, "disagree"),
        ("%B4242424242424242^^3012101?" + T2, "track 1 malformed"),
        (";E?", "track 2 malformed"),
    ],
)
def test_bad_swipes_give_a_reason(swipe, reason):
    with pytest.raises(CardReadError, match=reason):
        parse_swipe(swipe)


def _luhn_complete(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return body + d
    raise AssertionError


def fuzz(examples: int):
    """Deterministic hypothesis settings: the same examples every run, no deadline on a loaded machine."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None)


pans = st.text("0123456789", min_size=11, max_size=18).map(_luhn_complete)
expiries = st.tuples(st.integers(0, 99), st.integers(1, 12)).map(lambda t: f"{t[0]:02d}{t[1]:02d}")
names = st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ /.", min_size=2, max_size=26).filter(lambda s: s.strip())


@fuzz(150)
@given(pans, expiries, st.text("0123456789", min_size=3, max_size=3), st.text("0123456789", max_size=10), names)
def test_any_wellformed_card_parses(pan, expiry, sc, disc, name):
    t1 = f"%B{pan}^{name}^{expiry}{sc}{disc}?"
    t2 = f";{pan}={expiry}{sc}{disc}?"
    card = parse_swipe(t1 + t2)
    assert (card.pan, card.expiry, card.service_code, card.name) == (pan, expiry, sc, name.strip())


@fuzz(400)
@given(st.one_of(st.text(max_size=120), st.text("%;?^=B0123456789 /E", max_size=120)))
def test_garbage_only_ever_raises_card_read_error(text):
    try:
        card = parse_swipe(text)
    except CardReadError:
        return
    assert luhn_valid(card.pan)  # whatever parsed must be a plausible card
    assert card.pan.isascii() and card.expiry.isascii() and card.track2.isascii() and card.name.isprintable()


@fuzz(100)
@given(pans, expiries, st.integers(1, 30))
def test_truncated_swipe_is_rejected(pan, expiry, cut):
    t2 = f";{pan}={expiry}1010000000000?"
    with pytest.raises(CardReadError):
        parse_swipe(t2[:-cut])


def _lookalike(text: str, style: int, where: st.DataObject) -> str:
    """`text` with one ASCII digit replaced by one that str.isdigit() and int() accept too."""
    spots = [i for i, c in enumerate(text) if c.isdigit()]
    i = where.draw(st.sampled_from(spots))
    d = int(text[i])
    return text[:i] + ("⁰¹²³⁴⁵⁶⁷⁸⁹"[d], chr(0xFF10 + d), chr(0x660 + d), chr(0x966 + d))[style] + text[i + 1 :]


@fuzz(200)
@given(pans, expiries, names, st.integers(0, 3), st.data())
def test_digits_that_are_not_ascii_are_a_read_error(pan, expiry, name, style, data):
    """A \\d in a str pattern matches "４", "٣" and "३": a PAN or expiry of those must never parse (it would
    go to the host as field 2/35 and break the encoder, or pass a Luhn check it never met)."""
    t1, t2 = f"%B{pan}^{name}^{expiry}1010000?", f";{pan}={expiry}1010000000?"
    for swipe in (_lookalike(t2, style, data), t1 + _lookalike(t2, style, data), _lookalike(t1, style, data) + t2):
        with pytest.raises(CardReadError, match="malformed"):
            parse_swipe(swipe)


def test_track_1_with_control_characters_is_malformed():
    with pytest.raises(CardReadError, match="track 1 malformed"):
        parse_swipe("%B4242424242424242^EVIL\x1bp^30121010000?" + T2)
