"""The simulated world outside a terminal process: acquirer and wallet gateway (which outlive any terminal
boot), and the configuration overrides that point a terminal at them and at a printer pty and an RF field."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from firmware.config import Config, UnionPayConfig
from firmware.host.signon import MASTER_KEY
from firmware.security.keystore import KeyStore

from .acquirer import Acquirer
from .emvcard import chip_catalog, contactless_catalog
from .simulator import SIM_BDK, SIM_TMK
from .walletgw import WalletGateway
from .wechatgw import WechatGateway

log = logging.getLogger(__name__)

Overrides = dict[str, dict[str, Any]]
# Sections an override may add where the config has none: those whose every key has a default.
OPTIONAL_SECTIONS: dict[str, Callable[[], Any]] = {"unionpay": UnionPayConfig}


def apply_overrides(cfg: Config, overrides: Mapping[str, Mapping[str, Any]]) -> Config:
    """`cfg` with `{section: {key: value}}` replaced (JSON-friendly values; `data_dir` becomes a Path); an
    optional section the config lacks is added with its defaults and these values (e.g. [unionpay])."""
    for section, values in overrides.items():
        current = getattr(cfg, section)
        if current is None and section in OPTIONAL_SECTIONS:
            current = OPTIONAL_SECTIONS[section]()
        if current is None or not dataclasses.is_dataclass(current):
            raise ValueError(f"config has no [{section}] to override")
        fixed = {k: Path(v) if k == "data_dir" else v for k, v in values.items()}
        unknown = set(fixed) - {f.name for f in dataclasses.fields(current)}
        if unknown:
            raise ValueError(f"[{section}] has no {', '.join(sorted(unknown))}")
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(current, **fixed)})
    return cfg


class Hosts:
    """The simulated acquirer (ISO 8583 on loopback TCP) and the Alipay and WeChat Pay gateways (HTTP on
    loopback), with the merchant's wallet keys written where the terminal's config will look for them."""

    def __init__(self, base: Config, keys_dir: Path, late_delay: float | None = None) -> None:
        self.base = base
        scheme = base.keys.scheme
        late = late_delay if late_delay is not None else base.timeouts.host + 1.0
        self.acquirer = Acquirer(
            SIM_BDK,
            late_delay=late,
            contactless=[*contactless_catalog().values(), *chip_catalog().values()],  # chip cards: same issuer
            dialect=base.host.dialect,
            key_scheme=scheme,
            tmk=SIM_TMK if scheme else b"",
        )
        self.port = self.acquirer.start()
        self.wallet = WalletGateway(app_id=base.wallet.app_id or "2021000000000000")
        keys_dir.mkdir(parents=True, exist_ok=True)
        if scheme and KeyStore(keys_dir).get(MASTER_KEY) is None:
            KeyStore(keys_dir).put(MASTER_KEY, SIM_TMK, scheme)  # the installer's key loading
        self._private = keys_dir / "merchant_private.pem"
        self._public = keys_dir / "alipay_public.pem"
        self._private.write_bytes(self.wallet.merchant_private_pem)
        self._public.write_bytes(self.wallet.gateway_public_pem)
        wc = base.wechat
        self.wechat = WechatGateway(wc.mchid, wc.appid, wc.platform) if wc is not None else WechatGateway()
        self._wechat_keys = {
            "private_key": keys_dir / "wechat_apiclient_key.pem",
            "apiv3_key": keys_dir / "wechat_apiv3_key.txt",
            "public_key": keys_dir / "wechat_pub_key.pem",
        }
        self._wechat_keys["private_key"].write_bytes(self.wechat.merchant_private_pem)
        self._wechat_keys["apiv3_key"].write_bytes(self.wechat.apiv3_key)
        self._wechat_keys["public_key"].write_bytes(self.wechat.public_key_pem)

    def overrides(self, data_dir: Path, printer_devfile: str, nfc_port: int | None) -> Overrides:
        """What a terminal's config must say to use these hosts, this printer pty and this RF field."""
        b = self.base
        out: Overrides = {
            "terminal": {"data_dir": str(data_dir)},
            "host": {"host": "127.0.0.1", "port": self.port, "tls": False},
            "printer": {"backend": "serial", "devfile": printer_devfile},
        }
        if b.contactless.device and nfc_port is not None:
            out["contactless"] = {"device": f"udp:127.0.0.1:{nfc_port}"}
        if b.wallet.provider:
            out["wallet"] = {
                "gateway": self.wallet.url,
                "app_id": self.wallet.app_id,
                "private_key": str(self._private),
                "provider_public_key": str(self._public),
            }
        if b.wechat is not None:
            out["wechat"] = {
                "gateway": self.wechat.url,
                "merchant_serial": self.wechat.merchant_serial,
                "public_key_id": self.wechat.public_key_id,
                **{key: str(path) for key, path in self._wechat_keys.items()},
            }
        return out

    def close(self) -> None:
        """Stop the servers."""
        self.acquirer.stop()
        self.wallet.close()
        self.wechat.close()
