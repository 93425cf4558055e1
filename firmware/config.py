"""Terminal configuration: TOML files read with tomllib, checked key by key into typed, frozen objects.

Every section is read whole; an unknown key, a wrong type or an out-of-range value stops start-up
with one line naming the file, the section, the key and what is wrong (ConfigError). What cannot work
is refused here rather than at the first sale: no string may hold a control character (it would reach
the printer or the display), identifiers and codes are ASCII (str.isdigit() is true for "²"), the
terminal and merchant ids fit ISO 8583 fields 41 and 42, and keypad keys are real evdev key names.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from firmware.errors import ConfigError
from firmware.core.money import Currency
from firmware.security.operators import check_hash_format
from firmware.core.text import problem as unsafe_text

LOGICAL_KEYS = ("ENTER", "CANCEL", "CLEAR", "F1", "F2", "F3", "F4", "MENU")
PRINTER_BACKENDS = ("usb", "serial", "network", "file", "none")
_REQUIRED = object()
_USB_ID = re.compile(r"[0-9a-fA-F]{4}:[0-9a-fA-F]{4}")           # used with fullmatch: "$" lets a "\n" through
_HEX = re.compile(r"[0-9a-fA-F]*")
_ANS = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")   # printable ASCII, no space at either end
_HOURS = re.compile(r"([0-9]{1,2})-([0-9]{1,2})")
_ALNUM = re.compile(r"[0-9A-Za-z]+")


class _Section:
    """Reads one TOML table; remembers which keys were read so leftovers can be rejected."""

    def __init__(self, source: str, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")  # noqa: B904
        self.source, self.name, self.table, self.seen = source, name, table, set()

    def fail(self, key: str, what: str) -> ConfigError:
        shown = key if key.isprintable() and len(key) <= 40 else repr(key[:40])   # a quoted key may hold "\n"
        section = self.name if self.name.isprintable() and len(self.name) <= 60 else repr(self.name[:60])
        return ConfigError(f"{self.source}: [{section or 'top level'}] {shown}: {what}")

    def get(self, key: str, kind: type, default: Any = _REQUIRED,
            check: Callable[[Any], str | None] | None = None) -> Any:
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
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false",
            dict: "a table", list: "a list"}.get(kind, kind.__name__)


def _between(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}, got {v}"


def _hex_len(n: int) -> Callable[[Any], str | None]:
    return lambda v: None if len(v) == n and _HEX.fullmatch(v) else f"must be {n} hex digits"


def _ans(lo: int, hi: int, field: str) -> Callable[[Any], str | None]:
    """Printable ASCII of lo..hi characters with no space at either end (what an ISO 8583 ANS field carries)."""
    size = f"{lo}" if lo == hi else f"{lo} to {hi}"
    return lambda v: None if lo <= len(v) <= hi and _ANS.fullmatch(v) else \
        f"must be {size} printable ASCII characters, no space at either end (ISO 8583 {field}), got {v[:20]!r}"


@dataclass(frozen=True)
class TerminalConfig:
    """Identity and money rules of this terminal."""

    terminal_id: str
    merchant_id: str
    currency: Currency
    min_amount: int
    max_amount: int
    data_dir: Path


@dataclass(frozen=True)
class MerchantConfig:
    """What the receipt header says about the shop."""

    name: str
    address: str = ""
    phone: str = ""


@dataclass(frozen=True)
class Timeouts:
    """Seconds each waiting state waits."""

    amount: float = 60.0
    card: float = 60.0
    pin: float = 30.0
    host: float = 30.0
    result: float = 15.0
    retry: float = 30.0          # before the host is asked again what it has not answered (doubles to 5 min)


@dataclass(frozen=True)
class InputDeviceConfig:
    """How to find an evdev input device: by path, by USB vendor:product, or by name."""

    path: str = ""
    usb: str = ""
    name: str = ""
    keys: dict[str, str] = field(default_factory=dict)   # logical key -> evdev key name (keypad only)

    def describe(self) -> str:
        return self.path or (f"usb {self.usb}" if self.usb else f"name {self.name!r}")


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
    width: int = 32                 # characters per line in the normal font
    chinese: bool = False           # printer takes GB18030 in Chinese mode (FS &)
    language: str = "en"            # receipt labels: "en" or "zh" (bilingual)


@dataclass(frozen=True)
class DisplayConfig:
    """The customer/cashier display."""

    kind: str = "console"
    tty: str = "-"                  # "-" is standard output
    width: int = 20


@dataclass(frozen=True)
class HostConfig:
    """The acquirer's ISO 8583 endpoint."""

    host: str
    port: int
    tls: bool = False
    dialect: str = "default"         # the ISO 8583 dialect: "default" (TDES DUKPT) or "aes-dukpt"
    ca_file: str = ""                # PEM bundle (or the pinned certificate) to trust instead of the system's
    client_cert: str = ""            # PEM certificate chain, when the acquirer wants a client certificate
    client_key: str = ""


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


@dataclass(frozen=True)
class ContactlessConfig:
    """The contactless reader (nfcpy device path; empty: none) and the EMV contactless limits (minor units)."""

    device: str = ""
    cvm_limit: int = 10000
    transaction_limit: int = 500000
    floor_limit: int = 0
    aids: tuple[str, ...] = ("A0000000031010", "A0000000041010", "A000000333010101", "A000000333010102")
    country: str = "156"             # ISO 3166 numeric, tag 9F1A
    tac_denial: str = "0010000000"   # terminal action codes: TVR bits that decline offline / go online / default
    tac_online: str = "DC4004F800"
    tac_default: str = "DC4000A800"


@dataclass(frozen=True)
class WalletConfig:
    """The wallet acquirer (empty provider: none), its credentials, and how long the terminal waits."""

    provider: str = ""               # "alipay"
    gateway: str = ""                # e.g. https://openapi.alipay.com/gateway.do
    app_id: str = ""
    private_key: str = ""            # path to the merchant's RSA private key (PEM)
    provider_public_key: str = ""    # path to the provider's RSA public key (PEM)
    subject: str = "Countertop"
    qr_timeout: int = 120            # seconds a shown code stays valid
    poll_interval: float = 2.0       # first status query after this; backs off to 5 s
    confirm_timeout: float = 30.0    # seconds a scanned code may wait for the payer's confirmation
    confirm_interval: float = 5.0


@dataclass(frozen=True)
class ScannerConfig:
    """The 2D barcode scanner (a HID keyboard); empty: none."""

    path: str = ""
    usb: str = ""
    name: str = ""


@dataclass(frozen=True)
class ReportsConfig:
    """When a report flags records for a second look."""

    opening_hours: str = "08-22"      # local hours the shop sells in, "HH-HH"
    refund_share_percent: int = 20
    declines_per_card: int = 3
    just_under_count: int = 3
    fallback_per_card: int = 2


@dataclass(frozen=True)
class OperatorsConfig:
    """Operator PIN hashes (made by `countertop hash-pin`) and the lockout after wrong PINs."""

    manager_pin: str = field(default="", repr=False)
    cashier_pin: str = field(default="", repr=False)
    max_failures: int = 3
    lockout: int = 300               # seconds
    admin_pin: str = field(default="", repr=False)
    cashiers: dict[str, str] = field(default_factory=dict, repr=False)   # cashier number -> PIN hash

    @property
    def hashes(self) -> dict[str, str]:
        """Role -> PIN hash, for the roles that have one."""
        return {r: h for r, h in (("admin", self.admin_pin), ("manager", self.manager_pin),
                                  ("cashier", self.cashier_pin)) if h}


@dataclass(frozen=True)
class KeysConfig:
    """Master/session keys: "" (none: DUKPT only, no MAC), "tdes" (retail MAC) or "aes" (AES-CMAC).
    The terminal master key is in the key store (`countertop keys load tmk`), never in this file."""

    scheme: str = ""


@dataclass(frozen=True)
class UpdateConfig:
    """Signed software updates: the release key (Ed25519 public key, hex) and where the slots live."""

    release_key: str = ""
    slots_dir: str = "slots"


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
    wallet: WalletConfig = WalletConfig()
    scanner: InputDeviceConfig | None = None
    reports: ReportsConfig = ReportsConfig()
    keys: KeysConfig = KeysConfig()
    update: UpdateConfig = UpdateConfig()


def _input_device(sec: _Section, with_keys: bool) -> InputDeviceConfig:
    path = sec.get("path", str, "")
    usb = sec.get("usb", str, "", lambda v: None if _USB_ID.fullmatch(v) else "must be VVVV:PPPP in hex")
    name = sec.get("name", str, "")
    keys: dict[str, str] = {}
    if with_keys:
        ksec = sec.sub("keys")
        taken: dict[int, str] = {}
        for k in LOGICAL_KEYS:
            keys[k] = ksec.get(k, str, "", _evdev_key)
            if keys[k]:
                code = _evdev_code(keys[k])
                if code in taken:
                    raise ksec.fail(k, f"{keys[k]} is already {taken[code]}: each key does one thing")
                taken[code] = k
        ksec.done()
        keys = {k: v for k, v in keys.items() if v}
        for k in ("ENTER", "CANCEL", "CLEAR"):
            if k not in keys:
                raise ksec.fail(k, "missing: the keypad needs ENTER, CANCEL and CLEAR")
    sec.done()                                  # a typo'd key is reported before what it left missing
    if not (path or usb or name):
        raise sec.fail("path", "missing: give path, usb (vendor:product) or name of the device")
    return InputDeviceConfig(path=path, usb=usb, name=name, keys=keys)


def _evdev_code(name: str) -> int:
    from evdev import ecodes       # noqa: PLC0415 - the keypad's library, needed only to check its key names
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


def parse(doc: dict[str, Any], source: str, base: Path) -> Config:
    """Validate a parsed TOML document; relative paths resolve against `base`."""
    top = _Section(source, "", doc)

    t = top.sub("terminal")
    tid = t.get("terminal_id", str, check=_ans(8, 8, "field 41"))
    mid = t.get("merchant_id", str, check=_ans(1, 15, "field 42"))
    cur_code = t.get("currency", str)
    try:
        currency = Currency.of(cur_code)
    except ConfigError as exc:
        raise t.fail("currency", str(exc)) from None
    lo = t.get("min_amount", int, 1, _between(1, 10**12 - 1))
    hi = t.get("max_amount", int, 99_999_999, _between(1, 10**12 - 1))
    if hi < lo:
        raise t.fail("max_amount", f"must not be below min_amount ({lo})")
    data_dir = Path(t.get("data_dir", str, "data"))
    t.done()
    terminal = TerminalConfig(tid, mid, currency, lo, hi, data_dir if data_dir.is_absolute() else base / data_dir)

    m = top.sub("merchant")
    merchant = MerchantConfig(m.get("name", str, check=lambda v: None if v.strip() else "must not be empty"),
                              m.get("address", str, ""), m.get("phone", str, ""))
    m.done()

    s = top.sub("timeouts")
    timeouts = Timeouts(**{k: s.get(k, float, getattr(Timeouts, k), _between(1, 600))
                           for k in ("amount", "card", "pin", "host", "result", "retry")})
    s.done()

    keypad = _input_device(top.sub("keypad"), with_keys=True)
    magstripe = _input_device(top.sub("magstripe"), with_keys=False)

    p = top.sub("printer")
    backend = p.get("backend", str, "none", lambda v: None if v in PRINTER_BACKENDS else f"must be one of {', '.join(PRINTER_BACKENDS)}")
    printer = PrinterConfig(
        backend=backend,
        usb=p.get("usb", str, "", lambda v: None if _USB_ID.fullmatch(v) else "must be VVVV:PPPP in hex"),
        devfile=p.get("devfile", str, ""),
        baudrate=p.get("baudrate", int, 9600, _between(1200, 921600)),
        host=p.get("host", str, ""),
        port=p.get("port", int, 9100, _between(1, 65535)),
        profile=p.get("profile", str, "default"),
        width=p.get("width", int, 32, _between(24, 64)),
        chinese=p.get("chinese", bool, False),
        language=p.get("language", str, "en", lambda v: None if v in ("en", "zh") else 'must be "en" or "zh"'),
    )
    needs = {"usb": "usb", "serial": "devfile", "network": "host", "file": "devfile"}.get(backend)
    if needs and not getattr(printer, needs):
        raise p.fail(needs, f"missing: the {backend} backend needs it")
    p.done()

    d = top.sub("display")
    display = DisplayConfig(d.get("kind", str, "console", lambda v: None if v == "console" else 'must be "console"'),
                            d.get("tty", str, "-"), d.get("width", int, 20, _between(16, 80)))
    d.done()

    h = top.sub("host")
    host = HostConfig(h.get("host", str, check=lambda v: None if v.strip() else "must not be empty"),
                      h.get("port", int, check=_between(1, 65535)),
                      h.get("tls", bool, False), h.get("dialect", str, "default",
                                                       lambda v: None if v in ("default", "aes-dukpt")
                                                       else 'must be "default" or "aes-dukpt"'),
                      h.get("ca_file", str, ""), h.get("client_cert", str, ""), h.get("client_key", str, ""))
    if not host.tls and host.host not in ("127.0.0.1", "localhost", "::1"):
        raise h.fail("tls", "must be true: card data goes to the acquirer only over TLS (plain TCP only to a "
                             "simulator on this machine)")
    if bool(host.client_cert) != bool(host.client_key):
        raise h.fail("client_key" if host.client_cert else "client_cert", "missing: give both or neither")
    h.done()

    ks = top.sub("keys")
    keys_cfg = KeysConfig(ks.get("scheme", str, "", lambda v: None if v in ("", "tdes", "aes")
                                 else 'must be "", "tdes" or "aes"'))
    ks.done()

    k = top.sub("pin")
    scheme = k.get("scheme", str, "tdes", lambda v: None if v in ("tdes", "aes", "session")
                   else 'must be "tdes", "aes" or "session"')
    tdes = scheme == "tdes"
    pin = PinConfig(
        ipek=bytes.fromhex(k.get("ipek", str, "", _hex_len(32))),      # "": sealed in the key store
        ksn=bytes.fromhex(k.get("ksn", str, _REQUIRED if tdes else "", _hex_len(20))),
        min_length=k.get("min_length", int, 4, _between(4, 12)),
        max_length=k.get("max_length", int, 12, _between(4, 12)),
        scheme=scheme,
        initial_key=bytes.fromhex(k.get("initial_key", str, "", _hex_len(32))),   # "": in the key store
        key_id=bytes.fromhex(k.get("key_id", str, _REQUIRED if scheme == "aes" else "", _hex_len(16))),
    )
    if scheme == "session" and not keys_cfg.scheme:
        raise k.fail("scheme", '"session" needs [keys] scheme = "tdes" or "aes" (the PIN key comes at sign-on)')
    if scheme == "session" and (keys_cfg.scheme == "aes") != (host.dialect == "aes-dukpt"):
        raise k.fail("scheme", f'"session" with [keys] scheme = "{keys_cfg.scheme}" needs [host] dialect = '
                               f'"{"aes-dukpt" if keys_cfg.scheme == "aes" else "default"}" (the PIN block size)')
    if scheme != "session" and (scheme == "aes") != (host.dialect == "aes-dukpt"):
        raise k.fail("scheme", f'"{scheme}" needs [host] dialect = "{"aes-dukpt" if scheme == "aes" else "default"}"')
    if pin.max_length < pin.min_length:
        raise k.fail("max_length", "must not be below min_length")
    k.done()

    o = top.sub("operators")
    operators = OperatorsConfig(
        manager_pin=o.get("manager_pin", str, "", check_hash_format),
        cashier_pin=o.get("cashier_pin", str, "", check_hash_format),
        max_failures=o.get("max_failures", int, 3, _between(1, 10)),
        lockout=o.get("lockout", int, 300, _between(10, 86400)),
        admin_pin=o.get("admin_pin", str, "", check_hash_format),
        cashiers=o.get("cashiers", dict, {}, _cashier_table),
    )
    o.done()

    c = top.sub("contactless")
    aids = c.get("aids", list, list(ContactlessConfig.aids),
                 lambda v: None if v and all(isinstance(a, str) and 10 <= len(a) <= 32 and len(a) % 2 == 0
                                             and _HEX.fullmatch(a) for a in v)
                 else "must be a list of AIDs in hex (10 to 32 digits, an even number)")
    contactless = ContactlessConfig(
        device=c.get("device", str, "", lambda v: None if not v or v.split(":")[0] in ("usb", "tty", "udp")
                     else "must be an nfcpy path: usb:VVVV:PPPP, tty:PORT:DRIVER or udp:HOST:PORT"),
        cvm_limit=c.get("cvm_limit", int, 10000, _between(0, 10**12 - 1)),
        transaction_limit=c.get("transaction_limit", int, 500000, _between(0, 10**12 - 1)),
        floor_limit=c.get("floor_limit", int, 0, _between(0, 10**12 - 1)),
        aids=tuple(a.upper() for a in aids),
        country=c.get("country", str, "156", lambda v: None if re.fullmatch("[0-9]{3}", v) else
                      "must be 3 digits (ISO 3166 numeric, e.g. 156)"),
        tac_denial=c.get("tac_denial", str, "0010000000", _hex_len(10)).upper(),
        tac_online=c.get("tac_online", str, "DC4004F800", _hex_len(10)).upper(),
        tac_default=c.get("tac_default", str, "DC4000A800", _hex_len(10)).upper(),
    )
    c.done()

    w = top.sub("wallet")
    provider = w.get("provider", str, "", lambda v: None if v in ("", "alipay") else 'must be "alipay" or empty')
    wallet = WalletConfig(
        provider=provider,
        gateway=w.get("gateway", str, "", lambda v: None if not v or v.startswith(("https://", "http://127.0.0.1"))
                      else "must be an https:// URL (plain http only to a loopback simulator)"),
        app_id=w.get("app_id", str, ""),
        private_key=w.get("private_key", str, ""),
        provider_public_key=w.get("provider_public_key", str, ""),
        subject=w.get("subject", str, "Countertop"),
        qr_timeout=w.get("qr_timeout", int, 120, _between(10, 900)),
        poll_interval=w.get("poll_interval", float, 2.0, _between(0.1, 10)),
        confirm_timeout=w.get("confirm_timeout", float, 30.0, _between(1, 120)),
        confirm_interval=w.get("confirm_interval", float, 5.0, _between(0.1, 30)),
    )
    if provider:
        for key in ("gateway", "app_id", "private_key", "provider_public_key"):
            if not getattr(wallet, key):
                raise w.fail(key, f"missing: the {provider} provider needs it")
    w.done()
    scanner = _input_device(top.sub("scanner"), with_keys=False) if "scanner" in doc else None
    r = top.sub("reports")
    hours = r.get("opening_hours", str, "08-22", _opening_hours)
    reports = ReportsConfig(hours, r.get("refund_share_percent", int, 20, _between(1, 100)),
                            r.get("declines_per_card", int, 3, _between(2, 100)),
                            r.get("just_under_count", int, 3, _between(2, 1000)),
                            r.get("fallback_per_card", int, 2, _between(1, 100)))
    r.done()
    u = top.sub("update")
    update = UpdateConfig(u.get("release_key", str, "", lambda v: None if not v or (len(v) == 64 and _HEX.fullmatch(v))
                                else "must be an Ed25519 public key, 64 hex digits"),
                          u.get("slots_dir", str, "slots", lambda v: None if v.strip() else "must not be empty"))
    u.done()
    top.done()
    return Config(source, terminal, merchant, timeouts, keypad, magstripe, printer, display, host, pin, operators,
                  contactless, wallet, scanner, reports, keys_cfg, update)


def _cashier_table(v: dict[str, Any]) -> str | None:
    for number, stored in v.items():
        if not (_ALNUM.fullmatch(number) and 1 <= len(number) <= 8):
            return f"cashier number {number!r} must be 1 to 8 letters or digits"
        problem = check_hash_format(stored) if isinstance(stored, str) else "must be a string"
        if problem:
            return f"cashier {number}: {problem}"
    return None


def _opening_hours(v: str) -> str | None:
    m = _HOURS.fullmatch(v)
    if m and 0 <= int(m.group(1)) < int(m.group(2)) <= 24:
        return None
    return 'must be "HH-HH" in ASCII digits, from 00 to 24, e.g. "08-22"'


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
