"""The simulated acquirer: a real TCP server on loopback speaking ISO 8583 with an issuer behind it.

The issuer holds the test accounts (balance, PIN, status), derives each DUKPT key from the BDK to
decrypt PIN blocks, and answers 00/05/14/43/51/54/55/75/91. Faults make the next request misbehave.
Behind it sits UnionPay QR as an acquirer reaches it: a customer's payment code (C2B, 19 digits starting 62)
comes as the PAN in field 2 with entry mode 03; each code pays once, and tests choose what the payer of the next
new code does (CODE_BEHAVIOURS).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import secrets
import struct
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import iso8583
import iso8583.specs
import psec.pinblock

from firmware.core.emv import CardError, tlv_items
from firmware.security import dukpt, dukpt_aes, keys

from .cards import CATALOG, TestCard
from .emvcard import CardProfile, cryptogram_scheme, generate_ac

log = logging.getLogger(__name__)

FAULTS = ("timeout", "late", "drop", "twice", "garble", "badmac", "badkcv")
SIGN_ON_MTIS = ("0800", "0810")
PIN_TRIES = 3
# What the payer behind the next new payment code does: pays; pays only with the payment PIN (6 digits, CODE_PIN)
# whatever the amount; has too little balance; shows a code that has expired (it lives a minute in the app).
CODE_BEHAVIOURS = ("pay", "password", "insufficient", "expired")
CODE_PIN = "123456"
CODE_PIN_ABOVE = 100_000  # above this (fen) every payer's PIN is asked for: UnionPay's password-free limit
CODE_BALANCE = 5_000_000  # what the payer behind a code can spend (fen)
KEEP_MESSAGES = 1000  # host messages the harness keeps in host_log (older ones are counted): flat memory in a soak

# The acquirer's own copy of the dialect contract: default_ascii, field 53 carries the 20-digit KSN.
SPEC = copy.deepcopy(iso8583.specs.default_ascii)
SPEC["53"]["max_len"] = 20
# ... and of the AES DUKPT profile: a 16-byte format-4 PIN block, a 12-byte KSN.
SPEC_AES = copy.deepcopy(SPEC)
SPEC_AES["52"]["max_len"] = 32
SPEC_AES["53"]["max_len"] = 24
# The X9.24-3 test BDK for AES-128 DUKPT.
AES_BDK = bytes.fromhex("FEDCBA9876543210F1F1F1F1F1F1F1F1")


@dataclass
class Account:
    """The issuer's record of one card."""

    pan: str
    pin: str
    balance: int
    status: str = "active"
    pin_failures: int = 0
    kernel: str = ""  # chip cards: "visa" | "mastercard" (which cryptogram version)
    imk_ac: str = ""  # chip cards: issuer master key for application cryptograms
    psn: str = "00"
    last_atc: int = -1  # highest ATC seen: a cryptogram at or below it is a replay


class Issuer:
    """Authorization decisions: pure apart from the account records it updates."""

    def __init__(self, bdk: bytes, cards: list[TestCard], contactless: list[CardProfile] = ()) -> None:
        self._bdk = bdk
        self.accounts = {c.pan: Account(c.pan, c.pin, c.balance, c.status) for c in cards if c.status != "unknown"}
        for profile in contactless:
            self.add_contactless(profile)
        self.next_codes: list[str] = []  # the behaviours of the next new payment codes, in order ("pay" after)
        self.codes: dict[str, Account] = {}  # payment code -> its payer's account (apart from the cards')
        self.spent: set[str] = set()  # payment codes that paid: a code pays once

    def account(self, key: str) -> Account | None:
        """The account a sale was charged to: a card's (by PAN) or a payment code's payer's (by the code)."""
        return self.accounts.get(key) or self.codes.get(key)

    def next_code(self, behaviour: str, times: int = 1) -> None:
        """What the payers behind the next `times` new payment codes do (CODE_BEHAVIOURS)."""
        if behaviour not in CODE_BEHAVIOURS:
            raise ValueError(f"unknown payer {behaviour!r}; one of {', '.join(CODE_BEHAVIOURS)}")
        self.next_codes += [behaviour] * times

    def _code_account(self, code: str) -> Account:
        """The payer's account behind a payment code: opened when the code is first seen, with the next
        behaviour as its status (the app that showed the code is the next payer's)."""
        account = self.codes.get(code)
        if account is None:
            behaviour = self.next_codes.pop(0) if self.next_codes else "pay"
            balance = 0 if behaviour == "insufficient" else CODE_BALANCE
            account = self.codes[code] = Account(code, CODE_PIN, balance, behaviour)
        return account

    def _decide_code(self, doc: dict[str, str], session: tuple[str, bytes] | None) -> str:
        """The response code for a payment code sent as the PAN (field 2, entry mode 03): its payer's PIN is
        checked with the code as the PIN block's PAN (the encryption factor), and the code is spent on approval."""
        code = doc.get("2", "")
        if "35" in doc or "55" in doc:
            return "30"  # a code is no card: no track, no chip data
        if not (len(code) == 19 and code.isascii() and code.isdigit() and code.startswith("62")) or code in self.spent:
            return "14"  # not a UnionPay payment code, or one that paid already
        if code in self.accounts:
            return "14"  # a card's number has a code's shape, but UnionPay finds no payment code by it
        account = self._code_account(code)
        if account.status == "expired":
            return "54"
        if account.pin_failures >= PIN_TRIES:
            return "75"
        amount = int(doc["4"])
        if "52" in doc:
            if not self._pin_ok(account, doc["52"], doc.get("53", ""), session):
                account.pin_failures += 1
                return "75" if account.pin_failures >= PIN_TRIES else "55"
        elif account.status == "password" or amount > CODE_PIN_ABOVE:
            return "55"  # the payer's PIN is needed and none came
        if amount > account.balance:
            return "51"
        account.balance -= amount
        self.spent.add(code)
        return "00"

    def add_contactless(self, p: CardProfile) -> None:
        """Open (or keep) the account of a contactless card profile."""
        if p.payment and p.pan not in self.accounts:
            self.accounts[p.pan] = Account(
                p.pan,
                p.pin,
                p.balance,
                p.status,
                kernel=p.kernel,
                imk_ac=p.issuer_imk_ac or p.imk_ac,
                psn=p.psn,
                last_atc=p.atc,
            )

    def _pin_ok(self, account: Account, block_hex: str, ksn_hex: str, session: tuple[str, bytes] | None = None) -> bool:
        try:
            ksn = bytes.fromhex(ksn_hex)
            if not ksn and session is not None:  # master/session: the sign-on PIN key
                scheme, key = session
                if scheme == "aes":
                    pin = psec.pinblock.decipher_pinblock_iso_4(key, bytes.fromhex(block_hex), account.pan)
                else:
                    clear = dukpt.tdes_ecb_decrypt(key, bytes.fromhex(block_hex))
                    pin = psec.pinblock.decode_pinblock_iso_0(clear, account.pan)
            elif len(ksn) == 12:  # AES DUKPT: key ID + 32-bit counter, format 4
                initial = dukpt_aes.initial_key(AES_BDK, ksn[:8])
                key = dukpt_aes.pin_key(initial, ksn[:8], int.from_bytes(ksn[8:], "big"))
                pin = psec.pinblock.decipher_pinblock_iso_4(key, bytes.fromhex(block_hex), account.pan)
            else:
                key = dukpt.pin_key(dukpt.derive_ipek(self._bdk, ksn), ksn)
                clear = dukpt.tdes_ecb_decrypt(key, bytes.fromhex(block_hex))
                pin = psec.pinblock.decode_pinblock_iso_0(clear, account.pan)
        except (ValueError, dukpt.KeyMaterialError):  # a malformed block or KSN is a wrong PIN
            return False
        return secrets.compare_digest(pin, account.pin) and account.status != "pin_mismatch"

    def verify_arqc(self, account: Account, icc_hex: str) -> bytes:
        """The ARQC from field 55 when it verifies under the card's key and its ATC is new, else b""."""
        try:
            items = dict(tlv_items(bytes.fromhex(icc_hex)))
            atc = int.from_bytes(items["9F36"], "big")
            iad = items["9F10"]
            cvr = iad[3:7] if account.kernel == "visa" else iad[2:8]
            scheme = cryptogram_scheme(account.kernel, account.imk_ac, account.pan, account.psn)
            expected = generate_ac(scheme, items, cvr)
        except (KeyError, ValueError, CardError) as exc:
            log.warning("acquirer: unusable chip data: %s", exc)
            return b""
        if not secrets.compare_digest(expected, items["9F26"]) or atc <= account.last_atc:
            return b""
        account.last_atc = atc
        return expected

    def authorize(
        self, doc: dict[str, str], today: datetime, session: tuple[str, bytes] | None = None
    ) -> tuple[str, str]:
        """(response code, field 55 answer) for a 0200; debits the account on approval. For chip data
        the cryptogram is checked first and the answer carries the ARPC (tag 91) for the card.
        `session` is (scheme, PIN key) of the terminal's sign-on, for PIN blocks without a KSN."""
        rc, arqc = self._decide(doc, today, session)
        if not arqc:
            return rc, ""
        account = self.accounts[doc["35"].partition("=")[0]]
        scheme = cryptogram_scheme(account.kernel, account.imk_ac, account.pan, account.psn)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arpc = scheme.generate_arpc(arqc, rc.encode())
        return rc, ("91" + f"{len(arpc) + 2:02X}" + arpc.hex() + rc.encode().hex()).upper()

    def _decide(
        self, doc: dict[str, str], today: datetime, session: tuple[str, bytes] | None = None
    ) -> tuple[str, bytes]:
        """The response code, and the verified ARQC when the request carried chip data."""
        if doc.get("22", "").startswith("03"):
            return self._decide_code(doc, session), b""
        track2 = doc.get("35", "")
        pan, _, rest = track2.partition("=")
        if len(rest) < 7 or not rest[:4].isdigit():
            return "30", b""  # format error
        account = self.accounts.get(pan)
        if account is None:
            return "14", b""
        if account.status == "issuer_down":
            return "91", b""
        if account.status == "stolen":
            return "43", b""
        if account.status == "do_not_honor":
            return "05", b""
        if rest[:4] < today.strftime("%y%m"):
            return "54", b""
        arqc = b""
        if "55" in doc:
            arqc = self.verify_arqc(account, doc["55"])
            if not arqc:
                return "82", b""  # cryptogram failed or replayed
        elif account.kernel:
            return "05", b""  # a chip card's data without its chip data
        if account.pin_failures >= PIN_TRIES:
            return "75", arqc
        if "52" in doc or not arqc:  # no PIN on a tap means the CVM was not PIN
            if not self._pin_ok(account, doc.get("52", ""), doc.get("53", ""), session):
                account.pin_failures += 1
                return ("75" if account.pin_failures >= PIN_TRIES and account.status != "pin_mismatch" else "55"), arqc
            account.pin_failures = 0
        amount = int(doc["4"])
        if amount > account.balance:
            return "51", arqc
        account.balance -= amount
        return "00", arqc


class Acquirer:
    """The acquirer host: TCP server in its own thread and event loop; `ledger` and `host_log` for tests."""

    def __init__(
        self,
        bdk: bytes,
        cards: list[TestCard] | None = None,
        late_delay: float = 3.0,
        contactless: list[CardProfile] = (),
        dialect: str = "default",
        key_scheme: str = "",
        tmk: bytes = b"",
    ) -> None:
        self._spec = SPEC_AES if dialect == "aes-dukpt" else SPEC
        self.key_scheme, self._tmk = key_scheme, tmk  # master/session keys, when the profile has them
        self.working: dict[str, tuple[bytes, bytes]] = {}  # terminal id -> (PIN key, MAC key) of its sign-on
        self.issuer = Issuer(bdk, list(CATALOG.values()) if cards is None else cards, contactless)
        self.ledger: list[dict[str, Any]] = []
        self.host_log: list[tuple[str, bytes]] = []  # the last KEEP_MESSAGES (a soak stays flat)
        self.host_log_dropped = 0  # messages logged before those, no longer kept
        self.late_delay = late_delay
        self.port = 0
        self._faults: list[str] = []
        self._lies: list[Callable[[dict[str, str], dict[str, str]], list[dict[str, str]]]] = []
        self._accounts_of: dict[int, str] = {}  # ledger index -> PAN, the issuer's side only
        self._answered: dict[str, bytes] = {}  # idempotency key -> the answer given
        self._settled_batches: dict[tuple[str, str], tuple[int, int, int, int]] = {}
        self._rrn = itertools.count(1)
        self._lock = threading.Lock()
        self._holding = threading.Event()  # set: answers wait until release() (see hold())
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="hwsim-acquirer", daemon=True)

    # --- control ---------------------------------------------------------------------------

    def start(self) -> int:
        """Listen on 127.0.0.1 (a free port); returns the port."""
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop)
        self._server = fut.result(5)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def stop(self) -> None:
        """Close the server and its loop."""

        async def _close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(_close(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()

    def hold(self) -> None:
        """Keep every answer from now on until release(): the host is slow for exactly as long as a test
        needs, whatever the machine's load (a fixed delay races the test's own steps)."""
        self._holding.set()

    def release(self) -> None:
        """Send the answers hold() kept back, and the ones after them at once."""
        self._holding.clear()

    async def _wait_released(self) -> None:
        while self._holding.is_set():
            await asyncio.sleep(0.01)

    def fault(self, kind: str | None, times: int = 1) -> None:
        """Make the next `times` requests misbehave: timeout, late, drop, twice, garble; None clears."""
        if kind is not None and kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults = [] if kind is None else [kind] * times

    def _take_fault(self) -> str | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _log(self, direction: str, raw: bytes) -> None:
        with self._lock:
            self.host_log.append((direction, bytes(raw)))
            if len(self.host_log) > KEEP_MESSAGES:
                del self.host_log[0]
                self.host_log_dropped += 1

    # --- protocol ----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                header = await reader.readexactly(2)
                raw = await reader.readexactly(struct.unpack(">H", header)[0])
                self._log("request", raw)
                fault = self._take_fault()
                if fault == "drop":
                    return
                answers = self._answer(raw, fault)
                if answers is None:
                    return
                if fault == "timeout" or not answers:
                    await reader.read()  # never answer; wait for the terminal to hang up
                    return
                if fault == "late":
                    await asyncio.sleep(self.late_delay)
                await self._wait_released()
                if fault == "garble":
                    answers = [b"\x00\xffNOT ISO 8583" + secrets.token_bytes(8)]
                if fault == "twice":
                    answers = answers * 2
                for answer in answers:
                    self._log("response", answer)
                    writer.write(struct.pack(">H", len(answer)) + answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            # stop(): the connection's task ends quietly (asyncio 3.11 reports a cancelled client task as an
            # error in its own done callback)
            pass
        finally:
            writer.close()

    def lie(
        self, rewrite: Callable[[dict[str, str], dict[str, str]], list[dict[str, str]]] | None, times: int = 1
    ) -> None:
        """Put a lying host in front of the acquirer for the next `times` answers (None: stop lying).

        The acquirer still does what the request asks (the issuer approves and debits, the ledger records
        it); then `rewrite(request, answer)` returns the answers sent instead, as ISO 8583 field dicts: none
        (the host falls silent), a changed one, another request's answer, or several. With session keys each
        is MACed afresh, as a host that lies would.
        """
        with self._lock:
            self._lies = [] if rewrite is None else [rewrite] * times

    def _take_lie(self) -> Callable[[dict[str, str], dict[str, str]], list[dict[str, str]]] | None:
        with self._lock:
            return self._lies.pop(0) if self._lies else None

    def _answer(self, raw: bytes, fault: str | None = None) -> list[bytes] | None:
        try:
            doc, _ = iso8583.decode(raw, self._spec)
        except iso8583.DecodeError as exc:
            log.warning("acquirer: undecodable request: %s", exc)
            return None
        mti = doc["t"]
        if mti == "0800":
            return [self._sign_on(doc, corrupt_kcv=fault == "badkcv")]
        tid = doc.get("41", "").strip()
        if self.key_scheme and mti not in SIGN_ON_MTIS:
            mac_key = self.working.get(tid, (b"", b""))[1]
            if not mac_key or not self._mac_ok(raw, doc, mac_key):
                return [self._mac_refusal(doc)]
        if mti == "0200":
            answer = self._sale(doc)
        elif mti in ("0400", "0401"):
            answer = self._reversal(doc)
        elif mti == "0500":
            answer = self._settlement(doc)
        else:
            log.warning("acquirer: unsupported MTI %s", mti)
            return None
        answers = [answer]
        lie = self._take_lie() if fault != "timeout" else None  # an answer never sent tells no lie
        if lie is not None:
            truth, _ = iso8583.decode(answer, self._spec)
            told = lie(
                {k: v for k, v in doc.items() if k not in ("p", "1")},
                {k: v for k, v in truth.items() if k not in ("p", "1")},
            )
            answers = [bytes(iso8583.encode(dict(d), self._spec)[0]) for d in told]
        if self.key_scheme:
            answers = [self._with_mac(a, self.working[tid][1], corrupt=fault == "badmac") for a in answers]
        return answers

    # --- master/session keys -------------------------------------------------------------------

    def _sign_on(self, doc: dict[str, str], corrupt_kcv: bool) -> bytes:
        """0800/001: fresh PIN and MAC keys for the terminal, wrapped under its master key (field 62)."""
        out = {k: doc[k] for k in ("7", "11", "41", "42", "70") if k in doc}
        out["t"] = "0810"
        if not self.key_scheme or doc.get("70") != "001":
            out["39"] = "12"
        else:
            pin_key, mac_key = keys.new_key(), keys.new_key()
            block = keys.key_block(self.key_scheme, self._tmk, pin_key, mac_key)
            if corrupt_kcv:
                block = block[:-2] + ("00" if block[-2:] != "00" else "11")
            with self._lock:
                self.working[doc.get("41", "").strip()] = (pin_key, mac_key)
            out.update({"39": "00", "62": block})
        raw, _ = iso8583.encode(out, self._spec)
        return bytes(raw)

    def _session_pin(self, doc: dict[str, str]) -> tuple[str, bytes] | None:
        keys_of = self.working.get(doc.get("41", "").strip())
        return (self.key_scheme, keys_of[0]) if self.key_scheme and keys_of else None

    def _mac_ok(self, raw: bytes, doc: dict[str, str], mac_key: bytes) -> bool:
        field = "128" if "128" in doc else "64"
        if field not in doc or max(int(k) for k in doc if k.isdigit()) != int(field):
            return False
        return secrets.compare_digest(
            keys.mac(self.key_scheme, mac_key, raw[:-16]).hex().upper().encode(), raw[-16:].upper()
        )

    def _with_mac(self, answer: bytes, mac_key: bytes, corrupt: bool) -> bytes:
        doc, _ = iso8583.decode(answer, self._spec)
        field = "128" if any(k.isdigit() and int(k) > 64 for k in doc) else "64"
        doc[field] = "0" * 16
        raw, _ = iso8583.encode({k: v for k, v in doc.items() if k not in ("p", "1")}, self._spec)
        data = bytes(raw)[:-16]
        mac = keys.mac(self.key_scheme, mac_key, data)
        if corrupt:
            mac = bytes([mac[0] ^ 0x01]) + mac[1:]
        return data + mac.hex().upper().encode()

    def _mac_refusal(self, doc: dict[str, str]) -> bytes:
        """A0: the request's MAC did not verify (or the terminal never signed on). Nothing is done."""
        mti = {"0200": "0210", "0400": "0410", "0401": "0410", "0500": "0510"}.get(doc["t"], "0810")
        out = {k: doc[k] for k in ("3", "4", "7", "11", "41", "42", "49") if k in doc}
        out.update({"t": mti, "39": "A0"})
        with self._lock:
            self.ledger.append(
                {
                    "kind": "refused",
                    "stan": int(doc.get("11", "0") or 0),
                    "amount": 0,
                    "rrn": "",
                    "response_code": "A0",
                    "reversed": False,
                    "voided": False,
                    "terminal_id": doc.get("41", "").strip(),
                    "transmitted_at": doc.get("7", ""),
                    "settled": False,
                }
            )
        raw, _ = iso8583.encode(out, self._spec)
        return bytes(raw)

    def _new_rrn(self) -> str:
        return f"{datetime.now():%y%j}{next(self._rrn):07d}"

    def _answer_0210(self, doc: dict[str, str], rc: str, rrn: str, icc: str = "") -> bytes:
        out = {k: doc[k] for k in ("2", "3", "4", "7", "11", "12", "13", "41", "42", "49") if k in doc}
        out.update({"t": "0210", "37": rrn, "39": rc})
        if icc:
            out["55"] = icc
        if rc == "00":
            out["38"] = f"{secrets.randbelow(1_000_000):06d}"
        raw, _ = iso8583.encode(out, self._spec)
        return bytes(raw)

    def _sale(self, doc: dict[str, str]) -> bytes:
        if doc.get("3") in ("020000", "200000"):
            return self._follow_up(doc)
        card = "2" if doc.get("22", "").startswith("03") else "35"  # a payment code comes as the PAN
        required = ("3", "4", "7", "11", "12", "13", "22", card, "41", "42", "49")
        missing = [f for f in required if f not in doc]
        rc, icc = (
            ("30", "")
            if missing or not doc.get("4", "").isdigit()
            else self.issuer.authorize(doc, datetime.now(), self._session_pin(doc))
        )
        rrn = self._new_rrn()
        with self._lock:
            self._accounts_of[len(self.ledger)] = doc.get("2") or doc.get("35", "").partition("=")[0]
            self.ledger.append(
                {
                    "kind": "sale",
                    "stan": int(doc.get("11", "0") or 0),
                    "amount": int(doc.get("4", "0") or 0),
                    "rrn": rrn,
                    "response_code": rc,
                    "reversed": False,
                    "voided": False,
                    "terminal_id": doc.get("41", "").strip(),
                    "transmitted_at": doc.get("7", ""),
                    "settled": False,
                    "icc": doc.get("55", ""),  # the chip data the sale came with
                }
            )
        return self._answer_0210(doc, rc, rrn, icc)

    def _follow_up(self, doc: dict[str, str]) -> bytes:
        """Void (processing code 02) or refund (20) found by the original's RRN; field 48 is the
        idempotency key: a repeat gets the first answer again and moves no money."""
        key = doc.get("48", "")
        with self._lock:
            if key and key in self._answered:
                return self._answered[key]
        kind = "void" if doc["3"] == "020000" else "refund"
        amount = int(doc.get("4", "0") or 0)
        tid = doc.get("41", "").strip()
        rc, rrn = "25", self._new_rrn()
        with self._lock:
            index = next(
                (
                    i
                    for i, e in enumerate(self.ledger)
                    if e["kind"] == "sale"
                    and e["rrn"] == doc.get("37")
                    and e["terminal_id"] == tid
                    and e["response_code"] == "00"
                ),
                None,
            )
            if index is not None:
                sale = self.ledger[index]
                refunded = sum(
                    e["amount"]
                    for e in self.ledger
                    if e["kind"] == "refund" and e["original_rrn"] == sale["rrn"] and e["response_code"] == "00"
                )
                account = self.issuer.account(self._accounts_of.get(index, ""))
                if sale["reversed"] or sale["voided"]:
                    rc = "12"  # invalid transaction: already undone
                elif kind == "void" and (amount != sale["amount"] or refunded):
                    rc = "13"  # a void is for the full, untouched amount
                elif kind == "refund" and refunded + amount > sale["amount"]:
                    rc = "13"  # invalid amount: more than is left
                else:
                    rc = "00"
                    sale["voided"] = sale["voided"] or kind == "void"
                    if account is not None:
                        account.balance += amount
            self.ledger.append(
                {
                    "kind": kind,
                    "stan": int(doc.get("11", "0") or 0),
                    "amount": amount,
                    "rrn": rrn,
                    "response_code": rc,
                    "reversed": False,
                    "voided": False,
                    "terminal_id": tid,
                    "transmitted_at": doc.get("7", ""),
                    "original_rrn": doc.get("37", ""),
                    "settled": False,
                }
            )
            answer = self._answer_0210(doc, rc, rrn)
            if key:
                self._answered[key] = answer
            return answer

    def _reversal(self, doc: dict[str, str]) -> bytes:
        """0400/0401: find the original by terminal, STAN and field 7 (field 90); undo it once; always acknowledge."""
        original = doc.get("90", "")
        stan, transmitted = original[4:10], original[10:20]
        rc = "25"  # unable to locate the original
        with self._lock:
            for i, entry in enumerate(self.ledger):
                if entry["kind"] == "sale" and (
                    f"{entry['stan']:06d}",
                    entry["transmitted_at"],
                    entry["terminal_id"],
                ) == (stan, transmitted, doc.get("41", "").strip()):
                    rc = "00"
                    entry.setdefault("reversal_icc", doc.get("55", ""))  # what the first 0400 said of the card
                    if entry["response_code"] == "00" and not entry["reversed"]:
                        entry["reversed"] = True
                        account = self.issuer.account(self._accounts_of.get(i, ""))
                        if account is not None:
                            account.balance += entry["amount"]
                    break
        out = {k: doc[k] for k in ("3", "4", "7", "11", "41", "42", "49") if k in doc}
        out.update({"t": "0410", "39": rc})
        raw, _ = iso8583.encode(out, self._spec)
        return bytes(raw)

    def _settlement(self, doc: dict[str, str]) -> bytes:
        """0500: the host's own totals for this terminal since its last settlement, compared with the
        terminal's; 00 in balance, 95 out of balance. Either way the host cuts over (the batch is closed)."""
        tid = doc.get("41", "").strip()
        batch_key = (tid, doc.get("60", ""))
        with self._lock:
            host = self._settled_batches.get(batch_key)
            if host is None:  # a repeat of the same batch gets the same answer
                open_entries = [
                    e
                    for e in self.ledger
                    if e["terminal_id"] == tid and not e["settled"] and e["response_code"] == "00"
                ]
                sales = [e for e in open_entries if e["kind"] == "sale" and not e["reversed"] and not e["voided"]]
                refunds = [e for e in open_entries if e["kind"] == "refund"]
                host = (len(sales), sum(e["amount"] for e in sales), len(refunds), sum(e["amount"] for e in refunds))
                self._settled_batches[batch_key] = host
                for e in self.ledger:
                    if e["terminal_id"] == tid:
                        e["settled"] = True
        try:
            terminal = (int(doc["76"]), int(doc["88"]), int(doc["74"]), int(doc["86"]))
        except (KeyError, ValueError):
            terminal = None
        out = {k: doc[k] for k in ("3", "7", "11", "41", "42", "49", "60") if k in doc}
        out.update(
            {
                "t": "0510",
                "39": "00" if terminal == host else "95",
                "76": f"{host[0]:010d}",
                "88": f"{host[1]:016d}",
                "74": f"{host[2]:010d}",
                "86": f"{host[3]:016d}",
            }
        )
        raw, _ = iso8583.encode(out, self._spec)
        return bytes(raw)
