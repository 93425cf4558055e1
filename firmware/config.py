"""Terminal configuration: TOML files read with tomllib, checked key by key into typed, frozen objects.

Each section has its dataclass and, right after it, the reader that fills it (`_read_<section>`): the
reader takes every key of its section with that key's type and range, and then refuses any key it did not
take, so a typo is an error rather than a silently ignored setting. `parse` runs the readers in turn and
then checks what spans sections. An unknown key, a wrong type or an out-of-range value stops start-up
with one line naming the file, the section, the key and what is wrong (ConfigError). What cannot work
is refused here rather than at the first sale: no string may hold a control character (it would reach
the printer or the display), identifiers and codes are ASCII (str.isdigit() is true for "²"), the
terminal and merchant ids fit ISO 8583 fields 41 and 42, and keypad keys are real evdev key names.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from firmware.core.money import Currency
from firmware.core.text import problem as unsafe_text
from firmware.errors import ConfigError
from firmware.security.operators import check_hash_format

LOGICAL_KEYS = ("ENTER", "CANCEL", "CLEAR", "F1", "F2", "F3", "F4", "MENU")
PRINTER_BACKENDS = ("usb", "serial", "network", "file", "none")
_REQUIRED = object()
_MAX_MINOR = 10**12 - 1  # the largest amount ISO 8583 field 4 carries
_USB_ID = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}")  # used with fullmatch: "$" lets a "\n" through
_HEX = re.compile(r"[0-9a-fA-F]*")
_ANS = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")  # printable ASCII, no space at either end
_HOURS = re.compile(r"([0-9]{1,2})-([0-9]{1,2})")
_ALNUM = re.compile(r"[0-9A-Za-z]+")

_Check = Callable[[Any], str | None]  # a value's problem in words, or None when it is fine


def key_file(section: str, cfg: Any, key: str) -> bytes:
    """The bytes of the file a section's key names (a wallet's key or certificate); ConfigError naming the section,
    the key and the path when it cannot be read."""
    path = getattr(cfg, key)
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"[{section}] {key}: cannot read {path}: {exc.strerror}") from None


def _error(source: str, section: str, key: str, what: str) -> ConfigError:
    """The one line a user sees: file, [section], key, what is wrong. A quoted TOML key may hold "\\n"."""
    shown = key if key.isprintable() and len(key) <= 40 else repr(key[:40])
    name = section if section.isprintable() and len(section) <= 60 else repr(section[:60])
    return ConfigError(f"{source}: [{name or 'top level'}] {shown}: {what}")


class _Section:
    """Reads one TOML table for a section's reader: typed getters that check the value where it is read
    (`text`, `integer`, `number`, `flag`, `choice`, or `get` for any type), and `done`, which refuses what no
    getter asked for."""

    def __init__(self, source: str, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")  # noqa: B904
        self.source, self.name, self.table = source, name, table
        self.seen: set[str] = set()

    def fail(self, key: str, what: str) -> ConfigError:
        return _error(self.source, self.name, key, what)

    def get(self, key: str, kind: type, default: Any = _REQUIRED, check: _Check | None = None) -> Any:
        """The value of `key`, of type `kind` (an int is taken for a float), passing `check`."""
        self.seen.add(key)
        if key not in self.table:
            if default is _REQUIRED:
                raise self.fail(key, "missing")
            return default
        value = self.table[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.fail(key, f"expected {_kind_name(kind)}, got {_show(value)}")
        if kind is str:
            bad = unsafe_text(value)
            if bad:
                raise self.fail(key, bad)
        if check is not None:
            problem = check(value)
            if problem:
                raise self.fail(key, problem)
        return value

    def text(self, key: str, default: Any = _REQUIRED, check: _Check | None = None) -> str:
        value: str = self.get(key, str, default, check)
        return value

    def integer(self, key: str, default: Any = _REQUIRED, *, lo: int, hi: int) -> int:
        value: int = self.get(key, int, default, _between(lo, hi))
        return value

    def number(self, key: str, default: Any = _REQUIRED, *, lo: float, hi: float) -> float:
        value: float = self.get(key, float, default, _between(lo, hi))
        return value

    def flag(self, key: str, default: bool) -> bool:
        value: bool = self.get(key, bool, default)
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED, what: str = "") -> str:
        """One of `choices`; `what` says so when the plain list ('must be "a" or "b"') would not be clearest."""
        quoted = [f'"{c}"' for c in choices]
        listed = f"{', '.join(quoted[:-1])} or {quoted[-1]}" if len(quoted) > 1 else quoted[0]
        return self.text(key, default, lambda v: None if v in choices else what or f"must be {listed}")

    def sub(self, key: str) -> _Section:
        self.seen.add(key)
        return _Section(self.source, f"{self.name}.{key}" if self.name else key, self.table.get(key, {}))

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key (a typo?)")


def _show(value: Any) -> str:
    """A wrong value for a message: short, and never a deep structure's repr (which could recurse too far)."""
    if isinstance(value, (list, dict)):
        return f"a {'list' if isinstance(value, list) else 'table'}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _kind_name(kind: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        dict: "a table",
        list: "a list",
    }.get(kind, kind.__name__)


def _between(lo: float, hi: float) -> _Check:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"


def _hex_len(n: int) -> _Check:
    return lambda v: None if len(v) == n and _HEX.fullmatch(v) else f"must be {n} hex digits"


def _ans(lo: int, hi: int, field: str) -> _Check:
    """Printable ASCII of lo..hi characters with no space at either end (what an ISO 8583 ANS field carries)."""
    size = f"{lo}" if lo == hi else f"{lo} to {hi}"
    return lambda v: (
        None
        if lo <= len(v) <= hi and _ANS.fullmatch(v)
        else f"must be {size} printable ASCII characters, no space at either end (ISO 8583 {field}), got {v[:20]!r}"
    )


def _not_empty(v: str) -> str | None:
    return None if v.strip() else "must not be empty"


def _usb_id(v: str) -> str | None:
    return None if _USB_ID.fullmatch(v) else "must be VVVV:PPPP in hex"


# --- the sections, each with its reader ------------------------------------------------------------------


@dataclass(frozen=True)
class TerminalConfig:
    """Identity and money rules of this terminal."""

    terminal_id: str
    merchant_id: str
    currency: Currency
    min_amount: int
    max_amount: int
    data_dir: Path
    language: str = "en"  # the customer screen's language: "en" or "zh-CN" (see firmware/core/screentext.py)
    confirm_card: bool = False  # a read card is shown (number, name, label, amount) until ENTER, before the PIN


def _read_terminal(sec: _Section, base: Path) -> TerminalConfig:
    """[terminal]; a relative data_dir resolves against `base`."""
    tid = sec.text("terminal_id", check=_ans(8, 8, "field 41"))
    mid = sec.text("merchant_id", check=_ans(1, 15, "field 42"))
    code = sec.text("currency")
    try:
        currency = Currency.of(code)
    except ConfigError as exc:
        raise sec.fail("currency", str(exc)) from None
    lo = sec.integer("min_amount", 1, lo=1, hi=_MAX_MINOR)
    hi = sec.integer("max_amount", 99_999_999, lo=1, hi=_MAX_MINOR)
    if hi < lo:
        raise sec.fail("max_amount", f"must not be below min_amount ({lo})")
    data_dir = Path(sec.text("data_dir", "data"))
    language = sec.choice(
        "language", ("en", "zh-CN"), "en", what='must be "en" (English) or "zh-CN" (Simplified Chinese)'
    )
    confirm_card = sec.flag("confirm_card", False)
    sec.done()
    where = data_dir if data_dir.is_absolute() else base / data_dir
    return TerminalConfig(tid, mid, currency, lo, hi, where, language, confirm_card)


@dataclass(frozen=True)
class MerchantConfig:
    """What the receipt header says about the shop."""

    name: str
    address: str = ""
    phone: str = ""


def _read_merchant(sec: _Section) -> MerchantConfig:
    merchant = MerchantConfig(sec.text("name", check=_not_empty), sec.text("address", ""), sec.text("phone", ""))
    sec.done()
    return merchant


@dataclass(frozen=True)
class Timeouts:
    """Seconds each waiting state waits."""

    amount: float = 60.0
    card: float = 60.0
    pin: float = 30.0
    host: float = 30.0
    result: float = 15.0
    retry: float = 30.0  # before the host is asked again what it has not answered (doubles to 5 min)


def _read_timeouts(sec: _Section) -> Timeouts:
    """[timeouts]: every wait from 1 s to 10 min."""
    timeouts = Timeouts(**{f.name: sec.number(f.name, f.default, lo=1, hi=600) for f in fields(Timeouts)})
    sec.done()
    return timeouts


@dataclass(frozen=True)
class InputDeviceConfig:
    """How to find an evdev input device: by path, by USB vendor:product, or by name."""

    path: str = ""
    usb: str = ""
    name: str = ""
    keys: dict[str, str] = field(default_factory=dict)  # logical key -> evdev key name (keypad only)

    def describe(self) -> str:
        return self.path or (f"usb {self.usb}" if self.usb else f"name {self.name!r}")


def _read_input_device(sec: _Section, with_keys: bool) -> InputDeviceConfig:
    """[keypad], [magstripe] or [scanner]: where the device is; the keypad's [keypad.keys] too."""
    path = sec.text("path", "")
    usb = sec.text("usb", "", _usb_id)
    name = sec.text("name", "")
    keys = _read_keypad_keys(sec.sub("keys")) if with_keys else {}
    sec.done()  # a typo'd key is reported before what it left missing
    if not (path or usb or name):
        raise sec.fail("path", "missing: give path, usb (vendor:product) or name of the device")
    return InputDeviceConfig(path=path, usb=usb, name=name, keys=keys)


def _read_keypad_keys(sec: _Section) -> dict[str, str]:
    """[keypad.keys]: logical key -> evdev key name, one physical key per function; ENTER, CANCEL, CLEAR needed."""
    keys: dict[str, str] = {}
    taken: dict[int, str] = {}
    for logical in LOGICAL_KEYS:
        name = sec.text(logical, "", _evdev_key)
        if not name:
            continue
        code = _evdev_code(name)
        if code in taken:
            raise sec.fail(logical, f"{name} is already {taken[code]}: each key does one thing")
        taken[code], keys[logical] = logical, name
    sec.done()
    for logical in ("ENTER", "CANCEL", "CLEAR"):
        if logical not in keys:
            raise sec.fail(logical, "missing: the keypad needs ENTER, CANCEL and CLEAR")
    return keys


def _evdev_code(name: str) -> int:
    from evdev import ecodes  # noqa: PLC0415 - the keypad's library, needed only to check its key names

    code = ecodes.ecodes.get(name)
    return code if isinstance(code, int) else -1


_DIGIT_KEYS = frozenset([f"KEY_{d}" for d in range(10)] + [f"KEY_KP{d}" for d in range(10)])


def _evdev_key(name: str) -> str | None:
    """None for the evdev name of a real key the keypad may use for a named function."""
    if not name.startswith(("KEY_", "BTN_")):
        return "must be an evdev name like KEY_ENTER"
    if name in _DIGIT_KEYS:
        return f"{name} types a digit; give the function its own key"
    if _evdev_code(name) <= 0 or name in ("KEY_MAX", "KEY_CNT"):
        return f"{name} is not an evdev key name (see `python -m evdev.evtest` or linux/input-event-codes.h)"
    return None


@dataclass(frozen=True)
class PrinterConfig:
    """Which python-escpos backend, where, and how the printer handles text."""

    backend: str = "none"
    usb: str = ""
    devfile: str = ""
    baudrate: int = 9600
    host: str = ""
    port: int = 9100
    profile: str = "default"
    width: int = 32  # characters per line in the normal font
    chinese: bool = False  # printer takes GB18030 in Chinese mode (FS &)
    language: str = "en"  # receipt labels: "en" or "zh" (bilingual)


_BACKEND_NEEDS = {"usb": "usb", "serial": "devfile", "network": "host", "file": "devfile"}


def _read_printer(sec: _Section) -> PrinterConfig:
    """[printer]; each backend needs its own address (usb id, device file or host)."""
    backend = sec.choice("backend", PRINTER_BACKENDS, "none", f"must be one of {', '.join(PRINTER_BACKENDS)}")
    printer = PrinterConfig(
        backend=backend,
        usb=sec.text("usb", "", _usb_id),
        devfile=sec.text("devfile", ""),
        baudrate=sec.integer("baudrate", 9600, lo=1200, hi=921600),
        host=sec.text("host", ""),
        port=sec.integer("port", 9100, lo=1, hi=65535),
        profile=sec.text("profile", "default"),
        width=sec.integer("width", 32, lo=24, hi=64),
        chinese=sec.flag("chinese", False),
        language=sec.choice("language", ("en", "zh"), "en"),
    )
    needs = _BACKEND_NEEDS.get(backend)
    if needs and not getattr(printer, needs):
        raise sec.fail(needs, f"missing: the {backend} backend needs it")
    sec.done()
    return printer


@dataclass(frozen=True)
class DisplayConfig:
    """The customer/cashier display: a text console, or a pixel panel on a Linux framebuffer."""

    kind: str = "console"
    tty: str = "-"  # "-" is standard output
    width: int = 20
    device: str = "/dev/fb0"  # framebuffer only, as are the keys below
    size: tuple[int, int] | None = None  # visible pixels when the device's own size is wrong
    rotation: int = 0  # degrees clockwise the panel is mounted
    font: str = "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"  # Debian fonts-wqy-microhei


_SIZE = re.compile(r"([0-9]{2,4})x([0-9]{2,4})")


def _read_display(sec: _Section) -> DisplayConfig:
    """[display]; device, size, rotation and font matter to the framebuffer kind only."""
    size = sec.text("size", "", lambda v: None if not v or _SIZE.fullmatch(v) else 'must be "WIDTHxHEIGHT" pixels')
    wh = _SIZE.fullmatch(size)
    display = DisplayConfig(
        sec.choice("kind", ("console", "framebuffer"), "console"),
        sec.text("tty", "-"),
        sec.integer("width", 20, lo=16, hi=80),
        device=sec.text("device", "/dev/fb0", _not_empty),
        size=(int(wh[1]), int(wh[2])) if wh else None,
        rotation=sec.get("rotation", int, 0, lambda v: None if v in (0, 90, 180, 270) else "must be 0, 90, 180 or 270"),
        font=sec.text("font", DisplayConfig.font, _not_empty),
    )
    if display.size and not (32 <= min(display.size) and max(display.size) <= 4096):
        raise sec.fail("size", f"{size}: each side must be 32 to 4096 pixels")
    sec.done()
    return display


@dataclass(frozen=True)
class AudioConfig:
    """Spoken prompts for customers who cannot read the screen (espeak-ng), off unless enabled."""

    enabled: bool = False
    device: str = ""  # ALSA device for aplay ("" is the default output)
    voice_en: str = "en-us"  # espeak-ng voices by the screen's language
    voice_zh: str = "cmn"
    speed: int = 150  # words per minute


def _read_audio(sec: _Section) -> AudioConfig:
    """[audio]"""
    audio = AudioConfig(
        enabled=sec.flag("enabled", False),
        device=sec.text("device", ""),
        voice_en=sec.text("voice_en", "en-us", _voice),
        voice_zh=sec.text("voice_zh", "cmn", _voice),
        speed=sec.integer("speed", 150, lo=80, hi=450),
    )
    sec.done()
    return audio


def _voice(v: str) -> str | None:
    return (
        None
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9+_-]{0,40}", v)
        else "must be an espeak-ng voice name (espeak-ng --voices)"
    )


@dataclass(frozen=True)
class HostConfig:
    """The acquirer's ISO 8583 endpoint."""

    host: str
    port: int
    tls: bool = False
    dialect: str = "default"  # the ISO 8583 dialect: "default" (TDES DUKPT) or "aes-dukpt"
    ca_file: str = ""  # PEM bundle (or the pinned certificate) to trust instead of the system's
    client_cert: str = ""  # PEM certificate chain, when the acquirer wants a client certificate
    client_key: str = ""


def _read_host(sec: _Section) -> HostConfig:
    """[host]; TLS unless the host is this machine, and a client certificate comes with its key."""
    host = HostConfig(
        host=sec.text("host", check=_not_empty),
        port=sec.integer("port", lo=1, hi=65535),
        tls=sec.flag("tls", False),
        dialect=sec.choice("dialect", ("default", "aes-dukpt"), "default"),
        ca_file=sec.text("ca_file", ""),
        client_cert=sec.text("client_cert", ""),
        client_key=sec.text("client_key", ""),
    )
    if not host.tls and host.host not in ("127.0.0.1", "localhost", "::1"):
        raise sec.fail(
            "tls",
            "must be true: card data goes to the acquirer only over TLS (plain TCP only to a "
            "simulator on this machine)",
        )
    if bool(host.client_cert) != bool(host.client_key):
        raise sec.fail("client_key" if host.client_cert else "client_cert", "missing: give both or neither")
    sec.done()
    return host


@dataclass(frozen=True)
class KeysConfig:
    """Master/session keys: "" (none: DUKPT only, no MAC), "tdes" (retail MAC) or "aes" (AES-CMAC).
    The terminal master key is in the key store (`countertop keys load tmk`), never in this file."""

    scheme: str = ""


def _read_keys(sec: _Section) -> KeysConfig:
    keys = KeysConfig(sec.choice("scheme", ("", "tdes", "aes"), ""))
    sec.done()
    return keys


@dataclass(frozen=True)
class PinConfig:
    """DUKPT key material injected in this PIN pad (never the BDK) and PIN length rules.

    scheme "tdes": ISO 9564 format 0 under ANSI X9.24-1 TDES DUKPT (ipek, ksn);
    scheme "aes": format 4 under X9.24-3 AES-128 DUKPT (initial_key, key_id)."""

    ipek: bytes = field(repr=False)
    ksn: bytes
    min_length: int = 4
    max_length: int = 12
    scheme: str = "tdes"
    initial_key: bytes = field(default=b"", repr=False)
    key_id: bytes = b""


def _read_pin(sec: _Section) -> PinConfig:
    """[pin]: the scheme's key material (a key left out is sealed in the key store) and the PIN lengths.
    How the scheme fits [keys] and [host] is `_pin_scheme_problem`, checked once every section is read."""
    scheme = sec.choice("scheme", ("tdes", "aes", "session"), "tdes")
    pin = PinConfig(
        ipek=bytes.fromhex(sec.text("ipek", "", _hex_len(32))),
        ksn=bytes.fromhex(sec.text("ksn", _REQUIRED if scheme == "tdes" else "", _hex_len(20))),
        min_length=sec.integer("min_length", 4, lo=4, hi=12),
        max_length=sec.integer("max_length", 12, lo=4, hi=12),
        scheme=scheme,
        initial_key=bytes.fromhex(sec.text("initial_key", "", _hex_len(32))),
        key_id=bytes.fromhex(sec.text("key_id", _REQUIRED if scheme == "aes" else "", _hex_len(16))),
    )
    if pin.max_length < pin.min_length:
        raise sec.fail("max_length", "must not be below min_length")
    sec.done()
    return pin


def _pin_scheme_problem(pin: PinConfig, keys: KeysConfig, host: HostConfig) -> str | None:
    """What is wrong with [pin] scheme given [keys] (where a session PIN key comes from) and [host] (the
    dialect fixes the PIN block's size), or None."""
    if pin.scheme == "session":
        if not keys.scheme:
            return '"session" needs [keys] scheme = "tdes" or "aes" (the PIN key comes at sign-on)'
        if (keys.scheme == "aes") != (host.dialect == "aes-dukpt"):
            return (
                f'"session" with [keys] scheme = "{keys.scheme}" needs [host] dialect = '
                f'"{"aes-dukpt" if keys.scheme == "aes" else "default"}" (the PIN block size)'
            )
        return None
    if (pin.scheme == "aes") != (host.dialect == "aes-dukpt"):
        return f'"{pin.scheme}" needs [host] dialect = "{"aes-dukpt" if pin.scheme == "aes" else "default"}"'
    return None


@dataclass(frozen=True)
class OperatorsConfig:
    """Operator PIN hashes (made by `countertop hash-pin`) and the lockout after wrong PINs."""

    manager_pin: str = field(default="", repr=False)
    cashier_pin: str = field(default="", repr=False)
    max_failures: int = 3
    lockout: int = 300  # seconds
    admin_pin: str = field(default="", repr=False)
    cashiers: dict[str, str] = field(default_factory=dict, repr=False)  # cashier number -> PIN hash

    @property
    def hashes(self) -> dict[str, str]:
        """Role -> PIN hash, for the roles that have one."""
        return {
            r: h
            for r, h in (("admin", self.admin_pin), ("manager", self.manager_pin), ("cashier", self.cashier_pin))
            if h
        }


def _read_operators(sec: _Section) -> OperatorsConfig:
    operators = OperatorsConfig(
        manager_pin=sec.text("manager_pin", "", check_hash_format),
        cashier_pin=sec.text("cashier_pin", "", check_hash_format),
        max_failures=sec.integer("max_failures", 3, lo=1, hi=10),
        lockout=sec.integer("lockout", 300, lo=10, hi=86400),
        admin_pin=sec.text("admin_pin", "", check_hash_format),
        cashiers=sec.get("cashiers", dict, {}, _cashier_table),
    )
    sec.done()
    return operators


def _cashier_table(v: dict[str, Any]) -> str | None:
    for number, stored in v.items():
        if not (_ALNUM.fullmatch(number) and 1 <= len(number) <= 8):
            return f"cashier number {number!r} must be 1 to 8 letters or digits"
        problem = check_hash_format(stored) if isinstance(stored, str) else "must be a string"
        if problem:
            return f"cashier {number}: {problem}"
    return None


@dataclass(frozen=True)
class ContactlessConfig:
    """The contactless reader (nfcpy device path; empty: none) and the EMV contactless limits (minor units)."""

    device: str = ""
    cvm_limit: int = 10000
    transaction_limit: int = 500000
    floor_limit: int = 0
    aids: tuple[str, ...] = ("A0000000031010", "A0000000041010", "A000000333010101", "A000000333010102")
    country: str = "156"  # ISO 3166 numeric, tag 9F1A
    tac_denial: str = "0010000000"  # terminal action codes: TVR bits that decline offline / go online / default
    tac_online: str = "DC4004F800"
    tac_default: str = "DC4000A800"


def _read_contactless(sec: _Section) -> ContactlessConfig:
    """[contactless]; AIDs and terminal action codes are kept in upper case."""
    aids: list[str] = sec.get("aids", list, list(ContactlessConfig.aids), _aid_list)
    contactless = ContactlessConfig(
        device=sec.text("device", "", _nfc_path),
        cvm_limit=sec.integer("cvm_limit", 10000, lo=0, hi=_MAX_MINOR),
        transaction_limit=sec.integer("transaction_limit", 500000, lo=0, hi=_MAX_MINOR),
        floor_limit=sec.integer("floor_limit", 0, lo=0, hi=_MAX_MINOR),
        aids=tuple(a.upper() for a in aids),
        country=sec.text("country", "156", _country),
        tac_denial=sec.text("tac_denial", "0010000000", _hex_len(10)).upper(),
        tac_online=sec.text("tac_online", "DC4004F800", _hex_len(10)).upper(),
        tac_default=sec.text("tac_default", "DC4000A800", _hex_len(10)).upper(),
    )
    sec.done()
    return contactless


def _aid_list(v: list[Any]) -> str | None:
    if v and all(isinstance(a, str) and 10 <= len(a) <= 32 and len(a) % 2 == 0 and _HEX.fullmatch(a) for a in v):
        return None
    return "must be a list of AIDs in hex (10 to 32 digits, an even number)"


def _nfc_path(v: str) -> str | None:
    if not v or v.split(":")[0] in ("usb", "tty", "udp"):
        return None
    return "must be an nfcpy path: usb:VVVV:PPPP, tty:PORT:DRIVER or udp:HOST:PORT"


def _country(v: str) -> str | None:
    return None if re.fullmatch("[0-9]{3}", v) else "must be 3 digits (ISO 3166 numeric, e.g. 156)"


@dataclass(frozen=True)
class EmvConfig:
    """The contact chip kernel's settings: CA public key file, AIDs, floor limit and random selection (minor
    units, percent), terminal action codes, the CVMs and ODA methods the terminal performs."""

    ca_keys: str = ""  # path to the CA public key file (TOML [[key]] tables); empty: no offline data authentication
    aids: tuple[str, ...] = (
        "A0000000031010",
        "A0000000041010",
        "A000000333010101",
        "A000000333010102",
        "A000000333010103",
    )
    floor_limit: int = 0
    random_threshold: int = 0
    random_target: int = 0
    random_max_target: int = 0
    tac_denial: str = "0010000000"
    tac_online: str = "DC4004F800"
    tac_default: str = "DC4000A800"
    offline_pin: bool = True
    signature: bool = True
    pin_bypass: bool = True  # ENTER on an empty PIN prompt means "no PIN" where the card's CVM list allows it
    fallback: bool = False  # after a chip read fails, a chip card's stripe may be swiped (entry mode 801)
    oda: tuple[str, ...] = ("sda", "dda", "cda")


@dataclass(frozen=True)
class ChipConfig:
    """The contact chip reader on PC/SC: its name as pcscd lists it, or the start of it ("" = the first)."""

    reader: str = ""


def _read_chip(sec: _Section) -> ChipConfig:
    """[chip]; present: insert a chip card (the reader is watched through pcscd)."""
    chip = ChipConfig(reader=sec.text("reader", ""))
    sec.done()
    return chip


def _read_emv(sec: _Section, base: Path) -> EmvConfig:
    """[emv]: the contact kernel."""
    aids: list[str] = sec.get("aids", list, list(EmvConfig.aids), _aid_list)
    oda: list[str] = sec.get(
        "oda",
        list,
        list(EmvConfig.oda),
        lambda v: None if all(m in ("sda", "dda", "cda") for m in v) else 'must list "sda", "dda" or "cda"',
    )
    ca_keys = sec.text("ca_keys", "")
    emv = EmvConfig(
        ca_keys=str(base / ca_keys) if ca_keys else "",
        aids=tuple(a.upper() for a in aids),
        floor_limit=sec.integer("floor_limit", 0, lo=0, hi=_MAX_MINOR),
        random_threshold=sec.integer("random_threshold", 0, lo=0, hi=_MAX_MINOR),
        random_target=sec.integer("random_target", 0, lo=0, hi=99),
        random_max_target=sec.integer("random_max_target", 0, lo=0, hi=99),
        tac_denial=sec.text("tac_denial", "0010000000", _hex_len(10)).upper(),
        tac_online=sec.text("tac_online", "DC4004F800", _hex_len(10)).upper(),
        tac_default=sec.text("tac_default", "DC4000A800", _hex_len(10)).upper(),
        offline_pin=sec.flag("offline_pin", True),
        signature=sec.flag("signature", True),
        pin_bypass=sec.flag("pin_bypass", True),
        oda=tuple(oda),
        fallback=sec.flag("fallback", False),
    )
    sec.done()
    return emv


@dataclass(frozen=True)
class WalletConfig:
    """The wallet acquirer (empty provider: none), its credentials, and how long the terminal waits."""

    provider: str = ""  # "alipay"
    gateway: str = ""  # e.g. https://openapi.alipay.com/gateway.do
    app_id: str = ""
    private_key: str = ""  # path to the merchant's RSA private key (PEM)
    provider_public_key: str = ""  # path to the provider's RSA public key (PEM)
    subject: str = "Countertop"
    qr_timeout: int = 120  # seconds a shown code stays valid
    poll_interval: float = 2.0  # first status query after this; backs off to 5 s
    confirm_timeout: float = 30.0  # seconds a scanned code may wait for the payer's confirmation
    confirm_interval: float = 5.0


def _read_wallet(sec: _Section) -> WalletConfig:
    """[wallet]; a provider needs its gateway, app id and both keys."""
    provider = sec.choice("provider", ("", "alipay"), "", 'must be "alipay" or empty')
    wallet = WalletConfig(
        provider=provider,
        gateway=sec.text("gateway", "", _gateway_url),
        app_id=sec.text("app_id", ""),
        private_key=sec.text("private_key", ""),
        provider_public_key=sec.text("provider_public_key", ""),
        subject=sec.text("subject", "Countertop"),
        qr_timeout=sec.integer("qr_timeout", 120, lo=10, hi=900),
        poll_interval=sec.number("poll_interval", 2.0, lo=0.1, hi=10),
        confirm_timeout=sec.number("confirm_timeout", 30.0, lo=1, hi=120),
        confirm_interval=sec.number("confirm_interval", 5.0, lo=0.1, hi=30),
    )
    if provider:
        for key in ("gateway", "app_id", "private_key", "provider_public_key"):
            if not getattr(wallet, key):
                raise sec.fail(key, f"missing: the {provider} provider needs it")
    sec.done()
    return wallet


@dataclass(frozen=True)
class WechatConfig:
    """WeChat Pay merchant API v3 (direct merchant): identity, key files, how answers are verified."""

    mchid: str
    appid: str
    private_key: str  # path: the merchant API certificate's private key (apiclient_key.pem)
    merchant_serial: str  # that certificate's serial number (hex)
    apiv3_key: str  # path: a file holding the 32-character APIv3 key
    notify_url: str  # required by Native orders; the terminal polls (it cannot receive callbacks)
    platform: str = "certificates"  # answers verified with downloaded platform certificates, or "public_key"
    public_key: str = ""  # path: the WeChat Pay public key (pub_key.pem), for platform = "public_key"
    public_key_id: str = ""  # its id, PUB_KEY_ID_…
    gateway: str = "https://api.mch.weixin.qq.com"
    device_id: str = ""  # scene_info.device_id of code payments (empty: none sent)
    timeout: float = 10.0  # seconds per request
    office_notices: bool = False  # learn of payments from the back office's WeChat callbacks too ([office] url)


def _read_wechat(sec: _Section) -> WechatConfig:
    """[wechat]; public_key mode needs the public key file and its PUB_KEY_ID_ id."""
    platform = sec.choice("platform", ("certificates", "public_key"), "certificates")
    wechat = WechatConfig(
        mchid=sec.text("mchid", check=_digits(8, 32)),
        appid=sec.text("appid", check=lambda v: None if _ALNUM.fullmatch(v) else "must be the AppID (wx…)"),
        private_key=sec.text("private_key", check=_not_empty),
        merchant_serial=sec.text("merchant_serial", check=_hex_serial),
        apiv3_key=sec.text("apiv3_key", check=_not_empty),
        notify_url=sec.text("notify_url", check=_https_url),
        platform=platform,
        public_key=sec.text("public_key", ""),
        public_key_id=sec.text("public_key_id", ""),
        gateway=sec.text("gateway", "https://api.mch.weixin.qq.com", _gateway_url),
        device_id=sec.text("device_id", "", _device_id),
        timeout=sec.number("timeout", 10.0, lo=1, hi=60),
        office_notices=sec.flag("office_notices", False),
    )
    if platform == "public_key":
        if not wechat.public_key:
            raise sec.fail("public_key", 'missing: platform = "public_key" needs the WeChat Pay public key file')
        if not wechat.public_key_id.startswith("PUB_KEY_ID_"):
            raise sec.fail("public_key_id", 'must be the public key\'s id, "PUB_KEY_ID_…"')
    sec.done()
    return wechat


@dataclass(frozen=True)
class UnionPayConfig:
    """UnionPay QR over UnionPay's online API (全渠道 ACP 5.1.0): merchant id, certificate files; or, with
    via = "acquirer", the customer's codes sent to the acquirer over the ISO 8583 link in place of a card."""

    mer_id: str = ""  # the 15-digit merchant id (商户号); ACP only
    sign_cert: str = ""  # path: the merchant's signing certificate with its key (.pfx as issued, or PEM key + cert)
    root_cert: str = ""  # path: UnionPay's root certificate (acp_prod_root.cer)
    middle_cert: str = ""  # path: UnionPay's intermediate certificate (acp_prod_middle.cer)
    sign_cert_password: str = ""  # path: a file holding the .pfx password (empty: none)
    gateway: str = "https://gateway.95516.com"
    back_url: str = ""  # backUrl UnionPay notifies (the terminal polls; empty: none sent)
    term_id: str = ""  # termId sent with consumes (empty: none)
    access_type: str = "0"  # 0: a merchant of its own; 1: through an acquirer (收单机构)
    test_environment: bool = False  # answers signed by UnionPay's test certificate (CN 00040000:SIGN)
    timeout: float = 10.0  # seconds per request
    via: str = "unionpay"  # "unionpay": UnionPay's online API; "acquirer": scanned codes over the ISO 8583 link
    pin_above: int = 100_000  # via the acquirer: the payer enters a PIN on the keypad above this amount


# [unionpay]'s keys for UnionPay's own API: a section with via = "acquirer" holding one is a mix-up, said so.
_UNIONPAY_API_KEYS = frozenset(f.name for f in fields(UnionPayConfig) if f.name not in ("via", "pin_above"))


def _read_unionpay(sec: _Section) -> UnionPayConfig:
    """[unionpay]; the merchant id and the three certificate files, or via = "acquirer" and its PIN limit."""
    via = sec.choice("via", ("unionpay", "acquirer"), "unionpay")
    if via == "acquirer":  # the acquirer's link and keys carry it: nothing of UnionPay's own API is needed
        acquirer = UnionPayConfig(via=via, pin_above=sec.integer("pin_above", 100_000, lo=0, hi=_MAX_MINOR))
        for key in sorted(set(sec.table) - sec.seen):
            if key in _UNIONPAY_API_KEYS:
                raise sec.fail(key, 'is for UnionPay\'s own API: not used with via = "acquirer"')
        sec.done()
        return acquirer
    unionpay = UnionPayConfig(
        mer_id=sec.text("mer_id", check=_digits(15, 15)),
        sign_cert=sec.text("sign_cert", check=_not_empty),
        root_cert=sec.text("root_cert", check=_not_empty),
        middle_cert=sec.text("middle_cert", check=_not_empty),
        sign_cert_password=sec.text("sign_cert_password", ""),
        gateway=sec.text("gateway", "https://gateway.95516.com", _gateway_url),
        back_url=sec.text("back_url", "", lambda v: _https_url(v) if v else None),
        term_id=sec.text(
            "term_id", "", lambda v: None if not v or _ALNUM.fullmatch(v) else "must be letters and digits"
        ),
        access_type=sec.choice("access_type", ("0", "1"), "0", 'must be "0" (merchant) or "1" (acquirer)'),
        test_environment=sec.flag("test_environment", False),
        timeout=sec.number("timeout", 10.0, lo=1, hi=60),
    )
    if "pin_above" in sec.table:
        raise sec.fail("pin_above", 'only with via = "acquirer" (UnionPay\'s own API asks the payer in the app)')
    sec.done()
    return unionpay


@dataclass(frozen=True)
class AggregatorConfig:
    """An aggregator (聚合支付) taking every wallet's code and showing one code for all: Lakala's open platform."""

    appid: str  # the open-platform app id (OP…)
    serial_no: str  # the serial of the merchant certificate whose key signs requests
    private_key: str  # path: that key (PEM)
    platform_cert: str  # path: Lakala's platform certificate (PEM), which signs its answers
    merchant_no: str  # Lakala's merchant number
    term_no: str  # Lakala's terminal number for this till
    provider: str = "lakala"  # the only aggregator supported
    gateway: str = "https://s2.lakala.com"
    timeout: float = 10.0


def _read_aggregator(sec: _Section) -> AggregatorConfig:
    """[aggregator]; the app, its keys and the merchant and terminal numbers."""
    cfg = AggregatorConfig(
        provider=sec.choice("provider", ("lakala",), "lakala", 'must be "lakala"'),
        appid=sec.text("appid", check=_not_empty),
        serial_no=sec.text("serial_no", check=_not_empty),
        private_key=sec.text("private_key", check=_not_empty),
        platform_cert=sec.text("platform_cert", check=_not_empty),
        merchant_no=sec.text("merchant_no", check=_not_empty),
        term_no=sec.text("term_no", check=_not_empty),
        gateway=sec.text("gateway", "https://s2.lakala.com", _gateway_url),
        timeout=sec.number("timeout", 10.0, lo=1, hi=60),
    )
    sec.done()
    return cfg


def _digits(lo: int, hi: int) -> _Check:
    return lambda v: None if lo <= len(v) <= hi and v.isascii() and v.isdigit() else f"must be {lo} to {hi} digits"


def _device_id(v: str) -> str | None:
    return None if not v or (len(v) <= 32 and _ANS.fullmatch(v)) else "must be up to 32 printable ASCII characters"


def _hex_serial(v: str) -> str | None:
    return None if 1 <= len(v) <= 64 and _HEX.fullmatch(v) else "must be the certificate serial number in hex"


def _https_url(v: str) -> str | None:
    return None if v.startswith("https://") and "?" not in v else "must be an https:// URL without a query"


def _gateway_url(v: str) -> str | None:
    if not v or v.startswith(("https://", "http://127.0.0.1")):
        return None
    return "must be an https:// URL (plain http only to a loopback simulator)"


@dataclass(frozen=True)
class ReportsConfig:
    """When a report flags records for a second look."""

    opening_hours: str = "08-22"  # local hours the shop sells in, "HH-HH"
    refund_share_percent: int = 20
    declines_per_card: int = 3
    just_under_count: int = 3
    fallback_per_card: int = 2


def _read_reports(sec: _Section) -> ReportsConfig:
    reports = ReportsConfig(
        sec.text("opening_hours", "08-22", _opening_hours),
        sec.integer("refund_share_percent", 20, lo=1, hi=100),
        sec.integer("declines_per_card", 3, lo=2, hi=100),
        sec.integer("just_under_count", 3, lo=2, hi=1000),
        sec.integer("fallback_per_card", 2, lo=1, hi=100),
    )
    sec.done()
    return reports


def _opening_hours(v: str) -> str | None:
    m = _HOURS.fullmatch(v)
    if m and 0 <= int(m.group(1)) < int(m.group(2)) <= 24:
        return None
    return 'must be "HH-HH" in ASCII digits, from 00 to 24, e.g. "08-22"'


@dataclass(frozen=True)
class UpdateConfig:
    """Signed software updates: the release key (Ed25519 public key, hex) and where the slots live."""

    release_key: str = ""
    slots_dir: str = "slots"


def _read_update(sec: _Section) -> UpdateConfig:
    update = UpdateConfig(sec.text("release_key", "", _release_key), sec.text("slots_dir", "slots", _not_empty))
    sec.done()
    return update


def _release_key(v: str) -> str | None:
    return None if not v or (len(v) == 64 and _HEX.fullmatch(v)) else "must be an Ed25519 public key, 64 hex digits"


@dataclass(frozen=True)
class OfficeConfig:
    """The back office that gathers the journals of a shop's terminals (empty url: none; forwarding off)."""

    url: str = ""  # https://office.example:8443
    token_file: str = ""  # this terminal's credential, from `countertop office terminal ID --token-file FILE`
    ca_file: str = ""  # the back office's certificate (or its CA) to trust instead of the system's
    batch: int = 200  # snapshots per request
    interval: float = 2.0  # seconds between looks at an empty outbox
    heartbeat: float = 60.0  # seconds between contacts when there is nothing to send
    timeout: float = 10.0
    retry_max: float = 60.0  # the longest pause after a failed contact (from 1 s, doubling)


def _read_office(sec: _Section) -> OfficeConfig:
    """[office]; TLS unless the back office is on this machine, and a url comes with its credential."""
    office = OfficeConfig(
        url=sec.text("url", "", _office_url),
        token_file=sec.text("token_file", ""),
        ca_file=sec.text("ca_file", ""),
        batch=sec.integer("batch", 200, lo=1, hi=5000),
        interval=sec.number("interval", 2.0, lo=0.05, hi=600),
        heartbeat=sec.number("heartbeat", 60.0, lo=1, hi=3600),
        timeout=sec.number("timeout", 10.0, lo=0.5, hi=120),
        retry_max=sec.number("retry_max", 60.0, lo=1, hi=3600),
    )
    if office.url and not office.token_file:
        raise sec.fail("token_file", "missing: the back office takes rows only from a terminal with its token")
    sec.done()
    return office


def _office_url(v: str) -> str | None:
    if (
        not v
        or re.fullmatch(r"https://[^/\s]+", v)
        or re.fullmatch(r"http://(127\.0\.0\.1|localhost|\[::1\]):[0-9]+", v)
    ):
        return None
    return "must be https://HOST[:PORT] (plain http only to a back office on this machine)"


# --- [touch]: a touch screen for the cardholder's signature ------------------------------------------------


@dataclass(frozen=True)
class TouchConfig:
    """[touch]: the touch panel over the display (evdev, multitouch protocol B or single-touch), where the
    cardholder signs when the card's CVM is signature; without it the cashier collects the signature on paper."""

    device: InputDeviceConfig
    width: int = 480  # the display's size in pixels: touches are scaled to it from the panel's own range
    height: int = 320
    timeout: float = 90.0  # seconds to sign before the cashier collects the signature on the receipt instead


def _read_touch(sec: _Section) -> TouchConfig:
    """[touch]: path, usb or name of the panel (as [keypad]'s), the display size it maps to, the signing time."""
    path, usb, name = sec.text("path", ""), sec.text("usb", "", _usb_id), sec.text("name", "")
    touch = TouchConfig(
        InputDeviceConfig(path=path, usb=usb, name=name),
        width=sec.integer("width", 480, lo=64, hi=4096),
        height=sec.integer("height", 320, lo=64, hi=4096),
        timeout=sec.number("timeout", 90.0, lo=5.0, hi=600.0),
    )
    sec.done()
    if not (path or usb or name):
        raise sec.fail("path", "missing: give path, usb (vendor:product) or name of the touch panel")
    return touch


# --- the whole file --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    """The whole terminal configuration."""

    source: str
    terminal: TerminalConfig
    merchant: MerchantConfig
    timeouts: Timeouts
    keypad: InputDeviceConfig
    magstripe: InputDeviceConfig
    printer: PrinterConfig
    display: DisplayConfig
    host: HostConfig
    pin: PinConfig
    operators: OperatorsConfig = OperatorsConfig()
    contactless: ContactlessConfig = ContactlessConfig()
    emv: EmvConfig = EmvConfig()
    wallet: WalletConfig = WalletConfig()
    scanner: InputDeviceConfig | None = None
    wechat: WechatConfig | None = None
    unionpay: UnionPayConfig | None = None  # [unionpay]: UnionPay QR over UnionPay's online API
    aggregator: AggregatorConfig | None = None  # [aggregator]: one provider for every wallet's code
    chip: ChipConfig | None = None  # [chip]: a contact chip reader
    reports: ReportsConfig = ReportsConfig()
    keys: KeysConfig = KeysConfig()
    update: UpdateConfig = UpdateConfig()
    office: OfficeConfig = OfficeConfig()
    audio: AudioConfig = AudioConfig()
    touch: TouchConfig | None = None  # [touch]: the cardholder signs on the screen


def parse(doc: dict[str, Any], source: str, base: Path) -> Config:
    """Validate a parsed TOML document: each section by its reader, in this order, then an unknown section,
    then what spans sections. Relative paths resolve against `base`."""
    top = _Section(source, "", doc)
    cfg = Config(
        source,
        terminal=_read_terminal(top.sub("terminal"), base),
        merchant=_read_merchant(top.sub("merchant")),
        timeouts=_read_timeouts(top.sub("timeouts")),
        keypad=_read_input_device(top.sub("keypad"), with_keys=True),
        magstripe=_read_input_device(top.sub("magstripe"), with_keys=False),
        printer=_read_printer(top.sub("printer")),
        display=_read_display(top.sub("display")),
        host=_read_host(top.sub("host")),
        keys=_read_keys(top.sub("keys")),
        pin=_read_pin(top.sub("pin")),
        operators=_read_operators(top.sub("operators")),
        contactless=_read_contactless(top.sub("contactless")),
        emv=_read_emv(top.sub("emv"), base),
        wallet=_read_wallet(top.sub("wallet")),
        scanner=_read_input_device(top.sub("scanner"), with_keys=False) if "scanner" in doc else None,
        wechat=_read_wechat(top.sub("wechat")) if "wechat" in doc else None,
        unionpay=_read_unionpay(top.sub("unionpay")) if "unionpay" in doc else None,
        aggregator=_read_aggregator(top.sub("aggregator")) if "aggregator" in doc else None,
        chip=_read_chip(top.sub("chip")) if "chip" in doc else None,
        reports=_read_reports(top.sub("reports")),
        update=_read_update(top.sub("update")),
        office=_read_office(top.sub("office")),
        audio=_read_audio(top.sub("audio")),
        touch=_read_touch(top.sub("touch")) if "touch" in doc else None,
    )
    top.done()
    problem = _pin_scheme_problem(cfg.pin, cfg.keys, cfg.host)
    if problem:
        raise _error(source, "pin", "scheme", problem)
    if cfg.unionpay is not None and cfg.unionpay.via == "acquirer" and cfg.scanner is None:
        raise _error(
            source, "unionpay", "via", '"acquirer" takes the codes the 2D scanner reads: there is no [scanner]'
        )
    return cfg


def load(path: str | Path) -> Config:
    """Read and validate a config file. Relative data paths resolve against the current directory."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return loads(raw, str(path))


def loads(raw: bytes, source: str, base: Path | None = None) -> Config:
    """Validate the bytes of a config file named `source` (for messages); relative paths resolve against
    `base` (default: the current directory)."""
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML for a terminal: arrays or tables nested too deeply") from None
    return parse(doc, source, base if base is not None else Path.cwd())
