"""A simulated EMV contact chip card: the applet behind the chip slot, answering the APDUs of EMV Book 3 from a card
profile's [contact] table.

It lists its applications in a PSE directory (or answers SELECT by AID only), gives GPO, records with the
ODA data (issuer and ICC certificates made by a TestPki), INTERNAL AUTHENTICATE (DDA), CDA signatures in
GENERATE AC, offline PIN with a try counter (VERIFY plaintext and enciphered, GET CHALLENGE), GET DATA
(9F17, 9F36, 9F13), EXTERNAL AUTHENTICATE or the ARPC in CDOL2, a second GENERATE AC that declines when the
ARPC is wrong, and issuer script commands with their MAC checked. T=0 framing (61xx / 6Cxx) is the slot's.
"""

from __future__ import annotations

import hashlib
import secrets
import warnings
from dataclasses import dataclass
from typing import Any

from pyemv import tlv

from firmware.core.emv.data import encode_tlv

from .emvcard import CardProfile, _split, cryptogram_scheme, generate_ac
from .emvpki import (
    TestPki,
    exponent,
    icc_certificate,
    issuer_certificate,
    modulus,
    private_decrypt,
    signed_dynamic_data,
    signed_static_data,
)

PSE = b"1PAY.SYS.DDF01"
OK = b"\x90\x00"
CDOL1 = bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F37049F35019F3403")
CDOL2_EXTERNAL = bytes.fromhex("8A029F02069F03069F1A0295055F2A029A039C019F3704")
CDOL2_ARPC = bytes.fromhex("910A8A029F02069F03069F1A0295055F2A029A039C019F3704")
PDOL = bytes.fromhex("9F02069F1A025F2A029A039C01")
DDOL = bytes.fromhex("9F3704")
CVR = bytes.fromhex("03A00000")


@dataclass(frozen=True)
class ChipApp:
    """One application on the card."""

    aid: str
    label: str
    priority: int


def _tlv(items: dict[str, Any]) -> bytes:
    return bytes(tlv.encode(items))


def _t(tag: str, value: bytes) -> bytes:
    return encode_tlv(tag, value)


class ChipApplet:
    """Answers contact command APDUs as the card in `profile` would; keeps its ATC, PIN tries and state."""

    def __init__(self, profile: CardProfile, pki: TestPki) -> None:
        self.profile, self.pki = profile, pki
        c = profile.contact
        self.c = c
        self.atc = profile.atc
        self.last_online_atc = int(c.get("last_online_atc", max(profile.atc - 1, 0)))
        self.pin_tries_max = int(c.get("pin_tries", 3))
        self.pin_tries = self.pin_tries_max
        self.apdus = 0
        self.blocked = bool(c.get("blocked", False))
        self.oda = c.get("oda", "none")
        self.issuer_auth = c.get("issuer_auth", "external" if profile.kernel == "visa" else "cdol2")
        apps = c.get("applications") or [{"aid": profile.aid, "label": profile.label, "priority": 1}]
        self.apps = [ChipApp(a["aid"].upper(), a.get("label", profile.label), int(a.get("priority", 1))) for a in apps]
        self._scheme = cryptogram_scheme(profile.kernel, profile.imk_ac, profile.pan, profile.psn)
        self.selected: ChipApp | None = None
        self._reset()

    # --- per-selection state ---------------------------------------------------------------------------------

    def _reset(self) -> None:
        self.pdol_data = b""
        self.cdol1_data = b""
        self.arqc = b""
        self.gen_ac = 0
        self.issuer_ok: bool | None = None
        self.challenge = b""
        self.script_count = 0
        self.records: dict[tuple[int, int], bytes] = {}

    def _aip(self) -> bytes:
        b1 = 0x10 | 0x08 | 0x04  # cardholder verification, terminal risk management, issuer authentication
        b1 |= {"sda": 0x40, "dda": 0x20, "cda": 0x01, "none": 0}[self.oda]
        return bytes([b1, 0x00])

    def _build_records(self, app: ChipApp) -> None:
        p, c = self.profile, self.c
        pan_bcd = bytes.fromhex(p.pan + ("F" if len(p.pan) % 2 else ""))
        rec1: dict[str, bytes] = {
            "5A": pan_bcd,
            "5F24": bytes.fromhex(p.expiry + "31"),
            "5F25": bytes.fromhex(c.get("effective", "200101")),
            "5F28": bytes.fromhex(c.get("issuer_country", "0156")),
            "5F34": bytes.fromhex(p.psn),
            "9F07": bytes.fromhex(c.get("auc", "FF00")),
            "9F08": bytes.fromhex(c.get("app_version", "0096")),
            "8C": CDOL1,
            "8D": CDOL2_ARPC if self.issuer_auth == "cdol2" else CDOL2_EXTERNAL,
            "8E": bytes.fromhex(c.get("cvm_list", "000000000000000042031E031F03")),
            "9F0D": bytes.fromhex(c.get("iac_default", "0000000000")),
            "9F0E": bytes.fromhex(c.get("iac_denial", "0000000000")),
            "9F0F": bytes.fromhex(c.get("iac_online", "0000000000")),
            "9F42": bytes.fromhex(c.get("app_currency", "0156")),
        }
        if "lcol" in c and "ucol" in c:
            rec1["9F14"], rec1["9F23"] = bytes([int(c["lcol"])]), bytes([int(c["ucol"])])
        if self.oda != "none":
            rec1["9F4A"] = b"\x82"
        if self.oda == "dda":
            rec1["9F49"] = DDOL
        body1 = b"".join(_t(k, v) for k, v in rec1.items())
        self.records[(2, 1)] = _t("70", body1)
        self.records[(2, 2)] = _tlv({"70": {"57": p.track2_eq, "5F20": p.name.encode()}})
        self.afl = bytes.fromhex("10010201")
        if self.oda == "none":
            return
        static = body1 + self._aip()
        rid = app.aid[:10]
        ca_index = int(c.get("ca_index", "92"), 16)
        ca = self.pki.ca(rid, ca_index if ca_index != 0x99 else 0x92)  # 99: a CA key the terminal lacks
        issuer = self.pki.issuer(rid, p.pan[:6])
        cert, remainder = issuer_certificate(ca, issuer, p.pan, c.get("issuer_cert_expiry", "1249"))
        rec3: dict[str, bytes] = {
            "8F": bytes([ca_index]),
            "90": self._tamper("issuer_cert", cert),
            "9F32": exponent(issuer),
        }
        if remainder:
            rec3["92"] = remainder
        rec4: dict[str, bytes] = {}
        if self.oda == "sda":
            rec4["93"] = self._tamper("ssad", signed_static_data(issuer, b"\xda\xc0", static))
        else:
            icc = self.pki.icc(p.pan, app.aid)
            icc_cert, icc_rem = icc_certificate(issuer, icc, p.pan, c.get("icc_cert_expiry", "1249"), static)
            rec4 = {"9F46": self._tamper("icc_cert", icc_cert), "9F47": exponent(icc)}
            if icc_rem:
                rec4["9F48"] = icc_rem
        self.records[(3, 1)] = _tlv({"70": rec3})
        self.records[(3, 2)] = _tlv({"70": rec4})
        self.afl += bytes.fromhex("18010200")

    def _tamper(self, what: str, data: bytes) -> bytes:
        if self.c.get("tamper") == what:
            return data[:-1] + bytes([data[-1] ^ 0x01])
        return data

    # --- commands --------------------------------------------------------------------------------------------

    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, the response APDU (data + SW1 SW2) out."""
        self.apdus += 1
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        try:
            return self._dispatch(cla, ins, p1, p2, data)
        except (ValueError, KeyError, IndexError):
            return b"\x67\x00"

    def _dispatch(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        if (cla, ins) == (0x00, 0xA4):
            return self._select(data, p2)
        if (cla, ins) == (0x00, 0xB2):
            return self._read_record(p2 >> 3, p1)
        if self.selected is None:
            return b"\x69\x85"
        if (cla, ins) == (0x80, 0xA8):
            if self.blocked:
                return b"\x69\x85"
            self.pdol_data = data[2:]
            return _tlv({"77": {"82": self._aip(), "94": self.afl}}) + OK
        if (cla, ins) == (0x80, 0xCA):
            return self._get_data(bytes([p1, p2]).hex().upper())
        if (cla, ins) == (0x00, 0x84):
            self.challenge = secrets.token_bytes(8)
            return self.challenge + OK
        if (cla, ins) == (0x00, 0x20):
            return self._verify(p2, data)
        if (cla, ins) == (0x00, 0x88) and self.oda == "dda":
            dyn = bytes([2]) + self.atc.to_bytes(2, "big")
            sdad = signed_dynamic_data(self.pki.icc(self.profile.pan, self.selected.aid), dyn, data)
            return _t("80", self._tamper("sdad", sdad)) + OK
        if (cla, ins) == (0x80, 0xAE):
            return self._generate_ac(p1, data)
        if (cla, ins) == (0x00, 0x82):
            self.issuer_ok = self._arpc_ok(data)
            return OK if self.issuer_ok else b"\x63\x00"
        if cla == 0x84 or (cla, ins) == (0x04, 0xDA):
            return self._script(cla, ins, p1, p2, data)
        return b"\x6d\x00"

    def _select(self, name: bytes, p2: int) -> bytes:
        if name == PSE:
            if not self.c.get("pse", True):
                return b"\x6a\x82"
            return _tlv({"6F": {"84": PSE, "A5": {"88": b"\x01"}}}) + OK
        matches = [a for a in self.apps if a.aid.startswith(name.hex().upper())]
        if p2 == 0x02 and self.selected in matches:
            matches = matches[matches.index(self.selected) + 1 :]
        if not matches:
            return b"\x6a\x82"
        app = matches[0]
        self.selected = app
        self._reset()
        self._build_records(app)
        fci = {"84": bytes.fromhex(app.aid), "A5": {"50": app.label.encode(), "87": self._priority(app), "9F38": PDOL}}
        return _tlv({"6F": fci}) + (b"\x62\x83" if self.blocked else OK)

    def _priority(self, app: ChipApp) -> bytes:
        return bytes([app.priority | (0x80 if self.c.get("confirm") else 0)])

    def _read_record(self, sfi: int, record: int) -> bytes:
        if sfi == 1 and self.c.get("pse", True):
            if record != 1:
                return b"\x6a\x83"
            entries = b"".join(
                _tlv({"61": {"4F": bytes.fromhex(a.aid), "50": a.label.encode(), "87": self._priority(a)}})
                for a in self.apps
            )
            return _t("70", entries) + OK
        found = self.records.get((sfi, record))
        return found + OK if found else b"\x6a\x83"

    def _get_data(self, tag: str) -> bytes:
        value = {
            "9F17": bytes([self.pin_tries]),
            "9F36": self.atc.to_bytes(2, "big"),
            "9F13": self.last_online_atc.to_bytes(2, "big"),
        }.get(tag)
        return _t(tag, value) + OK if value is not None else b"\x6a\x88"

    def _verify(self, p2: int, data: bytes) -> bytes:
        if self.pin_tries == 0:
            return b"\x69\x83"
        if p2 == 0x88:
            icc = self.pki.icc(self.profile.pan, self.selected.aid if self.selected else "")
            if self.oda not in ("dda", "cda") or len(data) != len(modulus(icc)):
                return b"\x6a\x86"
            clear = private_decrypt(icc, data)
            if clear[0] != 0x7F or not self.challenge or clear[9:17] != self.challenge:
                return b"\x69\x85"
            self.challenge = b""
            block = clear[1:9]
        elif p2 == 0x80:
            block = data
        else:
            return b"\x6a\x86"
        n = block[0] & 0x0F
        pin = block.hex().upper()[2 : 2 + n]
        if secrets.compare_digest(pin, self.profile.pin):
            self.pin_tries = self.pin_tries_max
            return OK
        self.pin_tries -= 1
        return bytes([0x63, 0xC0 | self.pin_tries])

    def _arpc_ok(self, issuer_data: bytes) -> bool:
        if len(issuer_data) < 10 or not self.arqc:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = self._scheme.generate_arpc(self.arqc, issuer_data[8:10])
        return secrets.compare_digest(expected, issuer_data[:8])

    def _generate_ac(self, p1: int, data: bytes) -> bytes:
        requested, cda = p1 & 0xC0, bool(p1 & 0x10)
        self.gen_ac += 1
        if self.gen_ac == 1:
            tags = _split(CDOL1, data)
            self.cdol1_data = data
            self.atc += 1
            kind = requested
            if requested == 0x40 and not self.c.get("offline_approve", False):
                kind = 0x80  # this card wants the issuer to see it
            hashed_before = self.pdol_data + data
        elif self.gen_ac == 2 and self.arqc:
            cdol2 = CDOL2_ARPC if self.issuer_auth == "cdol2" else CDOL2_EXTERNAL
            tags = {**_split(CDOL1, self.cdol1_data), **_split(cdol2, data)}
            if self.issuer_auth == "cdol2" and requested != 0x00:
                self.issuer_ok = self._arpc_ok(tags.get("91", b""))
            approved = tags.get("8A") in (b"00", b"Y3") and self.issuer_ok is not False
            if tags.get("8A") == b"Y3":
                approved = True
            kind = 0x40 if requested == 0x40 and approved else 0x00
            if kind == 0x40 and tags.get("8A") == b"00":
                self.last_online_atc = self.atc
            hashed_before = self.pdol_data + self.cdol1_data + data
        else:
            return b"\x69\x85"
        atc = self.atc.to_bytes(2, "big")
        # The CVR says which cryptogram each GENERATE AC returned (Visa's byte 2: the second's in bits 8-7, 01
        # TC / 00 AAC, the first's in bits 6-5, 10 ARQC), so a TC differs from the ARQC over the same data.
        card_cvr = CVR if self.gen_ac == 1 else bytes([0x03, 0x60 if kind == 0x40 else 0x20, 0x00, 0x00])
        # The issuer reads the CVR from the IAD as each scheme lays it out: 4 bytes for Visa, 6 for Mastercard.
        cvr = card_cvr if self.profile.kernel == "visa" else card_cvr + bytes(2)
        ac = generate_ac(self._scheme, {**tags, "82": self._aip(), "9F36": atc}, cvr)
        if self.gen_ac == 1 and kind == 0x80:
            self.arqc = ac
        iad = (b"\x06\x01\x0a" + card_cvr) if self.profile.kernel == "visa" else (b"\x01\x10" + card_cvr + bytes(12))
        cid = bytes([kind])
        if cda and kind != 0x00 and self.oda == "cda" and self.selected is not None:
            shown = _t("9F27", cid) + _t("9F36", atc) + _t("9F10", iad)
            tdhc = hashlib.sha1(hashed_before + shown).digest()
            dyn = bytes([2]) + atc + cid + ac + tdhc
            icc = self.pki.icc(self.profile.pan, self.selected.aid)
            sdad = self._tamper("cda", signed_dynamic_data(icc, dyn, tags.get("9F37", b"")))
            return _t("77", shown + _t("9F4B", sdad)) + OK
        return _tlv({"77": {"9F27": cid, "9F36": atc, "9F26": ac, "9F10": iad}}) + OK

    def _script(self, cla: int, ins: int, p1: int, p2: int, data: bytes) -> bytes:
        """Issuer script commands with a MAC over header, ATC, ARQC (+1 per command) and data (pyemv)."""
        if len(data) < 8 or not self.arqc:
            return b"\x69\x88"
        body, mac = data[:-8], data[-8:]
        header = bytes([cla, ins, p1, p2, len(data)])
        ac = (int.from_bytes(self.arqc, "big") + self.script_count).to_bytes(8, "big")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = self._scheme.generate_command_mac(header, ac, self.atc.to_bytes(2, "big"), body)
        if not secrets.compare_digest(expected, mac):
            return b"\x69\x88"
        self.script_count += 1
        if ins == 0x1E:  # APPLICATION BLOCK
            self.blocked = True
        elif ins == 0x24:  # PIN CHANGE/UNBLOCK
            self.pin_tries = self.pin_tries_max
        elif ins == 0xDA:  # PUT DATA
            if bytes([p1, p2]).hex().upper() == "9F14" and body:
                self.c = {**self.c, "lcol": body[0]}
        else:
            return b"\x6d\x00"
        return OK
