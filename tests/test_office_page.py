"""The owner's page in a real browser: Debian's headless chromium driven by Selenium through Debian's chromedriver
(no browser of Selenium's own is downloaded). A simulated terminal sells; the owner signs in, reads today's total,
sees the charts drawn, the total follow a new sale, the page in English and in Chinese, and on a phone's screen."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import wait_until
from test_office_e2e import office_config, outbox
from test_refunds import approved_sale


@pytest.fixture
def browser(chromium, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = chromium
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--lang=zh-CN"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"intl.accept_languages": "zh-CN,zh"})  # a browser set to Chinese
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    options.accept_insecure_certs = True  # the office's self-signed certificate (a shop adds it to its browsers)
    b = webdriver.Chrome(options=options, service=Service(executable_path=driver, log_output=str(tmp_path / "cd.log")))
    b.set_window_size(1280, 900)
    try:
        yield b
    finally:
        b.quit()


def text(browser, element_id: str) -> str:
    return browser.find_element("id", element_id).text


def until(browser, check, what: str, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(lambda b: check(b), message=what)


def test_the_owner_reads_today_on_the_page(office, tmp_path, browser):
    from hwsim import Simulator

    office.add_user("owner", "correct horse battery", "owner")
    direct = dataclasses.make_dataclass("Direct", [("port", int)])(office.port)  # no link in between here
    with Simulator(tmp_path / "t", office_config(office, direct, "SHOPP001")) as sim:
        approved_sale(sim, "1250")
        approved_sale(sim, "3300", "mc-approve")
        wait_until(lambda: outbox(sim) == 0, 20, "the sales forwarded")

        browser.get(office.url + "/")
        until(browser, lambda b: b.find_element("id", "signin").is_displayed(), "the sign-in form")
        assert browser.find_element("tag name", "html").get_attribute("lang") == "zh-CN"
        assert text(browser, "signin-button") == "登录"
        browser.find_element("id", "name").send_keys("owner")
        browser.find_element("id", "password").send_keys("not it")
        browser.find_element("id", "signin-button").click()
        until(browser, lambda b: text(b, "signin-error") == "用户名或密码错误", "the refusal")
        browser.find_element("id", "password").clear()
        browser.find_element("id", "password").send_keys("correct horse battery")
        browser.find_element("id", "signin-button").click()
        until(browser, lambda b: text(b, "total-sales") == "CNY 45.50", "today's total")
        assert text(browser, "total-net") == "CNY 45.50" and text(browser, "count-sales") == "2 笔"
        assert not browser.find_element("id", "signin").is_displayed()
        bars = browser.find_elements("css selector", "#chart-hour svg rect.bar")
        assert len(bars) >= 1 and all(float(b.get_attribute("height")) > 0 for b in bars)
        assert browser.find_elements("css selector", "#chart-method svg rect.bar")
        rows = browser.find_elements("css selector", "#terminals tbody tr")
        assert len(rows) == 1 and "SHOPP001" in rows[0].text and rows[0].text.split()[-1] == "0"  # nothing waiting
        browser.save_screenshot(str(tmp_path / "page-zh.png"))

        approved_sale(sim, "1200")  # the page follows the terminals as they forward
        until(browser, lambda b: text(b, "total-sales") == "CNY 57.50", "the total after a new sale", 30)

    browser.find_element("id", "lang").click()
    until(
        browser, lambda b: text(b, "total-sales") and b.find_element("tag name", "h1").text == "Back office", "English"
    )
    assert text(browser, "count-sales") == "3" and "Sales by hour" in browser.page_source
    csv_link = browser.find_element("id", "csv").get_attribute("href")
    assert "/api/export.csv?from=" in csv_link

    browser.set_window_size(390, 844)  # a phone
    browser.refresh()
    until(browser, lambda b: text(b, "total-sales") == "CNY 57.50", "the page on a phone")
    fits = browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert fits, "the page is wider than the phone's screen"
    chart = browser.find_element("css selector", "#chart-hour svg")
    assert 0 < chart.size["width"] <= 390
    browser.save_screenshot(str(tmp_path / "page-phone.png"))
