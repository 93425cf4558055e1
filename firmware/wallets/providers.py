"""Which wallet provider clients a configuration asks for: Alipay ([wallet]) and WeChat Pay ([wechat])."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from firmware.config import Config
from firmware.errors import ConfigError

if TYPE_CHECKING:
    from firmware.wallets.alipay import WalletProvider


def make_wallets(config: Config, clock: Callable[[], datetime]) -> dict[str, WalletProvider]:
    """The configured wallet providers' clients, by name, in the order F1/F2 show their codes ([wallet]'s
    Alipay, then [wechat]); none: no wallet payments."""
    providers: dict[str, WalletProvider] = {}
    alipay = make_wallet(config)
    if alipay is not None:
        providers["alipay"] = alipay
    if config.wechat is not None:
        wechat = config.wechat
        if not wechat.device_id:  # WeChat's scene_info names the till
            wechat = dataclasses.replace(wechat, device_id=config.terminal.terminal_id)
        from firmware.wallets.wechat import WechatPayClient  # imported only when configured (boot time)

        providers["wechat"] = WechatPayClient.from_config(wechat, clock=lambda: clock().astimezone(UTC))
    return providers


def make_wallet(config: Config) -> WalletProvider | None:
    """The configured Alipay client ([wallet] provider = "alipay"), or None."""
    w = config.wallet
    if not w.provider:
        return None
    from firmware.wallets.alipay import AlipayClient, WalletError  # imported only when configured (boot time)

    try:
        with open(w.private_key, "rb") as f:
            private = f.read()
        with open(w.provider_public_key, "rb") as f:
            public = f.read()
        return AlipayClient(w.gateway, w.app_id, private, public)
    except (OSError, ValueError, WalletError) as exc:
        raise ConfigError(f"{config.source}: [wallet] keys: {exc}") from None
