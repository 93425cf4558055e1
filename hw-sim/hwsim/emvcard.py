"""A simulated EMV contactless card: a profile (TOML) and an applet that answers command APDUs.

Two styles, as real cards do it: "visa" returns the ARQC in the GET PROCESSING OPTIONS answer (qVSDC,
cryptogram version 10); "mastercard" returns AIP/AFL, then computes the ARQC in GENERATE AC over CDOL1
(cryptogram version 16, session key from the ATC and unpredictable number). Cryptograms come from pyemv.
"""

from __future__ import annotations

import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyemv import cvn, tlv

from firmware.core.money import Currency, parse_major

PPSE = b"2PAY.SYS.DDF01"
PROFILE_DIR = Path(__file__).resolve().parent / "cards"
_CDOL = bytes.fromhex("9F02069F03069F1A0295055F2A029A039C019F3704")  # what both cryptogram versions hash
_PDOL_VISA = bytes.fromhex("9F66049F02069F03069F1A0295055F2A029A039C019F3704")
VISA_CVR = bytes.fromhex("03A00000")
MC_CVR = bytes.fromhex("A00000000000")


@dataclass(frozen=True)
class CardProfile:
    """A contactless card as TOML describes it (see README, 'Card profiles')."""

    id: str
    kernel: str
    aid: str
    label: str
    pan: str = field(repr=False)
    psn: str
    expiry: str
    imk_ac: str = field(repr=False)
    atc: int = 1
    pin: str = "1234"
    balance: int = 0  # minor units
    cdcvm: bool = False
    name: str = "CARDHOLDER/TEST"
    issuer_imk_ac: str = ""  # what the issuer holds, when it differs (a card with a bad key)
    status: str = "active"  # the issuer's view: active | stolen | do_not_honor
    payment: bool = True  # False: a transit/NDEF card with no payment application
    vanish_after: int = 0  # leaves the field after this many APDUs (0: stays)
    technology: str = "A"  # ISO/IEC 14443 Type "A" or "B"
    contact: dict[str, Any] = field(default_factory=dict, repr=False)  # the [contact] table (see ContactData)

    @property
    def track2_eq(self) -> bytes:
        """Tag 57: PAN 'D' YYMM service code discretionary, 'F'-padded."""
        digits = f"{self.pan}D{self.expiry}201{'0' * 10}"
        return bytes.fromhex(digits + ("F" if len(digits) % 2 else ""))


_KEYS = {
    "kernel",
    "aid",
    "label",
    "pan",
    "psn",
    "expiry",
    "imk_ac",
    "atc",
    "pin",
    "balance",
    "cdcvm",
    "name",
    "issuer_imk_ac",
    "status",
    "payment",
    "vanish_after",
    "technology",
    "contact",
}


def load_profile(path: str | Path, currency: str = "CNY") -> CardProfile:
    """Read a card profile; ValueError names the file and the key that is wrong."""
    path = Path(path)
    try:
        doc: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ValueError(f"{path}: unknown key {unknown[0]!r}")
    try:
        kernel = doc["kernel"]
        if kernel not in ("visa", "mastercard"):
            raise ValueError('kernel must be "visa" or "mastercard"')
        technology = str(doc.get("technology", "A")).upper()
        if technology not in ("A", "B"):
            raise ValueError('technology must be "A" or "B"')
        balance = parse_major(str(doc.get("balance", "0")), Currency.of(currency))
        return CardProfile(
            id=path.stem,
            kernel=kernel,
            aid=doc["aid"].upper(),
            label=doc["label"],
            pan=doc["pan"],
            psn=doc.get("psn", "00"),
            expiry=doc["expiry"],
            imk_ac=doc["imk_ac"],
            atc=int(doc.get("atc", 1)),
            pin=str(doc.get("pin", "1234")),
            balance=balance,
            cdcvm=bool(doc.get("cdcvm", False)),
            name=doc.get("name", "CARDHOLDER/TEST"),
            issuer_imk_ac=doc.get("issuer_imk_ac", ""),
            status=doc.get("status", "active"),
            payment=bool(doc.get("payment", True)),
            vanish_after=int(doc.get("vanish_after", 0)),
            technology=technology,
            contact=_contact_table(doc.get("contact", {})),
        )
    except KeyError as exc:
        raise ValueError(f"{path}: missing key {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def contactless_catalog() -> dict[str, CardProfile]:
    """Every profile in hwsim/cards/, by id."""
    return {p.stem: load_profile(p) for p in sorted(PROFILE_DIR.glob("*.toml"))}


def chip_catalog() -> dict[str, CardProfile]:
    """Every chip (contact) profile in hwsim/cards/chip/, by id."""
    return {p.stem: load_profile(p) for p in sorted((PROFILE_DIR / "chip").glob("*.toml"))}


_CONTACT_KEYS = {
    "cvm_list",
    "auc",
    "iac_default",
    "iac_denial",
    "iac_online",
    "app_version",
    "effective",
    "oda",
    "ca_index",
    "pin_tries",
    "offline_approve",
    "lcol",
    "ucol",
    "last_online_atc",
    "pse",
    "applications",
    "issuer_cert_expiry",
    "icc_cert_expiry",
    "tamper",
    "issuer_auth",
    "app_currency",
    "issuer_country",
    "blocked",
    "confirm",
}


def _contact_table(table: Any) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ValueError("[contact] must be a table")
    unknown = sorted(set(table) - _CONTACT_KEYS)
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r} in [contact]")
    if table.get("oda", "none") not in ("none", "sda", "dda", "cda"):
        raise ValueError('[contact] oda must be "none", "sda", "dda" or "cda"')
    return dict(table)


def cryptogram_scheme(kernel: str, imk_ac: str, pan: str, psn: str) -> Any:
    """pyemv's cryptogram version for a kernel style, keyed from the issuer master key (EMV option A)."""
    cls = cvn.VisaCVN10 if kernel == "visa" else cvn.MasterCardCVN16
    key = bytes.fromhex(imk_ac)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyemv's two-key TDES warns under cryptography >= 43
        return cls(key, key, key, pan, psn)


def generate_ac(scheme: Any, tags: dict[str, bytes], cvr: bytes) -> bytes:
    """The application cryptogram over the standard data set."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scheme.generate_ac(
            tags["9F02"],
            tags["9F03"],
            tags["9F1A"],
            tags["95"],
            tags["5F2A"],
            tags["9A"],
            tags["9C"],
            tags["9F37"],
            tags["82"],
            tags["9F36"],
            cvr,
        )


def _split(dol: bytes, data: bytes) -> dict[str, bytes]:
    out, i, j = {}, 0, 0
    while i < len(dol):
        k = i + 1
        if dol[i] & 0x1F == 0x1F:
            while dol[k] & 0x80:
                k += 1
            k += 1
        tag, length = dol[i:k].hex().upper(), dol[k]
        out[tag] = data[j : j + length]
        i, j = k + 1, j + length
    return out


class CardApplet:
    """Answers command APDUs as the card in `profile` would; keeps its own ATC."""

    def __init__(self, profile: CardProfile) -> None:
        self.profile = profile
        self.atc = profile.atc
        self.apdus = 0
        self._scheme = cryptogram_scheme(profile.kernel, profile.imk_ac, profile.pan, profile.psn)
        self._aip = bytes.fromhex("2000" if profile.kernel == "visa" else "1980")

    def _tlv(self, template: str, items: dict[str, bytes]) -> bytes:
        return tlv.encode({template: items}) + b"\x90\x00"

    def process(self, apdu: bytes) -> bytes:
        """One command APDU in, the response APDU (data + SW1 SW2) out."""
        self.apdus += 1
        p = self.profile
        if len(apdu) < 4:
            return b"\x67\x00"
        cla, ins, p1, p2 = apdu[:4]
        data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        if (cla, ins) == (0x00, 0xA4):
            if data == PPSE and p.payment:
                entry = {"4F": bytes.fromhex(p.aid), "50": p.label.encode(), "87": b"\x01"}
                return self._tlv("6F", {"84": PPSE, "A5": {"BF0C": {"61": entry}}})
            if data == bytes.fromhex(p.aid) and p.payment:
                a5: dict[str, bytes] = {"50": p.label.encode(), "87": b"\x01"}
                if p.kernel == "visa":
                    a5["9F38"] = _PDOL_VISA
                return self._tlv("6F", {"84": data, "A5": a5})
            return b"\x6a\x82"
        if (cla, ins) == (0x80, 0xA8):
            if len(data) < 2 or data[0] != 0x83:
                return b"\x67\x00"
            return self._gpo(data[2:])
        if (cla, ins) == (0x00, 0xB2):
            if p2 >> 3 != 1 or p1 != 1:
                return b"\x6a\x83"
            rec: dict[str, bytes] = {
                "5F20": p.name.encode(),
                "5F24": bytes.fromhex(p.expiry + "31"),
                "5F28": b"\x01\x56",
            }
            if p.kernel == "mastercard":
                rec.update(
                    {
                        "57": p.track2_eq,
                        "5A": bytes.fromhex(p.pan + ("F" if len(p.pan) % 2 else "")),
                        "5F34": bytes.fromhex(p.psn),
                        "8C": _CDOL,
                    }
                )
            return self._tlv("70", rec)
        if (cla, ins) == (0x80, 0xAE) and p.kernel == "mastercard":
            tags = _split(_CDOL, data)
            return self._cryptogram(tags, MC_CVR, "77", extra={})
        return b"\x6d\x00"

    def _gpo(self, pdol_data: bytes) -> bytes:
        p = self.profile
        afl = bytes.fromhex("08010100")  # SFI 1, record 1
        if p.kernel == "mastercard":
            return self._tlv("77", {"82": self._aip, "94": afl})
        tags = _split(_PDOL_VISA, pdol_data)
        ttq = tags.get("9F66", bytes(4))
        cvm_required = len(ttq) > 1 and bool(ttq[1] & 0x40)  # the reader asks for a CVM above its limit
        ctq = bytes([0x00 if p.cdcvm or not cvm_required else 0x80, 0x80 if p.cdcvm and cvm_required else 0x00])
        extra = {"82": self._aip, "94": afl, "57": p.track2_eq, "5F34": bytes.fromhex(p.psn), "9F6C": ctq}
        return self._cryptogram(tags, VISA_CVR, "77", extra)

    def _cryptogram(self, tags: dict[str, bytes], cvr: bytes, template: str, extra: dict[str, bytes]) -> bytes:
        self.atc += 1
        atc = self.atc.to_bytes(2, "big")
        ac = generate_ac(self._scheme, {**tags, "82": self._aip, "9F36": atc}, cvr)
        iad = (b"\x06\x01\x0a" + cvr) if self.profile.kernel == "visa" else (b"\x01\x10" + cvr + bytes(10))
        return self._tlv(template, {**extra, "9F27": b"\x80", "9F36": atc, "9F26": ac, "9F10": iad})
