"""The back office's settings on both sides: a terminal's [office] section and the office's own office.toml, each
checked key by key, and the command line that registers terminals and users."""

from __future__ import annotations

import io

import pytest

from conftest import ROOT, SIM_TOML
from firmware.config import loads
from firmware.errors import ConfigError
from firmware.shell import cli
from office.config import load as load_office
from office.config import parse as parse_office

BASE = SIM_TOML.read_text(encoding="utf-8")


def terminal(office: str):
    return loads((BASE + "\n[office]\n" + office).encode(), "t.toml")


def test_a_terminal_without_office_forwards_nothing():
    assert loads(BASE.encode(), "t.toml").office.url == ""
    cfg = terminal('url = "https://office.shop.cn:8443"\ntoken_file = "/etc/t.token"\nbatch = 500')
    assert (cfg.office.url, cfg.office.batch, cfg.office.interval) == ("https://office.shop.cn:8443", 500, 2.0)
    assert terminal('url = "http://127.0.0.1:8080"\ntoken_file = "t"').office.url == "http://127.0.0.1:8080"


@pytest.mark.parametrize(
    "office, problem",
    [
        ('url = "http://office.shop.cn:8080"\ntoken_file = "t"', "plain http only to a back office on this machine"),
        ('url = "https://office.shop.cn/api"\ntoken_file = "t"', "must be https://HOST[:PORT]"),
        ('url = "https://office.shop.cn"', "token_file: missing"),
        ('url = "https://office.shop.cn"\ntoken_file = "t"\nbatch = 0', "batch: must be between 1 and 5000"),
        ('url = "https://office.shop.cn"\ntoken_file = "t"\ntoekn = "x"', "toekn: unknown key"),
    ],
)
def test_a_terminal_office_section_that_cannot_work_is_refused(office, problem):
    with pytest.raises(ConfigError, match="office") as refused:
        terminal(office)
    assert problem in str(refused.value)


def test_the_office_template_and_its_checks(tmp_path):
    settings = load_office(ROOT / "config" / "office.toml")
    assert settings.server.port == 8443 and settings.currency == "CNY" and settings.rules.opening == (8, 22)
    assert settings.server.cert_file == str(ROOT / "config" / "office-cert.pem")  # beside the file
    doc = {"database": {"dsn": "dbname=x"}, "server": {"host": "127.0.0.1"}}
    assert parse_office(doc, "o.toml", tmp_path).server.cert_file == ""  # plain HTTP on loopback only
    for bad, problem in (
        ({"server": {"host": "0.0.0.0"}}, "cert_file: missing"),
        ({"database": {}}, "dsn: missing"),
        ({"reports": {"currency": "XXX"}}, "unknown currency"),
        ({"reports": {"opening_hours": "22-08"}}, "HH-HH"),
        ({"server": {"host": "127.0.0.1", "prot": 1}}, "prot: unknown key"),
        ({"serve": {}}, "serve: unknown key"),
    ):
        with pytest.raises(ConfigError, match=problem):
            parse_office({**doc, **bad}, "o.toml", tmp_path)


def test_register_a_terminal_and_a_user_from_the_command_line(office, tmp_path, capsys, monkeypatch):
    token_file = tmp_path / "SHOPX001.token"
    argv = ["office", "terminal", "SHOPX001", "--shop", "east", "--dsn", office.dsn, "--config", "/nonexistent"]
    assert cli.main([*argv, "--token-file", str(token_file)]) == 0
    assert token_file.stat().st_mode & 0o777 == 0o600 and len(token_file.read_text().strip()) >= 40
    assert cli.main(argv) == 1  # registered already: a new token only with --rotate
    assert "--rotate" in capsys.readouterr().err
    assert cli.main([*argv, "--rotate"]) == 0
    assert capsys.readouterr().out.strip() != token_file.read_text().strip()
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    user = ["office", "user", "boss", "--role", "owner", "--password-stdin", "--dsn", office.dsn, "--config", "/x"]
    assert cli.main(user) == 0
    assert office.sql("SELECT role, password_hash LIKE 'scrypt$%%' FROM users") == [("owner", True)]
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(user) == 1 and "at least 8" in capsys.readouterr().err
    assert cli.main(["office", "terminal", "--dsn", office.dsn, "--config", "/x"]) == 0
    assert "SHOPX001  shop=east  last contact never" in capsys.readouterr().out
