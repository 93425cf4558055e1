"""The contactless kernel's EMV phases one at a time: tables of inputs and outcomes for the decisions, and
command/response scripts for the phases that talk to the card (no simulated card, no radio)."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import replace
from datetime import date
from typing import TypeVar

import pytest

from firmware.core.emv import (
    CVM_RESULTS,
    AflEntry,
    Application,
    Candidate,
    CardError,
    CardNotSupported,
    ChipCard,
    KernelParams,
    SeePhone,
    afl_entries,
    application_from_fci,
    card_result,
    choose_application,
    first_generate_ac,
    floor_limit_check,
    generate_ac_card_data,
    gpo_card_data,
    icc_data,
    initiate_application_processing,
    kernel,
    pdol_data,
    ppse_candidates,
    processing_restrictions,
    read_application_data,
    select_application,
    select_cvm,
    terminal_action_analysis,
    terminal_data,
    tsi,
)

T = TypeVar("T")
OK = bytes.fromhex("9000")
VISA, MC = "A0000000031010", "A0000000041010"
PAN = "4761739001010010"  # Visa's test card, Luhn-valid
PARAMS = KernelParams(
    amount=1250,
    currency_numeric="156",
    country_numeric="156",
    today=date(2026, 11, 26),
    unpredictable=bytes.fromhex("52BF4585"),
    supported_aids=(VISA, MC),
    cvm_limit=10000,
)


def t(tag: str, value: bytes) -> bytes:
    """One BER-TLV data object (values under 128 bytes)."""
    assert len(value) < 128
    return bytes.fromhex(tag) + bytes([len(value)]) + value


def script(phase: Generator[bytes, bytes, T], exchanges: list[tuple[str, bytes]]) -> T:
    """Run `phase` against a card that expects exactly these commands (hex) and gives these answers."""
    sent = []
    try:
        apdu = next(phase)
        while True:
            sent.append(apdu.hex().upper())
            assert len(sent) <= len(exchanges), f"unexpected command {sent[-1]}"
            apdu = phase.send(exchanges[len(sent) - 1][1])
    except StopIteration as done:
        assert len(sent) == len(exchanges), "the phase ended before the script"
        return done.value
    finally:
        assert sent == [c for c, _ in exchanges][: len(sent)]  # also when the phase raised


# --- Application selection ---------------------------------------------------------------------------------


def ppse(*entries: bytes) -> bytes:
    return t("6F", t("84", b"2PAY.SYS.DDF01") + t("A5", t("BF0C", b"".join(entries))))


def app(aid: str, label: bytes | None = None, priority: int | None = None) -> bytes:
    body = t("4F", bytes.fromhex(aid)) + (t("50", label) if label else b"")
    return t("61", body + (t("87", bytes([priority])) if priority is not None else b""))


def test_ppse_candidates_in_the_cards_order_with_label_and_priority():
    answer = ppse(app(VISA, b"VISA CREDIT", 0x82), app(MC), t("61", t("50", b"NO AID")), t("9F0A", b"\x01"))
    # 0x82: priority 2 with bit 8, "cannot be selected without the cardholder's confirmation"
    assert ppse_candidates(answer) == [Candidate(VISA, b"VISA CREDIT", 2, True), Candidate(MC, None, 0)]


@pytest.mark.parametrize(
    "answer", [t("6F", t("84", b"2PAY.SYS.DDF01")), t("6F", t("A5", t("88", b"\x01"))), t("70", b"")]
)
def test_ppse_answer_without_a_directory_is_not_a_payment_card(answer):
    with pytest.raises(CardNotSupported, match="no directory"):
        ppse_candidates(answer)


UNIONPAY = "A000000333010101"


@pytest.mark.parametrize(
    "candidates, supported, chosen",
    [
        ([(VISA, 0), (MC, 0)], (VISA, MC), VISA),  # no priorities: the card's first
        ([(VISA, 2), (MC, 1)], (VISA, MC), MC),  # 1 is the highest priority
        ([(VISA, 0), (MC, 14)], (VISA, MC), MC),  # none given counts as lowest (15)
        ([(VISA, 15), (MC, 0)], (VISA, MC), VISA),  # ... equal to 15: the card's order decides
        ([(VISA, 1), (MC, 2)], (MC,), MC),  # the terminal's support filters first
        ([(VISA + "01", 0)], ("a0000000031010",), VISA + "01"),  # a supported AID is a prefix, any case
        ([(UNIONPAY, 3), (VISA, 3)], ("A000000333",), UNIONPAY),
    ],
)
def test_choose_application(candidates, supported, chosen):
    listed = [Candidate(aid, None, prio) for aid, prio in candidates]
    assert choose_application(listed, supported).aid == chosen


@pytest.mark.parametrize("candidates", [[], [Candidate("A0000000651010", None, 1)]])
def test_choose_application_refuses_a_card_with_nothing_supported(candidates):
    with pytest.raises(CardNotSupported, match="no application this terminal supports"):
        choose_application(candidates, (VISA, MC))


@pytest.mark.parametrize(
    "fci, directory_label, label, pdol",
    [
        (
            {"50": b" VISA DEBIT ", "9F38": bytes.fromhex("9F66049F0206")},
            b"OTHER",
            "VISA DEBIT",
            [("9F66", 4), ("9F02", 6)],
        ),
        ({}, b"MASTERCARD", "MASTERCARD", []),  # no FCI label: the directory's
        ({"50": b""}, None, "", []),  # neither
        ({"50": b"CAF\xc9", "9F38": b""}, None, "CAF\ufffd", []),  # not ASCII: replaced, never an exception
    ],
)
def test_application_from_fci(fci, directory_label, label, pdol):
    assert application_from_fci(Candidate(VISA, directory_label, 0), fci) == Application(VISA, label, pdol)


def test_select_application_sends_ppse_then_the_chosen_aid():
    chosen = script(
        select_application((MC,)),
        [
            ("00A404000E325041592E5359532E444446303100", ppse(app(VISA, priority=1), app(MC, b"MC", 2)) + OK),
            (
                "00A4040007A000000004101000",
                t("6F", t("84", bytes.fromhex(MC)) + t("A5", t("9F38", b"\x9f\x37\x04"))) + OK,
            ),
        ],
    )
    assert chosen == Application(MC, "MC", [("9F37", 4)])


@pytest.mark.parametrize(
    "sw, error, message",
    [("6A82", CardNotSupported, "no payment system environment"), ("6A81", CardError, "SELECT PPSE: status 6A81")],
)
def test_select_application_without_a_ppse(sw, error, message):
    with pytest.raises(error, match=message):
        script(select_application((VISA,)), [("00A404000E325041592E5359532E444446303100", bytes.fromhex(sw))])


def test_select_aid_refused():
    with pytest.raises(CardError, match="SELECT AID: status 6A82"):
        script(
            select_application((VISA,)),
            [
                ("00A404000E325041592E5359532E444446303100", ppse(app(VISA)) + OK),
                ("00A4040007A000000003101000", bytes.fromhex("6A82")),
            ],
        )


# --- Terminal risk management (floor limit) and the terminal's data ---------------------------------------


@pytest.mark.parametrize(
    "amount, floor_limit, tvr",
    # Book 3 10.6.1: "equal to or greater than" the floor limit (the old test had 5000 at 5000 under it)
    [(1250, 0, "0000008000"), (0, 0, "0000008000"), (4999, 5000, "0000000000"), (5000, 5000, "0000008000")],
)
def test_floor_limit_check(amount, floor_limit, tvr):
    assert floor_limit_check(amount, floor_limit).hex().upper() == tvr


def test_terminal_data():
    data = {k: v.hex().upper() for k, v in terminal_data(PARAMS, bytes.fromhex("0000008000")).items()}
    assert data == {
        "9F66": "24804000",  # qVSDC, online PIN; online cryptogram required (online-only); CDCVM
        "9F02": "000000001250",
        "9F03": "000000000000",
        "9F1A": "0156",
        "95": "0000008000",
        "5F2A": "0156",
        "9A": "261126",
        "9C": "00",
        "9F37": "52BF4585",
        "9F35": "21",  # attended, online only (was 22, which claims offline capability)
        "9F33": "C04800",  # manual, magstripe; online PIN, no CVM: the same story as the TTQ (was E04000)
    }


# --- Initiate application processing ----------------------------------------------------------------------

TERMINAL = terminal_data(PARAMS, floor_limit_check(PARAMS.amount, PARAMS.floor_limit))


@pytest.mark.parametrize(
    "pdol, filled",
    [
        ([], ""),
        ([("9F66", 4), ("9F02", 6), ("9F37", 4)], "24804000" + "000000001250" + "52BF4585"),
        (
            [("9F02", 4), ("9A", 2), ("9F35", 2), ("DF8117", 1)],
            "00001250" + "1126" + "2100" + "00",
        ),  # fitted; unknown: 0
        ([("9F02", 253)], "00" * 247 + "000000001250"),  # the most a GPO carries
    ],
)
def test_pdol_data(pdol, filled):
    assert pdol_data(pdol, TERMINAL).hex().upper() == filled


def test_pdol_data_that_would_not_fit_a_gpo_command():
    with pytest.raises(CardError, match="the card's PDOL asks for 254 bytes; a GPO command carries 253"):
        pdol_data([("9F02", 250), ("9C", 4)], TERMINAL)


@pytest.mark.parametrize(
    "answer, card",
    [
        (t("80", bytes.fromhex("1980" + "08010100")), {"82": "1980", "94": "08010100"}),  # format 1
        (t("80", bytes.fromhex("0080")), {"82": "0080", "94": ""}),  # no records
        (
            t("77", t("82", b"\x20\x00") + t("94", bytes.fromhex("08010100")) + t("9F26", bytes(8))),  # format 2
            {"82": "2000", "94": "08010100", "9F26": "0000000000000000"},
        ),
    ],
)
def test_gpo_card_data(answer, card):
    assert {k: v.hex().upper() for k, v in gpo_card_data(answer).items()} == card


@pytest.mark.parametrize(
    "answer, message",
    [
        (t("80", b"\x19"), "format-1 GPO answer has a bad length"),
        (t("80", bytes.fromhex("1980" + "080101")), "format-1 GPO answer has a bad length"),
        (t("77", t("94", bytes.fromhex("08010100"))), "lacks mandatory tag\\(s\\) 82"),
        (t("77", t("82", b"")), "lacks mandatory tag\\(s\\) 82"),
        (bytes.fromhex("7705820220"), "malformed TLV"),
    ],
)
def test_gpo_card_data_refused(answer, message):
    with pytest.raises(CardError, match=message):
        gpo_card_data(answer)


def test_gpo_command_carries_the_filled_pdol():
    card = script(
        initiate_application_processing([("9F02", 6), ("9F37", 4)], TERMINAL),
        [("80A800000C830A00000000125052BF458500", t("80", bytes.fromhex("0080")) + OK)],
    )
    assert card == {"82": b"\x00\x80", "94": b""}
    script(initiate_application_processing([], TERMINAL), [("80A800000283" + "00" + "00", t("80", b"\x00\x80") + OK)])


@pytest.mark.parametrize(
    "sw, message",
    [
        ("6984", "card refused the transaction conditions"),
        ("6985", "conditions of use not satisfied"),  # the kernel selects the next application
        ("6986", "phone asks its holder"),
        ("6A81", "GET PROCESSING OPTIONS: status 6A81"),
    ],
)
def test_gpo_refused(sw, message):
    with pytest.raises(CardError, match=message):
        script(initiate_application_processing([], TERMINAL), [("80A8000002830000", bytes.fromhex(sw))])


# --- Read application data --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "afl, entries",
    [
        ("", []),
        ("08010100", [AflEntry(1, 1, 1, 0)]),
        ("10010301" + "F0020200", [AflEntry(2, 1, 3, 1), AflEntry(30, 2, 2, 0)]),
    ],
)
def test_afl_entries(afl, entries):
    assert list(afl_entries(bytes.fromhex(afl))) == entries


@pytest.mark.parametrize(
    "afl, message",
    [
        ("080101", "not a multiple of 4"),
        ("08010100" + "10", "not a multiple of 4"),
        ("00010100", "malformed"),  # SFI 0
        ("F8010100", "malformed"),  # SFI 31
        ("08000100", "malformed"),  # record 0
        ("08030200", "malformed"),  # last before first
    ],
)
def test_afl_entries_refused(afl, message):
    with pytest.raises(CardError, match=message):
        list(afl_entries(bytes.fromhex(afl)))


def test_afl_entries_are_checked_as_they_are_reached():
    entries = afl_entries(bytes.fromhex("08010100" + "00010100"))
    assert next(entries) == AflEntry(1, 1, 1, 0)
    with pytest.raises(CardError, match="AFL entry is malformed"):
        next(entries)


def test_read_application_data_reads_each_record_and_keeps_first_values():
    card = {"82": b"\x19\x80", "94": bytes.fromhex("08010200" + "18030300"), "9F36": b"\x00\x01"}
    out = script(
        read_application_data(card),
        [
            ("00B2010C00", t("70", t("57", b"\x47") + t("9F36", b"\x00\x09")) + OK),  # 9F36 from GPO stays
            ("00B2020C00", t("70", t("57", b"\x99") + t("5F24", b"\x30\x12\x31")) + OK),  # 57 from record 1 stays
            ("00B2031C00", t("70", t("8C", b"\x9f\x02\x06")) + OK),
        ],
    )
    assert out == {**card, "57": b"\x47", "5F24": b"\x30\x12\x31", "8C": b"\x9f\x02\x06"}
    assert "57" not in card  # the input is not changed


def test_read_application_data_stops_at_a_refused_record_or_a_malformed_entry():
    with pytest.raises(CardError, match="READ RECORD 1/2: status 6A83"):
        script(
            read_application_data({"94": bytes.fromhex("08010200")}),
            [("00B2010C00", t("70", b"") + OK), ("00B2020C00", bytes.fromhex("6A83"))],
        )
    with pytest.raises(CardError, match="AFL entry is malformed"):
        script(
            read_application_data({"94": bytes.fromhex("08010100" + "08020100")}), [("00B2010C00", t("70", b"") + OK)]
        )


# --- Card action analysis: the first GENERATE AC ----------------------------------------------------------


def test_generate_ac_card_data_formats():
    raw = bytes.fromhex("80" + "0007" + "1122334455667788" + "06010A03A00000")
    assert generate_ac_card_data(t("80", raw)) == {
        "9F27": b"\x80",
        "9F36": b"\x00\x07",
        "9F26": bytes.fromhex("1122334455667788"),
        "9F10": bytes.fromhex("06010A03A00000"),
    }
    assert generate_ac_card_data(t("80", raw[:11]))["9F10"] == b""
    assert generate_ac_card_data(t("77", t("9F27", b"\x40"))) == {"9F27": b"\x40"}
    with pytest.raises(CardError, match="format-1 GENERATE AC answer is too short"):
        generate_ac_card_data(t("80", raw[:10]))


def test_first_generate_ac_asks_for_an_arqc_over_cdol1():
    card = {"8C": bytes.fromhex("9F02069F37049F3602"), "9F36": b"\x00\x05", "9F37": b"\xff" * 4}
    out = script(
        first_generate_ac(card, TERMINAL),
        [
            # CDOL1: amount (terminal), unpredictable number (the terminal's: a card's 9F37 is ignored), ATC (card)
            ("80AE80000C00000000125052BF4585000500", t("77", t("9F27", b"\x80") + t("9F36", b"\x00\x06")) + OK),
        ],
    )
    assert out["9F36"] == b"\x00\x06" and out["9F27"] == b"\x80" and out["8C"] == card["8C"]


def test_first_generate_ac_refused():
    with pytest.raises(CardError, match="no cryptogram after GPO and no CDOL1"):
        script(first_generate_ac({}, TERMINAL), [])
    with pytest.raises(CardError, match="GENERATE AC: status 6985"):
        script(first_generate_ac({"8C": b""}, TERMINAL), [("80AE800000", bytes.fromhex("6985"))])


# --- What the card returned -------------------------------------------------------------------------------

GOOD = {
    "57": bytes.fromhex(PAN + "D30122011000000F"),
    "9F26": bytes(8),
    "9F27": b"\x80",
    "9F36": b"\x00\x01",
    "9F10": b"\x06",
}


@pytest.mark.parametrize("cid", [0x80, 0x40, 0x81])
def test_card_result(cid):
    assert card_result({**GOOD, "9F27": bytes([cid])}) == (PAN + "=30122011000000", PAN, cid)


@pytest.mark.parametrize(
    "change, message, screen",
    [
        ({"57": b"", "9F10": b""}, r"lacks mandatory tag\(s\) 57, 9F10", "CARD ERROR, TRY ANOTHER CARD"),
        ({"57": bytes.fromhex(PAN)}, "track 2 equivalent data is malformed", "CARD ERROR, TRY ANOTHER CARD"),
        ({"57": bytes.fromhex("4761739001010011D3012201")}, "Luhn", "CARD ERROR, TRY ANOTHER CARD"),
        ({"9F27": b"\x00"}, r"declined \(AAC\)", "DECLINED BY CARD"),
        ({"9F27": b"\x3f"}, r"declined \(AAC\)", "DECLINED BY CARD"),
    ],
)
def test_card_result_refused(change, message, screen):
    with pytest.raises(CardError, match=message) as err:
        card_result({k: v for k, v in {**GOOD, **change}.items() if v})
    assert err.value.screen == screen


# --- Processing restrictions and terminal action analysis -------------------------------------------------

TODAY = date(2026, 11, 26)


@pytest.mark.parametrize(
    "dates, tvr",
    [
        ({}, "0000008000"),
        ({"5F24": "261126", "5F25": "261126"}, "0000008000"),  # expires today, effective today: fine
        ({"5F24": "261125"}, "0040008000"),  # expired
        ({"5F25": "261127"}, "0020008000"),  # not yet effective
        ({"5F24": "251231", "5F25": "270101"}, "0060008000"),
        ({"5F24": "2511", "5F25": "27010101"}, "0000008000"),  # not three bytes: not checked
    ],
)
def test_processing_restrictions(dates, tvr):
    card = {k: bytes.fromhex(v) for k, v in dates.items()}
    assert processing_restrictions(bytes.fromhex("0000008000"), card, TODAY).hex().upper() == tvr


@pytest.mark.parametrize(
    "tvr, tac, iac, declined",
    [
        ("0000008000", "0010000000", "0000000000", False),
        ("0040008000", "0010000000", "0000000000", False),
        ("0040008000", "0040000000", "0000000000", True),  # the terminal's denial code
        ("0040008000", "0010000000", "0040000000", True),  # the issuer's
        ("0000008000", "0000000000", "00", False),  # a short IAC counts from the right
        ("0000008000", "0000000000", "8000", True),
    ],
)
def test_terminal_action_analysis(tvr, tac, iac, declined):
    if not declined:
        terminal_action_analysis(bytes.fromhex(tvr), tac, bytes.fromhex(iac))
        return
    with pytest.raises(CardError, match=f"TVR {tvr} meets the denial codes") as err:
        terminal_action_analysis(bytes.fromhex(tvr), tac, bytes.fromhex(iac))
    assert err.value.screen == "DECLINED BY TERMINAL"


# --- Cardholder verification ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "amount, ctq, cvm",
    [
        (10000, "0000", "none"),  # at the limit: no CVM
        (10000, "0080", "cdcvm"),  # the phone says it verified its holder: that is the CVM done
        (10001, "0000", "online_pin"),
        (10001, "0080", "cdcvm"),  # the phone verified the cardholder
        (10001, "FF7F", "online_pin"),
        (10001, "80", "online_pin"),  # a CTQ too short to say
    ],
)
def test_select_cvm(amount, ctq, cvm):
    assert select_cvm(amount, 10000, bytes.fromhex(ctq)) == cvm


@pytest.mark.parametrize(
    "cvm, results, status", [("none", "1F0002", "0800"), ("cdcvm", "010002", "4800"), ("online_pin", "020000", "4800")]
)
def test_cvm_results_and_tsi(cvm, results, status):
    assert CVM_RESULTS[cvm].hex().upper() == results and tsi(cvm).hex().upper() == status


# --- Field 55 and the kernel around the phases ------------------------------------------------------------


def test_icc_data_takes_the_terminals_own_tags_over_a_cards_and_the_selected_aid():
    # A tag the terminal owns (95 TVR) that a card also sends goes out as the terminal says (EMV Book 3 Annex A:
    # its source is the terminal): a card cannot tell the issuer a TVR of its own (found in review).
    icc = icc_data(
        {"9F02": b"\x12", "95": b"\x00" * 5, "9F66": b"\x36"},
        {"95": b"\x11" * 5, "84": b"\x01", "57": b"\x47", "9F26": b"\xab"},
        VISA,
    )
    assert icc == {"84": VISA, "95": "0000000000", "9F02": "12", "9F26": "AB"}  # no 57, no 9F66: not ICC_TAGS


def test_kernel_counts_the_commands_and_closes_its_phases():
    steps = kernel(PARAMS)
    assert next(steps) == bytes.fromhex("00A404000E325041592E5359532E444446303100")
    steps.close()  # the shell closes the kernel when the card leaves
    with pytest.raises(StopIteration):
        next(steps)
    visa = [
        ("00A404000E325041592E5359532E444446303100", ppse(app(VISA)) + OK),
        ("00A4040007A000000003101000", t("6F", t("50", b"VISA")) + OK),
        ("80A8000002830000", t("77", t("82", b"\x00\x80") + t("94", bytes.fromhex("08010100"))) + OK),
        ("00B2010C00", t("70", b"".join(t(k, v) for k, v in GOOD.items())) + OK),
    ]
    card = script(kernel(PARAMS), visa)
    assert isinstance(card, ChipCard) and card.apdus == 4 and card.kernel == "visa" and card.label == "VISA"
    assert (
        card.icc["9F34"] == "1F0002" and card.icc["9B"] == "0800" and card.icc["95"] == "8000008000"
    )  # ODA not performed


# --- The contactless kernel, corrected against real cards (issue 13) ------------------------------------------


def mc_card(aip: str = "1980", expiry: str = "301231", cvm_list: str = "") -> list[tuple[str, bytes]]:
    records = t("57", bytes.fromhex("5413330089020011D30122011000000F")) + t("5F24", bytes.fromhex(expiry))
    records += t("8C", bytes.fromhex("9F0206950582029F34039F3704"))
    if cvm_list:
        records += t("8E", bytes.fromhex(cvm_list))
    return [
        ("00A404000E325041592E5359532E444446303100", ppse(app(MC)) + OK),
        ("00A4040007A000000004101000", t("6F", t("50", b"MC")) + OK),
        ("80A8000002830000", t("77", t("82", bytes.fromhex(aip)) + t("94", bytes.fromhex("08010100"))) + OK),
        ("00B2010C00", t("70", records) + OK),
    ]


def _gac(cdol1_hex: str) -> tuple[str, bytes]:
    answer = t("77", t("9F27", b"\x80") + t("9F36", b"\x00\x02") + t("9F26", bytes(8)) + t("9F10", b"\x01"))
    return "80AE8000" + f"{len(cdol1_hex) // 2:02X}" + cdol1_hex + "00", answer + OK


def test_mastercard_cdol1_carries_the_tvr_and_cvm_results_that_field_55_carries():
    """Processing restrictions and CVM run before GENERATE AC: an expired card's TVR and the CVM results go to
    the card in CDOL1 and the same values into field 55 (before: 9F34 zeros to the card, 1F0002 in field 55)."""
    big = replace(PARAMS, amount=20000)
    cdol1 = "000000020000" + "8040008000" + "1980" + "420300" + "52BF4585"  # TVR: ODA not done, expired, floor
    card = script(kernel(big), [*mc_card(expiry="251231", cvm_list="0000000000000000" + "4203"), _gac(cdol1)])
    assert card.cvm == "online_pin" and card.icc["95"] == "8040008000" and card.icc["9F34"] == "420300"


def test_mastercard_phone_cvm_from_the_aip_not_the_ctq():
    big = replace(PARAMS, amount=20000)
    cdol1 = "000000020000" + "8000008000" + "1B80" + "010002" + "52BF4585"
    card = script(kernel(big), [*mc_card(aip="1B80"), _gac(cdol1)])
    assert card.cvm == "cdcvm"  # on-device CVM (AIP byte 1 bit 2): no PIN asked of a phone


def test_mastercard_cvm_list_signature_where_there_is_no_pin_pad():
    big = replace(PARAMS, amount=20000, online_pin=False, signature=True)
    cdol1 = "000000020000" + "8000008000" + "1980" + "1E0300" + "52BF4585"
    card = script(kernel(big), [*mc_card(cvm_list="0000000000000000" + "4203" + "1E03"), _gac(cdol1)])
    assert card.cvm == "signature"


@pytest.mark.parametrize(
    "ctq, online_pin, signature, cvm",
    [("8000", True, False, "online_pin"), ("4000", True, True, "signature"), ("0080", True, False, "cdcvm")],
)
def test_visa_cvm_from_the_ctq(ctq, online_pin, signature, cvm):
    assert select_cvm(20000, 10000, bytes.fromhex(ctq), online_pin, signature) == cvm


def test_ttq_asks_for_a_cvm_above_the_limit_and_an_online_cryptogram():
    assert terminal_data(replace(PARAMS, amount=10001), bytes(5))["9F66"].hex().upper() == "24C04000"
    offline = replace(PARAMS, online_only=False, signature=True, contact_chip=True)
    assert terminal_data(offline, bytes(5))["9F66"].hex().upper() == "36004000"
    assert terminal_data(offline, bytes(5))["9F35"] == b"\x22"


def test_gpo_6985_selects_the_next_application_and_6986_says_see_phone():
    two = ppse(app(VISA, priority=1), app(MC, priority=2))
    steps = [
        ("00A404000E325041592E5359532E444446303100", two + OK),
        ("00A4040007A000000003101000", t("6F", t("50", b"VISA")) + OK),
        ("80A8000002830000", bytes.fromhex("6985")),
        ("00A404000E325041592E5359532E444446303100", two + OK),
        ("00A4040007A000000004101000", t("6F", t("50", b"MC")) + OK),
        ("80A8000002830000", bytes.fromhex("6986")),
    ]
    with pytest.raises(SeePhone) as err:
        script(kernel(PARAMS), steps)
    assert err.value.screen == "SEE PHONE"


def test_the_kernel_is_chosen_by_the_kernel_identifier():
    entry = t("61", t("4F", bytes.fromhex(VISA)) + t("9F2A", b"\x02"))  # a Visa AID declaring kernel 2
    visa_as_mc = [
        ("00A404000E325041592E5359532E444446303100", ppse(entry) + OK),
        ("00A4040007A000000003101000", t("6F", t("50", b"X")) + OK),
        ("80A8000002830000", t("77", t("82", b"\x19\x80") + t("94", bytes.fromhex("08010100"))) + OK),
        ("00B2010C00", t("70", b"".join(t(k, v) for k, v in GOOD.items()) + t("8C", b"\x9f\x37\x04")) + OK),
        ("80AE80000452BF458500", t("77", t("9F27", b"\x80") + t("9F36", b"\x00\x02")) + OK),
    ]
    card = script(kernel(PARAMS), visa_as_mc)  # 9F26 came back in the records, yet GENERATE AC is sent
    assert card.kernel == "mastercard"
    unknown = t("61", t("4F", bytes.fromhex(VISA)) + t("9F2A", b"\x09"))
    with pytest.raises(CardNotSupported, match="kernel 09"):
        script(
            kernel(PARAMS),
            [
                ("00A404000E325041592E5359532E444446303100", ppse(unknown) + OK),
                ("00A4040007A000000003101000", t("6F", b"") + OK),
            ],
        )


def test_a_length_byte_of_ff_is_a_card_error():
    with pytest.raises(CardError):
        gpo_card_data(bytes.fromhex("77FF8202"))
    with pytest.raises(CardError):
        pdol_data([("9F02", 0xFF)], TERMINAL)
