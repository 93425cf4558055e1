"""The back office's configuration (`office.toml`): its database, its web server and TLS, and the report rules.
Every key is checked where it is read and an unknown key is refused, as in the terminal's config."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.core.money import Currency
from firmware.core.reports import AnomalyRules
from firmware.errors import ConfigError
from office.wechatnotify import WechatNotifyConfig

_HOURS = re.compile(r"([0-9]{1,2})-([0-9]{1,2})")


@dataclass(frozen=True)
class ServerConfig:
    """Where the back office listens, its certificate, and how long a sign-in lasts."""

    host: str = "0.0.0.0"
    port: int = 8443
    cert_file: str = ""  # PEM certificate chain; empty: plain HTTP, accepted only on a loopback host
    key_file: str = ""
    session_hours: float = 12.0


@dataclass(frozen=True)
class OfficeSettings:
    """The whole back-office configuration."""

    source: str
    dsn: str  # libpq connection string, e.g. "host=/var/run/postgresql dbname=countertop"
    server: ServerConfig = ServerConfig()
    currency: str = "CNY"  # the currency the books are kept in (rows in another are not counted)
    rules: AnomalyRules = field(default_factory=AnomalyRules)
    wechat: WechatNotifyConfig | None = None  # [wechat]: WeChat Pay's payment callbacks are received here


class _Table:
    """One TOML table: typed getters that check as they read, then `done` refuses what nobody read."""

    def __init__(self, source: str, name: str, table: Any) -> None:
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        self.source, self.name, self.table = source, name, table
        self.seen: set[str] = set()

    def fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.source}: [{self.name}] {key}: {what}")

    def get(self, key: str, kind: type, default: Any) -> Any:
        self.seen.add(key)
        value = self.table.get(key, default)
        if kind is float and type(value) is int:
            value = float(value)
        if type(value) is not kind:
            raise self.fail(key, f"expected {kind.__name__}, got {type(value).__name__}")
        if isinstance(value, str) and any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
            raise self.fail(key, "holds a control character")
        return value

    def integer(self, key: str, default: int, lo: int, hi: int) -> int:
        value: int = self.get(key, int, default)
        if not lo <= value <= hi:
            raise self.fail(key, f"must be between {lo} and {hi}, got {value}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.table) - self.seen)
        if unknown:
            raise self.fail(unknown[0], "unknown key (a typo?)")


def parse(doc: dict[str, Any], source: str, base: Path) -> OfficeSettings:
    """Check a parsed office.toml; relative file names resolve against `base`."""
    top = _Table(source, "top level", doc)
    db = _Table(source, "database", doc.get("database", {}))
    top.seen.add("database")
    dsn = db.get("dsn", str, "")
    if not dsn:
        raise db.fail("dsn", "missing: the libpq connection string of the back office's database")
    db.done()

    srv = _Table(source, "server", doc.get("server", {}))
    top.seen.add("server")

    def path(key: str) -> str:
        value: str = srv.get(key, str, "")
        return str(base / value) if value and not Path(value).is_absolute() else value

    server = ServerConfig(
        host=srv.get("host", str, "0.0.0.0"),
        port=srv.integer("port", 8443, 1, 65535),
        cert_file=path("cert_file"),
        key_file=path("key_file"),
        session_hours=srv.get("session_hours", float, 12.0),
    )
    if not 0.05 <= server.session_hours <= 24 * 30:
        raise srv.fail("session_hours", "must be between 0.05 and 720")
    if bool(server.cert_file) != bool(server.key_file):
        raise srv.fail("key_file" if server.cert_file else "cert_file", "missing: give both or neither")
    if not server.cert_file and server.host not in ("127.0.0.1", "localhost", "::1"):
        raise srv.fail("cert_file", "missing: terminals and browsers reach the back office only over TLS")
    srv.done()

    rep = _Table(source, "reports", doc.get("reports", {}))
    top.seen.add("reports")
    currency = rep.get("currency", str, "CNY")
    try:
        Currency.of(currency)
    except ConfigError as exc:
        raise rep.fail("currency", str(exc)) from None
    hours = rep.get("opening_hours", str, "08-22")
    m = _HOURS.fullmatch(hours)
    if not (m and 0 <= int(m.group(1)) < int(m.group(2)) <= 24):
        raise rep.fail("opening_hours", 'must be "HH-HH", e.g. "08-22"')
    limits = rep.get("limits", list, [10000, 5000000])
    if not all(type(v) is int and v > 0 for v in limits):
        raise rep.fail("limits", "must be a list of amounts in minor units (the CVM limit, the largest amount)")
    rules = AnomalyRules(
        refund_share_percent=rep.integer("refund_share_percent", 20, 1, 100),
        declines_per_card=rep.integer("declines_per_card", 3, 2, 100),
        opening=(int(m.group(1)), int(m.group(2))),
        limits=tuple(limits),
        just_under_count=rep.integer("just_under_count", 3, 2, 1000),
        fallback_per_card=rep.integer("fallback_per_card", 2, 1, 100),
    )
    rep.done()
    wechat = _read_wechat(_Table(source, "wechat", doc["wechat"]), base) if "wechat" in doc else None
    top.seen.add("wechat")
    top.done()
    return OfficeSettings(source, dsn, server, Currency.of(currency).alpha, rules, wechat)


def _read_wechat(t: _Table, base: Path) -> WechatNotifyConfig:
    """[wechat]: the merchant whose callbacks `/api/v1/wechat/notify` takes, its APIv3 key and WeChat's key."""

    def path(key: str) -> str:
        value: str = t.get(key, str, "")
        if not value:
            raise t.fail(key, "missing")
        return str(base / value) if not Path(value).is_absolute() else value

    mchid: str = t.get("mchid", str, "")
    if not (mchid.isascii() and mchid.isdigit() and 8 <= len(mchid) <= 32):
        raise t.fail("mchid", "must be the WeChat Pay merchant id (digits)")
    serial: str = t.get("verify_serial", str, "")
    if not serial:
        raise t.fail("verify_serial", "missing: the public key's id (PUB_KEY_ID_…) or the certificate's serial")
    cfg = WechatNotifyConfig(mchid, path("apiv3_key"), path("verify_key"), serial)
    t.done()
    return cfg


def load(path: str | Path) -> OfficeSettings:
    """Read and check an office.toml."""
    path = Path(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return parse(doc, str(path), path.parent)
