"""Which wallet provider clients a configuration asks for: Alipay ([wallet]), WeChat Pay ([wechat]) and UnionPay
QR ([unionpay]) and an aggregator taking them all ([aggregator])."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from firmware.config import Config
from firmware.errors import ConfigError

if TYPE_CHECKING:
    from firmware.wallets.alipay import WalletProvider
    from firmware.wallets.keycheck import CheckedKeys


def make_wallets(
    config: Config, clock: Callable[[], datetime], checked: CheckedKeys | None = None
) -> dict[str, WalletProvider]:
    """The configured wallet providers' clients, by name, in the order F1/F2 show their codes ([wallet]'s
    Alipay, then [wechat], [unionpay], [aggregator]: F1 to F4); none: no wallet payments. With `checked`, a
    private key whose bytes passed the RSA check before is not checked again (UnionPay's signing certificate
    is always checked)."""
    providers: dict[str, WalletProvider] = {}
    alipay = make_wallet(config, checked)
    if alipay is not None:
        providers["alipay"] = alipay
    if config.wechat is not None:
        wechat = config.wechat
        if not wechat.device_id:  # WeChat's scene_info names the till
            wechat = dataclasses.replace(wechat, device_id=config.terminal.terminal_id)
        from firmware.wallets.wechat import WechatPayClient  # imported only when configured (boot time)

        providers["wechat"] = WechatPayClient.from_config(wechat, lambda: clock().astimezone(UTC), checked)
    if config.unionpay is not None and config.unionpay.via == "unionpay":  # via the acquirer: a card sale
        unionpay = config.unionpay
        if not unionpay.term_id:  # UnionPay's termId names the till
            unionpay = dataclasses.replace(unionpay, term_id=config.terminal.terminal_id)
        from firmware.wallets.unionpay import UnionPayClient  # imported only when configured (boot time)

        providers["unionpay"] = UnionPayClient.from_config(unionpay, clock=lambda: clock().astimezone(UTC))
    if config.aggregator is not None:  # last: the codes of wallets not set up directly go to it
        from firmware.wallets.aggregator import LakalaClient  # imported only when configured (boot time)

        providers["aggregator"] = LakalaClient.from_config(config.aggregator, lambda: clock().astimezone(UTC), checked)
    return providers


def make_wallet(config: Config, checked: CheckedKeys | None = None) -> WalletProvider | None:
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
        return AlipayClient(w.gateway, w.app_id, private, public, checked=checked)
    except (OSError, ValueError, WalletError) as exc:
        raise ConfigError(f"{config.source}: [wallet] keys: {exc}") from None
