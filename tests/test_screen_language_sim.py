"""The customer's screen in Chinese through the Simulator: a shop set to zh-CN, a customer switching the language
mid-sale with the keypad's language key, and the card read shown to the customer but never logged or journaled
(beyond the masked number)."""

from __future__ import annotations

import dataclasses
import logging

from conftest import sales, sim_config
from firmware.config import Config
from hwsim import Simulator
from hwsim.cards import card

NAME = "ZHAOXQ/LIYQ"  # track 1 / 5F20: what the screen shows as "ZHAOXQ LIYQ" (Chinese) or "LIYQ ZHAOXQ"


def config(language: str, confirm_card: bool = False) -> Config:
    cfg = sim_config(host=2.0)
    return dataclasses.replace(
        cfg, terminal=dataclasses.replace(cfg.terminal, language=language, confirm_card=confirm_card)
    )


def no_name_kept(sim, data, caplog) -> None:
    """The holder's name was on screen only: not in the log, the journal, the data folder or the receipts."""
    for word in ("ZHAOXQ", "LIYQ"):
        assert word not in caplog.text
        assert all(word not in str(row) for row in sim.journal())
        assert all(word.encode() not in p.read_bytes() for p in data.rglob("*") if p.is_file())
        assert all(word not in receipt for receipt in sim.receipts)


def test_a_swiped_sale_in_chinese_with_the_card_confirmed(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    visa = card("visa-approve")
    with Simulator(tmp_path / "data", config("zh-CN", confirm_card=True)) as sim:
        sim.wait_for("请输入金额")
        sim.keys("1250{ENTER}")
        sim.wait_for("请挥卡或刷卡")
        sim.swipe(
            track1=f"%B{visa.pan}^{NAME}^{visa.expiry}{visa.service_code}{visa.discretionary}?", track2=visa.track2
        )
        screen = sim.wait_for("确认键继续")
        assert "¥12.50" in screen and "424242******4242" in screen and "ZHAOXQ LIYQ" in screen
        assert visa.pan not in screen
        sim.keys("{ENTER}")
        sim.wait_for("请输入密码")
        sim.keys("1234{ENTER}")
        screen = sim.wait_for("交易成功")
        assert "¥12.50" in screen and "授权码" in screen
        sim.wait_for_receipts(2)
        [row] = sales(sim)
        assert row["status"] == "approved" and row["masked_pan"] == "424242******4242"
        sim.keys("{ENTER}")
        sim.wait_for("请输入金额")
        no_name_kept(sim, tmp_path / "data", caplog)


def test_the_customer_switches_to_chinese_mid_sale_and_the_shop_language_comes_back(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    profile = tmp_path / "card.toml"
    profile.write_text(
        (sim_cards() / "visa-tap-approve.toml").read_text(encoding="utf-8") + f'name = "{NAME}"\n', encoding="utf-8"
    )
    with Simulator(tmp_path / "data", config("en")) as sim:
        sim.keys("25000{ENTER}")  # 250.00: above the CVM limit, so an online PIN
        sim.wait_for("TAP OR SWIPE CARD")
        sim.keys("{F4}")  # the customer's language key
        sim.wait_for("请挥卡或刷卡")
        assert "¥250.00" in sim.screen
        sim.tap(profile=profile)
        screen = sim.wait_for("请输入密码")
        assert "VISA CREDIT" in screen and "476173******0010" in screen and "ZHAOXQ LIYQ" in screen
        sim.remove_card()
        sim.keys("{F4}")  # back to English while the PIN pad is armed: the key passes it
        screen = sim.wait_for("ENTER PIN")
        assert "LIYQ ZHAOXQ" in screen and "CNY 250.00" in screen
        sim.keys("{F4}")
        sim.wait_for("请输入密码")
        sim.keys("1234{ENTER}")  # the language key typed no digit: the PIN is still 1234
        sim.wait_for("交易成功")
        sim.keys("{ENTER}")
        screen = sim.wait_for("ENTER AMOUNT")  # the sale is over: the shop's language
        assert "CNY 0.00" in screen
        [row] = sales(sim)
        assert row["status"] == "approved"
        no_name_kept(sim, tmp_path / "data", caplog)


def sim_cards():
    from pathlib import Path

    import hwsim

    return Path(hwsim.__file__).parent / "cards"
