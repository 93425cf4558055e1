"""The contact kernel against the simulated chip card in-process (no pcscd): whole transactions, one per CVM, ODA
method, host answer and card state; plus the T=0 exchange and a fuzz of malformed card answers."""

from __future__ import annotations

import dataclasses
import tomllib
import warnings
from datetime import date, time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.core.emv.contact import (
    ChipOutcome,
    ChooseApplication,
    ContactParams,
    GoOnline,
    OfflinePin,
    OnlineAnswer,
    OnlinePin,
    contact_kernel,
)
from firmware.core.emv.data import Cancelled, CardError, CardNotSupported, encode_tlv, exchange
from firmware.core.emv.oda import ca_keys_from_doc
from hwsim.emvcard import chip_catalog, cryptogram_scheme
from hwsim.emvchip import ChipApplet
from hwsim.emvpki import TestPki

warnings.filterwarnings("ignore", message=".*TripleDES.*")
CATALOG = chip_catalog()
AIDS = ("A0000000031010", "A0000000041010", "A000000333010101", "A000000333010102", "A000000333010103")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return TestPki(tmp_path_factory.mktemp("pki"))


def params(pki: TestPki, **change) -> ContactParams:
    for rid in ("A000000003", "A000000004", "A000000333"):
        pki.ca(rid, 0x92)
    keys = ca_keys_from_doc(tomllib.loads(pki.ca_file_text()))
    base = ContactParams(
        amount=12500,
        currency_numeric="156",
        country_numeric="156",
        today=date(2026, 11, 26),
        unpredictable=bytes.fromhex("52BF4585"),
        supported_aids=AIDS,
        ca_keys=keys,
        random_number=50,
        pin_padding=bytes(range(256)),
        time_of_day=time(14, 30, 5),
        ifd_serial="CT000001",
        sequence=7,
    )
    return dataclasses.replace(base, **change)


def card(card_id: str, **contact) -> ChipApplet:
    profile = CATALOG[card_id]
    return profile, {**profile.contact, **contact}


class Host:
    """Plays the issuer: approves (or answers `rc`) with an ARPC from the card's key, optionally a wrong one,
    and issuer scripts."""

    def __init__(self, profile, rc="00", bad_arpc=False, scripts=None, reachable=True):
        self.profile, self.rc, self.bad_arpc, self.scripts, self.reachable = profile, rc, bad_arpc, scripts, reachable
        self.requests: list[GoOnline] = []

    def answer(self, request: GoOnline):
        self.requests.append(request)
        if not self.reachable:
            return None
        p = self.profile
        scheme = cryptogram_scheme(p.kernel, p.imk_ac, p.pan, p.psn)
        arqc = bytes.fromhex(request.card.icc["9F26"])
        arpc = scheme.generate_arpc(arqc, self.rc.encode())
        if self.bad_arpc:
            arpc = bytes(8)
        icc = encode_tlv("91", arpc + self.rc.encode())
        if self.scripts:
            icc += self.scripts(scheme, arqc, bytes.fromhex(request.card.icc["9F36"]))
        return OnlineAnswer(self.rc, icc)


def run(applet, p, pins=("1234",), online_pin=True, choice=1, host=None):
    """Drive the kernel; returns (outcome, log of requests and APDUs)."""
    log: list = []
    pins = list(pins)
    steps = contact_kernel(p)
    request = next(steps)
    try:
        while True:
            log.append(request)
            if isinstance(request, bytes):
                answer = applet.process(request)
            elif isinstance(request, ChooseApplication):
                answer = choice
            elif isinstance(request, OfflinePin):
                answer = pins.pop(0) if pins else None
            elif isinstance(request, OnlinePin):
                answer = online_pin
            elif isinstance(request, GoOnline):
                answer = host.answer(request) if host else None
            else:  # pragma: no cover - the kernel yields nothing else
                raise AssertionError(request)
            request = steps.send(answer)
    except StopIteration as done:
        return done.value, log


def applet(pki, card_id, **contact) -> ChipApplet:
    profile = CATALOG[card_id]
    return ChipApplet(dataclasses.replace(profile, contact={**profile.contact, **contact}), pki)


def commands(log) -> list[str]:
    return [r[:2].hex().upper() for r in log if isinstance(r, bytes)]


# --- Whole transactions ------------------------------------------------------------------------------------------


def test_online_approval_with_online_pin_unionpay_debit(pki):
    chip = applet(pki, "unionpay-debit-chip")
    host = Host(chip.profile)
    out, log = run(chip, params(pki), host=host)
    assert isinstance(out, ChipOutcome) and out.approved and out.online and not out.reversal
    assert out.cryptogram_type == "TC" and out.arc == "00" and out.cvm == "online_pin" and out.oda == "dda"
    assert out.cvm_results == "420300" and out.card.aid == "A000000333010101" and out.card.label == "UnionPay Debit"
    assert any(isinstance(r, OnlinePin) for r in log)
    icc = host.requests[0].card.icc
    for tag in ("9F26", "9F27", "9F10", "9F37", "9F36", "95", "9A", "9C", "9F02", "5F2A", "82", "9F1A", "9F33"):
        assert tag in icc, tag
    assert icc["9F34"] == "420300" and icc["84"] == "A000000333010101" and icc["9F21"] == "143005"
    assert icc["9F35"] == "21" and icc["9F1E"] == "4354303030303031" and icc["9F41"] == "00000007"
    assert bytes.fromhex(out.tvr)[2] & 0x04  # online PIN entered
    tsi = bytes.fromhex(out.tsi)
    assert tsi[0] & 0x80 and tsi[0] & 0x40 and tsi[0] & 0x20 and tsi[0] & 0x10 and tsi[0] & 0x08  # ODA, CVM, risk, auth
    assert commands(log)[:2] == ["00A4", "00B2"]  # PSE, then its directory
    assert commands(log).count("80AE") == 2 and "8088" not in commands(log)


def test_offline_plaintext_pin_right_wrong_and_blocked(pki):
    chip = applet(pki, "visa-chip-dda")
    out, log = run(chip, params(pki), pins=("9999", "1234"), host=Host(chip.profile))
    prompts = [r for r in log if isinstance(r, OfflinePin)]
    assert [(r.tries_left, r.retry, r.enciphered) for r in prompts] == [(3, False, False), (2, True, False)]
    assert out.approved and out.cvm == "offline_pin" and out.cvm_results == "410302"
    assert chip.pin_tries == 3  # a right PIN resets the counter
    # three wrong PINs: the card blocks the PIN; the rule allows the next one (online PIN)
    chip = applet(pki, "visa-chip-dda")
    out, log = run(chip, params(pki), pins=("1111", "2222", "3333"), host=Host(chip.profile))
    assert chip.pin_tries == 0 and out.cvm == "online_pin"
    assert bytes.fromhex(out.tvr)[2] & 0x20  # PIN try limit exceeded
    # the next transaction: the try counter (GET DATA 9F17) says 0, no prompt at all
    out, log = run(chip, params(pki), pins=(), host=Host(chip.profile))
    assert not [r for r in log if isinstance(r, OfflinePin)] and out.cvm == "online_pin"
    assert "80CA" in commands(log)


def test_verify_answers_6983_when_blocked(pki):
    chip = applet(pki, "visa-chip-dda", pin_tries=1)
    chip.pin_tries = 0
    chip.process(bytes.fromhex("00A4040007A000000003101000"))
    assert chip.process(bytes.fromhex("0020008008241234FFFFFFFFFF")) == b"\x69\x83"


def test_offline_enciphered_pin_with_cda(pki):
    chip = applet(pki, "mc-chip-cda")
    out, log = run(chip, params(pki), pins=("1234",), host=Host(chip.profile))
    assert out.approved and out.cvm == "offline_enciphered_pin" and out.oda == "cda"
    assert "0084" in commands(log)  # GET CHALLENGE before VERIFY P2=88
    verify = [r for r in log if isinstance(r, bytes) and r[:2] == b"\x00\x20"]
    assert verify[0][3] == 0x88 and len(verify[0]) == 5 + 128
    assert not bytes.fromhex(out.tvr)[0] & 0x04  # CDA passed
    out, _ = run(applet(pki, "mc-chip-cda"), params(pki), pins=("0000", "1234"), host=Host(chip.profile))
    assert out.approved and out.cvm == "offline_enciphered_pin"


def test_pin_bypass_moves_on_only_where_the_card_allows(pki):
    chip = applet(pki, "visa-chip-dda", cvm_list="00000000000000004103" + "1E03")
    out, _ = run(chip, params(pki), pins=("",), host=Host(chip.profile))
    assert out.cvm == "signature" and out.signature and bytes.fromhex(out.tvr)[2] & 0x08
    chip = applet(pki, "visa-chip-dda", cvm_list="00000000000000000103" + "1E03")  # PIN required, no next
    out, _ = run(chip, params(pki), pins=("",), host=Host(chip.profile))
    assert out.cvm == "failed" and out.cvm_results == "010301" and bytes.fromhex(out.tvr)[2] & 0x80


def test_signature_and_no_cvm(pki):
    chip = applet(pki, "visa-chip-sda-signature")
    out, log = run(chip, params(pki), host=Host(chip.profile))
    assert out.approved and out.cvm == "signature" and out.signature and out.cvm_results == "1E0300"
    assert out.oda == "sda" and bytes.fromhex(out.tvr)[0] == 0x02  # SDA selected, passed
    out, _ = run(applet(pki, "visa-chip-sda-signature"), params(pki, signature=False), host=Host(chip.profile))
    assert out.cvm == "none" and not out.signature and out.cvm_results == "1F0302"


@pytest.mark.parametrize(
    "card_id, tamper, bit",
    [
        ("visa-chip-sda-signature", "ssad", 0x40),
        ("visa-chip-sda-signature", "issuer_cert", 0x40),
        ("visa-chip-dda", "sdad", 0x08),
        ("visa-chip-dda", "icc_cert", 0x08),
        ("mc-chip-cda", "cda", 0x04),
        ("mc-chip-cda", "icc_cert", 0x04),
    ],
)
def test_oda_failures_set_their_bit_and_the_action_codes_decide(pki, card_id, tamper, bit):
    chip = applet(pki, card_id, tamper=tamper)
    out, _ = run(chip, params(pki), host=Host(chip.profile))
    assert bytes.fromhex(out.tvr)[0] & bit, out.tvr
    if tamper == "cda":  # the signature of the cryptogram itself: never approved
        assert not out.approved and out.reason == "combined data authentication failed"
    else:  # online-only terminal, the default TAC online: the issuer decides (approves here)
        assert out.approved and out.online
        out, _ = run(applet(pki, card_id, tamper=tamper), params(pki, tac_denial="DC00000000"), host=Host(chip.profile))
        assert not out.approved and out.arc == "Z1" and not out.online


@pytest.mark.parametrize(
    "change, bit",
    [({"ca_index": "99"}, 0x08), ({"issuer_cert_expiry": "1025"}, 0x08), ({"icc_cert_expiry": "1026"}, 0x08)],
)
def test_dda_fails_for_a_missing_ca_key_or_an_expired_certificate(pki, change, bit):
    chip = applet(pki, "visa-chip-dda", **change)
    out, _ = run(chip, params(pki), host=Host(chip.profile))
    assert bytes.fromhex(out.tvr)[0] & bit and out.oda == "dda"


def test_bad_arpc_declines_in_the_second_generate_ac_and_asks_for_a_reversal(pki):
    for card_id in ("visa-chip-dda", "unionpay-debit-chip"):  # EXTERNAL AUTHENTICATE / ARPC in CDOL2
        chip = applet(pki, card_id)
        out, log = run(chip, params(pki), host=Host(chip.profile, bad_arpc=True))
        assert not out.approved and out.reversal and out.cryptogram_type == "AAC" and out.arc == "00"
        assert set(out.icc) >= {"95", "9F10", "9F36"}
        if card_id == "visa-chip-dda":
            assert "0082" in commands(log) and bytes.fromhex(out.tvr)[4] & 0x40


def test_host_decline_and_host_not_reached(pki):
    chip = applet(pki, "unionpay-debit-chip")
    out, _ = run(chip, params(pki), host=Host(chip.profile, rc="51"))
    assert not out.approved and not out.reversal and out.arc == "51" and out.online
    out, _ = run(applet(pki, "unionpay-debit-chip"), params(pki), host=Host(chip.profile, reachable=False))
    assert out.arc == "Z3" and not out.approved  # the default TAC DC4000A800 meets 'exceeds floor limit'
    out, _ = run(
        applet(pki, "unionpay-debit-chip"),
        params(pki, tac_default="0000000000"),
        host=Host(chip.profile, reachable=False),
    )
    assert out.arc == "Y3" and out.approved and out.cryptogram_type == "TC"


def _scripts(template_tag, commands_fn):
    def make(scheme, arqc, atc):
        body = encode_tlv("9F18", b"\x00\x00\x00\x07")
        for i, (header, data) in enumerate(commands_fn()):
            ac = (int.from_bytes(arqc, "big") + i).to_bytes(8, "big")
            full = bytes(header) + bytes([len(data) + 8])
            mac = scheme.generate_command_mac(full, ac, atc, data)
            body += encode_tlv("86", full + data + mac)
        return encode_tlv(template_tag, body)

    return make


def test_issuer_scripts_before_and_after_the_second_generate_ac(pki):
    chip = applet(pki, "unionpay-debit-chip")
    chip.pin_tries = 1
    put_lcol = _scripts("71", lambda: [((0x04, 0xDA, 0x9F, 0x14), b"\x05"), ((0x84, 0x24, 0x00, 0x00), b"")])
    out, log = run(chip, params(pki), host=Host(chip.profile, scripts=put_lcol))
    assert out.approved and out.scripts == ("2000000007",) and chip.pin_tries == 3 and chip.c["lcol"] == 5
    assert out.icc["DF31"] == "2000000007"  # UnionPay's tag for the script results
    apdus = commands(log)
    assert apdus.index("04DA") < len(apdus) - 1 - apdus[::-1].index("80AE")  # before the second GENERATE AC
    block_after = _scripts("72", lambda: [((0x84, 0x1E, 0x00, 0x00), b"")])
    chip = applet(pki, "unionpay-debit-chip")
    out, log = run(chip, params(pki), host=Host(chip.profile, scripts=block_after))
    assert out.scripts == ("2000000007",) and chip.blocked and commands(log)[-1] == "841E"
    bad = _scripts("72", lambda: [((0x84, 0x1E, 0x00, 0x00), b"")])

    def wrong_mac(scheme, arqc, atc):
        raw = bad(scheme, arqc, atc)
        return raw[:-1] + bytes([raw[-1] ^ 1])

    chip = applet(pki, "unionpay-debit-chip")
    out, _ = run(chip, params(pki), host=Host(chip.profile, scripts=wrong_mac))
    assert out.scripts == ("1100000007",) and bytes.fromhex(out.tvr)[4] & 0x10 and not chip.blocked


def test_two_applications_and_the_cardholders_choice(pki):
    chip = applet(pki, "unionpay-dual-app")
    out, log = run(chip, params(pki), choice=2, host=Host(chip.profile))
    [ask] = [r for r in log if isinstance(r, ChooseApplication)]
    assert ask.options == ("UnionPay Debit", "UnionPay Credit")
    assert out.approved and out.card.aid == "A000000333010102" and out.card.label == "UnionPay Credit"
    with pytest.raises(Cancelled):
        run(applet(pki, "unionpay-dual-app"), params(pki), choice=None)
    # without the PSE: the terminal's list of AIDs, partial selection with 'next occurrence'
    chip = applet(pki, "unionpay-dual-app", pse=False)
    out, log = run(chip, params(pki, supported_aids=("A000000333",)), choice=1, host=Host(chip.profile))
    assert [r for r in log if isinstance(r, bytes) and r[1] == 0xA4][1][3] == 0x00  # first occurrence
    assert [r for r in log if isinstance(r, bytes) and r[1] == 0xA4][2][3] == 0x02  # next occurrence
    assert out.card.aid == "A000000333010101"


def test_no_application_and_a_blocked_application(pki):
    with pytest.raises(CardNotSupported):
        run(applet(pki, "visa-chip-dda"), params(pki, supported_aids=("A000000333",)))
    with pytest.raises(CardNotSupported):
        run(applet(pki, "visa-chip-dda", blocked=True, pse=False), params(pki))


def test_floor_limit_random_selection_and_offline_approval(pki):
    offline = {"offline_approve": True, "lcol": 5, "ucol": 9, "last_online_atc": 0}
    p = params(pki, online_only=False, floor_limit=20000, amount=1000, random_number=99, tac_online="0000000000")
    chip = applet(pki, "visa-chip-sda-signature", **offline)
    out, log = run(chip, p)
    assert out.approved and out.arc == "Y1" and not out.online and out.cryptogram_type == "TC"
    assert out.tvr[6:8] == "00"  # not over the floor limit, not selected, velocity fine
    p_over = dataclasses.replace(p, amount=20000, tac_online="0000008000")
    out, _ = run(applet(pki, "visa-chip-sda-signature", **offline), p_over, host=Host(chip.profile))
    assert bytes.fromhex(out.tvr)[3] & 0x80 and out.online
    p_random = dataclasses.replace(p, random_target=60, random_max_target=90, random_threshold=500, random_number=10)
    out, _ = run(
        applet(pki, "visa-chip-sda-signature", **offline),
        dataclasses.replace(p_random, tac_online="0000001000"),
        host=Host(chip.profile),
    )
    assert bytes.fromhex(out.tvr)[3] & 0x10 and out.online


def test_velocity_checking(pki):
    p = params(pki)
    out, log = run(applet(pki, "visa-chip-dda", last_online_atc=10), p, host=Host(CATALOG["visa-chip-dda"]))
    assert bytes.fromhex(out.tvr)[3] & 0x60 == 0x60  # 20 - 10 offline > lower 3 and > upper 9
    assert commands(log).count("80CA") >= 2  # GET DATA ATC and last online ATC
    out, _ = run(applet(pki, "visa-chip-dda", last_online_atc=18), p, host=Host(CATALOG["visa-chip-dda"]))
    assert bytes.fromhex(out.tvr)[3] & 0x60 == 0
    out, _ = run(applet(pki, "visa-chip-dda", last_online_atc=0), p, host=Host(CATALOG["visa-chip-dda"]))
    assert bytes.fromhex(out.tvr)[1] & 0x08  # new card


def test_processing_restrictions_reach_the_tvr(pki):
    chip = applet(pki, "visa-chip-dda", app_version="0084", effective="270101", auc="0100")
    out, _ = run(chip, params(pki, app_versions=(("A000000003", "0096"),)), host=Host(chip.profile))
    assert bytes.fromhex(out.tvr)[1] & 0xB0 == 0xB0  # versions differ, not yet effective, service not allowed


# --- The exchange wrapper: T=0 61xx and 6Cxx ------------------------------------------------------------------


def test_exchange_follows_61xx_and_6cxx():
    steps = exchange(bytes.fromhex("00B2010C00"))
    assert next(steps) == bytes.fromhex("00B2010C00")
    assert steps.send(b"\x6c\x10") == bytes.fromhex("00B2010C10")
    assert steps.send(b"\x61\x04") == bytes.fromhex("00C0000004")
    assert steps.send(b"\x01\x02\x61\x02") == bytes.fromhex("00C0000002")
    with pytest.raises(StopIteration) as done:
        steps.send(b"\x03\x04\x90\x00")
    assert done.value.value == (b"\x01\x02\x03\x04", b"\x90\x00")


class T0Card:
    """A T=0 slot in front of the applet: every answer with data comes as 61xx first, a wrong Le as 6Cxx."""

    def __init__(self, applet):
        self.applet, self.pending = applet, b""

    def process(self, apdu: bytes) -> bytes:
        if apdu[:2] == b"\x00\xc0":
            out, self.pending = self.pending[: apdu[4] or 256], self.pending[apdu[4] or 256 :]
            return out + (bytes([0x61, len(self.pending)]) if self.pending else b"\x90\x00")
        answer = self.applet.process(apdu)
        data, sw = answer[:-2], answer[-2:]
        if not data:
            return sw
        self.pending = data
        return bytes([0x61, len(data) & 0xFF])


def test_whole_transaction_over_t0(pki):
    chip = applet(pki, "unionpay-debit-chip")
    out, log = run(T0Card(chip), params(pki), host=Host(chip.profile))
    assert out.approved and "00C0" in commands(log)


# --- Malformed card answers -------------------------------------------------------------------------------------


def garbled(data, real: bytes, truth: int = 3, max_size: int = 300) -> bytes:
    """A card's answer as a broken or lying card might give it instead of `real` (drawn by hypothesis): as it
    is (`truth` chances in `truth` + 4), random bytes, cut short, another status word, or one byte flipped."""
    how = data.draw(st.sampled_from(["real"] * truth + ["random", "cut", "sw", "flip"]))
    if how == "random":
        return data.draw(st.binary(max_size=max_size))
    if how == "cut":
        return real[: data.draw(st.integers(0, len(real)))]
    if how == "sw":
        return real[:-2] + data.draw(st.binary(min_size=2, max_size=2))
    if how == "flip" and len(real) > 2:
        i = data.draw(st.integers(0, len(real) - 3))
        return real[:i] + bytes([real[i] ^ data.draw(st.integers(1, 255))]) + real[i + 1 :]
    return real


@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(st.sampled_from(["visa-chip-dda", "mc-chip-cda", "unionpay-dual-app", "visa-chip-sda-signature"]), st.data())
def test_malformed_card_answers_only_raise_card_error(pki, card_id, data):
    chip = applet(pki, card_id)

    class Liar:
        def process(self, apdu):
            return garbled(data, chip.process(apdu))

    try:
        out, _ = run(Liar(), params(pki), pins=("1234",) * 4, host=Host(chip.profile))
    except CardError:
        return
    assert isinstance(out, ChipOutcome)
